"""The arrow engine against Spark's own transform, to 1e-9, on every variant it implements."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from yws.datasets.synthetic import generate
from yws.model.evaluator import ArrowModel, InvalidInputError, UnsupportedModelError
from yws.model.pipeline import build_pipeline

TRAIN, SCORE = dt.date(2026, 8, 31), dt.date(2026, 11, 30)


def spark_probabilities(model, df):
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    out = model.transform(df).select(vector_to_array(F.col("probability"))[1].alias("p"),
                                     F.col("prediction").cast("int").alias("y")).toArrow()
    return out.column("p").to_numpy(), out.column("y").to_numpy()


def scoring_rows(unseen: bool = True) -> pa.Table:
    """Missing values where the spec imputes or keeps them, and unseen categories."""
    table = generate(1500, SCORE, seed=11, labeled=False)
    if unseen:
        region = table["region"].to_pylist()
        region[::50] = ["atlantis"] * len(region[::50])
        table = table.set_column(table.schema.get_field_index("region"), "region",
                                 pa.array(region, pa.string()))
    return table


@pytest.mark.parametrize("params", [
    {},
    {"scaleFeatures": "true"},
    {"scaleFeatures": "true", "standardization": "false"},
    {"fitIntercept": "false"},
    {"standardization": "false", "regParam": "0.05", "elasticNetParam": "1.0"},
], ids=["default", "scaler", "scaler-no-standardization", "no-intercept", "l1-sparse"])
def test_probabilities_equal_spark(spark, spec, tmp_path, params):
    s = spec.with_params(params)
    model = build_pipeline(s).fit(spark.createDataFrame(generate(3000, TRAIN)))
    model.write().overwrite().save(str(tmp_path / "model"))
    engine = ArrowModel.load(tmp_path / "model")
    rows = scoring_rows()
    want_p, want_y = spark_probabilities(model, spark.createDataFrame(rows))
    got_p, got_y = engine.predict(rows)
    assert np.max(np.abs(got_p - want_p)) < 1e-9
    assert (got_y == want_y).all()
    batch = rows.to_batches(max_chunksize=400)[1]  # record batches work the same
    assert np.max(np.abs(engine.predict(batch)[0] - want_p[400:800])) < 1e-9
    same_reasons(model, spark.createDataFrame(rows), engine, rows, s)


def same_reasons(model, df, engine: ArrowModel, rows: pa.Table, spec) -> None:
    """Reason codes: the Spark engine's expressions and the arrow engine give the same names
    and contributions to 1e-9, row by row; and on a few rows Spark's equal the formula written
    from the fitted Spark model itself: coefficient on the unscaled vector x (x - the scaler's
    training mean), summed per feature, the top three positive ones."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from yws.model.evaluator import REASON_OUTPUTS
    from yws.model.pipeline import FEATURES_COL, coefficients
    from yws.scoring.spark import REASON_VECTOR, reason_columns

    plan = engine.reason_plan
    assert plan is not None  # every pipeline keeps its training means (a StandardScaler)
    got = model.transform(df).withColumn(
        REASON_VECTOR, vector_to_array(F.col(plan.features_column))).select(
        *reason_columns(plan), vector_to_array(F.col(FEATURES_COL)).alias("x")).toArrow()
    _, _, want = engine.explain(rows)
    assert want is not None
    for k in (1, 2, 3):
        assert got[f"reason_{k}"].to_pylist() == want[f"reason_{k}"].to_pylist()
        a = got[f"reason_{k}_contribution"].to_numpy(zero_copy_only=False)
        b = want[f"reason_{k}_contribution"].to_numpy(zero_copy_only=False)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) < 1e-9
    assert got["reason_1"].null_count < len(rows) // 2  # most rows have reasons
    assert list(got.column_names[:6]) == list(REASON_OUTPUTS)
    coefs = coefficients(model, df, spec)
    mean = model.stages[-2].mean.toArray()  # the StandardScalerModel's training means
    categorical = {n.split("=", 1)[0] for n in coefs.names if "=" in n}
    for i in range(0, len(rows), 150):
        x = np.array(got["x"][i].as_py())
        by_feature: dict[str, float] = {}
        for name, c, xj, mj in zip(coefs.names, coefs.values, x, mean, strict=True):
            feature = name.split("=", 1)[0]
            by_feature[feature] = by_feature.get(feature, 0.0) + c * (xj - mj)
        level = {n.split("=", 1)[0]: n for n, xj in zip(coefs.names, x, strict=True)
                 if "=" in n and xj == 1.0}  # the row's level of each categorical feature
        named = {(level.get(f, f"{f}=<unknown>") if f in categorical else f): v
                 for f, v in by_feature.items()}
        top = sorted(((v, n) for n, v in named.items() if v > 0), key=lambda t: -t[0])[:3]
        for k in range(3):
            name = got[f"reason_{k + 1}"][i].as_py()
            value = got[f"reason_{k + 1}_contribution"][i].as_py()
            if k < len(top):
                assert name == top[k][1] and abs(value - top[k][0]) < 1e-9, (i, k)
            else:
                assert name is None and value is None, (i, k)


