"""Where SQL runs: the DBSQL warehouse on Databricks, DuckDB over the Delta tables locally.

Both take the same rendered files from ``sql/`` and the same Databricks-dialect queries with
named ``:parameters``, which the engine binds (values never become SQL text).
"""

from __future__ import annotations

from yws.config import Settings
from yws.warehouse.base import (
    ApplyStep,
    QueryError,
    Warehouse,
    WarehouseError,
    check_query,
)


def warehouse_for(settings: Settings) -> Warehouse:
    if settings.target == "databricks":
        from yws.warehouse.databricks import DatabricksWarehouse

        return DatabricksWarehouse(settings)
    from yws.warehouse.local import LocalWarehouse

    return LocalWarehouse(settings)


__all__ = ["ApplyStep", "QueryError", "Warehouse", "WarehouseError", "check_query",
           "warehouse_for"]
