"""The scoring job's arrow engine path: snapshot, quarantine rules and predictions without Spark.

The rules and their wording are those of :func:`yws.quality.quarantine_reason` (the Spark
path), in the same order, so both engines quarantine the same rows for the same reasons; the
tests run the same cases on both.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yws.config import Settings
from yws.engine import ArrowModel
from yws.quality import InputDataError, check_arrow_schema
from yws.spec import Spec
from yws.storage import Storage
from yws.tables import PREDICTIONS, QUARANTINE, arrow_schema


def snapshot(storage: Storage, settings: Settings, spec: Spec,
             as_of: dt.date | None) -> tuple[pa.Table, dt.date]:
    from yws.train import FEATURES_HINT

    storage.require(settings.features, FEATURES_HINT)
    if as_of is None:  # the latest snapshot: read the date column only
        dates = storage.read_arrow(settings.features, columns=[spec.as_of_column])
        as_of = pc.max(dates.column(0)).as_py() if dates.num_rows else None
        if as_of is None:
            raise InputDataError(f"{settings.features} is empty: there is nothing to score")
    assert as_of is not None
    table = storage.read_arrow(settings.features, where=(spec.as_of_column, as_of))
    check_arrow_schema(table.schema, spec, settings.features, need_label=False)
    return table, as_of


def reasons(table: pa.Table, spec: Spec,
            categories: dict[str, list[str]]) -> tuple[np.ndarray, list[str]]:
    """(mask of the rows that cannot be scored, why — '; '-joined — for each of them, in order).

    Vectorised: only the flagged rows, usually few, are visited one by one.
    """
    n = table.num_rows
    checks: list[tuple[np.ndarray, str | Any]] = []  # (mask, text or per-row texts)

    def add(mask: np.ndarray, text: str | Any) -> None:
        if mask.any():
            checks.append((mask, text))

    add(_nulls(table[spec.entity_key]), f"{spec.entity_key} is null")
    for f in spec.features:
        col = table[f.name]
        if f.type == "numeric":
            x = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False),
                           dtype=np.float64)
            if f.quarantine_nulls:
                add(np.isnan(x), f"{f.name} is null or NaN")
            add(np.isinf(x), f"{f.name} is infinite")
        elif f.quarantine_nulls:
            add(_nulls(col), f"{f.name} is null")
        if f.type == "categorical" and f.unseen == "quarantine":
            known = pa.array(categories.get(f.name, []), pa.string())
            values = pc.cast(col, pa.string())
            unseen = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known)))
            add(np.asarray(unseen.to_numpy(zero_copy_only=False), dtype=bool),
                (f"{f.name} has unseen category '{{}}'", values))
    keys = pa.table({"k": pc.cast(table[spec.entity_key], pa.string()),
                     "d": table[spec.as_of_column]})
    counts = keys.group_by(["k", "d"]).aggregate([("k", "count")])
    # a null key is never a duplicate of another (as in the Spark path's join)
    dupes = counts.filter(pc.and_(pc.greater(counts["k_count"], 1), pc.is_valid(counts["k"])))
    if dupes.num_rows:
        dup_keys = pc.is_in(keys["k"], value_set=dupes["k"])
        add(np.asarray(dup_keys.to_numpy(zero_copy_only=False), dtype=bool),
            f"duplicate {spec.entity_key} in the snapshot")
    bad = np.zeros(n, dtype=bool)
    for mask, _ in checks:
        bad |= mask
    texts = []
    for i in np.nonzero(bad)[0]:
        parts = []
        for mask, text in checks:
            if mask[i]:
                parts.append(text if isinstance(text, str) else
                             text[0].format(text[1][int(i)].as_py()))
        texts.append("; ".join(parts))
    return bad, texts


def _nulls(col: Any) -> np.ndarray:
    return np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)


def bands(p: np.ndarray, spec: Spec) -> np.ndarray:
    return np.where(p >= spec.bands.red, "RED",
                    np.where(p >= spec.bands.yellow, "YELLOW", "GREEN"))


def predictions(model: ArrowModel, good: pa.Table, spec: Spec, *, batch_id: str,
                model_name: str, model_version: int, scored_at: dt.datetime) -> pa.Table:
    n = good.num_rows
    p, y = model.predict(good) if n else (np.zeros(0), np.zeros(0, dtype=np.int32))
    return pa.table({
        "entity_id": pc.cast(good[spec.entity_key], pa.string()),
        "as_of_date": good[spec.as_of_column],
        "batch_id": pa.array([batch_id] * n, pa.string()),
        "probability": pa.array(p, pa.float64()),
        "prediction": pa.array(y, pa.int32()),
        "band": pa.array(bands(p, spec), pa.string()),
        "model_name": pa.array([model_name] * n, pa.string()),
        "model_version": pa.array([model_version] * n, pa.int32()),
        "scored_at": pa.array([scored_at] * n, pa.timestamp("us", tz="UTC")),
    }, schema=arrow_schema(PREDICTIONS))


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return v


def quarantined(bad: pa.Table, why: list[str], spec: Spec, *, batch_id: str,
                at: dt.datetime) -> pa.Table:
    """The whole input row as JSON (nulls left out, as Spark's to_json does)."""
    records = [json.dumps({k: _json_value(v) for k, v in row.items() if v is not None})
               for row in bad.to_pylist()]
    n = bad.num_rows
    return pa.table({
        "entity_id": pc.cast(bad[spec.entity_key], pa.string()),
        "as_of_date": bad[spec.as_of_column],
        "batch_id": pa.array([batch_id] * n, pa.string()),
        "reason": pa.array(why, pa.string()),
        "record": pa.array(records, pa.string()),
        "quarantined_at": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
    }, schema=arrow_schema(QUARANTINE))


def counts(storage: Storage, name: str, batch_id: str, column: str) -> dict[str, int]:
    table = storage.read_arrow(name, where=("batch_id", batch_id))
    grouped = table.group_by(column).aggregate([(column, "count")]).to_pylist()
    return {str(r[column]): int(r[f"{column}_count"])
            for r in sorted(grouped, key=lambda r: str(r[column]))}
