"""Files API 2.0 conformance of `yws serve` for Unity Catalog volumes, driven with the official
databricks-sdk and, for what a client would never send, raw HTTP (issue 17).

A real `yws serve` (in this process, on a loopback port) serves a home where ``yws sql apply``
created the volumes of ``sql/`` (``mlflow_tmp``, ``r_models``) and the grants of
``sql/90_grants.sql``: the R users may read and write ``r_models``, the jobs' principal read it,
analysts neither. Each test cites the documented contract it checks in its docstring;
``docs/api-conformance.md`` names each test.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    AlreadyExists,
    BadRequest,
    NotFound,
    PermissionDenied,
    ResourceConflict,
    Unauthenticated,
)

from conftest import serving
from yws.config import Settings
from yws.contract.sqlfiles import statements
from yws.server.app import create_app
from yws.server.limits import MAX_VOLUME_FILE_BYTES
from yws.server.store import Store
from yws.warehouse.local import LocalWarehouse

VOLUME = "/Volumes/yws_dev/ml/r_models"
MODEL = b'{"family": "binomial", "link": "logit", "coefficients": {"(Intercept)": -1.5}}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = Settings(home=tmp_path_factory.mktemp("conformance_files") / "yws")
    LocalWarehouse(settings).apply(statements(settings))  # `yws sql apply`
    store = Store(settings.home.resolve() / "server.db")
    tokens = {"rita": store.create_token("rita", ["yws_r_users"]),
              "jobs": store.create_token(settings.jobs_principal, []),
              "ana": store.create_token("ana", ["yws_analysts"]),
              "nobody": store.create_token("nobody", [])}
    with serving(create_app(settings)) as host:
        yield {"host": host, "tokens": tokens, "home": settings.home.resolve()}


def client(server: dict[str, Any], who: str = "rita") -> WorkspaceClient:
    return WorkspaceClient(host=server["host"], token=server["tokens"][who])


@pytest.fixture(scope="module")
def w(server: dict[str, Any]) -> WorkspaceClient:
    return client(server)


def raw(server: dict[str, Any], method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None, who: str | None = "rita"
        ) -> tuple[int, dict[str, str], bytes]:
    """One request sent as written: no client normalises the path first."""
    conn = http.client.HTTPConnection(server["host"].split("//")[1], timeout=60)
    sent = dict(headers or {})
    if who:
        sent["Authorization"] = f"Bearer {server['tokens'][who]}"
    conn.request(method, path, body=body, headers=sent)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def on_disk(server: dict[str, Any], path: str) -> Path:
    return server["home"] / "volumes" / path.removeprefix("/Volumes/")


def refused_upload(server: dict[str, Any], path: str, header: str, body: list[bytes]) -> bytes:
    """The server's answer to an upload it refuses before reading it all: the body is sent from
    a thread (the server may close the connection mid-way), the answer read meanwhile."""
    import threading

    host, port = server["host"].split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall((f"PUT /api/2.0/fs/files{path} HTTP/1.1\r\nHost: {host}\r\n"
                  f"Authorization: Bearer {server['tokens']['rita']}\r\n{header}\r\n").encode())

    def send() -> None:
        try:
            for part in body:
                sock.sendall(part)
        except OSError:
            pass  # refused and closed before the whole body was sent

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except OSError:
        pass
    sender.join(60)
    sock.close()
    return answer


# -- files -----------------------------------------------------------------------------------
def test_an_upload_reads_back_byte_for_byte_with_its_metadata(server, w):
    """PUT /api/2.0/fs/files{file_path} "Uploads a file ... The contents of the resulting file
    will be exactly the bytes sent in the request body", creating its parent directories;
    HEAD answers "content-length", "content-type" and "last-modified" (HTTP-date) headers and
    no body; GET downloads the bytes with the same headers.
    https://docs.databricks.com/api/workspace/files/upload
    https://docs.databricks.com/api/workspace/files/getmetadata
    https://docs.databricks.com/api/workspace/files/download"""
    path = f"{VOLUME}/glm/first/model.json"
    w.files.upload(path, io.BytesIO(MODEL), overwrite=True)
    meta = w.files.get_metadata(path)
    assert (meta.content_length, meta.content_type) == (len(MODEL), "application/octet-stream")
    modified = email.utils.parsedate_to_datetime(meta.last_modified)
    assert modified.timestamp() == int(on_disk(server, path).stat().st_mtime)
    got = w.files.download(path)
    assert got.contents.read() == MODEL and got.content_length == len(MODEL)
    # the job reads the same bytes where the platform says a volume file lives
    from yws.platform import LocalTarget

    assert LocalTarget(Settings(home=server["home"])).volume_path(path).read_bytes() == MODEL
    status, headers, body = raw(server, "HEAD", f"/api/2.0/fs/files{path}")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(MODEL)))
    # an empty file is a file
    w.files.upload(f"{VOLUME}/glm/empty.json", io.BytesIO(b""))
    assert w.files.download(f"{VOLUME}/glm/empty.json").contents.read() == b""


