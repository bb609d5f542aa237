"""The warehouse interface and the checks every query passes before it runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from yws.config import Settings
from yws.contract.sqlfiles import Grant, Statement
from yws.warehouse.errors import QueryError, SqlError, WarehouseError

__all__ = ["ApplyStep", "QueryError", "SqlError", "Warehouse", "WarehouseError", "check_query"]


@dataclass(frozen=True)
class ApplyStep:
    where: str  # sql/<file>:<line>
    kind: str  # SCHEMA, TABLE, VIEW, GRANT, REVOKE
    object: str
    action: str  # what happened: created, exists, replaced, recorded, sent


def check_query(sql: str, params: Mapping[str, Any]) -> Any:
    """Parse a read-only Databricks query and check its named parameters; returns the tree.

    Only queries (SELECT, WITH, set operations) are accepted; every ``:name`` must be bound and
    every bound name used. Values are bound by the engine, never spliced into the text.
    """
    import sqlglot
    from sqlglot import exp

    try:
        trees = [t for t in sqlglot.parse(sql, read="databricks") if t is not None]
    except sqlglot.errors.ParseError as e:
        raise QueryError(f"the statement does not parse as Databricks SQL: {e}") from None
    if len(trees) != 1:
        raise QueryError(f"send one statement at a time (got {len(trees)})")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        raise QueryError(
            f"only queries (SELECT / WITH) run here, not {type(tree).__name__.upper()}; "
            "tables, views and grants are changed with `yws sql apply`"
        )
    from yws.warehouse import ai_query

    ai_query.check(tree)  # what Databricks refuses before it runs (SqlError)
    used = {p.name for p in tree.find_all(exp.Placeholder)}
    if "" in used or any(not p.name for p in tree.find_all(exp.Placeholder)):
        raise QueryError("use named parameters (:name), not positional ones (?)")
    missing = sorted(used - set(params))
    if missing:
        raise QueryError(
            f"parameter(s) {', '.join(':' + m for m in missing)} are not bound: pass "
            + " ".join(f"--param {m}=VALUE" for m in missing)
        )
    unknown = sorted(set(params) - used)
    if unknown:
        raise QueryError(
            f"unknown parameter(s) {', '.join(unknown)}: the statement uses "
            + (", ".join(":" + u for u in sorted(used)) if used else "no parameters")
        )
    return tree


class Warehouse(ABC):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def apply(self, statements: list[Statement]) -> list[ApplyStep]:
        """Run the rendered files in order; all or nothing where the engine allows."""

    @abstractmethod
    def batches(self, sql: str, params: Mapping[str, Any] | None = None
                ) -> Iterator[pa.RecordBatch]:
        """Stream a query's result as Arrow record batches (first rows arrive early)."""

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        batches = self.batches(sql, params)
        first = next(batches, None)
        if first is None:
            raise WarehouseError("the query returned no schema")
        return pa.Table.from_batches([first, *batches])

    def serve_endpoints(self, scorer: Any) -> Warehouse:
        """Answer ``ai_query`` with ``scorer`` (a :data:`yws.warehouse.ai_query.Scorer`).

        Databricks' warehouses call the Model Serving endpoints themselves: nothing to do
        there. The local warehouse has no model of its own and needs one passed in.
        """
        return self

    @abstractmethod
    def grants(self) -> list[Grant]:
        """The effective grants on the configured catalog's objects."""
