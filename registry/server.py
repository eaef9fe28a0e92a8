"""HTTP directory: the core of the W3C WoT Discovery TD Directory API, plus device matching.

- ``PUT /things/{id}`` create (201) or replace (204) a TD; ``POST /things`` an anonymous TD (201
  + Location, the directory assigns ``urn:uuid:…``); ``GET``/``DELETE /things/{id}``;
  ``GET /things?offset=&limit=`` pages with a ``Link: <…>; rel="next"`` header.
- ``GET /search/sparql?query=…`` and ``POST /search/sparql`` (``application/sparql-query``):
  SPARQL 1.1 results JSON.
- ``GET /devices/{id}/matches``: compatible artifacts, best first.
- ``HEAD`` on every resource: the GET's status and headers, no body.
Errors are RFC 7807 ``application/problem+json``, the framework's own (405, a missing parameter) too.

Hardening (docs/security.md): every registry call runs in a worker thread, never on the event
loop, so one slow request cannot stall the others; SPARQL queries run at most
``max_concurrent_queries`` at a time (503 when busy) with a time limit and a row cap, and
``SERVICE`` is refused unless its endpoint is allowed; request bodies, JSON depth and TD size are
checked before parsing and validation (413/400); ``/things`` manages Things only (an IRI that
names an artifact, a model or a deployment is 409); bearer tokens with read/write/admin scopes
(``registry.access``), writes closed without tokens beyond loopback; TLS with a certificate.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgebert.errors import (
    DescriptionError,
    EdgeBertError,
    NotFoundError,
    QueryError,
    QueryTimeoutError,
    RequestRefused,
    StoreError,
)
from registry.access import Access
from registry.guard import Limits, check_json_depth, check_query, check_td_size
from registry.registry import Registry, open_registry
from registry.vocab import is_iri

T = TypeVar("T")

TD_JSON = "application/td+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:  # noqa: ANN401
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
                        status_code=status, media_type="application/problem+json")


STATUSES: tuple[tuple[type[EdgeBertError], int, str], ...] = (  # the first class that matches wins
    (RequestRefused, 0, ""), (NotFoundError, 404, "Not found"), (QueryTimeoutError, 503, "Query timeout"),
    (QueryError, 400, "Bad query"), (DescriptionError, 400, "Invalid Thing Description"),
    (StoreError, 502, "Store unavailable"), (EdgeBertError, 400, "Bad request"))


def status_of(exc: EdgeBertError) -> tuple[int, str]:
    """The HTTP status and title for an error, from its class alone."""
    if isinstance(exc, RequestRefused):
        return exc.status, {403: "Forbidden", 409: "Conflict", 413: "Request too large", 503: "Busy"}.get(
            exc.status, "Bad request")
    return next((status, title) for cls, status, title in STATUSES if isinstance(exc, cls))


@dataclass(frozen=True)
class ServerConfig:
    limits: Limits = field(default_factory=Limits)
    access: Access = field(default_factory=Access)
    allow_service: tuple[str, ...] = ()


def _scope_for(method: str, path: str) -> str:
    if method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and path.startswith("/search/")):
        return "read"
    return "write"


def create_app(reg: Registry, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    limits = config.limits
    app = FastAPI(title="EdgeBERT registry: WoT TD Directory", version="1.0")
    write_lock = threading.Lock()
    query_slots = asyncio.Semaphore(limits.max_concurrent_queries)

    async def off_loop(fn: Callable[..., T], *args: Any) -> T:  # noqa: ANN401
        return await run_in_threadpool(fn, *args)

    def locked(fn: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any) -> T:  # noqa: ANN401
            with write_lock:
                return fn(*args)
        return run

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        ok, status, why = config.access.allows(_scope_for(request.method, request.url.path),
                                               request.headers.get("authorization"))
        if not ok:
            headers = {"WWW-Authenticate": 'Bearer realm="edgebert-registry"'} if status == 401 else {}
            resp = problem(status, "Unauthorized" if status == 401 else "Forbidden", why)
            resp.headers.update(headers)
            return resp
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return problem(413, "Request too large",
                           f"request body: expected at most {limits.max_body_bytes} bytes, found {length[:20]}")
        head = request.method == "HEAD"
        if head:  # HEAD on every resource: the GET's status and headers, no body
            request.scope["method"] = "GET"
        try:
            response = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - never a plain-text 500
            response = problem(500, "Internal error", f"{type(exc).__name__}: {str(exc)[:200]}")
        if not head:
            return response
        size = 0
        async for chunk in response.body_iterator:  # type: ignore[attr-defined]
            size += len(chunk)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(status_code=response.status_code, headers={**headers, "content-length": str(size)})


    @app.exception_handler(EdgeBertError)
    async def _error(_: Request, exc: EdgeBertError) -> JSONResponse:
        status, title = status_of(exc)
        fields = getattr(exc, "fields", ())
        extra = {"validationErrors": [{"field": f, "description": d} for f, d in fields]} if fields else {}
        return problem(status, title, str(exc), **extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own errors (404 of an unknown path, 405 of a method) as problem+json too."""
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        if exc.status_code != 405:
            return problem(exc.status_code, title, f"{request.url.path[:200]}: {exc.detail}")
        # every route of this path, not only the first one the router tried (HEAD wherever GET is)
        methods = {m for r in app.routes if isinstance(r, APIRoute) and r.path_regex.match(request.url.path)
                   for m in r.methods}
        allow = ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
        resp = problem(405, title, f"{request.url.path[:200]}: expected one of the methods {allow}, "
                                   f"found {request.method[:20]}")
        resp.headers["Allow"] = allow
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A missing or malformed parameter (FastAPI's 422) as a 400 problem naming it."""
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        found = "none" if first.get("type") == "missing" else repr(first.get("input"))[:100]
        return problem(400, "Bad request", f"{request.url.path}: expected {where or 'a valid request'} "
                                           f"({first.get('msg', 'invalid')}), found {found}")

    async def _body(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise RequestRefused(f"request body: expected at most {limits.max_body_bytes} bytes, found more", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _td_body(request: Request) -> dict[str, Any]:
        data = await _body(request)
        check_json_depth(data, limits.max_json_depth)
        try:
            td = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise DescriptionError(f"request body: expected a JSON Thing Description, found: {str(exc)[:200]}") from None
        if not isinstance(td, dict):
            raise DescriptionError(f"request body: expected a JSON object, found {type(td).__name__}")
        check_td_size(td, limits)
        return td

    def _kind(thing_id: str) -> str:
        """'thing' (a device TD), 'other' (an artifact, model, deployment… IRI) or 'none'."""
        if not is_iri(thing_id):
            raise DescriptionError(f"URL: expected a Thing id that is an absolute IRI, found {thing_id[:200]!r}")
        if reg.query(f"ASK {{ <{thing_id}> a <https://w3id.org/edgebert/ns#Device> }}")[0]["ask"]:
            return "thing"
        return "other" if reg.query(f"ASK {{ <{thing_id}> ?p ?o }}")[0]["ask"] else "none"

    def _put(thing_id: str, td: dict[str, Any]) -> int:
        kind = _kind(thing_id)
        if kind == "other":
            raise RequestRefused(f"{thing_id}: expected the id of a Thing (or a new one), found the IRI of another "
                                 "registry resource (an artifact, model or deployment); /things manages Things only",
                                 409)
        reg.add_tds([td])
        return 204 if kind == "thing" else 201

    @app.put("/things/{thing_id:path}")
    async def put_thing(thing_id: str, request: Request) -> Response:
        td = await _td_body(request)
        if td.setdefault("id", thing_id) != thing_id:
            raise DescriptionError(f"request body: expected id {thing_id!r} as in the URL, found {str(td['id'])[:200]!r}")
        return Response(status_code=await off_loop(locked(_put), thing_id, td))

    @app.post("/things")
    async def post_thing(request: Request) -> Response:
        td = await _td_body(request)
        if "id" in td:
            raise DescriptionError("request body: expected an anonymous TD (no 'id') for POST; use PUT /things/{id}")
        td["id"] = f"urn:uuid:{uuid.uuid4()}"
        await off_loop(locked(reg.add_tds), [td])
        return Response(status_code=201, headers={"Location": f"/things/{td['id']}"})

    def _get(thing_id: str) -> dict[str, Any] | None:
        return reg.get_td(thing_id) if _kind(thing_id) == "thing" else None

    @app.get("/things/{thing_id:path}")
    async def get_thing(thing_id: str) -> Response:
        td = await off_loop(_get, thing_id)
        if td is None:
            return problem(404, "Not found", f"{thing_id[:200]}: expected a known Thing, found none")
        return Response(json.dumps(td), media_type=TD_JSON)

    def _delete(thing_id: str) -> bool:
        if _kind(thing_id) != "thing":
            return False
        reg.delete_thing(thing_id)
        return True

    @app.delete("/things/{thing_id:path}")
    async def delete_thing(thing_id: str) -> Response:
        if not await off_loop(locked(_delete), thing_id):
            return problem(404, "Not found", f"{thing_id[:200]}: expected a known Thing, found none")
        return Response(status_code=204)

    def _page(offset: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        ids = reg.list_devices(offset, limit + 1)
        return [reg.get_td(i) for i in ids[:limit]], len(ids) > limit

    @app.get("/things")
    async def list_things(offset: int = 0, limit: int = 100) -> Response:
        if offset < 0 or not 1 <= limit <= 1000:
            return problem(400, "Bad paging", f"expected offset >= 0 and 1 <= limit <= 1000, found {offset}, {limit}")
        body, more = await off_loop(_page, offset, limit)
        headers = {"Link": f'</things?offset={offset + limit}&limit={limit}>; rel="next"'} if more else {}
        return Response(json.dumps(body), media_type="application/ld+json", headers=headers)

    async def _sparql(query: str) -> Response:
        check_query(query, config.allow_service, limits.max_query_chars)
        if query_slots.locked():
            raise RequestRefused(f"query: expected a free query slot (at most {limits.max_concurrent_queries} "
                                 "queries run at once), found none; retry later", 503)
        async with query_slots:
            deadline = time.monotonic() + limits.query_timeout_s
            run = off_loop(reg.store.query_json_limited, query, limits.max_result_rows, deadline)
            try:
                body = await asyncio.wait_for(run, limits.query_timeout_s + 1.0)
            except asyncio.TimeoutError:
                raise RequestRefused(f"query: expected a result within {limits.query_timeout_s} s, found none "
                                     "(its evaluation is being abandoned)", 503) from None
        return Response(body, media_type="application/sparql-results+json")

    @app.get("/search/sparql")
    async def sparql_get(query: str) -> Response:
        return await _sparql(query)

    @app.post("/search/sparql")
    async def sparql_post(request: Request) -> Response:
        body = (await _body(request)).decode("utf-8", "replace")
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qs

            body = parse_qs(body).get("query", [""])[0]
        return await _sparql(body)

    @app.get("/devices/{device_id:path}/matches")
    async def matches(device_id: str) -> JSONResponse:
        found = await off_loop(reg.match, device_id)
        return JSONResponse([m.to_dict() for m in found])

    return app


def serve(store: str, host: str = "127.0.0.1", port: int = 8081, config: ServerConfig | None = None,
          certfile: str | None = None, keyfile: str | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(open_registry(store), config), host=host, port=port, log_level="info",
                ssl_certfile=certfile, ssl_keyfile=keyfile)