def test_overwrite_false_refuses_an_existing_file_and_keeps_it(server, w):
    """``overwrite``: "If true or unspecified, an existing file will be overwritten. If false,
    an error will be returned if the path points to an existing file": 409 ALREADY_EXISTS.
    https://docs.databricks.com/api/workspace/files/upload"""
    path = f"{VOLUME}/glm/once.json"
    w.files.upload(path, io.BytesIO(b"v1"), overwrite=False)
    with pytest.raises(AlreadyExists, match="already exists"):
        w.files.upload(path, io.BytesIO(b"v2"), overwrite=False)
    assert w.files.download(path).contents.read() == b"v1"
    w.files.upload(path, io.BytesIO(b"v3"))  # unspecified: overwrite
    assert w.files.download(path).contents.read() == b"v3"
    status, _, body = raw(server, "PUT", f"/api/2.0/fs/files{path}?overwrite=maybe", b"v4")
    assert status == 400 and b"overwrite must be true or false" in body


def test_a_download_honours_one_byte_range(server, w):
    """``Range``: "The range of bytes to retrieve. The range is inclusive and zero-based"
    (RFC 9110); the answer is 206 with "content-range" ("bytes 0-499/500"); a range past the
    end is 416 (RFC 9110, 15.5.17).
    https://docs.databricks.com/api/workspace/files/download"""
    path = f"{VOLUME}/ranges/digits.txt"
    w.files.upload(path, io.BytesIO(b"0123456789"))
    url = f"/api/2.0/fs/files{path}"
    for header, part, content_range in (("bytes=0-3", b"0123", "bytes 0-3/10"),
                                        ("bytes=7-", b"789", "bytes 7-9/10"),
                                        ("bytes=-2", b"89", "bytes 8-9/10")):
        status, headers, body = raw(server, "GET", url, headers={"Range": header})
        assert (status, body, headers["content-range"]) == (206, part, content_range), header
        assert headers["content-length"] == str(len(part))
    status, headers, _ = raw(server, "GET", url, headers={"Range": "bytes=10-"})
    assert (status, headers["content-range"]) == (416, "bytes */10")


def test_a_missing_file_is_not_found(server, w):
    """Downloading, reading the metadata of or deleting a file that does not exist is 404
    NOT_FOUND ("Operation was performed on a resource that does not exist"); a directory is
    not a file.
    https://docs.databricks.com/api/workspace/files/listdirectorycontents
    https://docs.databricks.com/api/workspace/files/delete"""
    missing = f"{VOLUME}/nothing/here.json"
    for call in (lambda: w.files.download(missing).contents.read(),
                 lambda: w.files.delete(missing)):
        with pytest.raises(NotFound, match="not found"):
            call()
    with pytest.raises(NotFound):  # HEAD: the status only, no body to say more
        w.files.get_metadata(missing)
    w.files.create_directory(f"{VOLUME}/a_dir")
    with pytest.raises(NotFound):
        w.files.get_metadata(f"{VOLUME}/a_dir")
    path = f"{VOLUME}/deleted.json"
    w.files.upload(path, io.BytesIO(b"x"))
    w.files.delete(path)
    assert not on_disk(server, path).exists()
    with pytest.raises(NotFound):
        w.files.download(path).contents.read()


