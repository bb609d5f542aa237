"""Where a Unity Catalog table name maps to a place.

Jobs name tables by their three-level name (``catalog.schema.table``) and call one
:class:`Storage`; :func:`storage_for` picks the implementation once, from the settings.
"""

from __future__ import annotations

from yws.config import Settings
from yws.storage.base import (
    PublishConflictError,
    Storage,
    StorageError,
    TableInfo,
    TableNotFoundError,
    check_literal,
)


def storage_for(settings: Settings) -> Storage:
    if settings.target == "databricks":
        from yws.storage.databricks import DatabricksStorage

        return DatabricksStorage(settings)
    from yws.storage.local import LocalStorage

    return LocalStorage(settings)


__all__ = [
    "PublishConflictError",
    "Storage",
    "StorageError",
    "TableInfo",
    "TableNotFoundError",
    "check_literal",
    "storage_for",
]
