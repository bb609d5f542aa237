"""Run by test_serverless_env.py with the environment-4 replica's Python: the job code, installed
from the wheel, on Databricks Connect's pyspark and mlflow-skinny 2.22, against a local Spark
Connect server (``SPARK_REMOTE``), the way a serverless task runs it.

What runs unchanged: the ``yws-train`` entry point with ``--target databricks`` (its Spark
session from ``SparkSession.builder.getOrCreate()``, the feature table read through
``DatabricksStorage``, the fit, the evaluation, ``mlflow.spark.save_model`` with MLflow 2.22's
serverless branch, the registration and the aliases), the ``yws-score --check-only true`` entry
point, and the Spark scoring path (``mlflow.spark.load_model`` through the same branch, then
the Spark engine of ``yws.scoring.spark``), checked against the arrow engine.

Three stand-ins for what only a workspace has, each the least that makes it local:
- Unity Catalog's model registry: an MLflow file store (``registry.configure``);
- a Unity Catalog volume for MLflow's SparkML files: a folder that the local Spark Connect server
  and this process share, as serverless and the task share a volume through its FUSE mount
  (``registry.dfs_tmpdir``, and ``mlflow.spark`` told it runs on serverless with that folder as
  its ``/Volumes``);
- Unity Catalog tables: the server's session catalog (``spark_catalog.ml.*``), Parquet instead of
  Delta, which an open-source Spark Connect server cannot write here; so they have no Delta
  history (``DESCRIBE HISTORY`` refuses them): ``DatabricksStorage.version`` answers None, as
  for a table without history, and the runs read the current rows and record no version.

Usage: env4_jobs.py WORK_DIR; prints one JSON object.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import types
from pathlib import Path
from urllib.parse import urlparse

TRAIN_DAY = dt.date(2026, 8, 31)
SCORE_DAY = dt.date(2026, 11, 30)


def stand_ins(work: Path) -> None:
    import mlflow
    import mlflow.spark
    from mlflow.utils import databricks_utils

    from yws.config import Settings
    from yws.model import registry

    store = (work / "mlruns").as_uri()
    volume = work / "volume"
    volume.mkdir(parents=True, exist_ok=True)

    def configure(settings: Settings) -> None:
        mlflow.set_tracking_uri(store)
        mlflow.set_registry_uri(store)
        mlflow.set_experiment(settings.experiment_name)

    registry.configure = configure  # type: ignore[assignment]
    from yws.storage.databricks import DatabricksStorage

    DatabricksStorage.version = lambda self, name: None  # type: ignore[method-assign]
    registry.dfs_tmpdir = lambda settings: str(volume / "mlflow")  # type: ignore[assignment]

    # mlflow.spark alone sees a serverless runtime whose /Volumes is the shared folder.
    serverless = types.SimpleNamespace(
        **{name: getattr(databricks_utils, name) for name in dir(databricks_utils)
           if not name.startswith("__")})
    serverless.is_in_databricks_runtime = lambda: True
    serverless.is_in_databricks_serverless_runtime = lambda: True
    mlflow.spark.databricks_utils = serverless  # type: ignore[attr-defined]
    mlflow.spark._is_uc_volume_uri = (  # type: ignore[attr-defined]
        lambda url: urlparse(url).path.startswith(str(volume)))


def feature_table(spark) -> None:  # spark: SparkSession
    from yws.datasets.synthetic import generate

    spark.sql("CREATE SCHEMA IF NOT EXISTS spark_catalog.ml")
    spark.sql("DROP TABLE IF EXISTS spark_catalog.ml.yws_features")
    for rows in (generate(3000, TRAIN_DAY), generate(1000, SCORE_DAY, labeled=False,
                                                     anomalies=6)):
        spark.createDataFrame(rows).write.format("parquet").mode("append") \
            .saveAsTable("spark_catalog.ml.yws_features")


def run_entry_point(name: str, argv: list[str], capture: Path) -> dict:
    """Call the console-script function as a python_wheel_task does; its JSON output."""
    import contextlib
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name=name)
    sys.argv = [name, *argv]
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        returned = script.load()()
    assert returned is None, returned
    return json.loads(capture.read_text())


def main(work: Path) -> int:
    import mlflow
    import numpy as np
    import pyspark

    stand_ins(work)
    from yws.config import Settings
    from yws.contract.quality import REASON_COL, with_reason
    from yws.contract.spec import load_spec
    from yws.model import registry
    from yws.model.evaluator import ArrowModel
    from yws.model.pipeline import category_labels
    from yws.model.registry import Located
    from yws.platform import get_spark, storage_for
    from yws.scoring.base import Context, RunIds
    from yws.scoring.spark import SparkEngine

    settings = Settings(target="databricks", catalog="spark_catalog", schema="ml")
    spark = get_spark(settings)  # SparkSession.builder.getOrCreate(): SPARK_REMOTE
    try:
        feature_table(spark)
        common = ["--catalog", "spark_catalog", "--schema", "ml",
                  "--dfs-tmpdir", "/Volumes/spark_catalog/ml/mlflow_tmp"]
        trained = run_entry_point("yws-train", [*common, "--as-of-date", TRAIN_DAY.isoformat()],
                                  work / "train.json")
        checked = run_entry_point("yws-score", [*common, "--check-only", "true"],
                                  work / "check.json")

        # The Spark scoring path, against the arrow engine on the same rows.
        spec = load_spec()
        model = registry.load(settings, trained["version"])
        engine = SparkEngine(Context(settings, spec, storage_for(settings), spark=spark))
        as_of, count = engine.count(None)
        engine.load(Located(int(trained["version"]), None))
        scored = engine.score(RunIds("env4", "env4-replica", settings.model_name,
                                     int(trained["version"]), dt.datetime.now(dt.UTC)),
                              count).predictions().toArrow()
        assert engine.rows is not None
        good = with_reason(engine.rows, spec, category_labels(model))
        good = good.where(good[REASON_COL].isNull()).drop(REASON_COL)
        arrow = ArrowModel.from_registry(f"models:/{settings.model_name}/{trained['version']}")
        table = good.toArrow()
        p, _ = arrow.predict(table)
        by_id = dict(zip(table.column(spec.entity_key).cast("string").to_pylist(), p, strict=True))
        got = dict(zip(scored.column("entity_id").to_pylist(),
                       scored.column("probability").to_pylist(), strict=True))
        print(json.dumps({
            "session": type(spark).__module__,
            "pyspark": pyspark.__version__,
            "mlflow": mlflow.__version__,
            "trained": {k: trained[k] for k in ("version", "promoted", "aliases", "rows_train")},
            "auc_roc": trained["metrics"]["auc_roc"],
            "checked": checked,
            "as_of": as_of.isoformat(),
            "scored": len(got),
            "max_abs_diff": float(max(abs(got[k] - by_id[k]) for k in got)) if got else None,
            "same_ids": sorted(got) == sorted(by_id),
            "requirements": (Path(mlflow.artifacts.download_artifacts(
                f"models:/{settings.model_name}/{trained['version']}")) / "requirements.txt")
            .read_text().split(),
            "finite": bool(np.isfinite(p).all()),
        }))
        return 0
    finally:
        spark.stop()  # a Connect session left open keeps the process alive


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