# -- directories -----------------------------------------------------------------------------
def test_directories_are_created_listed_in_pages_and_deleted_when_empty(server, w):
    """PUT /api/2.0/fs/directories "Creates an empty directory. If necessary, also creates any
    parent directories ... this method is idempotent"; HEAD checks it exists; GET lists
    ``contents`` (path, is_directory, file_size "omitted for directories", last_modified in
    milliseconds, name) in pages of ``page_size`` (0 or above 1000: 1000) followed by
    ``next_page_token``; a missing directory is 404; DELETE "Deletes an empty directory".
    https://docs.databricks.com/api/workspace/files/createdirectory
    https://docs.databricks.com/api/workspace/files/getdirectorymetadata
    https://docs.databricks.com/api/workspace/files/listdirectorycontents
    https://docs.databricks.com/api/workspace/files/deletedirectory"""
    top = f"{VOLUME}/listing"
    w.files.create_directory(f"{top}/sub/deeper")
    w.files.create_directory(f"{top}/sub/deeper")  # idempotent
    w.files.get_directory_metadata(f"{top}/sub/deeper")
    for name in ("a.json", "b.json", "c.json"):
        w.files.upload(f"{top}/{name}", io.BytesIO(name.encode()))
    entries = list(w.files.list_directory_contents(top))
    assert [(e.name, e.is_directory, e.file_size) for e in entries] == [
        ("a.json", False, 6), ("b.json", False, 6), ("c.json", False, 6), ("sub", True, None)]
    assert entries[0].path == f"{top}/a.json" and entries[3].path == f"{top}/sub/"
    assert all(isinstance(e.last_modified, int) and e.last_modified > 1.7e12 for e in entries)
    # pages of two, each ending with a token, the last without one
    status, _, first = raw(server, "GET", f"/api/2.0/fs/directories{top}?page_size=2")
    page = json.loads(first)
    assert status == 200 and [e["name"] for e in page["contents"]] == ["a.json", "b.json"]
    status, _, second = raw(server, "GET", f"/api/2.0/fs/directories{top}?page_size=2"
                                           f"&page_token={page['next_page_token']}")
    page2 = json.loads(second)
    assert [e["name"] for e in page2["contents"]] == ["c.json", "sub"]
    assert "next_page_token" not in page2
    assert [e.name for e in w.files.list_directory_contents(top, page_size=1)] == \
        [e.name for e in entries]
    status, _, body = raw(server, "GET", f"/api/2.0/fs/directories{top}?page_token=%21%21")
    assert status == 400 and b"page_token" in body
    with pytest.raises(NotFound):
        list(w.files.list_directory_contents(f"{VOLUME}/no_such_dir"))
    with pytest.raises(NotFound):
        w.files.get_directory_metadata(f"{VOLUME}/no_such_dir")
    with pytest.raises(ResourceConflict, match="not empty"):
        w.files.delete_directory(f"{top}/sub")
    w.files.delete_directory(f"{top}/sub/deeper")
    w.files.delete_directory(f"{top}/sub")
    assert "sub" not in [e.name for e in w.files.list_directory_contents(top)]
    with pytest.raises(BadRequest, match="the volume itself"):
        w.files.delete_directory(VOLUME)
    # a name a local job wrote, which the API would refuse in a path, is listed all the same
    (on_disk(server, top) / "job 100%.txt").write_text("x")
    assert "job 100%.txt" in [e.name for e in w.files.list_directory_contents(top)]
    # a file in the way of a directory, and a directory in the way of a file
    with pytest.raises(AlreadyExists):
        w.files.create_directory(f"{top}/a.json/inner")
    with pytest.raises(AlreadyExists):
        w.files.upload(top, io.BytesIO(b"x"))


