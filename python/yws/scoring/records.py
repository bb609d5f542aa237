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
from yws.contract.spec import Feature, Spec
from yws.errors import InvalidValueError
from yws.model.evaluator import OUTPUTS as OUTPUTS
from yws.model.evaluator import REASON_OUTPUTS as REASON_OUTPUTS
from yws.model.evaluator import RowContract
from yws.model.families import FamilyModel
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


def _column(values: Sequence[Any], f: Feature, errors: list[str | None]) -> pa.Array:
    """One feature's values (JSON-like, in row order) as its Arrow type; a value that cannot
    be taken is left null and its row's reason appended to ``errors``.

    A column whose values are all of the feature's own Python type (or None) is handed to
    Arrow whole: :func:`_value` would return each of them unchanged (an ``int`` of a numeric
    feature becomes ``float(value)``, as there). Any other column goes value by value."""
    kind = f.kind
    types = set(map(type, values))
    if kind.categorical:
        plain = types <= _TEXT
    elif kind.checks_finite:
        plain = types <= _FLOAT
        if not plain and types <= _NUMBER:
            values = [v if v is None else float(v) for v in values]
            plain = True
    else:
        plain = types <= _BOOL
    if plain:
        return pa.array(values, kind.arrow())
    taken = []
    for i, raw in enumerate(values):
        value, why = _value(raw, kind, f.name)
        if why is not None:
            errors[i] = why if errors[i] is None else f"{errors[i]}; {why}"
        taken.append(value)
    return pa.array(taken, kind.arrow())


_NONE = type(None)
_TEXT = frozenset({str, _NONE})
_FLOAT = frozenset({float, _NONE})
_NUMBER = frozenset({float, int, _NONE})  # not bool: True is not a number here
_BOOL = frozenset({bool, _NONE})


def _refuse_missing(present: Any, spec: Spec) -> None:
    missing = [n for n in spec.feature_names if not present(n)]
    if missing:
        raise InvalidValueError(
            f"the rows have no column {', '.join(missing)}: send every feature the model "
            f"reads ({', '.join(spec.feature_names)}); a missing value is null")


def table_from_records(records: Sequence[Mapping[str, Any]], spec: Spec,
                       ) -> tuple[pa.Table, list[str | None]]:
    """The spec's feature columns of ``records`` (JSON-like values), typed; and per row, why
    a value could not be taken (that value is left null). A missing feature is refused for
    the whole request; columns the model does not read are ignored."""
    if records:
        _refuse_missing(lambda n: any(n in r for r in records), spec)
    errors: list[str | None] = [None] * len(records)
    columns = {f.name: _column([row.get(f.name) for row in records], f, errors)
               for f in spec.features}
    return pa.table(columns), errors


def table_from_columns(columns: Mapping[str, Sequence[Any]], rows: int, spec: Spec,
                       ) -> tuple[pa.Table, list[str | None]]:
    """:func:`table_from_records` of rows sent column-wise: ``columns`` maps each column name
    to its ``rows`` values, in row order. The same table and errors as for the same rows as
    records, without building them."""
    if rows:
        _refuse_missing(columns.__contains__, spec)
    errors: list[str | None] = [None] * rows
    table = {f.name: _column(columns[f.name] if rows else [], f, errors)
             for f in spec.features}
    return pa.table(table), errors


def score_table(model: FamilyModel, spec: Spec, table: pa.Table,
                errors: Sequence[str | None] | None = None, *,
                reasons: bool = False) -> pa.Table:
    """Score every row of ``table`` (the spec's feature columns): ``OUTPUTS`` per row, in
    order, then with ``reasons`` each row's reason codes (``REASON_OUTPUTS``). ``errors``:
    rows already refused (a value of the wrong type). The logged model's pyfunc runs the same
    code on the same contract (:func:`yws.model.flavor.row_contract`)."""
    return _contract(spec).score(model, table, list(errors) if errors is not None else None,
                                 reasons=reasons)


_contracts: list[tuple[Spec, RowContract]] = []


def _contract(spec: Spec) -> RowContract:
    """:func:`row_contract` of ``spec``, compiled once per spec (the last few kept): a spec is
    frozen, and compiling it costs as much as scoring a row."""
    for known, contract in _contracts:
        if known is spec:
            return contract
    contract = row_contract(spec)
    _contracts[:] = [(spec, contract), *_contracts[:3]]
    return contract


def score_records(model: FamilyModel, spec: Spec, records: Sequence[Mapping[str, Any]], *,
                  reasons: bool = False) -> list[dict[str, Any]]:
    """Score JSON-like rows: one ``OUTPUTS`` dict per row, in order (and with ``reasons``,
    ``REASON_OUTPUTS`` after them)."""
    return _outputs(model, spec, *table_from_records(records, spec), reasons=reasons)


def score_columns(model: FamilyModel, spec: Spec, columns: Mapping[str, Sequence[Any]],
                  rows: int, *, reasons: bool = False) -> list[dict[str, Any]]:
    """:func:`score_records` of rows sent column-wise (see :func:`table_from_columns`)."""
    return _outputs(model, spec, *table_from_columns(columns, rows, spec), reasons=reasons)


def _outputs(model: FamilyModel, spec: Spec, table: pa.Table, errors: list[str | None], *,
             reasons: bool = False) -> list[dict[str, Any]]:
    out = score_table(model, spec, table, errors, reasons=reasons).to_pylist()
    finite = ("probability", *(n for n in REASON_OUTPUTS if n.endswith("_contribution"))) \
        if reasons else ("probability",)
    for row in out:  # JSON has no NaN: a number is finite or absent
        for name in finite:
            x = row[name]
            if x is not None and not math.isfinite(x):
                row[name] = None
    return out
