"""`yws serve` against hostile requests: every answer a Databricks-shaped JSON error with the
right status, nothing stored for a refused payload, and the server healthy afterwards.

The server runs as the real `yws serve` process over an applied (empty) warehouse; no case here
starts a job run, so no Spark is needed.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from yws.config import Settings
from yws.contract.sqlfiles import statements
from yws.server.limits import (
    MAX_BODY_BYTES,
    MAX_JOB_PARAMETERS_BYTES,
    MAX_STATEMENT_BODY_BYTES,
    MAX_STATEMENT_BYTES,
)
from yws.server.store import Store
from yws.warehouse.local import LocalWarehouse

RUN_NOW = "/api/2.2/jobs/run-now"
STATEMENTS = "/api/2.0/sql/statements"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"yws serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = Settings(home=tmp_path_factory.mktemp("hostile") / "yws")
    LocalWarehouse(home).apply(statements(home))
    store = Store(home.home.resolve() / "server.db")
    tokens = {"attacker": store.create_token("yws_orchestrator", []),
              "checker": store.create_token("ana", ["yws_r_users"])}
    port = free_port()
    log = (home.home / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "yws"), "serve", "--home", str(home.home),
         "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "YWS_TARGET": "local"})
    try:
        wait_for_port(port, proc)
        host = f"http://127.0.0.1:{port}"
        jobs = call(host, tokens["attacker"], "GET", "/api/2.2/jobs/list").json()["jobs"]
        yield {"host": host, "port": port, "tokens": tokens, "proc": proc,
               "db": home.home.resolve() / "server.db", "log": home.home / "serve.log",
               "job_id": next(j["job_id"] for j in jobs if j["settings"]["name"] == "yws_score")}
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def call(host: str, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    """One request; a 429 from the server's rate limit is waited out, not counted."""
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    for _ in range(20):
        response = requests.request(method, host + path, headers=headers, timeout=120, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return response


def attack(server: dict[str, Any], method: str, path: str, **kwargs: Any) -> requests.Response:
    return call(server["host"], server["tokens"]["attacker"], method, path, **kwargs)


def assert_error(response: requests.Response, status: int, *codes: str,
                 mentions: str = "") -> dict[str, Any]:
    """A Databricks-shaped JSON error with this status (and one of these codes)."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert set(body) == {"error_code", "message"}, body
    assert isinstance(body["error_code"], str) and isinstance(body["message"], str)
    if codes:
        assert body["error_code"] in codes, body
    assert mentions in body["message"], body
    assert "Traceback" not in body["message"]
    return dict(body)


def assert_healthy(server: dict[str, Any]) -> None:
    """The server still answers a valid Jobs and SQL request (as another principal)."""
    assert server["proc"].poll() is None, "yws serve died"
    checker = server["tokens"]["checker"]
    assert call(server["host"], checker, "GET", "/api/2.2/jobs/list").status_code == 200
    done = call(server["host"], checker, "POST", STATEMENTS,
                json={"warehouse_id": "yws_local", "statement": "SELECT 41 + 1 AS answer"})
    assert done.status_code == 200, done.text[:300]
    assert done.json()["result"]["data_array"] == [["42"]]


def db_bytes(server: dict[str, Any]) -> int:
    db: Path = server["db"]
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def raw_exchange(server: dict[str, Any], head: str, chunks: Iterable[bytes] = (),
                 ) -> tuple[int, dict[str, Any], int]:
    """Send a request head, then body pieces until the server answers; return the status,
    the JSON body and how many body bytes were sent before the answer came."""
    sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=60)
    sent, reply = 0, b""
    try:
        sock.sendall(head.encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0.05)[0]:
                break  # the server answered: stop sending
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        while not _complete(reply):
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
    finally:
        sock.close()
    head_bytes, _, body = reply.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(body), sent


def _complete(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def request_head(server: dict[str, Any], path: str, extra: str) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server['tokens']['attacker']}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n")


# -- 1. bodies over the limit, refused before they are read ----------------------------------
@pytest.mark.parametrize(("path", "declared"), [
    (RUN_NOW, MAX_BODY_BYTES + 1), (RUN_NOW, 300 * MiB), ("/api/2.2/jobs/runs/cancel", 10 * MiB),
    (STATEMENTS, MAX_STATEMENT_BODY_BYTES + 1), (STATEMENTS, 300 * MiB),
    ("/api/2.2/jobs/list", 50 * MiB),
])
def test_a_declared_content_length_over_the_limit_is_refused_unread(server, path, declared):
    before = db_bytes(server)
    # no byte of the body is sent: the answer must come without it
    status, error, _ = raw_exchange(
        server, request_head(server, path, f"Content-Length: {declared}\r\n"))
    assert status == 413 and error["error_code"] == "BAD_REQUEST", error
    assert "larger than" in error["message"]
    assert db_bytes(server) - before < 64 * 1024
    assert_healthy(server)


@pytest.mark.parametrize(("path", "limit"), [(RUN_NOW, MAX_BODY_BYTES),
                                             (STATEMENTS, MAX_STATEMENT_BODY_BYTES)])
def test_a_chunked_body_is_counted_while_it_arrives(server, path, limit):
    before = db_bytes(server)
    piece = b'{"job_id": 1, "job_parameters": {"batch_id": "' + b"a" * MiB

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // MiB + 8):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    status, error, sent = raw_exchange(
        server, request_head(server, path, "Transfer-Encoding: chunked\r\n"), chunks())
    assert status == 413 and error["error_code"] == "BAD_REQUEST", error
    assert sent < limit + 8 * MiB
    assert db_bytes(server) - before < 64 * 1024
    assert_healthy(server)


# -- 2. field lengths ------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "mentions"), [
    ({"job_parameters": {"batch_id": "b" * (MAX_JOB_PARAMETERS_BYTES + 1)}},
     "job_parameters.batch_id"),
    ({"job_parameters": {"batch_id": "b" * 900_000}}, f"{MAX_JOB_PARAMETERS_BYTES} bytes"),
    ({"job_parameters": {f"p{i}": "v" * 100 for i in range(200)}}, "job_parameters"),
    ({"job_parameters": {"x" * 20_000: "1"}}, "job_parameters"),
    ({"idempotency_token": "t" * 65}, "64"),
    ({"idempotency_token": "t" * 500_000}, "idempotency_token"),
    ({"idempotency_token": ""}, "idempotency_token"),
])
def test_run_now_fields_over_their_documented_limits(server, data, mentions):
    before = db_bytes(server)
    r = attack(server, "POST", RUN_NOW, json={"job_id": server["job_id"], **data})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions=mentions)
    assert db_bytes(server) - before < 64 * 1024
    assert attack(server, "GET", "/api/2.2/jobs/runs/list").json()["runs"] == []


def test_a_statement_over_16_mib_is_refused_naming_the_limit(server):
    sql = "SELECT '" + "s" * MAX_STATEMENT_BYTES + "' AS big"
    r = attack(server, "POST", STATEMENTS, json={"warehouse_id": "yws_local", "statement": sql})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions="16 MiB")
    assert_healthy(server)


# -- 3. numbers and other values as ids ------------------------------------------------------
BAD_ID_JSON = ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", str(2**63), str(-(2**63) - 1),
               "1" * 5000, "0", "-1", "1.5", '"abc"', '"1e5"', '"0x10"', '""', "true", "null",
               "[]", "{}", '[1]']


@pytest.mark.parametrize("raw", BAD_ID_JSON)
@pytest.mark.parametrize(("path", "field"), [(RUN_NOW, "job_id"),
                                             ("/api/2.2/jobs/runs/cancel", "run_id")])
def test_bad_ids_in_a_body(server, path, field, raw):
    r = attack(server, "POST", path, data=f'{{"{field}": {raw}}}'.encode())
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST")
    assert_healthy(server)


BAD_ID_QUERY = ["Infinity", "NaN", "1e400", str(2**63), str(2**64), "1" * 5000, "0", "-1",
                "1.5", "abc", "", "%00", "%ff"]


@pytest.mark.parametrize("raw", BAD_ID_QUERY)
@pytest.mark.parametrize(("path", "field"), [
    ("/api/2.2/jobs/get", "job_id"), ("/api/2.2/jobs/runs/get", "run_id"),
    ("/api/2.2/jobs/runs/get-output", "run_id")])
def test_bad_ids_in_a_query(server, path, field, raw):
    r = attack(server, "GET", f"{path}?{field}={raw}")
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")


def test_an_id_as_a_decimal_string_is_an_id(server):
    # proto3 JSON writes int64 as a string; a good id that names nothing is a 404
    r = attack(server, "POST", "/api/2.2/jobs/runs/cancel", json={"run_id": "123456789"})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    r = attack(server, "POST", RUN_NOW, json={"job_id": str(server["job_id"]),
                                              "idempotency_token": 7})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions="idempotency_token")


# -- 4. encodings and JSON shapes ------------------------------------------------------------
BAD_BODIES = [
    b"\xff", b"\xc0\xaf", b'{"job_id": "\xff"}', b'{"job_id": 1, "x": "\xed\xa0\x80"}',
    '{"job_id": 1}'.encode("utf-16"), b'{"job_id": "\\ud800"}',
    b'{"job_parameters": {"\\udfff": "1"}, "job_id": 1}', b"{", b"{'job_id': 1}",
    b'{"job_id": 1,}', b"[]", b"[1, 2]", b'"job"', b"1", b"null", b"true",
    b"[" * 100_000, b'{"a":' * 100_000, b"[" * 40 + b"]" * 40,
    b'{"job_id": 1, "job_parameters": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
    b"\x00" * 100, b"\xef\xbb\xbf", b"\xef\xbb\xbf[]",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda b: repr(b[:24]))
@pytest.mark.parametrize("path", [RUN_NOW, STATEMENTS, "/api/2.2/jobs/runs/cancel"])
def test_malformed_bodies(server, path, body):
    r = attack(server, "POST", path, data=body)
    assert_error(r, 400, "MALFORMED_REQUEST", "INVALID_PARAMETER_VALUE")
    assert_healthy(server)


def test_a_utf8_bom_is_allowed(server):
    r = attack(server, "POST", STATEMENTS, data=b"\xef\xbb\xbf" + json.dumps(
        {"warehouse_id": "yws_local", "statement": "SELECT 'ü' AS u"}).encode())
    assert r.status_code == 200 and r.json()["result"]["data_array"] == [["ü"]], r.text


@pytest.mark.parametrize("token", [5, 1.5, True, [], {}, ["t"], {"t": 1}, 2**70])
def test_non_string_idempotency_tokens(server, token):
    r = attack(server, "POST", RUN_NOW, json={"job_id": server["job_id"],
                                              "idempotency_token": token})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions="idempotency_token")


@pytest.mark.parametrize("params", [[], "batch_id=x", 5, {"batch_id": {"a": 1}},
                                    {"batch_id": ["a"]}, {"batch_id": None}, {"": "x"},
                                    {"n" * 256: "x"}])
def test_job_parameters_of_the_wrong_shape(server, params):
    r = attack(server, "POST", RUN_NOW, json={"job_id": server["job_id"],
                                              "job_parameters": params})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions="job_parameters")


@pytest.mark.parametrize("params", [5, "x", {"a": 1}, [5], [{"name": []}], [{"value": "1"}],
                                    [{"name": "a", "value": {"b": 1}}],
                                    [{"name": "a", "value": "1", "type": 3}]])
def test_statement_parameters_of_the_wrong_shape(server, params):
    r = attack(server, "POST", STATEMENTS, json={"warehouse_id": "yws_local",
                                                 "statement": "SELECT :a", "parameters": params})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions="parameters")


NESTED_SQL = {
    "parentheses": lambda n: "SELECT " + "(" * n + "1" + ")" * n + " AS x",
    "subqueries": lambda n: "SELECT 1" + " FROM (SELECT 1" * n + ") AS t" * n,
    "in-lists": lambda n: "SELECT 1 WHERE 1 IN " + "(" * n + "1" + ")" * n,
    "functions": lambda n: "SELECT " + "abs(" * n + "1" + ")" * n + " AS x",
    "case": lambda n: "SELECT " + "CASE WHEN true THEN " * n + "1" + " END" * n + " AS x",
}


@pytest.mark.parametrize("field", [
    {"warehouse_id": ["yws_local"]}, {"warehouse_id": "w" * 100_000}, {"catalog": ["a"]},
    {"schema": {"a": 1}}, {"catalog": 5}, {"format": {"a": 1}}, {"format": "F" * 300},
    {"disposition": []}, {"wait_timeout": {"a": 1}}, {"on_wait_timeout": 1},
    {"row_limit": "abc"}, {"row_limit": -5}, {"row_limit": 2**70}, {"row_limit": 1.5},
    {"row_limit": True}, {"byte_limit": "x"}, {"byte_limit": 2**64},
    {"parameters": [{"name": "a" * 256, "value": "1"}]},
])
def test_statement_fields_of_the_wrong_type_or_size(server, field):
    r = attack(server, "POST", STATEMENTS, json={"warehouse_id": "yws_local",
                                                 "statement": "SELECT 1 AS x", **field})
    body = assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions=next(iter(field)))
    assert len(body["message"]) < 1000


@pytest.mark.parametrize("path", [
    "/api/2.0/sql/statements/nope/result/chunks/-1", "/api/2.0/sql/statements/nope",
    f"/api/2.0/sql/statements/nope/result/chunks/{2**64}",
    "/api/2.0/sql/statements/nope/result/chunks/1e400", "/api/2.0/sql/results/nope/0/secret",
    f"/api/2.0/sql/results/nope/{2**64}/secret", "/api/2.0/sql/results/nope/abc/secret",
    "/api/2.0/sql/statements/" + "x" * 5000,
])
def test_unknown_statements_and_chunks(server, path):
    r = attack(server, "GET", path)
    assert_error(r, 404 if r.status_code == 404 else 400)


@pytest.mark.parametrize("depth", [300, 3000])
@pytest.mark.parametrize("shape", sorted(NESTED_SQL))
def test_deeply_nested_sql(server, shape, depth):
    sql = NESTED_SQL[shape](depth)
    r = attack(server, "POST", STATEMENTS, json={"warehouse_id": "yws_local", "statement": sql})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    assert_healthy(server)


def test_long_flat_expressions_are_bounded_too(server):
    sql = "SELECT " + " + ".join(["1"] * 20_000) + " AS x"
    r = attack(server, "POST", STATEMENTS, json={"warehouse_id": "yws_local", "statement": sql})
    assert r.status_code < 500, r.text[:300]
    if r.status_code >= 400:
        assert_error(r, r.status_code)
    assert_healthy(server)


# -- 5. page tokens --------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["abc", "-1", "1e3", "1.0", "9" * 30, " 1", "%00", "%ff",
                                   "0x10", "Infinity"])
@pytest.mark.parametrize("path", ["/api/2.2/jobs/list", "/api/2.2/jobs/runs/list"])
def test_bad_page_tokens(server, path, token):
    r = attack(server, "GET", f"{path}?page_token={token}")
    assert_error(r, 400, "INVALID_PARAMETER_VALUE", mentions="page_token")


def test_a_page_token_past_the_end_is_an_empty_page(server):
    r = attack(server, "GET", "/api/2.2/jobs/list?page_token=500")
    assert r.status_code == 200 and r.json() == {"jobs": [], "has_more": False}


@pytest.mark.parametrize("query", ["limit=abc", "limit=1e400", f"limit={2**70}",
                                   "active_only=maybe", "job_id=abc", f"job_id={2**64}"])
def test_bad_list_arguments(server, query):
    r = attack(server, "GET", f"/api/2.2/jobs/runs/list?{query}")
    if r.status_code != 200:
        assert_error(r, 400, "INVALID_PARAMETER_VALUE")


# -- 6. methods and paths --------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", RUN_NOW, "POST"), ("PUT", STATEMENTS, "POST"), ("DELETE", "/api/2.2/jobs/list", "GET"),
    ("POST", "/api/2.2/jobs/get", "GET"), ("PATCH", "/api/2.2/jobs/runs/cancel", "POST"),
    ("GET", "/api/2.0/sql/statements/abc/cancel", "POST"),
])
def test_wrong_methods_answer_405(server, method, path, allowed):
    r = attack(server, method, path)
    assert_error(r, 405, "ENDPOINT_NOT_FOUND", mentions=allowed)
    assert allowed in r.headers["Allow"]


@pytest.mark.parametrize("path", ["/", "/api/2.2/jobs/nope", "/api/9.9/jobs/list",
                                  "/api/2.0/sql/statements/x/y/z",
                                  "/%ff", "/api/2.2/jobs/" + "a" * 4000])
def test_unknown_paths_answer_404(server, path):
    r = attack(server, "GET", path)
    assert_error(r, 404, "ENDPOINT_NOT_FOUND")


# -- 7. after all of it ----------------------------------------------------------------------
def test_the_server_log_holds_no_token_and_no_run_was_made(server):
    assert_healthy(server)
    assert attack(server, "GET", "/api/2.2/jobs/runs/list").json()["runs"] == []
    log = server["log"].read_text(errors="replace")
    assert all(token not in log for token in server["tokens"].values())
    assert "Traceback" not in log, log[-3000:]
    assert db_bytes(server) < 4 * MiB


def test_an_unexpected_exception_is_a_json_500_without_details(tmp_path):
    """The catch-all: a bug answers INTERNAL_ERROR, never a traceback or the secret in it."""
    from yws.server.app import create_app

    home = Settings(home=tmp_path / "yws")
    app = create_app(home)
    secret = "dapi-0123456789abcdef"

    @app.get("/api/2.2/boom")
    def boom() -> None:
        raise RuntimeError(f"failed with token {secret} at /home/someone")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="critical", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        r = requests.get(f"http://127.0.0.1:{port}/api/2.2/boom", timeout=30)
        body = assert_error(r, 500, "INTERNAL_ERROR")
        assert secret not in r.text and "/home/someone" not in r.text
        assert "reference" in body["message"]
        ok = requests.get(f"http://127.0.0.1:{port}/api/2.2/jobs/list", timeout=30)
        assert_error(ok, 401, "UNAUTHENTICATED")  # still serving
    finally:
        server.should_exit = True
        thread.join(10)
