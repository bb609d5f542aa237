"""On-demand scoring of rows a caller sends (a Model Serving invocation, ``ai_query``): the
batch job's model, rules and bands, with a clear error per refused row.

A row is refused for exactly the reasons the batch job would quarantine it (the rules of
:mod:`yws.contract.rules` on the features; an entity key and duplicates are the batch's
concern, not a single row's), plus a value of the wrong type. A refused row gets no
probability — never a silent one — and says why in ``error``. Rows that pass are scored by
the same evaluator as the arrow engine, so their probabilities are the batch job's, bit for
bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from yws.contract.features import FeatureType
from yws.contract.spec import Spec
from yws.errors import InvalidValueError
from yws.model.evaluator import OUTPUTS as OUTPUTS
from yws.model.evaluator import ArrowModel
from yws.model.flavor import row_contract


def _value(raw: Any, kind: FeatureType, name: str) -> tuple[Any, str | None]:
    """(the value as the feature's type, or None with why it cannot be)."""
    if raw is None:
        return None, None
    if kind.categorical:
        if isinstance(raw, str):
            return raw, None
        return None, f"{name}: {raw!r} is not a category name (text)"
    if kind.checks_finite:  # numeric
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            if isinstance(raw, str) and raw in ("NaN", "Infinity", "-Infinity"):
                return float(raw.replace("Infinity", "inf")), None
            return None, f"{name}: {raw!r} is not a number"
        return float(raw), None
    if isinstance(raw, bool):
        return raw, None
    return None, f"{name}: {raw!r} is not true or false"


def table_from_records(records: Sequence[Mapping[str, Any]], spec: Spec,
                       ) -> tuple[pa.Table, list[str | None]]:
    """The spec's feature columns of ``records`` (JSON-like values), typed; and per row, why
    a value could not be taken (that value is left null). A missing feature is refused for
    the whole request; columns the model does not read are ignored."""
    names = spec.feature_names
    if records:
        missing = [n for n in names if not any(n in r for r in records)]
        if missing:
            raise InvalidValueError(
                f"the rows have no column {', '.join(missing)}: send every feature the model "
                f"reads ({', '.join(names)}); a missing value is null")
    errors: list[str | None] = [None] * len(records)
    columns = {}
    for f in spec.features:
        values = []
        for i, row in enumerate(records):
            value, why = _value(row.get(f.name), f.kind, f.name)
            if why is not None:
                errors[i] = why if errors[i] is None else f"{errors[i]}; {why}"
            values.append(value)
        columns[f.name] = pa.array(values, f.kind.arrow())
    return pa.table(columns), errors


def score_table(model: ArrowModel, spec: Spec, table: pa.Table,
                errors: Sequence[str | None] | None = None) -> pa.Table:
    """Score every row of ``table`` (the spec's feature columns): ``OUTPUTS`` per row, in
    order. ``errors``: rows already refused (a value of the wrong type). The logged model's
    pyfunc runs the same code on the same contract (:func:`yws.model.flavor.row_contract`)."""
    return row_contract(spec).score(model, table, list(errors) if errors is not None else None)


def score_records(model: ArrowModel, spec: Spec,
                  records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Score JSON-like rows: one ``OUTPUTS`` dict per row, in order."""
    table, errors = table_from_records(records, spec)
    out = score_table(model, spec, table, errors).to_pylist()
    for row in out:  # JSON has no NaN: a probability is finite or absent
        p = row["probability"]
        if p is not None and not math.isfinite(p):
            row["probability"] = None
    return out
