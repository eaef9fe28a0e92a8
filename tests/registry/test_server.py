"""The TD Directory API over real HTTP (uvicorn on a free port)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from registry.registry import open_registry

from .conftest import SELOC, make_td
from .serving import running


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    reg = open_registry("memory")
    reg.import_file(SELOC / "example_tflite_models.ttl")
    with running(reg) as url:
        yield url


def call(method: str, url: str, body: object | None = None, content_type: str = "application/td+json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_put_get_replace_delete(base_url: str) -> None:
    td = make_td("http-1", 200_000, 700_000, runtimes=("tflite-micro",))
    url = f"{base_url}/things/urn:dev:http-1"

    assert call("PUT", url, td)[0] == 201
    assert call("PUT", url, {**td, "title": "renamed"})[0] == 204
    status, headers, body = call("GET", url)
    assert status == 200 and headers["content-type"].startswith("application/td+json")
    assert json.loads(body)["title"] == "renamed"
    assert call("DELETE", url)[0] == 204
    assert call("GET", url)[0] == 404


def test_post_assigns_an_id_and_matches_work(base_url: str) -> None:
    td = make_td("anon", 200_000, 700_000, runtimes=("tflite-micro",))
    del td["id"]

    status, headers, _ = call("POST", f"{base_url}/things", td)
    thing = headers["location"]  # the system-generated id, a urn:uuid (UUID version 4)
    status_m, _, body = call("GET", f"{base_url}/devices/{thing}/matches")
    stored = json.loads(call("GET", f"{base_url}/things/{thing}")[2])

    assert status == 201 and thing.startswith("urn:uuid:") and uuid.UUID(thing[9:]).version == 4
    assert stored["id"] == thing
    assert status_m == 200 and len(json.loads(body)) == 22


def test_invalid_td_is_problem_json_naming_the_field(base_url: str) -> None:
    td = make_td("broken", 1, 1)
    td["eb:flashBytes"] = -5  # optional, but a figure must be a positive integer

    status, headers, body = call("PUT", f"{base_url}/things/urn:dev:broken", td)

    problem = json.loads(body)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert problem["status"] == 400 and "eb:flashBytes" in problem["detail"]


def test_listing_pages_with_a_next_link(base_url: str) -> None:
    for i in range(5):
        call("PUT", f"{base_url}/things/urn:dev:page-{i}", make_td(f"page-{i}", 10, 10))

    status, headers, body = call("GET", f"{base_url}/things?offset=0&limit=2")
    _, _, rest = call("GET", f"{base_url}/things?offset=2&limit=1000")

    assert status == 200 and len(json.loads(body)) == 2 and 'rel="next"' in headers["link"]
    assert len(json.loads(body)) + len(json.loads(rest)) >= 5


def test_sparql_search_get_and_post(base_url: str) -> None:
    q = "SELECT (COUNT(*) AS ?n) WHERE { ?s a <https://w3id.org/tinyml-schema/neural-network-schema#NeuralNetwork> }"

    status, _, body = call("GET", f"{base_url}/search/sparql?query={urllib.parse.quote(q)}")
    status_p, _, body_p = call("POST", f"{base_url}/search/sparql", q.encode(), "application/sparql-query")
    bad, headers, problem = call("POST", f"{base_url}/search/sparql", b"SELEC nope", "application/sparql-query")

    assert status == status_p == 200
    assert json.loads(body)["results"]["bindings"][0]["n"]["value"] == "23" == json.loads(body_p)["results"][
        "bindings"][0]["n"]["value"]
    assert bad == 400 and "malformed SPARQL" in json.loads(problem)["detail"]


def test_head_answers_every_resource_as_get_does_without_a_body(base_url: str) -> None:
    url = f"{base_url}/things/urn:dev:head-1"
    assert call("PUT", url, make_td("head-1", 10, 10))[0] == 201
    for path in ("/things/urn:dev:head-1", "/things?offset=0&limit=5",
                 "/search/sparql?query=" + urllib.parse.quote("ASK { ?s ?p ?o }")):
        _, get_headers, get_body = call("GET", base_url + path)
        status, headers, body = call("HEAD", base_url + path)
        assert status == 200 and body == b"", path
        assert headers["content-type"] == get_headers["content-type"] and int(headers["content-length"]) == len(get_body)
    status, headers, body = call("HEAD", f"{base_url}/things/urn:dev:no-such")
    assert status == 404 and body == b"" and headers["content-type"] == "application/problem+json"


def test_the_frameworks_own_errors_are_problem_json_naming_what_was_expected(base_url: str) -> None:
    status, headers, body = call("PATCH", f"{base_url}/things")  # no PATCH on the collection
    problem = json.loads(body)
    assert status == 405 and headers["content-type"] == "application/problem+json"
    assert "GET" in headers["allow"] and "found PATCH" in problem["detail"] and problem["status"] == 405
    status, headers, body = call("GET", f"{base_url}/search/sparql")  # no query parameter
    problem = json.loads(body)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert "query" in problem["detail"] and "found none" in problem["detail"]
    status, headers, body = call("GET", f"{base_url}/no/such/path")
    assert status == 404 and json.loads(body)["title"] == "Not Found"


def test_a_refused_td_lists_its_validation_errors(base_url: str) -> None:
    td = make_td("two-faults", 10, 10)
    td["title"] = 5
    td["properties"]["temperature"]["forms"] = "not-a-list"

    status, headers, body = call("PUT", f"{base_url}/things/urn:dev:two-faults", td)

    problem = json.loads(body)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in problem["validationErrors"]}
    assert {"title", "properties/temperature/forms"} <= fields  # every fault, not only the first
    assert all(e["description"] for e in problem["validationErrors"])
    assert call("GET", f"{base_url}/things/urn:dev:two-faults")[0] == 404  # nothing half-written
