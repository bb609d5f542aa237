"""Where a Unity Catalog table name maps to a place.

Jobs name tables by their three-level name (``catalog.schema.table``) and call one
:class:`Storage`; :class:`yws.platform.Target` picks the implementation once, from the settings.
"""

from __future__ import annotations

from yws.storage.base import (
    PublishConflictError,
    Storage,
    StorageError,
    TableInfo,
    TableNotFoundError,
    VersionNotFoundError,
    check_literal,
)

__all__ = [
    "PublishConflictError",
    "Storage",
    "StorageError",
    "TableInfo",
    "TableNotFoundError",
    "VersionNotFoundError",
    "check_literal",
]