def test_unseen_categories_under_handle_invalid_error(spark, tmp_path):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler

    df = spark.createDataFrame(generate(800, TRAIN, missing=False))
    model = Pipeline(stages=[
        StringIndexer(inputCol="region", outputCol="r_idx", handleInvalid="error"),
        OneHotEncoder(inputCol="r_idx", outputCol="r_oh", handleInvalid="error"),
        VectorAssembler(inputCols=["r_oh", "balance_utilization"], outputCol="f"),
        LogisticRegression(featuresCol="f", labelCol="defaulted_90d"),
    ]).fit(df)
    model.write().overwrite().save(str(tmp_path / "m"))
    engine = ArrowModel.load(tmp_path / "m")
    clean = generate(300, SCORE, missing=False)
    want, _ = spark_probabilities(model, spark.createDataFrame(clean))
    assert np.max(np.abs(engine.predict(clean)[0] - want)) < 1e-9  # dropLast, error mode
    with pytest.raises(InvalidInputError, match=r"region: \d+ value\(s\) are null or unseen"):
        engine.predict(scoring_rows().slice(0, 1000))
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    with pytest.raises((PySparkException, Py4JJavaError)):  # Spark refuses the same rows
        spark_probabilities(model, spark.createDataFrame(scoring_rows().slice(0, 1000)))


def test_a_stage_it_does_not_implement_is_refused(spark, tmp_path):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import Bucketizer, VectorAssembler

    df = spark.createDataFrame(generate(500, TRAIN, missing=False))
    model = Pipeline(stages=[
        Bucketizer(inputCol="tenure_months", outputCol="t", splits=[0, 12, 60, 1000]),
        VectorAssembler(inputCols=["t"], outputCol="f"),
        LogisticRegression(featuresCol="f", labelCol="defaulted_90d"),
    ]).fit(df)
    model.write().overwrite().save(str(tmp_path / "m"))
    with pytest.raises(UnsupportedModelError, match="Bucketizer, which the arrow engine does "
                                                    "not implement"):
        ArrowModel.load(tmp_path / "m")


def test_null_reaching_the_assembler_is_refused(spark, spec, tmp_path):
    model = build_pipeline(spec).fit(spark.createDataFrame(generate(1000, TRAIN)))
    model.write().overwrite().save(str(tmp_path / "m"))
    rows = generate(100, SCORE, anomalies=4)  # a null in a column the spec quarantines
    with pytest.raises(InvalidInputError, match="balance_utilization__num"):
        ArrowModel.load(tmp_path / "m").predict(rows)


def test_the_registered_model_serves_through_pyfunc_without_spark(trained_home, tmp_path):
    """mlflow.pyfunc loads the arrow engine: run in a process where pyspark cannot import."""
    import json
    import subprocess
    import sys

    import mlflow

    from yws.model import registry

    registry.configure(trained_home)
    version = registry.resolve(trained_home, "champion")
    uri = f"models:/{trained_home.model_name}/{version.version}"
    rows = generate(200, SCORE, labeled=False)
    rows.to_pandas().to_parquet(tmp_path / "rows.parquet")
    expected, _, why = ArrowModel.from_registry(uri).explain(rows)
    script = f"""
import sys, json
sys.modules["pyspark"] = None  # any import of pyspark now fails
sys.modules["yws"] = None  # and of yws: the model carries its pyfunc code
import mlflow, pandas as pd
mlflow.set_tracking_uri({mlflow.get_tracking_uri()!r})
mlflow.set_registry_uri({mlflow.get_registry_uri()!r})
model = mlflow.pyfunc.load_model({uri!r})
frame = pd.read_parquet({str(tmp_path / "rows.parquet")!r})
out = model.predict(frame)
explained = model.predict(frame, params={{"reasons": True}})  # the signature declares it
print(json.dumps([list(out.columns), explained["reason_1"].tolist()]))
print(json.dumps(out["probability"].tolist()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    assert np.max(np.abs(got - expected)) < 1e-12
    columns, reasons = json.loads(done.stdout.strip().splitlines()[-2])
    assert columns == ["probability", "prediction", "band", "error"]  # as before, unasked
    assert why is not None and reasons == why["reason_1"].to_pylist()
