"""Read predictions through the SQL views: the read API the CLI and the clients use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from yws.config import Settings
from yws.contract.spec import Bands
from yws.platform import warehouse_for
from yws.warehouse import QueryError, Warehouse

BANDS = Bands.NAMES
VIEWS = {
    "all": "v_yws_predictions",
    "latest": "v_yws_predictions_latest",
    "warnings": "v_yws_warnings",
}


def predictions_query(
    settings: Settings,
    *,
    as_of: dt.date | str | None = None,
    batch_id: str | None = None,
    bands: Iterable[str] | None = None,
    view: str = "all",
) -> tuple[str, dict[str, Any]]:
    """The SQL text (fixed clauses only) and its named parameters (the values)."""
    if view not in VIEWS:
        raise QueryError(f"view {view!r} is unknown; use one of {', '.join(VIEWS)}")
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if as_of is not None:
        day = as_of if isinstance(as_of, dt.date) else _date(as_of)
        clauses.append("as_of_date = CAST(:as_of AS DATE)")
        params["as_of"] = day.isoformat()
    if batch_id is not None:
        clauses.append("batch_id = :batch_id")
        params["batch_id"] = str(batch_id)
    if bands is not None:
        wanted = [str(b).upper() for b in bands]
        bad = [b for b in wanted if b not in BANDS]
        if bad or not wanted:
            raise QueryError(f"bands must be some of {', '.join(BANDS)} (got {list(bands)})")
        names = [f"band{i}" for i in range(len(wanted))]
        clauses.append(f"band IN ({', '.join(':' + n for n in names)})")
        params.update(zip(names, wanted, strict=True))
    sql = f"SELECT * FROM {settings.table(VIEWS[view])}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql + " ORDER BY entity_id, batch_id", params


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise QueryError(f"as_of {text!r} is not a date; use YYYY-MM-DD") from None


def read_predictions(
    settings: Settings,
    *,
    as_of: dt.date | str | None = None,
    batch_id: str | None = None,
    bands: Iterable[str] | None = None,
    view: str = "all",
    warehouse: Warehouse | None = None,
) -> pa.Table:
    """Predictions as Arrow (``.to_pandas()`` for a DataFrame), filtered in the warehouse."""
    sql, params = predictions_query(settings, as_of=as_of, batch_id=batch_id, bands=bands,
                                    view=view)
    if warehouse is not None:
        return warehouse.query(sql, params)
    own = warehouse_for(settings)
    try:
        return own.query(sql, params)
    finally:
        close = getattr(own, "close", None)
        if close is not None:
            close()
