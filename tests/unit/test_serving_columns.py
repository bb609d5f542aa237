"""A Model Serving request sent by columns (``dataframe_split``, ``inputs`` as columns) of more
than a coalesced batch's rows goes to Arrow column by column (yws.server.serving_routes.Columns,
yws.scoring.records.table_from_columns), never as one dict per row: the same table, the same
per-row errors and the same refusals as the same rows sent as records. No model, no server: the
parsing and the typing alone (what is typed the same is scored the same)."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from typing import Any

import pyarrow as pa
import pytest

from yws.contract.spec import load_spec
from yws.datasets.synthetic import generate
from yws.errors import InvalidValueError
from yws.scoring.records import table_from_columns, table_from_records
from yws.server.errors import ApiError
from yws.server.serving_routes import BATCHED_ROWS, Columns, inputs, parse

SPEC = load_spec()
NAMES = SPEC.feature_names
# every kind of cell a JSON body can carry, and the ones the server must refuse whole
ODD = [None, True, False, 0, 1, -7, 2**53 + 1, 2**63 + 5, -(2**64), 10**300, 10**400, 0.5,
       -0.0, 1e308, 5e-324, "", "x", "12", "NaN", "Infinity", "-Infinity", "north", "caf\u00e9",
       "a\x00b", [1, 2], [], {"a": 1}, {}]


def json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return value


PLAIN = [v for v in ODD if type(v) in (str, int, float, bool, type(None)) and
         not (type(v) is int and abs(v) > 2**1023)]


def rows(n: int, seed: int, odd: float, pool: list[Any] = ODD) -> list[dict[str, Any]]:
    """n generated rows as a caller sends them, a share ``odd`` of their cells replaced by
    something from ``pool`` (an extra column the model does not read, too)."""
    rng = random.Random(seed)
    out = []
    for r in generate(n, dt.date(2026, 11, 30), seed=seed, labeled=False,
                      anomalies=n // 10).to_pylist():
        row = {k: json_ready(r[k]) for k in NAMES}
        row["extra"] = rng.choice(["a", 1, 2.5, None, True])
        for k in row:
            if rng.random() < odd:
                row[k] = rng.choice(pool)
        out.append(row)
    return out


def as_split(sent: list[dict[str, Any]], columns: list[str]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": columns,
                                "data": [[r[c] for c in columns] for r in sent]}}


def answer(body: bytes) -> tuple[str, Any]:
    """What the server makes of ``body``: ("rows", rows) or ("columns", rows), each cell as
    it is or, for a cell refused for its row, its description; or the 400."""
    try:
        got = inputs(*parse(body))
    except ApiError as e:
        return "refused", (e.status, e.code, e.message)
    if isinstance(got, Columns):
        assert len(set(map(len, got.values.values()))) == 1
        return "columns", [dict(zip(got.values, cells, strict=True))
                           for cells in zip(*got.values.values(), strict=True)]
    return "rows", [{k: v if type(v) in SCALARS else ("refused", repr(v)) for k, v in r.items()}
                    for r in got]


SCALARS = (str, int, float, bool, type(None))


def same_table(a: pa.Table, b: pa.Table) -> bool:
    """The same columns, types and values, NaN for NaN and -0.0 for -0.0."""
    def key(v: Any) -> Any:
        return ("nan",) if isinstance(v, float) and math.isnan(v) else \
            (v, math.copysign(1.0, v)) if isinstance(v, float) else v

    return a.schema == b.schema and all(
        [key(v) for v in a.column(i).to_pylist()] == [key(v) for v in b.column(i).to_pylist()]
        for i in range(a.num_columns))


def typed(got: list[dict[str, Any]] | Columns) -> tuple[pa.Table, list[str | None]] | str:
    try:
        if isinstance(got, Columns):
            return table_from_columns(got.values, got.rows, SPEC)
        return table_from_records(got, SPEC)
    except InvalidValueError as e:
        return str(e)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("odd", "pool"), [(0.0, ODD), (0.05, PLAIN), (0.3, PLAIN), (0.02, ODD),
                                           (0.2, ODD)], ids=["none", "plain", "plain-many",
                                                             "any", "any-many"])
def test_columns_are_the_same_rows_as_records(seed, odd, pool):
    """Each form of the same rows: the same cells (or the same refusal), the same typed table
    and the same per-row errors; the large plain ones go by columns."""
    n = [1, BATCHED_ROWS, BATCHED_ROWS + 1, 300][seed % 4]
    sent = rows(n, seed, odd, pool)
    columns = [*NAMES, "extra"]
    random.Random(seed).shuffle(columns)
    bodies = {
        "records": json.dumps({"dataframe_records": sent}),
        "split": json.dumps(as_split(sent, columns)),
        "inputs": json.dumps({"inputs": {c: [r[c] for r in sent] for c in columns}}),
        # the same body written with every non-ASCII character escaped (\\u...)
        "split_ascii": json.dumps(as_split(sent, columns), ensure_ascii=True),
        "split_utf8": json.dumps(as_split(sent, columns), ensure_ascii=False),
    }
    want_kind, want = answer(bodies["records"].encode())
    for form, body in bodies.items():
        kind, got = answer(body.encode())
        if want_kind == "refused":
            assert (kind, got) == (want_kind, want), form
            continue
        assert kind in ("rows", "columns") and got == want, form
        if form != "records" and n > BATCHED_ROWS and all(
                type(v) in SCALARS and
                not (type(v) is int and abs(v) > 2**1023) for r in sent for v in r.values()):
            assert kind == "columns", form
        table, errors = typed(inputs(*parse(body.encode())))  # type: ignore[misc]
        want_table, want_errors = typed(  # type: ignore[misc]
            inputs(*parse(bodies["records"].encode())))
        assert same_table(table, want_table) and errors == want_errors, form
    if pool is PLAIN and n > BATCHED_ROWS:
        assert want_kind == "rows"
        assert answer(bodies["split"].encode())[0] == "columns"
        assert answer(bodies["inputs"].encode())[0] == "columns"


@pytest.mark.parametrize("bad", [b"1e999", b"-1e999", b'"\\ud800"', b'"x\\udfff"'])
def test_a_cell_that_refuses_the_request_refuses_it_in_every_form(bad):
    """A number past a double or a lone surrogate refuses the whole request, whichever column
    holds it and however the rows are sent, with the first such cell's reason in row order."""
    sent = rows(BATCHED_ROWS + 5, 1, 0.0)
    mark = "MARKMARK"
    sent[30]["extra"] = mark
    sent[31][NAMES[0]] = mark
    for body in (json.dumps({"dataframe_records": sent}),
                 json.dumps(as_split(sent, [*NAMES, "extra"])),
                 json.dumps({"inputs": {c: [r[c] for r in sent] for c in [*NAMES, "extra"]}})):
        kind, got = answer(body.replace(f'"{mark}"', bad.decode()).encode())
        assert kind == "refused" and got[:2] == (400, "BAD_REQUEST")
        assert ("out of range" if b"e999" in bad else "surrogate") in got[2]


def test_a_feature_missing_from_the_columns_is_the_same_400():
    sent = rows(BATCHED_ROWS + 10, 2, 0.0)
    columns = [c for c in NAMES if c != NAMES[3]]
    got = inputs(*parse(json.dumps(as_split(sent, columns)).encode()))
    assert isinstance(got, Columns)
    by_rows = inputs(*parse(json.dumps(
        {"dataframe_records": [{c: r[c] for c in columns} for r in sent]}).encode()))
    assert typed(got) == typed(by_rows)  # the same refusal
    assert isinstance(typed(got), str) and NAMES[3] in str(typed(got))


def test_columns_without_names_are_rows():
    """``{"columns": [], "data": [[], ...]}``: rows with no cells, refused as records are."""
    body = json.dumps({"dataframe_split": {"columns": [], "data": [[]] * 100}}).encode()
    kind, got = answer(body)
    assert kind == "rows" and got == [{}] * 100
    assert isinstance(typed(inputs(*parse(body))), str)
