"""The Files API 2.0 routes of ``yws serve``, for the Unity Catalog volumes ``sql/`` creates.

An R user uploads a model's JSON export to a volume (``sql/06_r_models_volume.sql``) and the
registration job reads it from ``/Volumes/...`` (issue 17). Files live under
``$YWS_HOME/volumes/<catalog>/<schema>/<volume>/`` (:mod:`yws.storage.volumes`).

* ``PUT|GET|HEAD|DELETE /api/2.0/fs/files/Volumes/...``: upload (the body is the file's
  bytes; ``overwrite``, default true), download (one ``Range`` honoured), metadata in headers,
  delete.
* ``PUT|GET|HEAD|DELETE /api/2.0/fs/directories/Volumes/...``: create (``mkdir -p``,
  idempotent), list (``contents``, paged by ``page_token``), exists, delete (empty only).

Every request needs a token. Reading or listing needs ``READ VOLUME``, writing or deleting
``READ VOLUME`` and ``WRITE VOLUME``, both with ``USE CATALOG`` and ``USE SCHEMA``, as Unity
Catalog asks (https://docs.databricks.com/en/volumes/privileges.html) and as
``sql/90_grants.sql`` grants them. A path that is not a checked volume path is refused before
anything is touched; an upload is written to a temporary file outside the volumes and renamed
into place, so no reader ever sees half a file; a file is at most
:data:`~yws.server.limits.MAX_VOLUME_FILE_BYTES`. Neither contents nor tokens are logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from yws.server.context import Api
from yws.server.errors import ApiError
from yws.server.grants import holds
from yws.server.limits import MAX_VOLUME_FILE_BYTES
from yws.server.store import Principal
from yws.storage.volumes import (
    VolumePath,
    VolumePathError,
    local_path,
    parse,
    volume_root,
    volumes_root,
)
from yws.warehouse import WarehouseError

log = logging.getLogger("yws.server")

FILES = "/api/2.0/fs/files"
DIRECTORIES = "/api/2.0/fs/directories"
MAX_PAGE_SIZE = 1000  # "The maximum value is 1000. Values above 1000 will be coerced to 1000."
UPLOADS = ".uploads"  # under $YWS_HOME/volumes: never a catalog name, so never in a volume
OCTETS = "application/octet-stream"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def conflict(message: str, code: str = "RESOURCE_CONFLICT") -> ApiError:
    return ApiError(409, code, message)


def http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


class VolumeFiles:
    """The volumes' files for the Files API routes: checks, then the file system."""

    def __init__(self, warehouse: Any) -> None:
        self.warehouse = warehouse  # the local warehouse: its applied volumes and grants
        self.settings = warehouse.settings

    # -- who may do what, where ----------------------------------------------------------
    def checked(self, principal: Principal, path: str, write: bool) -> VolumePath:
        """The volume path ``path`` if it is one, in a volume ``sql/`` created, and the
        principal holds what the operation needs on it."""
        try:
            where = parse(path)
        except VolumePathError as e:
            raise bad_request(str(e)) from None
        try:
            volumes = self.warehouse.volumes()
            grants = self.warehouse.grants()
        except WarehouseError:
            raise not_found(f"Volume '{where.volume_name}' does not exist: no volumes yet, run "
                            "`yws sql apply`") from None
        if where.volume_name not in volumes:
            raise not_found(f"Volume '{where.volume_name}' does not exist; the volumes here are "
                            f"those sql/ creates: {', '.join(sorted(volumes)) or 'none'}")
        needed = [("USE CATALOG", where.catalog, "Catalog"),
                  ("USE SCHEMA", f"{where.catalog}.{where.schema}", "Schema"),
                  ("READ VOLUME", where.volume_name, "Volume")]
        if write:
            needed.append(("WRITE VOLUME", where.volume_name, "Volume"))
        for privilege, securable, kind in needed:
            if not holds(grants, principal.identities, privilege, securable):
                raise ApiError(403, "PERMISSION_DENIED",
                               f"User {principal.name} does not have {privilege} on {kind} "
                               f"'{securable}'; grants in sql/90_grants.sql decide who reads "
                               "and writes a volume.")
        root = volume_root(self.settings, where)
        root.mkdir(parents=True, exist_ok=True)  # a volume exists, empty, once it is created
        return where

    def place(self, where: VolumePath) -> Path:
        try:
            return local_path(self.settings, where)
        except VolumePathError as e:
            raise bad_request(str(e)) from None

    # -- files ----------------------------------------------------------------------------
    def file_stat(self, where: VolumePath) -> os.stat_result:
        try:
            info = self.place(where).stat()
        except (FileNotFoundError, NotADirectoryError):
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise not_found(f"The file being accessed is not found: {where.path}")
        return info

    def read(self, where: VolumePath, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` inclusive of the file (it is replaced whole by a rename, so
        one open file is one version)."""
        with open(self.place(where), "rb") as f:
            f.seek(start)
            return f.read(max(0, end - start + 1))

    def temporary(self) -> tuple[int, Path]:
        """A new empty file beside the volumes (same file system, so a rename is atomic)."""
        folder = volumes_root(self.settings) / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=folder)
        return fd, Path(name)

    def publish(self, tmp: Path, where: VolumePath, overwrite: bool) -> None:
        """Move the finished upload ``tmp`` to ``where``: replace what is there, or, without
        ``overwrite``, link it only if nothing is (one atomic step either way)."""
        target = self.place(where)
        parent = target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise conflict(f"{where.path}: a file is in the way of its parent directory") \
                from None
        if target.is_dir():
            raise conflict(f"{where.path} is a directory", "ALREADY_EXISTS")
        if overwrite:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise conflict(f"The file being created already exists: {where.path}; upload with "
                           "overwrite=true to replace it", "ALREADY_EXISTS") from None

    def delete_file(self, where: VolumePath) -> None:
        self.file_stat(where)
        try:
            self.place(where).unlink()
        except FileNotFoundError:
            raise not_found(f"The file being accessed is not found: {where.path}") from None

    # -- directories ------------------------------------------------------------------------
    def directory(self, where: VolumePath) -> Path:
        place = self.place(where)
        if not place.is_dir():
            raise not_found(f"The directory being accessed is not found: {where.path}")
        return place

    def make_directory(self, where: VolumePath) -> None:
        try:
            self.place(where).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise conflict(f"{where.path}: a file exists at this path or one of its parents",
                           "ALREADY_EXISTS") from None

    def delete_directory(self, where: VolumePath) -> None:
        if not where.parts:
            raise bad_request(f"{where.path} is the volume itself: the Files API deletes "
                              "directories inside a volume (DROP VOLUME drops a volume)")
        place = self.directory(where)
        try:
            place.rmdir()
        except FileNotFoundError:
            raise not_found(f"The directory being accessed is not found: {where.path}") \
                from None
        except OSError:
            if place.is_dir() and any(place.iterdir()):
                raise conflict(f"The directory is not empty: {where.path}; delete its contents "
                               "first") from None
            raise

    def listing(self, where: VolumePath, page_size: int, after: str | None
                ) -> dict[str, Any]:
        place = self.directory(where)
        names = sorted(n for n in os.listdir(place) if after is None or n > after)
        contents = []
        for name in names[:page_size]:
            try:
                info = (place / name).lstat()
            except FileNotFoundError:
                continue  # deleted while listing
            is_dir = stat.S_ISDIR(info.st_mode)
            # a name a local job wrote may be one the API refuses in a path: listed all the same
            item: dict[str, Any] = {"path": f"{where.path}/{name}" + ("/" if is_dir else ""),
                                    "is_directory": is_dir, "name": name,
                                    "last_modified": int(info.st_mtime * 1000)}
            if not is_dir:
                item["file_size"] = info.st_size
            contents.append(item)
        out: dict[str, Any] = {"contents": contents}
        if len(names) > page_size:
            out["next_page_token"] = page_token(names[page_size - 1])
        return out


# -- request parameters ----------------------------------------------------------------------
def flag(value: str | None, name: str, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"{name} must be true or false, not {value[:50]!r}")


def page_size(value: str | None) -> int:
    if value is None:
        return MAX_PAGE_SIZE
    try:
        size = int(value)
    except ValueError:
        raise bad_request(f"page_size must be a whole number, not {value[:50]!r}") from None
    if size < 0:
        raise bad_request("page_size must be 0 (the maximum) to 1000")
    return MAX_PAGE_SIZE if size == 0 else min(size, MAX_PAGE_SIZE)


def page_token(last: str) -> str:
    """An opaque token: the last name of the page, so a page starts after it even when the
    directory changed in between."""
    return base64.urlsafe_b64encode(last.encode("utf-8")).decode("ascii").rstrip("=")


def after_token(token: str | None, where: VolumePath) -> str | None:
    if not token:
        return None
    try:
        last = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_",
                                validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        last = ""
    if not last or "/" in last or "\x00" in last:  # not a name: the token was not ours
        raise bad_request(f"page_token is not a next_page_token of a listing of {where.path}")
    return last


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a single ``Range: bytes=...``, ``None`` for the whole
    file (no header, or one this server ignores, as RFC 9110 allows: several ranges, or a
    range it cannot parse). An unsatisfiable range is a 416."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m[1] and not m[2]):
        return None
    if not m[1]:  # the last N bytes
        n = int(m[2])
        if n == 0 or size == 0:
            raise unsatisfiable(size)
        return max(0, size - n), size - 1
    start = int(m[1])
    end = int(m[2]) if m[2] else size - 1
    if m[2] and end < start:
        return None
    if start >= size:
        raise unsatisfiable(size)
    return start, min(end, size - 1)


def unsatisfiable(size: int) -> ApiError:
    return ApiError(416, "BAD_REQUEST", f"the range is outside the file ({size} bytes)",
                    {"Content-Range": f"bytes */{size}"})


def unmodified_since(header: str | None, info: os.stat_result) -> None:
    """``If-Unmodified-Since``: 412 when the file changed after that date (a date that does
    not parse is ignored, as RFC 9110 says)."""
    if not header:
        return
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    if int(info.st_mtime) > since.timestamp():
        raise ApiError(412, "FAILED_PRECONDITION",
                       f"the file was modified after {header[:64]}")


def metadata(info: os.stat_result, length: int) -> dict[str, str]:
    return {"Content-Length": str(length), "Content-Type": OCTETS,
            "Last-Modified": http_date(info.st_mtime), "Accept-Ranges": "bytes"}


# -- routes ------------------------------------------------------------------------------------
def add_routes(app: FastAPI, api: Api) -> None:
    files = VolumeFiles(api.statements.warehouse)
    who = api.who

    @app.put(FILES + "{file_path:path}")
    async def upload(request: Request, file_path: str) -> Response:
        principal = who(request)
        where = files.checked(principal, file_path, write=True)
        overwrite = flag(request.query_params.get("overwrite"), "overwrite", True)
        fd, tmp = await run_in_threadpool(files.temporary)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_VOLUME_FILE_BYTES:
                        raise ApiError(413, "BAD_REQUEST",
                                       f"the file is larger than {MAX_VOLUME_FILE_BYTES} bytes "
                                       "(16 MiB), the limit of a file in a volume here")
                    if chunk:
                        await run_in_threadpool(out.write, chunk)
                await run_in_threadpool(out.flush)
                await run_in_threadpool(os.fsync, out.fileno())
            await run_in_threadpool(files.publish, tmp, where, overwrite)
        finally:
            tmp.unlink(missing_ok=True)  # published by a rename or a link, or abandoned
        log.info("files: %s wrote %s (%d bytes)", principal.name, where.path, size)
        return Response(status_code=204)

    @app.head(FILES + "{file_path:path}")
    def file_metadata(request: Request, file_path: str) -> Response:
        where = files.checked(who(request), file_path, write=False)
        info = files.file_stat(where)
        return Response(status_code=200, headers=metadata(info, info.st_size))

    @app.get(FILES + "{file_path:path}")
    async def download(request: Request, file_path: str) -> Response:
        where = files.checked(who(request), file_path, write=False)
        info = files.file_stat(where)
        unmodified_since(request.headers.get("if-unmodified-since"), info)
        wanted = byte_range(request.headers.get("range"), info.st_size)
        start, end = wanted or (0, info.st_size - 1)
        data = await run_in_threadpool(files.read, where, start, end)
        headers = metadata(info, len(data))
        if wanted is None:
            return Response(data, 200, headers=headers)
        headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{info.st_size}"
        return Response(data, 206, headers=headers)

    @app.delete(FILES + "{file_path:path}")
    def delete_file(request: Request, file_path: str) -> Response:
        principal = who(request)
        where = files.checked(principal, file_path, write=True)
        files.delete_file(where)
        log.info("files: %s deleted %s", principal.name, where.path)
        return Response(status_code=204)

    @app.put(DIRECTORIES + "{directory_path:path}")
    def create_directory(request: Request, directory_path: str) -> Response:
        where = files.checked(who(request), directory_path, write=True)
        files.make_directory(where)
        return Response(status_code=204)

    @app.head(DIRECTORIES + "{directory_path:path}")
    def directory_metadata(request: Request, directory_path: str) -> Response:
        where = files.checked(who(request), directory_path, write=False)
        files.directory(where)
        return Response(status_code=200)

    @app.get(DIRECTORIES + "{directory_path:path}")
    def list_directory(request: Request, directory_path: str) -> JSONResponse:
        where = files.checked(who(request), directory_path, write=False)
        size = page_size(request.query_params.get("page_size"))
        after = after_token(request.query_params.get("page_token"), where)
        return JSONResponse(files.listing(where, size, after))

    @app.delete(DIRECTORIES + "{directory_path:path}")
    def delete_directory(request: Request, directory_path: str) -> Response:
        principal = who(request)
        where = files.checked(principal, directory_path, write=True)
        files.delete_directory(where)
        log.info("files: %s deleted directory %s", principal.name, where.path)
        return Response(status_code=204)
