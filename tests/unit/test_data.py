from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow.compute as pc
import pytest

from yws.contract.spec import load_spec
from yws.datasets.synthetic import MISSING_RATES, SCHEMA, generate, true_coefficients

DAY = dt.date(2026, 10, 1)


def test_snapshot_matches_the_default_spec():
    table = generate(20_000, DAY)
    assert table.schema == SCHEMA
    spec = load_spec()
    assert set(table.column_names) == {spec.entity_key, spec.as_of_column, spec.label,
                                       *spec.feature_names}
    positives = pc.mean(table[spec.label]).as_py()
    assert 0.05 <= positives <= 0.15
    for name, rate in MISSING_RATES.items():
        share = table[name].null_count / table.num_rows
        assert abs(share - rate) < 0.01, name
    # columns the spec quarantines on null are never null in clean data
    for f in spec.features:
        if f.quarantine_nulls:
            assert table[f.name].null_count == 0, f.name


def test_reproducible_per_seed_and_date():
    assert generate(500, DAY).equals(generate(500, DAY))
    assert not generate(500, DAY).equals(generate(500, DAY, seed=8))
    later = generate(500, DAY + dt.timedelta(days=1))
    assert later["customer_id"].equals(generate(500, DAY)["customer_id"])


def test_options():
    assert generate(100, DAY, labeled=False)["defaulted_90d"].null_count == 100
    clean = generate(2000, DAY, missing=False)
    assert sum(clean[c].null_count for c in clean.column_names) == 0


def test_anomalies_are_one_of_each_fault():
    table = generate(1000, DAY, missing=False, anomalies=8)
    assert table["balance_utilization"].null_count == 2
    assert int(np.isinf(table["credit_limit"].to_numpy()).sum()) == 2
    assert table["product_tier"].to_pylist().count("diamond") == 2
    assert pc.count_distinct(table["customer_id"]).as_py() == 998


def test_bad_arguments():
    with pytest.raises(ValueError, match="rows must be at least 1"):
        generate(0, DAY)
    with pytest.raises(ValueError, match="anomalies"):
        generate(10, DAY, anomalies=9)


def test_true_coefficients_use_expanded_names():
    coefs = true_coefficients()
    assert coefs["region=west"] == 0.3
    assert coefs["has_autopay"] == -0.6
