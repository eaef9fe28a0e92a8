"""Issue 11: requests that used to stop, misuse or empty the registry server, replayed over real HTTP.

SERVICE made the server POST anywhere (and to its own port: a deadlock); a 3-way cross join ran on
the event loop while GET /things timed out; a 4.3 MB TD with 60k properties and 100,000-deep JSON
took it down; PUT /things/<artifact IRI> replaced an artifact's record; anyone could write.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from edgebert.errors import RequestRefused
from registry.access import Access
from registry.guard import Limits, check_query
from registry.registry import Registry, open_registry
from registry.server import ServerConfig

from .conftest import make_td, write_artifact
from .serving import running


def call(method: str, url: str, body: bytes | None = None, token: str | None = None, timeout: float = 30,
         content_type: str = "application/td+json", context: object = None) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:  # type: ignore[arg-type]
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def send_early_answered(base: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
    """PUT a body the server may answer before reading (a 413 on Content-Length): read the answer
    even though sending the rest fails, as any HTTP client that watches the socket does."""
    import http.client

    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("PUT", path)
    conn.putheader("Content-Type", "application/td+json")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    try:
        conn.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = conn.getresponse()
    out = resp.status, dict(resp.headers), resp.read()
    conn.close()
    return out


def sparql(base: str, query: str, **kw: object) -> tuple[int, dict, bytes]:
    return call("GET", f"{base}/search/sparql?query={urllib.parse.quote(query)}", **kw)  # type: ignore[arg-type]


def td_bytes(ident: str, **extra: object) -> bytes:
    return json.dumps(make_td(ident, 200_000, 700_000, **extra)).encode()


@pytest.fixture()
def reg() -> Registry:
    reg = open_registry("memory")
    reg.add_tds([make_td(f"d{i}", 200_000, 700_000) for i in range(3)])
    return reg


# ---------------------------------------------------------------- SERVICE
@pytest.mark.parametrize("query", [
    "SELECT * WHERE { SERVICE <http://127.0.0.1:%d/sparql> { ?s ?p ?o } }",
    "select * where { service silent <http://127.0.0.1:%d/> { ?s ?p ?o } }",
    "SELECT * WHERE { \\u0053ERVICE <http://127.0.0.1:%d/> { ?s ?p ?o } }",  # SPARQL's own escapes
    "SELECT * WHERE { # comment\n SERVICE ?where { ?s ?p ?o } VALUES ?where { <http://127.0.0.1:%d/> } }",
])
def test_service_never_makes_the_server_send_a_request(reg: Registry, query: str) -> None:  # noqa: UP031
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    with running(reg) as base:
        status, headers, body = sparql(base, query % port)

        assert status == 403 and headers["content-type"] == "application/problem+json", body
        assert "SERVICE" in json.loads(body)["detail"]
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody came
        own = sparql(base, "SELECT * WHERE { SERVICE <" + base + "/search/sparql> { ?s ?p ?o } }", timeout=10)
        assert own[0] == 403 and call("GET", f"{base}/things")[0] == 200  # no self-deadlock
    listener.close()


def test_service_in_a_string_or_iri_is_not_a_service_and_the_allow_list_is_exact() -> None:
    check_query('SELECT * WHERE { ?s ?p "SERVICE <http://x/>" . ?s a <http://x/SERVICE> }')
    check_query("SELECT ?service WHERE { ?service ?p ?o }")
    check_query("SELECT * WHERE { SERVICE <http://ok/sparql> { ?s ?p ?o } }", allow_service=("http://ok/sparql",))
    for query in ("SELECT * WHERE { SERVICE <http://ok/sparql2> { ?s ?p ?o } }",
                  "SELECT * WHERE { SERVICE ?x { ?s ?p ?o } }",
                  "SELECT * WHERE { SERVICE<http://ok/sparql>{ ?s ?p ?o } }"):
        with pytest.raises(RequestRefused, match="SERVICE"):
            check_query(query, allow_service=("http://ok/sparql",))


# ---------------------------------------------------------------- blocking
def test_a_hostile_query_runs_off_the_event_loop_and_is_cut_off(tmp_path: Path) -> None:
    reg = open_registry("memory")
    reg.add_tds([make_td(f"d{i}", 200_000, 700_000) for i in range(3)])
    reg.store.update("INSERT DATA { " + " ".join(f"<urn:s{i}> <urn:p> {i} ." for i in range(400)) + " }")
    cross = "SELECT (COUNT(*) AS ?n) WHERE { ?a <urn:p> ?x . ?b <urn:p> ?y . ?c <urn:p> ?z }"  # 64 million rows
    config = ServerConfig(Limits(query_timeout_s=1.0, max_concurrent_queries=1, max_result_rows=50))
    with running(reg, config) as base:
        hostile: list[tuple[int, dict, bytes]] = []
        worker = threading.Thread(target=lambda: hostile.append(sparql(base, cross, timeout=60)))
        worker.start()
        time.sleep(0.3)

        listing = call("GET", f"{base}/things", timeout=10)  # answered while the join runs
        busy = sparql(base, "ASK { ?s ?p ?o }")
        worker.join(60)

        assert listing[0] == 200 and len(json.loads(listing[2])) == 3
        assert busy[0] == 503 and "query slot" in json.loads(busy[2])["detail"]
        assert hostile[0][0] == 503 and "within 1.0 s" in json.loads(hostile[0][2])["detail"]
        big = sparql(base, "SELECT * WHERE { ?s <urn:p> ?o }", timeout=30)
        assert big[0] == 400 and "at most 50 rows" in json.loads(big[2])["detail"]


# ---------------------------------------------------------------- bodies
def test_huge_deep_and_over_described_tds_are_refused_before_parsing(reg: Registry) -> None:
    with running(reg) as base:
        many = make_td("many", 200_000, 700_000)
        many["properties"] = {f"p{i}": {"type": "number", "forms": [{"href": f"http://x/{i}"}]} for i in range(60_000)}
        huge = json.dumps(many).encode()
        assert len(huge) > 4_000_000
        status, headers, body = send_early_answered(base, "/things/urn:dev:many", huge)
        assert status == 413 and headers["content-type"] == "application/problem+json"  # before reading the body
        status, _, body = call("PUT", f"{base}/things/urn:dev:many", iter([huge[:1_200_000]]))  # chunked, no length
        assert status == 413 and "at most 1000000 bytes" in json.loads(body)["detail"]

        many["properties"] = dict(list(many["properties"].items())[:1_500])  # small enough, too many affordances
        status, _, body = call("PUT", f"{base}/things/urn:dev:many", json.dumps(many).encode())
        assert status == 413 and "1000 properties" in json.loads(body)["detail"]

        deep = b"[" * 100_000 + b"]" * 100_000
        status, headers, body = call("PUT", f"{base}/things/urn:dev:deep", deep)
        assert status == 400 and headers["content-type"] == "application/problem+json"
        assert "nested at most 32" in json.loads(body)["detail"]
        assert call("GET", f"{base}/things")[0] == 200


def test_things_manages_things_only(reg: Registry, tmp_path: Path) -> None:
    art = write_artifact(tmp_path, "mini-int8")
    iri = reg.add_artifact(art)
    before = reg.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ <{iri}> ?p ?o }}")[0]["n"]
    with running(reg) as base:
        status, _, body = call("PUT", f"{base}/things/{iri}", json.dumps({**make_td("x", 1, 1), "id": iri}).encode())
        assert status == 409 and "Things only" in json.loads(body)["detail"]
        assert call("DELETE", f"{base}/things/{iri}")[0] == 404
    assert reg.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ <{iri}> ?p ?o }}")[0]["n"] == before


# ---------------------------------------------------------------- who may write
def test_tokens_scope_every_request_and_writes_are_closed_beyond_loopback(reg: Registry, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("read  r-0123456789abcdef\nwrite w-0123456789abcdef\n")
    tokens.chmod(0o644)
    with pytest.raises(Exception, match="mode 0600"):
        Access.load("127.0.0.1", tokens, environ={})
    tokens.chmod(0o600)
    with running(reg, ServerConfig(access=Access.load("127.0.0.1", tokens, environ={}))) as base:
        url = f"{base}/things/urn:dev:new"
        assert call("GET", f"{base}/things")[0] == 401
        assert call("GET", f"{base}/things", token="r-0123456789abcdeX")[0] == 401
        assert call("GET", f"{base}/things", token="r-0123456789abcdef")[0] == 200
        assert call("PUT", url, td_bytes("new"), token="r-0123456789abcdef")[0] == 403
        assert call("PUT", url, td_bytes("new"), token="w-0123456789abcdef")[0] == 201
    with running(reg, ServerConfig(access=Access({}, loopback=False))) as base:  # as if bound to 0.0.0.0
        assert call("GET", f"{base}/things")[0] == 200
        status, _, body = call("PUT", f"{base}/things/urn:dev:other", td_bytes("other"))
        assert status == 403 and "beyond loopback" in json.loads(body)["detail"]
        assert call("DELETE", f"{base}/things/urn:dev:d0")[0] == 403
    env = Access.load("0.0.0.0", None, environ={"EDGEBERT_REGISTRY_TOKENS": "admin a-0123456789abcdef; read x-0123456789abcdef"})
    assert env.allows("write", "Bearer a-0123456789abcdef")[0] and not env.allows("write", "Bearer x-0123456789abcdef")[0]


def test_tls_when_given_a_certificate(reg: Registry, tmp_path: Path) -> None:
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    with running(reg, ssl_certfile=str(tmp_path / "cert.pem"), ssl_keyfile=str(tmp_path / "key.pem")) as base:
        trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        assert base.startswith("https://") and call("GET", f"{base}/things", context=trusted)[0] == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            call("GET", f"{base}/things", context=ssl.create_default_context())


def test_a_td_with_remote_contexts_makes_no_request(reg: Registry) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    td = make_td("ctx", 200_000, 700_000)
    td["@context"] = ["https://www.w3.org/2022/wot/td/v1.1", {"@import": f"http://127.0.0.1:{port}/imp"}]
    td["properties"]["temperature"]["@context"] = f"http://127.0.0.1:{port}/ctx"
    with running(reg) as base:
        status, _, body = call("PUT", f"{base}/things/urn:dev:ctx", json.dumps(td).encode())

    assert status == 400 and "remote contexts" in json.loads(body)["detail"]
    with pytest.raises(socket.timeout):
        listener.accept()
    listener.close()
