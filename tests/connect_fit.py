"""Run by test_connect.py in its own process: the pipeline through a local Spark Connect server.

Spark Connect is what serverless runs; a fit and transform that work here use nothing a
Connect session refuses. Prints one JSON object with what the test checks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def main() -> int:
    from pyspark.sql import SparkSession

    from yws.data import generate
    from yws.evaluation import metrics, scored_arrays
    from yws.pipeline import build_pipeline, category_labels, coefficients
    from yws.quality import REASON_COL, with_reason
    from yws.spec import load_spec
    from yws.train import split

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
    print(json.dumps({
        "session": type(spark).__module__,
        "quarantined": quarantined,
        "coefficients": dict(zip(coefs.names, coefs.values, strict=True)),
        "intercept": coefs.intercept,
        "categories": category_labels(model),
        "auc_roc": metrics(y, p, 0.5)["auc_roc"],
        "test_rows": len(y),
    }))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
