"""The training job: read and check the labelled rows, split them, fit the pipeline, evaluate it
on the held-out rows, log and register it as @challenger, and promote it through the
validation gate.

Where each step lives: :mod:`yws.training.rows` (reading, checking, accounting, the split),
:mod:`yws.training.evaluation` (held-out metrics, plots), :mod:`yws.training.gate` (the
promotion rule), :mod:`yws.model.flavor` (how a version is logged), :mod:`yws.model.registry`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.quality import InputDataError
from yws.contract.spec import Spec
from yws.errors import YwsError
from yws.model import flavor, lineage, registry
from yws.model.evaluator import ArrowModel
from yws.model.pipeline import build_pipeline, category_labels, coefficients, fit
from yws.monitoring import baseline as drift_baseline
from yws.platform import storage_for, target_for
from yws.storage import Storage
from yws.training.evaluation import all_finite, metrics, preload, write_plots
from yws.training.gate import decide
from yws.training.rows import load_training_rows

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession


class TrainingError(YwsError, RuntimeError):
    """Training produced something that must not be registered."""


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    version: str
    aliases: list[str]
    promoted: bool
    reason: str
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    coefficients: dict[str, float]
    intercept: float
    rows_read: int
    rows_used: int
    rows_train: int
    rows_test: int
    rows_excluded: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Laps:
    """Seconds per step, in the order the steps ran."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 3)
        self._clock = now


def train(
    settings: Settings,
    spec: Spec,
    spark: SparkSession,
    *,
    as_of: dt.date | None = None,
    force_promote: bool = False,
    tolerance: float | None = None,
    storage: Storage | None = None,
    progress: Progress = quiet,
) -> TrainResult:
    """Train, evaluate, log, register as @challenger and promote to @champion through the gate."""
    import mlflow

    storage = storage or storage_for(settings)
    dfs_tmpdir = registry.dfs_tmpdir(settings)  # before the fit: it is needed only after it
    tolerance = spec.auc_tolerance if tolerance is None else tolerance
    threshold = float(spec.model.get("threshold", 0.5))
    lap = _Laps()

    progress(f"reading {settings.features}")
    with tempfile.TemporaryDirectory() as tmp, \
            ThreadPoolExecutor(max_workers=3, thread_name_prefix="yws-train") as background:
        # The checked rows stay cached (where the session can cache) until the gate has
        # scored the champion on the held-out rows; nothing after that reads a row.
        with load_training_rows(spark, storage, settings, spec, as_of) as rows:
            train_df, test_df = rows.split()
            lap("read_and_check")

            # While Spark fits, this process only waits on it: the evaluation's libraries are
            # imported (~2 CPU s) and MLflow connected (a new local store is created: ~1 s)
            # meanwhile. Beside the save instead, their hold on the GIL stretched each of the
            # save's Py4J calls: 3.3-3.8 s to save, against 2.3-2.8 s now.
            background.submit(preload)
            configured = background.submit(registry.configure, settings)
            progress("fitting the SparkML pipeline")
            model = fit(build_pipeline(spec), train_df, target_for(settings).cached)
            lap("fit")

            in_threads = target_for(settings).spark_in_threads
            saving, stages_written = _start_save(
                background if in_threads else None,
                model, spec, Path(tmp), dfs_tmpdir, lap.timings, train_df)
            progress("evaluating on the held-out rows")
            # The coefficients' names (from a transform's schema) and the categories, asked of
            # the fitted model through Py4J beside the save.
            coefs = coefficients(model, test_df, spec)
            categories = category_labels(model)
            # The held-out rows are read once Spark has written the model (read beside that,
            # their four tasks held up each of the save's small jobs), while MLflow finishes
            # the folder, and scored by the arrow engine from the saved folder: NumPy takes a
            # few hundredths of a second where Spark's transform took 1-2 CPU s (the engines
            # agree to 1e-9: test_engine.py).
            stages_written.wait()  # set when the save ends too, failed or not
            held_out = test_df.select(spec.label, *spec.feature_names).toArrow()
            saved = saving.result()
            y = held_out.column(spec.label).to_numpy(zero_copy_only=False)
            held_out = held_out.select(spec.feature_names)
            p, _ = ArrowModel.load(saved).predict(held_out)
            # The drift baseline: the held-out rows' feature, score and band distributions;
            # saved into the model folder below, so it travels with the version.
            baseline = drift_baseline.compute(held_out, p, spec, categories)
            rows_test = len(y)
            if rows_test == 0 or len(set(y.tolist())) < 2:
                raise InputDataError(
                    f"the held-out set ({rows_test} rows) does not hold both classes: add rows "
                    "or raise split.test_fraction in the spec"
                )
            found = metrics(y, p, threshold)
            if not all_finite(found) or not all_finite({"b": coefs.intercept, **coefs.as_dict()
                                                        ["coefficients"]}):
                raise TrainingError(
                    f"training gave non-finite metrics or coefficients ({found}); the model "
                    "was not registered. Check the feature values and regParam"
                )
            lap("evaluate")
            rendering = background.submit(write_plots, y, p, coefs.as_dict()["coefficients"],
                                          Path(tmp) / "plots")

            configured.result()
            client = mlflow.MlflowClient()
            decision = decide(settings, client, found["auc_roc"], test_df, spec.label,
                              threshold=threshold, tolerance=tolerance, force=force_promote,
                              progress=progress)
            lap("champion_evaluate")

        progress("logging to MLflow and registering")
        rows_train = rows.used - rows_test
        with mlflow.start_run() as run:
            mlflow.log_params({
                **spec.model,
                "spec": spec.source,
                "features_table": settings.features,
                "as_of": str(as_of) if as_of else "all",
                "test_fraction": spec.test_fraction,
                "split_seed": spec.split_seed,
                "auc_tolerance": tolerance,
            })
            lineage.log_features_input(settings.features, rows.features_version, "training",
                                       storage.table_id(settings.features))
            mlflow.log_metrics({k: float(v) for k, v in found.items()})
            mlflow.log_metrics({"rows_read": rows.read, "rows_train": rows_train})
            if decision.champion_metrics:
                mlflow.log_metric("champion_auc_roc", decision.champion_metrics["auc_roc"])
            mlflow.log_dict(coefs.as_dict(), "coefficients.json")
            mlflow.log_artifacts(str(rendering.result()))  # ROC, calibration, coefficients
            lap("log_metrics_and_plots")
            artifact = flavor.log(baseline.save(saving.result()))
            lap("log_model")  # what is left of saving the model, and logging it
            mlflow.set_tags({"yws.promoted": str(decision.promote).lower(),
                             "yws.gate": decision.reason})
            version = mlflow.register_model(f"runs:/{run.info.run_id}/{artifact}",
                                            settings.model_name)
    aliases = _set_aliases(client, settings, str(version.version), decision.promote)
    lap("register_and_alias")
    progress(
        f"registered {settings.model_name} v{version.version} "
        f"({'promoted to @champion' if decision.promote else 'not promoted'}: "
        f"{decision.reason})"
    )
    return TrainResult(
        run_id=run.info.run_id,
        model_name=settings.model_name,
        version=str(version.version),
        aliases=sorted(aliases),
        promoted=decision.promote,
        reason=decision.reason,
        metrics=found,
        champion_metrics=decision.champion_metrics,
        coefficients=coefs.as_dict()["coefficients"],
        intercept=coefs.intercept,
        rows_read=rows.read,
        rows_used=rows.used,
        rows_train=rows_train,
        rows_test=rows_test,
        rows_excluded=rows.excluded,
        timings=lap.timings,
    )


