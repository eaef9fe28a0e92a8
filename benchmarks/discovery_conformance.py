"""Conformance: the W3C WoT Discovery directory test suite against `edgebert registry serve`.

The suite is github.com/farshidtz/wot-discovery-testing (directory/, the Go tests behind the
Discovery implementation report); it is not vendored. Build its test binary once (Go >= 1.16; the
three modules it needs from their GitHub repositories, with `replace` lines in its go.mod when no
module proxy is reachable), then point this script at it:

    cd wot-discovery-testing/directory && go test -c -o /tmp/tdd.test .
    python benchmarks/discovery_conformance.py --suite /tmp/tdd.test --assertions DIR [--out FILE]

DIR holds the suite's assertion lists, template.csv and manual.csv (w3c/wot-discovery, testing/).
The script starts a directory on an empty store, runs every test (JSONPath included), and prints
each assertion with its result from the suite's report. Federated SPARQL (a SERVICE call to
dbpedia.org) needs the internet and the server's --allow-service; it is counted apart.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import finish, free_port, serve

NEEDS_INTERNET = ("TestSPARQL/federated_search_using_GET",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="the compiled test binary (go test -c)")
    parser.add_argument("--assertions", required=True, help="folder with template.csv and manual.csv")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "discovery_conformance.json"))
    args = parser.parse_args()
    suite = Path(args.suite).resolve()
    if not suite.is_file():
        raise SystemExit(f"--suite: expected the compiled test binary, found no file {suite}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "report").mkdir()
        for name in ("template.csv", "manual.csv"):
            shutil.copy(Path(args.assertions) / name, work / "report" / name)
        port = free_port()
        exe = shutil.which("edgebert") or "edgebert"
        server = serve([exe, "registry", "--store", str(work / "store"), "serve", "--port", str(port)],
                       f"http://127.0.0.1:{port}/things")
        try:
            run = subprocess.run([str(suite), f"--server=http://127.0.0.1:{port}", "-testJSONPath", "-test.v"],
                                 cwd=work, capture_output=True, text=True, timeout=900)
        finally:
            server.terminate()
            server.wait(timeout=30)
        rows = list(csv.DictReader((work / "report" / "tdd-auto.csv").open()))
    failed_tests = {line.split("--- FAIL: ", 1)[1].split(" ")[0] for line in run.stdout.splitlines() if "--- FAIL: " in line}
    offline_failures = sorted(t for t in failed_tests if t not in NEEDS_INTERNET and "/" in t
                              and not any(t.startswith(n + "/") for n in NEEDS_INTERNET))
    results = {r["ID"]: r["Status"] for r in rows}
    print(f"{'assertion':<52}{'result':>8}")
    for assertion, status in results.items():
        print(f"{assertion:<52}{status:>8}")
    passed = sum(s == "pass" for s in results.values())
    only_internet = [a for a, s in results.items() if s == "fail" and all(
        part.startswith(("passed:", "failed:TestSPARQL/federated")) for part in next(
            r["Comment"] for r in rows if r["ID"] == a).split())]
    print(f"\n{passed} of {len(results)} assertions pass; {len(only_internet)} fail only through the federated "
          f"query to dbpedia.org (needs the internet): {', '.join(only_internet) or '-'}")
    print(f"failed tests other than that one: {', '.join(offline_failures) or 'none'}")
    targets = {"every assertion that does not need the internet passes":
               passed + len(only_internet) == len(results) and not offline_failures}
    return finish(targets, {"suite": str(suite), "assertions": results, "failed_tests": sorted(failed_tests),
                            "needs_internet": only_internet}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
