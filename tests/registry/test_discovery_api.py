"""The WoT Discovery directory API over real HTTP: registration info and expiry, JSON Merge Patch,
Server-Sent Events (types, diff, Last-Event-ID replay), JSONPath search, paging links, the
directory's own TD."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from registry.describe import validate_td_json
from registry.registration import DISCOVERY_CONTEXT
from registry.registry import Registry, open_registry
from registry.server import ServerConfig

from ..net import wait_until
from .serving import call, running


def td(ident: str, **extra: object) -> dict:
    return {"@context": "https://www.w3.org/2022/wot/td/v1.1", "id": f"urn:dev:{ident}", "title": ident,
            "description": "a lamp", "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
            "properties": {"on": {"type": "boolean", "forms": [{"href": f"http://{ident}.local/on"}]}}, **extra}


@pytest.fixture()
def served() -> Iterator[tuple[str, Registry]]:
    reg = open_registry("memory")
    with running(reg, ServerConfig(purge_interval_s=0.1, keepalive_s=0.5)) as url:
        yield url, reg


def when(text: str) -> datetime:
    assert text.endswith("Z") or "+" in text[-6:], text  # RFC 3339: the offset is not optional
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Events:
    """An SSE client on a thread: every event it reads, as (type, id, data)."""

    def __init__(self, url: str, path: str, last_event_id: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self.conn.request("GET", path, headers={"Last-Event-ID": last_event_id} if last_event_id else {})
        self.response = self.conn.getresponse()
        self.events: list[tuple[str, str, dict]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        kind, ident, data = "", "", []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        self.events.append((kind, ident, json.loads("\n".join(data))))
                    kind, ident, data = "", "", []
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("id: "):
                    ident = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        except (OSError, ValueError, AttributeError):  # closed under it by close()
            pass

    def wait(self, n: int, timeout: float = 10) -> list[tuple[str, str, dict]]:
        assert wait_until(lambda: len(self.events) >= n, timeout), self.events
        return self.events

    def close(self) -> None:
        self.conn.close()


def test_registration_info_created_modified_and_ttl(served: tuple[str, Registry]) -> None:
    url, _ = served
    thing = f"{url}/things/urn:dev:lamp"
    assert call("PUT", thing, td("lamp"))[0] == 201
    first = json.loads(call("GET", thing)[2])
    time.sleep(0.01)
    assert call("PUT", thing, {**td("lamp", title="renamed"), "registration": {"ttl": 3600}})[0] == 204
    second = json.loads(call("GET", thing)[2])

    assert first["@context"] == ["https://www.w3.org/2022/wot/td/v1.1", DISCOVERY_CONTEXT]
    reg1, reg2 = first["registration"], second["registration"]
    assert reg2["created"] == reg1["created"] and when(reg2["modified"]) > when(reg1["modified"])
    assert "expires" not in reg1 and reg2["ttl"] == 3600
    assert when(reg2["expires"]) - when(reg2["modified"]) == timedelta(seconds=3600)
    assert abs(when(reg2["retrieved"]) - datetime.now(when(reg2["retrieved"]).tzinfo)) < timedelta(seconds=5)
    # a client that sends an enriched TD back: read-only members ignored, the context not stored twice
    assert call("PUT", thing, second)[0] == 204
    third = json.loads(call("GET", thing)[2])
    assert third["@context"].count(DISCOVERY_CONTEXT) == 1 and third["registration"]["created"] == reg1["created"]


def test_a_td_whose_registration_expires_is_purged_and_its_deletion_notified(served: tuple[str, Registry]) -> None:
    url, _ = served
    events = Events(url, "/events/thing_deleted")
    try:
        # 3 s: long enough that a loaded CI machine still reads it back before it expires
        assert call("PUT", f"{url}/things/urn:dev:short", {**td("short"), "registration": {"ttl": 3}})[0] == 201
        assert call("GET", f"{url}/things/urn:dev:short")[0] == 200
        assert call("PUT", f"{url}/things/urn:dev:long", {**td("long"), "registration": {"ttl": 600}})[0] == 201
        assert wait_until(lambda: call("GET", f"{url}/things/urn:dev:short")[0] == 404, 10)
        assert call("GET", f"{url}/things/urn:dev:long")[0] == 200
        assert events.wait(1)[0][0] == "thing_deleted" and events.events[0][2] == {"id": "urn:dev:short"}
    finally:
        events.close()


@pytest.mark.parametrize("registration", [{"ttl": -1}, {"ttl": "soon"}, {"ttl": 1e12}, {"expires": "tomorrow"},
                                          {"expires": "2030-01-01T00:00:00"}, []])
def test_a_malformed_registration_is_refused(served: tuple[str, Registry], registration: object) -> None:
    url, _ = served
    status, _, body = call("PUT", f"{url}/things/urn:dev:bad", {**td("bad"), "registration": registration})
    assert status == 400 and json.loads(body)["validationErrors"][0]["field"].startswith("registration")
    assert call("GET", f"{url}/things/urn:dev:bad")[0] == 404


def test_merge_patch_replaces_removes_adds_and_keeps_the_rest(served: tuple[str, Registry]) -> None:
    url, _ = served
    thing = f"{url}/things/urn:dev:patched"
    call("PUT", thing, td("patched"))
    patch = {"title": "new title", "description": None,
             "properties": {"level": {"type": "integer", "forms": [{"href": "http://patched.local/level"}]}}}
    status, _, _ = call("PATCH", thing, patch, content_type="application/merge-patch+json")
    got = json.loads(call("GET", thing)[2])

    assert status == 204 and got["title"] == "new title" and "description" not in got
    assert set(got["properties"]) == {"on", "level"} and got["security"] == "nosec_sc"


@pytest.mark.parametrize(("patch", "content_type", "status", "field"), [
    ({"title": "x"}, "application/json", 415, None),  # the media type says what the body means
    ({"id": "urn:dev:other"}, "application/merge-patch+json", 400, "id"),
    ({"title": None}, "application/merge-patch+json", 400, "(top level)"),  # a TD needs a title
    ({"properties": {"on": {"forms": []}}}, "application/merge-patch+json", 400, "properties/on/forms"),
    (["not", "an", "object"], "application/merge-patch+json", 400, "(body)"),
])
def test_a_bad_patch_is_refused_and_changes_nothing(served: tuple[str, Registry], patch: object, content_type: str,
                                                    status: int, field: str | None) -> None:
    url, _ = served
    thing = f"{url}/things/urn:dev:stays"
    call("PUT", thing, td("stays"))
    before = json.loads(call("GET", thing)[2])
    got, headers, body = call("PATCH", thing, patch, content_type=content_type)
    after = json.loads(call("GET", thing)[2])

    assert got == status and headers["content-type"] == "application/problem+json"
    if field:
        assert json.loads(body)["validationErrors"][0]["field"] == field
    assert {k: v for k, v in after.items() if k != "registration"} == {k: v for k, v in before.items()
                                                                      if k != "registration"}
    assert after["registration"]["modified"] == before["registration"]["modified"]


def test_patching_an_unknown_thing_is_404(served: tuple[str, Registry]) -> None:
    url, _ = served
    assert call("PATCH", f"{url}/things/urn:dev:nobody", {"title": "x"},
                content_type="application/merge-patch+json")[0] == 404


def test_patch_keeps_the_ttl_and_renews_the_expiry(served: tuple[str, Registry]) -> None:
    url, _ = served
    thing = f"{url}/things/urn:dev:renewed"
    call("PUT", thing, {**td("renewed"), "registration": {"ttl": 300}})
    before = json.loads(call("GET", thing)[2])["registration"]
    time.sleep(0.01)
    call("PATCH", thing, {"title": "t2"}, content_type="application/merge-patch+json")
    after = json.loads(call("GET", thing)[2])["registration"]
    assert after["ttl"] == 300 and when(after["expires"]) > when(before["expires"])


def test_events_by_type_with_diff_and_every_type(served: tuple[str, Registry]) -> None:
    url, _ = served
    created, updated, every = (Events(url, "/events/thing_created?diff=true"),
                               Events(url, "/events/thing_updated?diff=true"), Events(url, "/events"))
    try:
        thing = f"{url}/things/urn:dev:watched"
        call("PUT", thing, td("watched"))
        call("PUT", thing, td("watched", title="second"))
        call("PATCH", thing, {"description": None}, content_type="application/merge-patch+json")
        call("DELETE", thing)

        (kind, _, full), = created.wait(1)
        assert kind == "thing_created" and full["title"] == "watched" and "created" in full["registration"]
        assert [e[2] for e in updated.wait(2)] == [{"id": "urn:dev:watched", "title": "second"},
                                                  {"id": "urn:dev:watched", "description": None}]
        seen = every.wait(4)
        assert [e[0] for e in seen] == ["thing_created", "thing_updated", "thing_updated", "thing_deleted"]
        assert all(e[2] == {"id": "urn:dev:watched"} for e in seen)  # without diff: the id only
        assert len({e[1] for e in seen}) == 4  # every event has its own id
    finally:
        for client in (created, updated, every):
            client.close()


def test_a_reconnecting_client_gets_what_it_missed(served: tuple[str, Registry]) -> None:
    url, _ = served
    first = Events(url, "/events/thing_created")
    call("PUT", f"{url}/things/urn:dev:a", td("a"))
    (_, last_id, _), = first.wait(1)
    first.close()
    call("PUT", f"{url}/things/urn:dev:b", td("b"))  # while it was away
    call("PUT", f"{url}/things/urn:dev:c", td("c"))
    again = Events(url, "/events/thing_created", last_event_id=last_id)
    try:
        assert [e[2]["id"] for e in again.wait(2)] == ["urn:dev:b", "urn:dev:c"]
    finally:
        again.close()


@pytest.mark.parametrize(("path", "why"), [("/events/thing_exploded", "event type"), ("/events?diff=maybe", "diff")])
def test_a_bad_subscription_is_a_problem(served: tuple[str, Registry], path: str, why: str) -> None:
    url, _ = served
    status, headers, body = call("GET", url + path)
    assert status == 400 and headers["content-type"] == "application/problem+json" and why in json.loads(body)["detail"]


def test_head_on_events_answers_at_once(served: tuple[str, Registry]) -> None:
    url, _ = served
    status, headers, body = call("HEAD", f"{url}/events")
    assert status == 200 and headers["content-type"].startswith("text/event-stream") and body == b""


def test_jsonpath_search(served: tuple[str, Registry]) -> None:
    url, _ = served
    for name in ("jp-1", "jp-2", "jp-3"):
        call("PUT", f"{url}/things/urn:dev:{name}", td(name, tag="blue" if name != "jp-3" else "red"))
    query = urllib.parse.quote("$[?@.tag=='blue'].id")
    status, headers, body = call("GET", f"{url}/search/jsonpath?query={query}")
    assert status == 200 and headers["content-type"] == "application/json"
    assert sorted(json.loads(body)) == ["urn:dev:jp-1", "urn:dev:jp-2"]
    status, headers, body = call("GET", f"{url}/search/jsonpath?query={urllib.parse.quote('*/id')}")
    assert status == 400 and headers["content-type"] == "application/problem+json"


def test_paging_links_and_collection_etag(served: tuple[str, Registry]) -> None:
    url, _ = served
    for i in range(3):
        call("PUT", f"{url}/things/urn:dev:page-{i}", td(f"page-{i}"))
    status, headers, body = call("GET", f"{url}/things?limit=2")
    page = json.loads(body)
    assert status == 200 and [t["id"] for t in page] == ["urn:dev:page-0", "urn:dev:page-1"]
    assert '</things?offset=2&limit=2>; rel="next"' in headers["link"] and 'rel="canonical"' in headers["link"]
    etag = headers["etag"]
    call("PATCH", f"{url}/things/urn:dev:page-0", {"title": "x"}, content_type="application/merge-patch+json")
    assert call("GET", f"{url}/things?limit=2")[1]["etag"] != etag
    assert call("GET", f"{url}/things?format=collection")[0] == 501


def test_the_directory_describes_itself(served: tuple[str, Registry]) -> None:
    url, _ = served
    status, headers, body = call("GET", f"{url}/.well-known/wot")
    directory = json.loads(body)
    validate_td_json(directory, "directory TD")
    assert status == 200 and headers["content-type"].startswith("application/td+json")
    assert directory["@type"] == "ThingDirectory" and directory["base"] == f"{url}/"
    assert {"createThing", "createAnonymousThing", "partiallyUpdateThing", "searchSPARQL", "searchJSONPath"} <= set(
        directory["actions"])
    assert directory["events"]["thingCreated"]["forms"][0]["subprotocol"] == "sse"
