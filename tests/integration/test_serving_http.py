"""`yws serve`'s HTTP: uvicorn's httptools protocol (yws.server.app.PlainHttpToolsProtocol, the
``http=`` of ``yws serve`` and ``yws up``), which answers a TLS handshake sent to the plain-HTTP
port as yws.server.sessions.PlainHttpProtocol (h11) does: a fatal TLS alert,
``protocol_version`` (https://www.rfc-editor.org/rfc/rfc8446#section-6.2), and a log line that
says which ``http://`` address to use; plain HTTP on the same port is served as before."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from conftest import free_port
from yws.config import Settings
from yws.server.app import PlainHttpToolsProtocol, create_app
from yws.server.sessions import _TLS_ALERT, PlainHttpProtocol
from yws.server.store import Store

# the first bytes of a TLS 1.2/1.3 ClientHello: a handshake record (22), version 3.1
CLIENT_HELLO = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"\x00"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory):
    home = Settings(home=tmp_path_factory.mktemp("http") / "yws")
    app = create_app(home, bundle_root=Path(__file__).resolve().parents[2] / "jobs")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           http=PlainHttpToolsProtocol, lifespan="off",
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    try:
        yield port, Store(home.home.resolve() / "server.db").create_token("ana", ["yws_analysts"])
    finally:
        server.should_exit = True
        thread.join(10)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(data)
        reply = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                return reply
            reply += piece
            if reply.startswith(b"HTTP/1.1") and b"\r\n\r\n" in reply:
                head, _, body = reply.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if len(body) >= length:
                    return reply


def test_a_tls_handshake_gets_the_alert_and_the_log_says_what_to_use(port, caplog):
    port, _ = port
    PlainHttpProtocol._last_warning = 0.0
    with caplog.at_level("WARNING", logger="yws.server"):
        assert exchange(port, CLIENT_HELLO) == _TLS_ALERT
    warnings = [r.getMessage() for r in caplog.records if r.name == "yws.server"]
    assert any(f"use http://127.0.0.1:{port}" in w and
               f"server_hostname='http://127.0.0.1', _port={port}" in w for w in warnings)


def test_plain_http_is_served_on_the_same_port(port):
    port, token = port
    body = json.dumps({"dataframe_records": []}).encode()
    reply = exchange(port, (f"POST /serving-endpoints/yws_lr/invocations HTTP/1.1\r\n"
                            f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                            f"Content-Type: application/json\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    head, _, answer = reply.partition(b"\r\n\r\n")
    # no model is registered in this home: the served version is not found, Databricks-shaped
    assert head.startswith(b"HTTP/1.1 404 "), reply
    assert json.loads(answer)["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    reply = exchange(port, b"GET /api/2.2/jobs/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 401 ") and b"UNAUTHENTICATED" in reply
