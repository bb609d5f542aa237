"""The row contract logged with each model (yws.model.evaluator.RowContract, compiled from the
spec by yws.model.flavor.row_contract) against on-demand scoring's own rules, typing and bands
(yws.scoring.records, yws.scoring.arrow): the served pyfunc and `yws serve` must not drift.
No model and no Spark: the rules, the typing and the bands alone."""

from __future__ import annotations

import datetime as dt
import json
import math
import random

import numpy as np
import pyarrow as pa
import pytest

from yws.contract.rules import quarantine_rules
from yws.contract.spec import load_spec
from yws.datasets.synthetic import generate
from yws.model.evaluator import RowContract, UnsupportedModelError
from yws.model.flavor import OUTPUT_TYPES, row_contract, signature
from yws.scoring.arrow import bands, reasons
from yws.scoring.records import OUTPUTS, table_from_records

SPEC = load_spec()
CATEGORIES = {"region": ["north", "south", "east", "west"], "product_tier": ["basic", "plus"],
              "channel": ["web", "branch"]}


def nasty_rows(n: int = 400, seed: int = 3) -> list[dict]:
    """Generated rows with every kind of trouble a single row can hold.

    A float NaN goes to numeric features only: in a pandas frame NaN is how a missing value
    of any column shows, so the pyfunc reads it as null where the feature is not numeric;
    JSON rows carry null for that."""
    rows = generate(n, dt.date(2026, 11, 30), seed=seed, labeled=False, anomalies=40).to_pylist()
    rng = random.Random(seed)
    features = SPEC.features
    for row in rows:
        for f in rng.sample(features, 2):
            row[f.name] = rng.choice([
                None, float("inf"), -float("inf"), "NaN", "Infinity", "abc", 7,
                2.5, True, False, "atlantis", "north", "basic", [1], {"a": 1},
                *([float("nan")] if f.kind.checks_finite else [])])
    return rows


def same(a: list, b: list, null_is_nan: bool = False) -> bool:
    def nan(x: object) -> bool:
        return (isinstance(x, float) and math.isnan(x)) or (null_is_nan and x is None)

    return len(a) == len(b) and all(x == y or (x is None and y is None) or (nan(x) and nan(y))
                                    for x, y in zip(a, b, strict=True))


def test_the_contract_is_the_specs_rules_and_bands():
    contract = row_contract(SPEC)
    expected = [r for r in quarantine_rules(SPEC, unseen=True, duplicates=False)
                if r.column != SPEC.entity_key]
    assert [(r.check, r.column) for r in contract.rules] == [(r.check, r.column)
                                                             for r in expected]
    for got, rule in zip(contract.rules, expected, strict=True):
        assert got.before + ("atlantis" if got.check == "unseen" else "") + got.after == \
            rule.reason("atlantis")
    assert contract.band_names == SPEC.bands.NAMES
    assert contract.thresholds == SPEC.bands.thresholds
    assert [f.name for f in contract.features] == SPEC.feature_names
    # what is logged (JSON) reads back as the same contract
    assert RowContract.from_dict(json.loads(json.dumps(contract.to_dict()))) == contract


def test_a_contract_with_a_check_this_code_does_not_know_is_refused():
    logged = row_contract(SPEC).to_dict()
    logged["rules"].append({"check": "negative", "column": "credit_limit", "before": "x",
                            "after": ""})
    with pytest.raises(UnsupportedModelError, match="negative"):
        RowContract.from_dict(logged)


def test_refusals_are_the_batch_jobs_reasons():
    contract = row_contract(SPEC)
    table, _ = table_from_records(nasty_rows(), SPEC)
    rules = [r for r in quarantine_rules(SPEC, unseen=True, duplicates=False)
             if r.column != SPEC.entity_key]
    bad, why = reasons(table, SPEC, CATEGORIES, pa.array([], pa.string()), rules)
    expected: list[str | None] = [None] * table.num_rows
    for i, text in zip(np.nonzero(bad)[0], why, strict=True):
        expected[i] = text
    got = contract.refusals(table, CATEGORIES)
    assert got == expected
    assert sum(t is not None for t in got) > 50  # the rows hold real trouble


def test_typing_is_on_demand_scorings_for_json_rows_and_pandas_frames():
    import pandas as pd

    contract = row_contract(SPEC)
    rows = nasty_rows()
    want_table, want_errors = table_from_records(rows, SPEC)
    for data in (rows, pd.DataFrame(rows)):
        table, errors = contract.typed(data)
        assert errors == want_errors
        assert table.schema == want_table.schema
        for name in SPEC.feature_names:
            assert same(table[name].to_pylist(), want_table[name].to_pylist()), name
    assert sum(e is not None for e in want_errors) > 50
    # a typed frame (as MLflow hands it over after checking the signature) takes the fast way
    clean = generate(300, dt.date(2026, 11, 30), labeled=False).to_pandas()
    table, errors = contract.typed(clean)
    assert errors == [None] * len(clean)
    want, _ = table_from_records(clean.to_dict("records"), SPEC)
    for name in SPEC.feature_names:  # a null numeric of the frame is NaN: the same to the rules
        assert same(table[name].to_pylist(), want[name].to_pylist(), null_is_nan=True), name


def test_bands_are_the_specs_at_every_threshold():
    contract = row_contract(SPEC)
    y, r = SPEC.bands.thresholds
    p = np.array([0.0, np.nextafter(y, 0), y, np.nextafter(y, 1), np.nextafter(r, 0), r, 1.0])
    assert contract.bands(p).to_pylist() == bands(p, SPEC).to_pylist() == \
        [SPEC.bands.band(x) for x in p] == ["GREEN", "GREEN", "YELLOW", "YELLOW", "YELLOW",
                                            "RED", "RED"]


def test_the_signature_names_every_output_the_pyfunc_returns():
    sig = signature(SPEC)
    assert [c.name for c in sig.outputs.inputs] == list(OUTPUTS) == list(OUTPUT_TYPES)
    assert [c.name for c in sig.inputs.inputs] == SPEC.feature_names
    assert not any(c.required for c in [*sig.inputs.inputs, *sig.outputs.inputs])


def test_nan_in_a_pandas_frame_is_a_missing_value_of_any_feature():
    import pandas as pd

    contract = row_contract(SPEC)
    frame = generate(3, dt.date(2026, 11, 30), labeled=False).to_pandas()
    frame["has_autopay"] = pd.Series([True, float("nan"), None], dtype=object)
    frame["region"] = pd.Series(["north", float("nan"), pd.NA], dtype=object)
    table, errors = contract.typed(frame)
    assert errors == [None, None, None]
    assert table["has_autopay"].to_pylist() == [True, None, None]
    assert table["region"].to_pylist() == ["north", None, None]
