"""The pipeline fits and transforms over Spark Connect, as on serverless, and agrees with the
classic session to 1e-6."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from yws.contract.quality import REASON_COL, with_reason
from yws.datasets.synthetic import generate
from yws.model.pipeline import build_pipeline, coefficients
from yws.training.rows import split


@pytest.mark.slow
def test_fit_and_transform_through_spark_connect(spark, spec):
    script = Path(__file__).with_name("connect_fit.py")
    done = subprocess.run([sys.executable, str(script), "3000"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["session"] == "pyspark.sql.connect.session"
    # 8 anomalies: 2 nulls, 2 infinities, 2 duplicated ids (4 rows); unseen tiers are only
    # judged when scoring
    assert got["quarantined"] == 8
    assert got["auc_roc"] > 0.55 and got["test_rows"] > 400
    # saved over Connect, the pipeline's metadata names the Python class: the arrow engine
    # must still read it (models trained on serverless are saved this way)
    assert got["arrow_max_abs_diff"] < 1e-9

    # The same rows and parameters in the classic session give the same model.
    local_spec = spec.with_params({"maxIter": "25", "tol": "1e-6"})
    df = with_reason(spark.createDataFrame(generate(3000, dt.date(2026, 8, 31), anomalies=8)),
                     local_spec)
    usable = df.where(df[REASON_COL].isNull()).drop(REASON_COL)
    train_df, _ = split(usable, local_spec)
    coefs = coefficients(build_pipeline(local_spec).fit(train_df), train_df, local_spec)
    assert got["intercept"] == pytest.approx(coefs.intercept, abs=1e-6)
    for name, value in zip(coefs.names, coefs.values, strict=True):
        assert got["coefficients"][name] == pytest.approx(value, abs=1e-6), name
