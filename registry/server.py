"""HTTP directory: the core of the W3C WoT Discovery TD Directory API, plus device matching.

- ``PUT /things/{id}`` create (201) or replace (204) a TD; ``POST /things`` an anonymous TD (201
  + Location, the directory assigns ``urn:uuid:…``); ``GET``/``DELETE /things/{id}``;
  ``GET /things?offset=&limit=`` pages with a ``Link: <…>; rel="next"`` header.
- ``GET /search/sparql?query=…`` and ``POST /search/sparql`` (``application/sparql-query``):
  SPARQL 1.1 results JSON.
- ``GET /devices/{id}/matches``: compatible artifacts, best first.
Errors are RFC 7807 ``application/problem+json``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from edgebert.errors import EdgeBertError, InputError
from registry.describe import DescriptionError
from registry.registry import Registry, open_registry
from registry.store import StoreError
from registry.vocab import is_iri

TD_JSON = "application/td+json"


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def create_app(reg: Registry) -> FastAPI:
    app = FastAPI(title="EdgeBERT registry: WoT TD Directory", version="1.0")

    @app.exception_handler(DescriptionError)
    async def _invalid(_: Request, exc: DescriptionError) -> JSONResponse:
        return problem(400, "Invalid Thing Description", str(exc))

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        malformed = "malformed" in str(exc) or "expected a SELECT" in str(exc)
        return problem(400 if malformed else 502, "Bad query" if malformed else "Store unavailable", str(exc))

    @app.exception_handler(InputError)
    async def _missing(_: Request, exc: InputError) -> JSONResponse:
        return problem(404, "Not found", str(exc))

    @app.exception_handler(EdgeBertError)
    async def _other(_: Request, exc: EdgeBertError) -> JSONResponse:
        return problem(400, "Bad request", str(exc))

    async def _td_body(request: Request) -> dict[str, Any]:
        try:
            td = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DescriptionError(f"request body: expected a JSON Thing Description, found: {exc}") from None
        if not isinstance(td, dict):
            raise DescriptionError(f"request body: expected a JSON object, found {type(td).__name__}")
        return td

    def _exists(thing_id: str) -> bool:
        if not is_iri(thing_id):
            raise DescriptionError(f"URL: expected a Thing id that is an absolute IRI, found {thing_id!r}")
        return bool(reg.query(f"ASK {{ <{thing_id}> a <https://w3id.org/edgebert/ns#Device> }}")[0]["ask"])

    @app.put("/things/{thing_id:path}")
    async def put_thing(thing_id: str, request: Request) -> Response:
        td = await _td_body(request)
        if td.setdefault("id", thing_id) != thing_id:
            raise DescriptionError(f"request body: expected id {thing_id!r} as in the URL, found {td['id']!r}")
        existed = _exists(thing_id)
        reg.add_tds([td])
        return Response(status_code=204 if existed else 201)

    @app.post("/things")
    async def post_thing(request: Request) -> Response:
        td = await _td_body(request)
        if "id" in td:
            raise DescriptionError("request body: expected an anonymous TD (no 'id') for POST; use PUT /things/{id}")
        td["id"] = f"urn:uuid:{uuid.uuid4()}"
        reg.add_tds([td])
        return Response(status_code=201, headers={"Location": f"/things/{td['id']}"})

    @app.get("/things/{thing_id:path}")
    async def get_thing(thing_id: str) -> Response:
        if not _exists(thing_id):
            return problem(404, "Not found", f"{thing_id}: expected a known Thing, found none")
        return Response(json.dumps(reg.get_td(thing_id)), media_type=TD_JSON)

    @app.delete("/things/{thing_id:path}")
    async def delete_thing(thing_id: str) -> Response:
        if not _exists(thing_id):
            return problem(404, "Not found", f"{thing_id}: expected a known Thing, found none")
        reg.delete_thing(thing_id)
        return Response(status_code=204)

    @app.get("/things")
    async def list_things(offset: int = 0, limit: int = 100) -> Response:
        if offset < 0 or not 1 <= limit <= 1000:
            return problem(400, "Bad paging", f"expected offset >= 0 and 1 <= limit <= 1000, found {offset}, {limit}")
        ids = reg.list_devices(offset, limit + 1)
        headers = {}
        if len(ids) > limit:
            headers["Link"] = f'</things?offset={offset + limit}&limit={limit}>; rel="next"'
        body = [reg.get_td(i) for i in ids[:limit]]
        return Response(json.dumps(body), media_type="application/ld+json", headers=headers)

    @app.get("/search/sparql")
    async def sparql_get(query: str) -> Response:
        return Response(reg.store.query_json(query), media_type="application/sparql-results+json")

    @app.post("/search/sparql")
    async def sparql_post(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qs

            body = parse_qs(body).get("query", [""])[0]
        return Response(reg.store.query_json(body), media_type="application/sparql-results+json")

    @app.get("/devices/{device_id:path}/matches")
    async def matches(device_id: str) -> JSONResponse:
        return JSONResponse([m.to_dict() for m in reg.match(device_id)])

    return app


def serve(store: str, host: str = "127.0.0.1", port: int = 8081) -> None:
    import uvicorn

    uvicorn.run(create_app(open_registry(store)), host=host, port=port, log_level="info")
