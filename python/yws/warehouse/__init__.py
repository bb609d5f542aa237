"""Where SQL runs: the DBSQL warehouse on Databricks, DuckDB over the Delta tables locally.

Both take the same rendered files from ``sql/`` and the same Databricks-dialect queries with
named ``:parameters``, which the engine binds (values never become SQL text).
"""

from __future__ import annotations

from yws.warehouse.base import (
    ApplyStep,
    QueryError,
    Warehouse,
    WarehouseError,
    check_query,
)

__all__ = ["ApplyStep", "QueryError", "Warehouse", "WarehouseError", "check_query"]