# -- who may do what, and where ---------------------------------------------------------------
def test_grants_decide_who_reads_and_writes_a_volume(server, w):
    """Reading or listing a volume's files needs USE CATALOG, USE SCHEMA and READ VOLUME;
    creating, deleting or updating them READ VOLUME and WRITE VOLUME too; anything else is
    403 PERMISSION_DENIED, and a request without a valid token 401 UNAUTHENTICATED.
    https://docs.databricks.com/en/volumes/privileges.html
    https://docs.databricks.com/api/workspace/files/listdirectorycontents"""
    path = f"{VOLUME}/grants/model.json"
    w.files.upload(path, io.BytesIO(MODEL))
    jobs, ana, nobody = (client(server, who) for who in ("jobs", "ana", "nobody"))
    assert jobs.files.download(path).contents.read() == MODEL  # the job reads the upload
    assert [e.name for e in jobs.files.list_directory_contents(f"{VOLUME}/grants")] == \
        ["model.json"]
    for call in (lambda: jobs.files.upload(path, io.BytesIO(b"x")),
                 lambda: jobs.files.delete(path),
                 lambda: jobs.files.create_directory(f"{VOLUME}/grants/x")):
        with pytest.raises(PermissionDenied, match="does not have WRITE VOLUME"):
            call()
    with pytest.raises(PermissionDenied, match="ana does not have READ VOLUME on Volume "
                                               "'yws_dev.ml.r_models'"):
        ana.files.download(path).contents.read()
    with pytest.raises(PermissionDenied, match="does not have USE CATALOG on Catalog"):
        list(nobody.files.list_directory_contents(VOLUME))
    with pytest.raises(PermissionDenied, match="READ VOLUME on Volume 'yws_dev.ml.mlflow_tmp'"):
        w.files.upload("/Volumes/yws_dev/ml/mlflow_tmp/x", io.BytesIO(b"x"))
    assert w.files.download(path).contents.read() == MODEL
    for who, headers in ((None, {}), (None, {"Authorization": "Bearer not-a-token"})):
        status, _, body = raw(server, "GET", f"/api/2.0/fs/files{path}", headers=headers,
                              who=who)
        assert status == 401 and b"UNAUTHENTICATED" in body
    with pytest.raises(Unauthenticated):
        WorkspaceClient(host=server["host"], token="nope").files.get_metadata(path)


def test_a_path_outside_a_declared_volume_is_not_found_or_bad(server, w):
    """The Files API serves Unity Catalog volume paths, "/Volumes/<catalog_name>/
    <schema_name>/<volume_name>/<path_to_file>": a volume that does not exist is 404 NOT_FOUND,
    a path that is not a volume path 400 BAD_REQUEST.
    https://docs.databricks.com/api/workspace/files"""
    with pytest.raises(NotFound, match="Volume 'yws_dev.ml.nope' does not exist"):
        w.files.upload("/Volumes/yws_dev/ml/nope/x.json", io.BytesIO(b"x"))
    with pytest.raises(NotFound, match="does not exist"):
        w.files.download("/Volumes/other_catalog/ml/r_models/x.json").contents.read()
    for path in ("/tmp/x.json", "/Volumes/yws_dev/ml", "/Workspace/Users/x/y.json"):
        with pytest.raises(BadRequest, match="volume"):
            w.files.download(path).contents.read()
        with pytest.raises(BadRequest):
            w.files.get_metadata(path)


@pytest.mark.parametrize("path", [
    f"{VOLUME}/../mlflow_tmp/planted.json",
    f"{VOLUME}/%2e%2e/mlflow_tmp/planted.json",
    f"{VOLUME}/%2E%2E%2Fmlflow_tmp%2Fplanted.json",
    f"{VOLUME}/%252e%252e/mlflow_tmp/planted.json",
    f"{VOLUME}/./planted.json",
    f"{VOLUME}//planted.json",
    f"/{VOLUME}/planted.json",
    f"{VOLUME}/..%5c..%5cplanted.json",
    f"{VOLUME}/planted%00.json",
    f"{VOLUME}/a/../../../../../../tmp/planted.json",
    "/Volumes/yws_dev/ml/r_models%2f..%2f..%2fplanted.json",
])
def test_hostile_paths_are_refused_and_write_nothing(server, path):
    """Paths are absolute volume paths ("The absolute path of the file"): a path with ``..``
    or ``.`` names, empty names (``//``), a backslash, NUL or a percent-encoded way to one of
    those is 400 BAD_REQUEST, for every method, and nothing is written anywhere.
    https://docs.databricks.com/api/workspace/files/upload"""
    before = sorted(p for p in server["home"].rglob("*") if "planted" in p.name)
    for method, body in (("PUT", b"planted"), ("GET", None), ("DELETE", None)):
        for api in ("files", "directories"):
            status, _, answer = raw(server, method, f"/api/2.0/fs/{api}{path}", body)
            assert status == 400, (method, api, status, answer)
            assert b"BAD_REQUEST" in answer
    assert sorted(p for p in server["home"].rglob("*") if "planted" in p.name) == before == []
    assert not Path("/tmp/planted.json").exists()


