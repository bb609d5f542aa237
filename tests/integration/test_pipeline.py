from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from yws.datasets.synthetic import generate
from yws.model.pipeline import UNKNOWN, build_pipeline, category_labels, coefficients, fit
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


@pytest.mark.parametrize("scale", [False, True])
def test_fit_with_cached_vectors_is_spark_pipeline_fit(spark, spec, scale):
    """`fit` caches the assembled vectors for the scaler's and the regression's passes: the
    same stages and the same fit, and nothing is left cached; without a cache it is the same
    fit too. Not bit for bit: Spark's driver adds the partitions' partial sums in the order
    their tasks end, so two runs of `Pipeline.fit` itself differ in the last bits."""
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.feature import StandardScalerModel

    def close(a, b):
        return np.allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)

    s = spec.with_params({"scaleFeatures": str(scale), "standardization": str(not scale)})
    df = spark.createDataFrame(generate(4000, dt.date(2026, 1, 31))).repartition(3)
    persisted = len(spark.sparkContext._jsc.getPersistentRDDs())
    expected = build_pipeline(s).fit(df)
    asked: list[list[str]] = []

    def caching(rows):
        asked.append(rows.columns)
        return rows.cache()

    for cache in (caching, lambda rows: None):
        got = fit(build_pipeline(s), df, cache)
        assert len(spark.sparkContext._jsc.getPersistentRDDs()) == persisted
        assert asked == [["features__vec", s.label]]  # the vectors and the label, once
        assert [type(t) for t in got.stages] == [type(t) for t in expected.stages]
        lr, lr_expected = got.stages[-1], expected.stages[-1]
        assert isinstance(lr, LogisticRegressionModel)
        assert close(lr.coefficients.toArray(), lr_expected.coefficients.toArray())
        assert close(lr.intercept, lr_expected.intercept)
        scaler = next(t for t in got.stages if isinstance(t, StandardScalerModel))
        scaler_expected = next(t for t in expected.stages if isinstance(t, StandardScalerModel))
        assert close(scaler.mean.toArray(), scaler_expected.mean.toArray())
        assert close(scaler.std.toArray(), scaler_expected.std.toArray())
        assert category_labels(got) == category_labels(expected)
        assert coefficients(got, df, s).names == coefficients(expected, df, s).names
        p = [v[1] for v in got.transform(df).select("probability").toPandas()["probability"]]
        p_expected = [v[1] for v in
                      expected.transform(df).select("probability").toPandas()["probability"]]
        assert close(p, p_expected)


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
