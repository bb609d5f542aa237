"""Run by test_connect.py in its own process: the pipeline through a local Spark Connect server.

Spark Connect is what serverless runs; a fit and transform that work here use nothing a
Connect session refuses. Prints one JSON object with what the test checks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def main() -> int:
    from pyspark.sql import SparkSession

    from yws.contract.quality import REASON_COL, with_reason
    from yws.contract.spec import load_spec
    from yws.datasets.synthetic import generate
    from yws.model.pipeline import build_pipeline, category_labels, coefficients
    from yws.training.evaluation import metrics, scored_arrays
    from yws.training.rows import split

    spark = (SparkSession.builder.remote("local[2]")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.ansi.enabled", "true").getOrCreate())
    spec = load_spec().with_params({"maxIter": "25", "tol": "1e-6"})
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    df = with_reason(spark.createDataFrame(generate(rows, dt.date(2026, 8, 31), anomalies=8)),
                     spec)
    quarantined = df.where(df[REASON_COL].isNotNull()).count()
    usable = df.where(df[REASON_COL].isNull()).drop(REASON_COL)
    train_df, test_df = split(usable, spec)
    model = build_pipeline(spec).fit(train_df)
    coefs = coefficients(model, train_df, spec)
    y, p = scored_arrays(model, test_df, spec.label)

    # A pipeline saved over Connect (pyspark writes its metadata) loads in the arrow engine.
    from pyspark.ml.functions import vector_to_array

    from yws.model.evaluator import ArrowModel

    saved = tempfile.mkdtemp(prefix="yws-connect-model-")
    model.write().overwrite().save(saved)
    spark_p = model.transform(test_df).select(
        spec.entity_key, vector_to_array("probability")[1].alias("p")).toArrow()
    arrow_p, _ = ArrowModel.load(saved).predict(test_df.toArrow())
    by_id = dict(zip(test_df.select(spec.entity_key).toArrow().column(0).to_pylist(), arrow_p,
                     strict=True))
    arrow_diff = max(abs(got - by_id[key]) for key, got in zip(
        spark_p.column(0).to_pylist(), spark_p.column(1).to_pylist(), strict=True))
    shutil.rmtree(saved, ignore_errors=True)
    print(json.dumps({
        "session": type(spark).__module__,
        "quarantined": quarantined,
        "coefficients": dict(zip(coefs.names, coefs.values, strict=True)),
        "intercept": coefs.intercept,
        "categories": category_labels(model),
        "auc_roc": metrics(y, p, 0.5)["auc_roc"],
        "test_rows": len(y),
        "arrow_max_abs_diff": float(arrow_diff),
    }))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