def test_a_file_over_the_limit_is_refused_whole_and_leaves_nothing(server, w):
    """Uploads are "a file of up to 5 GiB"; this server takes 16 MiB, and a larger upload is
    413 with a message that says the limit — whether its Content-Length says so or it comes
    chunked — and leaves no file, whole or partial.
    https://docs.databricks.com/api/workspace/files/upload"""
    path = f"{VOLUME}/big/too_big.bin"
    mib = b"y" * (1024 * 1024)
    declared = f"Content-Length: {MAX_VOLUME_FILE_BYTES + 1}\r\n"
    chunked = "Transfer-Encoding: chunked\r\n"
    for header, body in ((declared, [mib] * 16 + [b"y"]),
                         (chunked, [b"%x\r\n%s\r\n" % (len(mib), mib)] * 17 + [b"0\r\n\r\n"])):
        answer = refused_upload(server, path, header, body)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert str(MAX_VOLUME_FILE_BYTES).encode() in answer
    assert not on_disk(server, path).exists()
    assert list((server["home"] / "volumes" / ".uploads").glob("*")) == []
    exact = f"{VOLUME}/big/exactly_16_mib.bin"
    w.files.upload(exact, io.BytesIO(b"z" * MAX_VOLUME_FILE_BYTES))
    assert w.files.get_metadata(exact).content_length == MAX_VOLUME_FILE_BYTES


def test_an_upload_in_progress_is_never_visible(server, w):
    """"The contents of the resulting file will be exactly the bytes sent in the request
    body": until the last byte has arrived readers see the old file (or none), never part of
    the new one; an upload cut off halfway leaves the old file as it was.
    https://docs.databricks.com/api/workspace/files/upload"""
    path = f"{VOLUME}/atomic/model.json"
    w.files.upload(path, io.BytesIO(b"old"))
    new = b"n" * 200_000
    host, port = server["host"].split("//")[1].split(":")
    for finish in (True, False):
        sock = socket.create_connection((host, int(port)), timeout=60)
        sock.sendall((f"PUT /api/2.0/fs/files{path} HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {server['tokens']['rita']}\r\n"
                      f"Content-Length: {len(new)}\r\n\r\n").encode() + new[:100_000])
        # half the body is on its way: whatever the server has read of it, readers see "old"
        assert w.files.download(path).contents.read() == b"old"
        assert w.files.get_metadata(path).content_length == 3
        if finish:
            sock.sendall(new[100_000:])
            assert sock.recv(4096).startswith(b"HTTP/1.1 204")
            assert w.files.download(path).contents.read() == new
            w.files.upload(path, io.BytesIO(b"old"))
        sock.close()
    assert w.files.download(path).contents.read() == b"old"
    assert [p.name for p in on_disk(server, path).parent.iterdir()] == ["model.json"]


def test_tokens_and_file_contents_are_never_logged(server, w, caplog):
    """Bearer tokens ("Authorization: Bearer <token>") and the bytes of a volume file stay out
    of every log line, the server's own included; a write is logged with its path, size and
    principal.
    https://docs.databricks.com/api/workspace/files/upload"""
    secret = b"coefficient-0.123456789-only-in-the-file"
    with caplog.at_level(logging.DEBUG):
        w.files.upload(f"{VOLUME}/logged/model.json", io.BytesIO(secret))
        w.files.download(f"{VOLUME}/logged/model.json").contents.read()
        with pytest.raises(AlreadyExists):
            w.files.upload(f"{VOLUME}/logged/model.json", io.BytesIO(secret), overwrite=False)
    text = caplog.text
    assert "rita wrote /Volumes/yws_dev/ml/r_models/logged/model.json" in text
    assert secret.decode() not in text
    assert all(token not in text for token in server["tokens"].values())
