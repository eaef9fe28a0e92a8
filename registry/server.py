"""HTTP directory: the W3C WoT Discovery 1.0 TD Directory API and a SPARQL 1.1 Protocol endpoint.

- Things API: ``PUT /things/{id}`` create (201) or replace (204); ``POST /things`` an anonymous TD
  (201; the directory assigns a ``urn:uuid:…`` id, given as the Location); ``PATCH /things/{id}`` with a JSON Merge
  Patch (``application/merge-patch+json``, 204); ``GET``/``DELETE /things/{id}``; ``GET /things``
  pages ordered by id (``offset``, ``limit``; ``next`` and ``canonical`` Link headers, an ETag).
  TDs are served enriched: the discovery context and ``registration`` (created, modified, expires,
  ttl, retrieved); a TD registered with a ``ttl`` or ``expires`` is purged once it expires.
- Notifications: ``GET /events`` and ``/events/{thing_created|thing_updated|thing_deleted}``,
  Server-Sent Events, ``?diff=true`` for the whole TD / the merge patch, ``Last-Event-ID`` replay.
- Search: ``/search/sparql`` (and ``/sparql``): the SPARQL 1.1 Protocol, queries by GET or POST,
  results negotiated as JSON, XML, CSV, TSV or (CONSTRUCT/DESCRIBE) JSON-LD, Turtle, N-Triples,
  RDF/XML; the protocol's dataset parameters; updates by POST with the ``admin`` scope.
  ``/search/jsonpath?query=``: JSONPath over the TDs.
- ``GET /.well-known/wot``: the directory's own TD. ``GET /devices/{id}/matches``: compatible
  artifacts, best first. ``HEAD`` on every GET resource.
Errors are RFC 7807 ``application/problem+json`` (the framework's own too); a refused TD's problem
lists its faults as ``validationErrors``.

Hardening (docs/security.md): every registry call runs in a worker thread, never on the event
loop, so one slow request cannot stall the others; SPARQL and JSONPath queries run at most
``max_concurrent_queries`` at a time (503 when busy) with a time limit and a row cap, and
``SERVICE`` is refused unless its endpoint is allowed; request bodies, JSON depth and TD size are
checked before parsing and validation (413/400); ``/things`` manages Things only (an IRI that
names an artifact, a model or a deployment is 409); bearer tokens with read/write/admin scopes
(``registry.access``), writes closed without tokens beyond loopback; TLS with a certificate; SSE
subscribers are capped and one that falls behind is disconnected, never buffered without end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
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
from registry import merge_patch
from registry.access import Access
from registry.describe import validate_td_json
from registry.directory_td import directory_td
from registry.events import TYPES, EventHub
from registry.guard import Limits, check_json_depth, check_query, check_td_size
from registry.jsonpath_search import search as jsonpath_search
from registry.registration import enrich, now_utc, rfc3339
from registry.registry import Registry, open_registry
from registry.sparql_protocol import (
    DISCOVERY_DEFAULT,
    SPARQL_DEFAULT,
    media_type,
    negotiate,
    parse_request,
    render,
    with_using,
)
from registry.store import Dataset
from registry.td_rules import load_json
from registry.vocab import is_iri

T = TypeVar("T")

TD_JSON = "application/td+json"
MERGE_PATCH = "application/merge-patch+json"
SPARQL_PATHS = ("/search/sparql", "/sparql")
WRITE_THREADS = 16  # of the 40 worker threads; a queued write holds one while it waits
log = logging.getLogger("edgebert.registry")


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
        return exc.status, {401: "Unauthorized", 403: "Forbidden", 405: "Method not allowed", 406: "Not acceptable",
                            409: "Conflict", 413: "Request too large", 415: "Unsupported media type",
                            503: "Busy"}.get(exc.status, "Bad request")
    return next((status, title) for cls, status, title in STATUSES if isinstance(exc, cls))


@dataclass(frozen=True)
class ServerConfig:
    limits: Limits = field(default_factory=Limits)
    access: Access = field(default_factory=Access)
    allow_service: tuple[str, ...] = ()
    purge_interval_s: float = 5.0  # how often TDs past their registration's expiry are purged
    max_subscribers: int = 64  # SSE clients at once
    keepalive_s: float = 15.0  # an SSE comment when nothing happened for this long


def _scope_for(method: str, path: str) -> str:
    """The scope a request needs before its body is read (a SPARQL update needs ``admin``: checked
    once the body says it is one)."""
    if method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and (path.startswith("/search/")
                                                                     or path in SPARQL_PATHS)):
        return "read"
    return "write"


def create_app(reg: Registry, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    limits = config.limits
    hub = EventHub(max_subscribers=config.max_subscribers)
    write_lock = threading.Lock()
    query_slots = asyncio.Semaphore(limits.max_concurrent_queries)

    async def off_loop(fn: Callable[..., T], *args: Any) -> T:  # noqa: ANN401
        return await run_in_threadpool(fn, *args)

    write_slots: list[anyio.CapacityLimiter] = []

    async def off_loop_write(fn: Callable[..., T], *args: Any) -> T:  # noqa: ANN401
        """Writes wait for the store in at most ``WRITE_THREADS`` worker threads: however many
        writers queue, the reads keep threads of their own."""
        if not write_slots:
            write_slots.append(anyio.CapacityLimiter(WRITE_THREADS))
        return await anyio.to_thread.run_sync(fn, *args, limiter=write_slots[0])

    def locked(fn: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any) -> T:  # noqa: ANN401
            with write_lock:
                return fn(*args)
        return run

    def _purge() -> None:
        for thing in reg.expired_things():
            reg.delete_thing(thing)
            hub.publish("thing_deleted", thing)

    async def _purge_loop() -> None:
        while True:
            await asyncio.sleep(config.purge_interval_s)
            try:
                await off_loop(locked(_purge))
            except Exception as exc:  # noqa: BLE001 - the loop outlives a failing store
                log.warning("expiry purge failed: %s: %s", type(exc).__name__, exc)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_purge_loop())
        try:
            yield
        finally:
            task.cancel()
            hub.close()

    app = FastAPI(title="EdgeBERT registry: WoT TD Directory", version="1.0", lifespan=lifespan)

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
            request.scope["edgebert.head"] = True
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

    async def _json_object(request: Request, what: str) -> dict[str, Any]:
        data = await _body(request)
        check_json_depth(data, limits.max_json_depth)
        value = load_json(data, f"request body ({what})")
        if not isinstance(value, dict):
            raise DescriptionError(f"request body: expected a JSON object ({what}), found {type(value).__name__}",
                                   (("(body)", "expected a JSON object"),))
        return value

    async def _td_body(request: Request) -> dict[str, Any]:
        td = await _json_object(request, "a JSON Thing Description")
        check_td_size(td, limits)
        return td

    def _kind(thing_id: str) -> str:
        """'thing' (a device TD), 'other' (an artifact, model, deployment… IRI) or 'none'."""
        if not is_iri(thing_id):
            raise DescriptionError(f"URL: expected a Thing id that is an absolute IRI, found {thing_id[:200]!r}",
                                   (("id", "expected an absolute IRI"),))
        if reg.query(f"ASK {{ <{thing_id}> a <https://w3id.org/edgebert/ns#Device> }}")[0]["ask"]:
            return "thing"
        return "other" if reg.query(f"ASK {{ <{thing_id}> ?p ?o }}")[0]["ask"] else "none"

    def _enriched_many(ids: list[str]) -> list[dict[str, Any]]:
        """The Things' enriched TDs, in ``ids``' order (two queries, whatever their number)."""
        docs, regs, now = reg.get_tds(ids), reg.registrations(ids), now_utc()
        return [enrich(docs[i], regs.get(i), now) for i in ids]

    def _enriched(thing_id: str) -> dict[str, Any]:
        return _enriched_many([thing_id])[0]

    pending: list[tuple[str, dict[str, Any], Future[int]]] = []
    turn = threading.Condition()  # guards ``pending`` and ``committing``
    committing = [False]

    def _write(thing_id: str, td: dict[str, Any]) -> int:
        """Create or replace one TD and tell the subscribers; 201 or 204. Group commit: the writer
        that gets the write lock commits every TD queued meanwhile in one store update (each TD still
        validated on its own first), so concurrent writers share the cost of a write."""
        validate_td_json(td, f"TD {thing_id[:200]}")  # on this writer's thread, before it queues
        done: Future[int] = Future()
        with turn:
            pending.append((thing_id, td, done))
        while True:
            with turn:  # sleep until our TD is written or nobody is committing (then we are the leader)
                turn.wait_for(lambda: done.done() or not committing[0])
                if done.done():
                    return done.result()
                committing[0] = True
                batch = pending[:]
                pending.clear()
            try:
                with write_lock:
                    _commit(batch)
            except Exception as exc:  # noqa: BLE001 - no writer may wait for ever
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            finally:
                with turn:
                    committing[0] = False
                    turn.notify_all()

    def _commit(batch: list[tuple[str, dict[str, Any], Future[int]]]) -> None:
        groups: list[list[tuple[str, dict[str, Any], Future[int]]]] = [[]]
        for item in batch:  # a Thing written twice in a batch: the second write in a later group
            if any(item[0] == other[0] for other in groups[-1]):
                groups.append([])
            groups[-1].append(item)
        for group in groups:
            ready = []
            for thing_id, td, done in group:
                try:
                    kind = _kind(thing_id)
                    if kind == "other":
                        raise RequestRefused(f"{thing_id}: expected the id of a Thing (or a new one), found the IRI of "
                                             "another registry resource (an artifact, model or deployment); /things "
                                             "manages Things only", 409)
                    ready.append((thing_id, td, done, reg.get_td(thing_id) if kind == "thing" else None))
                except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
                    done.set_exception(exc)
            if not ready:
                continue
            try:
                reg.add_tds([td for _, td, _, _ in ready], validate=False)
                written = ready
            except EdgeBertError:  # one of them is refused: write each alone, so each gets its own answer
                written = []
                for item in ready:
                    try:
                        reg.add_tds([item[1]], validate=False)
                        written.append(item)
                    except Exception as exc:  # noqa: BLE001
                        item[2].set_exception(exc)
            except Exception as exc:  # noqa: BLE001 - e.g. the store is unreachable: every writer hears it
                for item in ready:
                    item[2].set_exception(exc)
                continue
            for thing_id, _, done, old in written:
                if old is None:
                    hub.publish("thing_created", thing_id, full=_enriched(thing_id))
                    done.set_result(201)
                else:
                    hub.publish("thing_updated", thing_id, patch=merge_patch.diff(old, reg.get_td(thing_id)))
                    done.set_result(204)

    @app.put("/things/{thing_id:path}")
    async def put_thing(thing_id: str, request: Request) -> Response:
        td = await _td_body(request)
        if td.setdefault("id", thing_id) != thing_id:
            raise DescriptionError(f"request body: expected id {thing_id!r} as in the URL, found {str(td['id'])[:200]!r}",
                                   (("id", "expected the id in the URL"),))
        return Response(status_code=await off_loop_write(_write, thing_id, td))

    @app.post("/things")
    async def post_thing(request: Request) -> Response:
        td = await _td_body(request)
        if "id" in td:
            raise DescriptionError("request body: expected an anonymous TD (no 'id') for POST; use PUT /things/{id}",
                                   (("id", "expected no id in an anonymous TD"),))
        td["id"] = f"urn:uuid:{uuid.uuid4()}"
        await off_loop_write(_write, td["id"], td)
        # the system-generated id itself, an absolute URI (as the W3C test suite and the directories that
        # pass it read it): GET /things/{Location} retrieves the TD
        return Response(status_code=201, headers={"Location": td["id"]})

    def _patch(thing_id: str, patch: dict[str, Any]) -> None:
        if _kind(thing_id) != "thing":
            raise NotFoundError(f"{thing_id[:200]}: expected a known Thing to patch, found none")
        old = reg.get_td(thing_id)
        base = dict(old)
        previous = reg.registrations([thing_id]).get(thing_id)
        if previous is not None and previous.ttl is not None:  # a partial update keeps the TD's expiry rule
            base["registration"] = {"ttl": previous.ttl}
        elif previous is not None and previous.expires is not None:
            base["registration"] = {"expires": rfc3339(previous.expires)}
        merged = merge_patch.apply(base, patch)
        if merged.get("id") != thing_id:
            raise DescriptionError(f"patch: expected the TD's id to stay {thing_id!r}, found "
                                   f"{str(merged.get('id'))[:200]!r}", (("id", "a patch cannot change the id"),))
        check_td_size(merged, limits)
        reg.add_tds([merged])
        hub.publish("thing_updated", thing_id, patch=merge_patch.diff(old, reg.get_td(thing_id)))

    @app.patch("/things/{thing_id:path}")
    async def patch_thing(thing_id: str, request: Request) -> Response:
        kind, _ = media_type(request.headers.get("content-type"))
        if kind != MERGE_PATCH:
            raise RequestRefused(f"Content-Type: expected {MERGE_PATCH} (a JSON Merge Patch), found "
                                 f"{(request.headers.get('content-type') or 'none')[:80]!r}", 415)
        patch = await _json_object(request, "a JSON Merge Patch object")
        await off_loop_write(locked(_patch), thing_id, patch)
        return Response(status_code=204)

    def _get(thing_id: str) -> dict[str, Any] | None:
        return _enriched(thing_id) if _kind(thing_id) == "thing" else None

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
        hub.publish("thing_deleted", thing_id)
        return True

    @app.delete("/things/{thing_id:path}")
    async def delete_thing(thing_id: str) -> Response:
        if not await off_loop_write(locked(_delete), thing_id):
            return problem(404, "Not found", f"{thing_id[:200]}: expected a known Thing, found none")
        return Response(status_code=204)

    def _page(offset: int, limit: int) -> tuple[list[dict[str, Any]], bool, str]:
        ids = reg.list_devices(offset, limit + 1)
        docs = _enriched_many(ids[:limit])
        # the store's state, and every write this server made (two writes can share a millisecond)
        return docs, len(ids) > limit, f"{reg.collection_version()}-{hub.boot}.{hub.last_seq}"

    @app.get("/things")
    async def list_things(offset: int = 0, limit: int = 100, format: str = "array") -> Response:  # noqa: A002
        if offset < 0 or not 1 <= limit <= 1000:
            return problem(400, "Bad paging", f"expected offset >= 0 and 1 <= limit <= 1000, found {offset}, {limit}")
        if format != "array":
            return problem(501, "Not implemented", f"format: expected 'array' (the collection format is not "
                                                   f"supported), found {format[:40]!r}")
        body, more, version = await off_loop(_page, offset, limit)
        links = [f'</things>; rel="canonical"; etag="{version}"']
        if more:
            links.insert(0, f'</things?offset={offset + limit}&limit={limit}>; rel="next"')
        return Response(json.dumps(body), media_type="application/ld+json",
                        headers={"Link": ", ".join(links), "ETag": f'"{version}"'})

    # ------------------------------------------------------------------ notifications
    @app.get("/events")
    async def events_all(request: Request, diff: str = "false") -> Response:
        return await _events(request, TYPES, diff)

    @app.get("/events/{event_type}")
    async def events_of(request: Request, event_type: str, diff: str = "false") -> Response:
        if event_type not in TYPES:
            raise RequestRefused(f"event type: expected one of {', '.join(TYPES)}, found {event_type[:60]!r}", 400)
        return await _events(request, (event_type,), diff)

    async def _events(request: Request, types: tuple[str, ...], diff: str) -> Response:
        if diff not in ("true", "false"):
            raise RequestRefused(f"diff: expected true or false, found {diff[:20]!r}", 400)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.scope.get("edgebert.head"):
            return Response(status_code=200, media_type="text/event-stream", headers=headers)
        sub, missed = hub.subscribe(types, diff == "true", request.headers.get("last-event-id"))

        async def stream() -> AsyncIterator[str]:
            try:
                for event in missed:
                    yield event.sse(hub.boot, sub.diff)
                while True:
                    try:
                        event = await asyncio.wait_for(sub.queue.get(), config.keepalive_s)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if event is None:
                        return
                    yield event.sse(hub.boot, sub.diff)
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    # ------------------------------------------------------------------ search
    async def _bounded(fn: Callable[..., T], *args: Any) -> T:  # noqa: ANN401
        """Run a query-like call in a query slot, with the time limit (503 when busy or too slow)."""
        if query_slots.locked():
            raise RequestRefused(f"query: expected a free query slot (at most {limits.max_concurrent_queries} "
                                 "queries run at once), found none; retry later", 503)
        async with query_slots:
            try:
                return await asyncio.wait_for(off_loop(fn, *args), limits.query_timeout_s + 1.0)
            except asyncio.TimeoutError:
                raise RequestRefused(f"query: expected a result within {limits.query_timeout_s} s, found none "
                                     "(its evaluation is being abandoned)", 503) from None

    async def _sparql(request: Request) -> Response:
        body = await _body(request) if request.method == "POST" else b""
        op = parse_request(request.method, request.url.query, request.headers.get("content-type"), body)
        check_query(op.text, config.allow_service, limits.max_query_chars)
        base = str(request.url).split("?", 1)[0]
        if op.kind == "update":
            ok, status, why = config.access.allows("admin", request.headers.get("authorization"))
            if not ok:
                raise RequestRefused(f"SPARQL update: {why}", status)
            await off_loop(locked(reg.store.update), with_using(op), base)
            return Response(status_code=204)
        dataset = Dataset(op.default_graphs, op.named_graphs) if op.has_dataset else Dataset()
        deadline = time.monotonic() + limits.query_timeout_s
        result = await _bounded(reg.store.query_result, op.text, limits.max_result_rows, deadline, dataset, base)
        defaults = DISCOVERY_DEFAULT if request.url.path.startswith("/search/") else SPARQL_DEFAULT
        media = negotiate(request.headers.get("accept"), result.form, defaults)
        return Response(render(result, media), media_type=media, headers={"Vary": "Accept"})

    for path in SPARQL_PATHS:
        app.add_api_route(path, _sparql, methods=["GET", "POST"], include_in_schema=path == SPARQL_PATHS[0])

    @app.get("/search/jsonpath")
    async def jsonpath(query: str) -> JSONResponse:
        if len(query) > limits.max_query_chars:
            raise RequestRefused(f"query: expected at most {limits.max_query_chars} characters, found {len(query)}", 413)
        deadline = time.monotonic() + limits.query_timeout_s

        def run() -> list[Any]:
            return jsonpath_search(_enriched_many(reg.list_devices(0, 10**9)), query, limits.max_result_rows, deadline)

        return JSONResponse(await _bounded(run))

    # ------------------------------------------------------------------ the directory itself
    @app.get("/.well-known/wot")
    async def well_known(request: Request) -> Response:
        return Response(json.dumps(directory_td(str(request.base_url))), media_type=TD_JSON)

    @app.get("/devices/{device_id:path}/matches")
    async def matches(device_id: str) -> JSONResponse:
        found = await off_loop(reg.match, device_id)
        return JSONResponse([m.to_dict() for m in found])

    return app


def serve(store: str, host: str = "127.0.0.1", port: int = 8081, config: ServerConfig | None = None,
          certfile: str | None = None, keyfile: str | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(open_registry(store), config), host=host, port=port, log_level="info",
                ssl_certfile=certfile, ssl_keyfile=keyfile, timeout_graceful_shutdown=5)
