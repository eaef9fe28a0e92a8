"""Concurrent writers over HTTP: committed in groups, each answered for its own TD — a refused TD
among them gets its 400 and the others are written; nothing is lost or half-written."""

from __future__ import annotations

import json
import threading

from registry.registry import open_registry

from .serving import call, running


def td(i: int, valid: bool = True) -> dict:
    doc = {"@context": "https://www.w3.org/2022/wot/td/v1.1", "id": f"urn:dev:w{i}", "title": f"writer {i}",
           "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
           "properties": {"p": {"type": "integer", "forms": [{"href": f"http://w{i}.local/p"}]}}}
    if not valid:
        doc["properties"]["p"]["forms"][0]["security"] = "undefined_sc"  # refused by the TD rules
    return doc


def test_concurrent_writers_each_get_their_own_answer() -> None:
    reg = open_registry("memory")
    answers: dict[int, int] = {}
    with running(reg) as url:
        def write(i: int) -> None:
            answers[i] = call("PUT", f"{url}/things/urn:dev:w{i}", td(i, valid=i % 7 != 3))[0]

        threads = [threading.Thread(target=write, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        titles = {i: json.loads(body)["title"] if status == 200 else None
                  for i in range(60) for status, _, body in [call("GET", f"{url}/things/urn:dev:w{i}")]}

    refused = {i for i in range(60) if i % 7 == 3}
    assert {i for i, s in answers.items() if s == 400} == refused
    assert all(answers[i] == 201 for i in range(60) if i not in refused)
    assert all(titles[i] == f"writer {i}" for i in range(60) if i not in refused)
    assert all(titles[i] is None for i in refused) and reg.count_devices() == 60 - len(refused)


def test_the_same_thing_written_concurrently_ends_as_one_of_the_writes() -> None:
    reg = open_registry("memory")
    with running(reg) as url:
        statuses: list[int] = []

        def write(n: int) -> None:
            statuses.append(call("PUT", f"{url}/things/urn:dev:w0", {**td(0), "title": f"version {n}"})[0])

        threads = [threading.Thread(target=write, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = json.loads(call("GET", f"{url}/things/urn:dev:w0")[2])["title"]
    assert sorted(statuses) == [201] + [204] * 19  # exactly one created it
    assert final in {f"version {n}" for n in range(20)} and reg.count_devices() == 1