def _start_save(background: ThreadPoolExecutor | None, model: PipelineModel, spec: Spec,
                folder: Path, dfs_tmpdir: str | None, timings: dict[str, float],
                rows: DataFrame) -> tuple[Future[Path], threading.Event]:
    """Save the model: in ``background``, its stages at once, while it is evaluated (where
    Spark work may run on other threads); else now. Returns the saved folder to come, and an
    event set once Spark has written the pipeline."""
    written = threading.Event()
    if background is not None:
        return background.submit(_save_timed, model, spec, folder, dfs_tmpdir, timings, rows,
                                 True, written), written
    saving: Future[Path] = Future()
    saving.set_result(_save_timed(model, spec, folder, dfs_tmpdir, timings, rows, False,
                                  written))
    return saving, written


def _save_timed(model: PipelineModel, spec: Spec, folder: Path, dfs_tmpdir: str | None,
                timings: dict[str, float], rows: DataFrame, in_threads: bool,
                stages_written: threading.Event) -> Path:
    start = time.perf_counter()
    try:
        saved = flavor.save(model, spec, folder, dfs_tmpdir, flavor.example_rows(rows, spec),
                            stages_at_once=in_threads, stages_written=stages_written)
    finally:
        stages_written.set()  # whoever waits for the stages must not wait for ever
    timings["save_model_in_background"] = round(time.perf_counter() - start, 3)
    return saved


def _set_aliases(client: MlflowClient, settings: Settings, version: str,
                 promote: bool) -> list[str]:
    """Point @challenger (and, when promoted, @champion) at ``version``, tag it with the gate's
    verdict, and return its aliases."""
    name = settings.model_name
    client.set_registered_model_alias(name, registry.CHALLENGER, version)
    client.set_model_version_tag(name, version, "validation", "passed" if promote else "failed")
    if promote:
        client.set_registered_model_alias(name, registry.CHAMPION, version)
    return list(client.get_model_version(name, version).aliases)
