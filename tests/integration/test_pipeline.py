from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from yws.datasets.synthetic import generate
from yws.model.pipeline import UNKNOWN, build_pipeline, category_labels, coefficients
from yws.training.rows import load_training_rows


def _numpy_probabilities(model, df, coefs):
    """sigmoid(x . beta + b) on the assembled (pre-scaling) vectors, in NumPy."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    out = model.transform(df).select(
        vector_to_array(F.col("features__vec")).alias("x"),
        vector_to_array(F.col("probability"))[1].alias("p"),
    ).toArrow()
    x = np.array(out.column("x").to_pylist())
    z = x @ np.array(coefs.values) + coefs.intercept
    return 1.0 / (1.0 + np.exp(-z)), out.column("p").to_numpy()


@pytest.mark.parametrize("scale", [False, True])
def test_probabilities_equal_numpy_from_the_coefficients(spark, spec, scale):
    s = spec.with_params({"scaleFeatures": str(scale), "standardization": str(not scale)})
    df = spark.createDataFrame(generate(2000, dt.date(2026, 1, 31)))
    model = build_pipeline(s).fit(df)
    coefs = coefficients(model, df, s)
    expected, got = _numpy_probabilities(model, df, coefs)
    assert np.max(np.abs(expected - got)) < 1e-9


def test_expanded_names_and_categories(spark, spec):
    df = spark.createDataFrame(generate(2000, dt.date(2026, 1, 31)))
    model = build_pipeline(spec).fit(df)
    coefs = coefficients(model, df, spec)
    assert coefs.names[:9] == spec.feature_names[:9]  # numeric and boolean first, in order
    assert f"region={UNKNOWN}" in coefs.names
    assert {"region=west", "product_tier=platinum", "channel=phone"} <= set(coefs.names)
    assert all(math.isfinite(v) for v in coefs.values)
    labels = category_labels(model)
    assert sorted(labels["product_tier"]) == ["bronze", "gold", "platinum", "silver"]


@pytest.mark.slow
def test_training_recovers_the_generating_coefficients(spark, settings, storage, spec):
    """Unregularised fit on clean data lands near the known model (level differences for
    categoricals, whose one-hot columns are collinear with the intercept)."""
    from yws.datasets.ingest import write_snapshot
    from yws.datasets.synthetic import true_coefficients

    day = dt.date(2026, 1, 31)
    write_snapshot(storage, generate(60_000, day, missing=False), settings.features,
                   "as_of_date", day)
    s = spec.with_params({"regParam": "0", "maxIter": "200", "tol": "1e-8"})
    with load_training_rows(spark, storage, settings, s, None) as rows:
        usable = rows.usable
        model = build_pipeline(s).fit(usable)
    got = dict(zip(coefficients(model, usable, s).names, coefficients(model, usable, s).values,
                   strict=True))
    truth = true_coefficients()
    for name in ("balance_utilization", "late_payments_12m", "support_calls_90d",
                 "has_autopay", "is_business", "tenure_months", "days_past_due_avg"):
        assert got[name] == pytest.approx(truth[name], abs=max(0.25 * abs(truth[name]), 0.01)), name
    for cat, ref, other in (("product_tier", "bronze", "platinum"), ("region", "north", "west"),
                            ("channel", "web", "phone")):
        diff = got[f"{cat}={other}"] - got[f"{cat}={ref}"]
        true_diff = truth[f"{cat}={other}"] - truth[f"{cat}={ref}"]
        assert diff == pytest.approx(true_diff, abs=0.15), cat


@pytest.mark.parametrize(("anomalies", "collide"), [(0, False), (8, False), (0, True), (8, True)])
def test_training_rows_account_for_every_row_whichever_duplicate_check_runs(
        spark, settings, storage, spec, monkeypatch, anomalies, collide):
    """Training checks repeated (entity, date) keys by a hash in its cached rows and, when a
    hash repeats, by the keys themselves. Repeated keys are left out as failed checks either
    way; a hash shared by distinct keys (forced here: every row one hash) costs time, never a
    row; and nothing stays cached afterwards. The oracle is the exact check that the scoring
    job runs (``with_reason`` on the raw rows)."""
    from pyspark.sql import functions as F

    from yws.contract.quality import REASON_COL, with_reason
    from yws.datasets.ingest import write_snapshot
    from yws.training import rows as training_rows

    day = dt.date(2026, 2, 28)
    snap = generate(2000, day, anomalies=anomalies)
    write_snapshot(storage, snap, settings.features, "as_of_date", day)
    if collide:
        monkeypatch.setattr(training_rows, "key_hash", lambda spec: F.lit(7).cast("long"))
    raw = spark.createDataFrame(snap)
    exact = with_reason(raw, spec)
    failed = exact.where(F.col(REASON_COL).isNotNull()).count()
    unlabelled = exact.where(F.col(REASON_COL).isNull() & F.col(spec.label).isNull()).count()
    assert (failed > 0) == (anomalies > 0)

    with load_training_rows(spark, storage, settings, spec, day) as rows:
        assert rows.read == snap.num_rows
        assert rows.excluded == {training_rows.FAILED_CHECKS: failed,
                                 training_rows.UNLABELLED: unlabelled}
        assert rows.usable.count() == rows.used == snap.num_rows - failed - unlabelled
        assert training_rows.KEY_HASH not in rows.usable.columns
        train_df, test_df = rows.split()
        assert train_df.count() + test_df.count() == rows.used
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()
