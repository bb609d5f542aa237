"""Where a file of a Unity Catalog volume lives: ``/Volumes/<catalog>/<schema>/<volume>/<path>``.

On Databricks a job reads and writes a volume's files at that path itself (``/Volumes`` is a
FUSE mount on serverless compute); on this machine they live under
``$YWS_HOME/volumes/<catalog>/<schema>/<volume>/``, where ``yws serve``'s Files API writes them
and a job task running locally reads them. :func:`parse` refuses every path that could name
anything outside its volume — ``..`` or ``.`` segments, empty segments (``//``), backslashes,
NUL and control characters, ``%`` (a second decoding would turn ``%2e%2e`` into ``..``) — and
:func:`local_path` checks again, after resolving symbolic links, that the place is inside the
volume's folder.

Which of the two places a path means is the platform's decision, never a comparison of target
names: :meth:`yws.platform.Target.volume_path` passes ``mounted`` from the target's
``volumes_mounted``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from yws.config import Settings, SettingsError, check_identifier
from yws.storage.base import StorageError

ROOT = "/Volumes"
FOLDER = "volumes"
"""The folder under ``$YWS_HOME`` that holds the local volumes."""
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
# Control characters (NUL included), DEL, slash, backslash and percent: never in a name here.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\%]")


class VolumePathError(StorageError, ValueError):
    """A path that is not a file or folder of a Unity Catalog volume."""


@dataclass(frozen=True)
class VolumePath:
    """A checked volume path: the volume's three names (lower case, as Unity Catalog keeps
    them) and the names of the path inside it (none for the volume itself)."""

    catalog: str
    schema: str
    volume: str
    parts: tuple[str, ...] = ()

    @property
    def volume_name(self) -> str:
        """``catalog.schema.volume``: the securable that grants name."""
        return f"{self.catalog}.{self.schema}.{self.volume}"

    @property
    def path(self) -> str:
        """The absolute path, ``/Volumes/c/s/v/a/b``, without a trailing slash."""
        return "/".join((ROOT, self.catalog, self.schema, self.volume, *self.parts))

    @property
    def name(self) -> str:
        """The last name of the path (the volume's name for the volume itself)."""
        return self.parts[-1] if self.parts else self.volume

    def child(self, name: str) -> VolumePath:
        _check_name(name, f"{self.path}/{name}")
        return VolumePath(self.catalog, self.schema, self.volume, (*self.parts, name))


def _check_name(name: str, path: str) -> None:
    if name in ("", ".", ".."):
        raise VolumePathError(f"{path!r}: empty, '.' and '..' names are not allowed in a "
                              "volume path; write the absolute path of the file")
    if _FORBIDDEN.search(name):
        raise VolumePathError(f"{path!r}: control characters, '\\' and '%' are not allowed in "
                              "a volume path (nor '/' in a name); use letters, digits and '.', "
                              "'_', '-' in names")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise VolumePathError(f"{path[:300]!r}: a name is longer than {MAX_NAME_BYTES} bytes")


def parse(path: str) -> VolumePath:
    """The volume path ``path`` names, checked; a trailing ``/`` (a directory) is allowed.

    ``/Volumes/<catalog>/<schema>/<volume>`` at least: anything shorter or elsewhere is a
    :class:`VolumePathError` that says what a volume path looks like.
    """
    if not isinstance(path, str) or not path:
        raise VolumePathError("a volume path is required: /Volumes/<catalog>/<schema>/<volume>/"
                              "<path>")
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise VolumePathError(f"the path is longer than {MAX_PATH_BYTES} bytes")
    shown = path[:300]
    if not path.startswith(ROOT + "/"):
        raise VolumePathError(f"{shown!r} is not a Unity Catalog volume path: paths start with "
                              "/Volumes/<catalog>/<schema>/<volume>/")
    names = path[len(ROOT) + 1:].split("/")
    if len(names) > 3 and names[-1] == "":
        names.pop()  # one trailing slash: a directory
    for name in names:
        _check_name(name, shown)
    if len(names) < 3:
        raise VolumePathError(f"{shown!r} names no volume: paths start with "
                              "/Volumes/<catalog>/<schema>/<volume>/")
    try:
        catalog, schema, volume = (check_identifier(n, what).lower() for n, what in
                                   zip(names[:3], ("catalog", "schema", "volume"), strict=True))
    except SettingsError as e:
        raise VolumePathError(f"{shown!r}: {e}") from None
    return VolumePath(catalog, schema, volume, tuple(names[3:]))


def volumes_root(settings: Settings) -> Path:
    """``$YWS_HOME/volumes``: the folder of every local volume."""
    return settings.home.resolve() / FOLDER


def volume_root(settings: Settings, where: VolumePath) -> Path:
    """The local folder of the volume ``where`` is in."""
    return volumes_root(settings) / where.catalog / where.schema / where.volume


def local_path(settings: Settings, path: str | VolumePath, *, mounted: bool = False) -> Path:
    """Where the file or folder ``path`` (``/Volumes/c/s/v/a/b.json``) is read and written.

    ``mounted=False`` (this machine): ``$YWS_HOME/volumes/c/s/v/a/b.json``, checked to stay
    inside the volume's folder once symbolic links are resolved. ``mounted=True`` (volumes
    mounted at ``/Volumes``, as on Databricks): the checked path itself. Callers that run on
    either platform use :meth:`yws.platform.Target.volume_path`, which chooses.
    """
    where = path if isinstance(path, VolumePath) else parse(path)
    if mounted:
        return Path(PurePosixPath(where.path))
    root = volume_root(settings, where)
    place = root.joinpath(*where.parts)
    resolved = place.resolve()
    if resolved != root.resolve() and not resolved.is_relative_to(root.resolve()):
        raise VolumePathError(f"{where.path!r} leads outside volume {where.volume_name} "
                              "(a symbolic link): refused")
    return place


__all__ = ["ROOT", "VolumePath", "VolumePathError", "local_path", "parse", "volume_root",
           "volumes_root"]
