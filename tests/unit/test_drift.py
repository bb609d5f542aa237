"""The drift math (yws.monitoring): PSI, bins, statuses, the baseline file, the drift option."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest

from yws.contract.spec import load_spec
from yws.datasets.synthetic import generate, parse_drift
from yws.errors import InvalidValueError
from yws.monitoring import baseline as bl
from yws.monitoring.drift import (
    ALERT,
    EPSILON,
    NO_BASELINE,
    OK,
    WARN,
    by_threshold,
    compare,
    psi,
)
from yws.monitoring.profile import (
    CATEGORICAL,
    NUMERIC,
    Binning,
    Counts,
    Plan,
    Profile,
    count_column,
    count_table,
    plain_plan,
)

SPEC = load_spec()


def test_psi_of_a_hand_computed_example():
    # shares e = (0.5, 0.3, 0.2), a = (0.3, 0.3, 0.4):
    # (0.3-0.5) ln(0.3/0.5) + 0 + (0.4-0.2) ln(0.4/0.2) = 0.2 ln(5/3) + 0.2 ln 2
    assert psi([50, 30, 20], [30, 30, 40]) == pytest.approx(
        0.2 * math.log(5 / 3) + 0.2 * math.log(2), abs=1e-12)
    assert psi([1, 1], [5, 5]) == 0.0  # counts are made shares first
    # an empty cell is floored at EPSILON: large, finite
    assert psi([100, 0], [50, 50]) == pytest.approx(
        (0.5 - 1) * math.log(0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON))
    assert math.isnan(psi([0, 0], [1, 2]))
    with pytest.raises(ValueError, match="3 baseline cells against 2"):
        psi([1, 2, 3], [1, 2])


def test_status_thresholds_are_inclusive_at_the_upper_band():
    assert [by_threshold(v, 0.1, 0.25) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        OK, OK, WARN, WARN, ALERT, ALERT]
    assert by_threshold(None, 0.1, 0.25) == OK


def test_numeric_bins_ties_nulls_and_infinities():
    x = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4, np.nan], dtype=np.float64)
    edges = bl.edges(x)
    assert edges == tuple(sorted(set(edges)))  # deciles tied at 0 are merged
    assert edges[0] == 0.0
    b = Binning("x", NUMERIC, edges=(0.0, 1.0, 2.0))
    col = pa.array([-1.0, 0.0, 0.5, 1.0, 2.0, float("inf"), float("-inf"), None, float("nan")])
    c = count_column(b, col)
    # bin i holds the values reaching i edges: < 0 | [0, 1) | [1, 2) | >= 2
    assert c.values == [2, 2, 1, 2] and c.nulls == 2 and c.rows == 9
    assert b.labels() == ["< 0", "[0, 1)", "[1, 2)", ">= 2"]


def test_levels_nulls_unseen_and_booleans():
    b = Binning("region", CATEGORICAL, levels=("north", "south"))
    c = count_column(b, pa.array(["north", None, "mars", "south", "north"]))
    assert (c.values, c.nulls, c.unseen) == ([2, 1], 1, 1)
    flags = plain_plan(SPEC, {}).features[SPEC.feature_names.index("has_autopay")]
    c = count_column(flags, pa.array([True, False, None, True]))
    assert (c.values, c.nulls) == ([1, 2], 1)


def test_baseline_round_trips_and_plans_the_spec(tmp_path):
    table = generate(400, dt.date(2026, 1, 1))
    p = np.random.default_rng(1).random(400) * 0.6
    base = bl.compute(table, p, SPEC, {"region": ["north", "south", "east", "west", "central"],
                                       "product_tier": ["bronze", "silver", "gold", "platinum"],
                                       "channel": ["web", "branch", "phone"]})
    assert base.rows == 400 and sum(base.bands.values()) == 400
    assert sum(base.score.counts.values) == 400 and len(base.score.binning.edges) == 9
    assert base.features["region"].counts.nulls == table["region"].null_count
    folder = tmp_path / "model"
    folder.mkdir()
    assert bl.load(folder) is None  # a version without the file has no baseline
    assert base.save(folder) == folder
    again = bl.load(folder)
    assert again == base
    plan = again.plan(SPEC)
    assert [b.name for b in plan.features] == SPEC.feature_names
    # the batch's counts against itself: no drift at all
    drift = compare(plan, Profile(count_table(plan, table).features, base.score.counts),
                    again, base.bands)
    assert drift.status == OK and all(r.psi == 0.0 for r in drift.rows)
    (folder / bl.BASELINE_FILE).write_text('{"format": 99}')
    with pytest.raises(bl.BaselineError, match="format 99"):
        bl.load(folder)


def test_without_a_baseline_only_rates_are_kept():
    plan = plain_plan(SPEC, {"product_tier": ["bronze", "silver"]})
    table = generate(50, dt.date(2026, 1, 1))
    drift = compare(plan, count_table(plan, table), None, {"GREEN": 50})
    assert drift.status == NO_BASELINE and drift.worst_feature is None
    tier = drift.row("product_tier")
    assert tier.psi is None and tier.status == NO_BASELINE
    assert tier.unseen_rate == pytest.approx(
        sum(v not in ("bronze", "silver") for v in table["product_tier"].to_pylist()) / 50)
    assert {r.feature for r in drift.rows} == set(SPEC.feature_names)  # no score, no bands


def test_null_and_unseen_rates_raise_the_status_on_their_own():
    b = Binning("region", CATEGORICAL, levels=("a", "b"))
    plan = Plan((b,))
    base = bl.Baseline({"region": bl.Reference(b, Counts([500, 500]))},
                       bl.Reference(Binning("__score__", "score"), Counts([1])), {}, 1000)
    # 1% unseen: PSI is small (0.05) but the unseen rate alone is an ALERT
    drift = compare(plan, Profile({"region": Counts([495, 495], 0, 10)}), base, {})
    assert drift.row("region").psi < 0.1 and drift.row("region").status == ALERT
    # 3 points more nulls: WARN
    drift = compare(plan, Profile({"region": Counts([485, 485], 30, 0)}), base, {})
    assert drift.row("region").status == WARN


def test_the_drift_option_parses_checks_and_shifts():
    assert parse_drift("balance_utilization=+0.3, region") == {
        "balance_utilization": "+0.3", "region": None}
    for bad, message in (("income=+1", "not a feature"), ("tenure_months=lots", "signed number"),
                         ("has_autopay=maybe", "true or false"), ("region=", "needs a level"),
                         (",", "names no feature")):
        with pytest.raises(InvalidValueError, match=message):
            parse_drift(bad)
    day = dt.date(2026, 3, 1)
    plain = generate(2000, day)
    shifted = generate(2000, day, drift=parse_drift("balance_utilization=+0.3,region"))
    assert shifted["tenure_months"].equals(plain["tenure_months"])  # the others are untouched
    assert shifted["channel"].equals(plain["channel"])
    delta = np.asarray(shifted["balance_utilization"]) - np.asarray(plain["balance_utilization"])
    assert np.allclose(delta, 0.3)
    central = [v == "central" for v in shifted["region"].to_pylist()]
    assert 0.5 < np.mean(central) < 0.65  # half the rows moved to the rarest level
