"""The training job: fit the pipeline, evaluate it, log and register it, gate the promotion."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.quality import REASON_COL, InputDataError, check_schema, with_reason
from yws.contract.spec import Spec
from yws.contract.tables import FEATURES_HINT
from yws.errors import YwsError
from yws.model import registry
from yws.model.pipeline import build_pipeline, coefficients
from yws.storage import Storage, storage_for
from yws.training.evaluation import all_finite, metrics, plots, scored_arrays

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature
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


def gate(
    challenger_auc: float,
    champion_auc: float | None,
    tolerance: float,
    force: bool = False,
) -> tuple[bool, str]:
    """Whether the challenger becomes champion, and why (both AUCs on the same held-out rows)."""
    if force:
        return True, "promotion forced by the operator (--force-promote)"
    if champion_auc is None:
        return True, "no champion yet"
    if challenger_auc >= champion_auc - tolerance:
        return True, (
            f"AUC-ROC {challenger_auc:.4f} is within {tolerance} of the champion's "
            f"{champion_auc:.4f} or better"
        )
    return False, (
        f"AUC-ROC {challenger_auc:.4f} is worse than the champion's {champion_auc:.4f} by more "
        f"than the tolerance {tolerance}; use --force-promote to promote anyway"
    )


def signature(spec: Spec) -> ModelSignature:
    """Inputs: the raw feature columns (nullable where the spec allows); output: prediction."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    kinds = {"numeric": "double", "boolean": "boolean", "categorical": "string"}
    inputs = Schema([ColSpec(kinds[f.type], f.name, required=False) for f in spec.features])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "prediction")]))


PYFUNC_MODULE = "yws_arrow_engine"
"""The name the arrow engine (``yws/engine.py``) is logged under, in the model's ``code/``
folder: the model carries the code that evaluates it, and ``mlflow.pyfunc.load_model`` (or
Model Serving) needs neither Spark nor the yws wheel, only :func:`pip_requirements`."""

# What the pyfunc flavour imports (yws/engine.py and MLflow's pyfunc loader); no pyspark: the
# spark flavour is loaded by jobs, where Spark (Databricks Connect on serverless) is present.
PYFUNC_PACKAGES = ("mlflow-skinny", "numpy", "pandas", "pyarrow", "sqlglot")


def pyfunc_code(folder: Path) -> Path:
    """``folder/yws_arrow_engine.py``: the arrow engine as a module of its own, for code_paths."""
    from yws.model import evaluator as engine

    path = folder / f"{PYFUNC_MODULE}.py"
    path.write_text(Path(engine.__file__).read_text())
    return path


def arrow_pyfunc(saved: Path) -> None:
    """Make the model's pyfunc flavour the arrow engine logged in its ``code/`` folder:
    ``mlflow.pyfunc.load_model`` (and ``mlflow models serve``) then answer with NumPy and no
    Spark session; the ``spark`` flavour stays for ``mlflow.spark.load_model``."""
    from mlflow.models import Model

    mlmodel = Model.load(str(saved / "MLmodel"))
    pyfunc = mlmodel.flavors["python_function"]
    if not (saved / "code" / f"{PYFUNC_MODULE}.py").is_file():
        raise TrainingError(f"the model folder {saved} holds no code/{PYFUNC_MODULE}.py")
    pyfunc["loader_module"] = PYFUNC_MODULE
    pyfunc["data"] = "sparkml"
    pyfunc["code"] = "code"
    mlmodel.save(str(saved / "MLmodel"))


def pip_requirements() -> list[str]:
    """The model's requirements: what its pyfunc flavour needs, at this environment's versions.

    Never open-source ``pyspark``: on serverless, Databricks Connect provides pyspark and a
    pyspark installed beside it breaks it; the spark flavour is for jobs, which have Spark.
    ``mlflow-skinny`` is installed with MLflow everywhere (the full ``mlflow`` requires it;
    serverless environment 4 has only the skinny one).
    """
    return [f"{p}=={installed_version(p)}" for p in PYFUNC_PACKAGES]


def split(df: DataFrame, spec: Spec) -> tuple[DataFrame, DataFrame]:
    """Train / held-out by a seeded hash of entity and date: stable whatever the partitioning."""
    from pyspark.sql import functions as F

    bucket = F.abs(F.xxhash64(F.col(spec.entity_key).cast("string"),
                              F.col(spec.as_of_column), F.lit(spec.split_seed))) % 10_000
    held_out = bucket < int(round(spec.test_fraction * 10_000))
    return df.where(~held_out), df.where(held_out)


def load_training_rows(
    spark: SparkSession, storage: Storage, settings: Settings, spec: Spec,
    as_of: dt.date | None,
) -> tuple[DataFrame, int, dict[str, int]]:
    """The usable labelled rows, the number of rows read, and why the others were left out."""
    from pyspark.sql import functions as F

    storage.require(settings.features, FEATURES_HINT)
    df = storage.read(spark, settings.features)
    check_schema(df, spec, settings.features, need_label=True)
    if as_of is not None:
        df = df.where(F.col(spec.as_of_column) == F.lit(as_of))
    label = F.col(spec.label).cast("int")
    df = with_reason(df, spec).withColumn(spec.label, label)
    # The imputer learns a fill value from the rows it fits on: a column with no value there
    # fails deep inside Spark's fit, so count the values first, in the same pass.
    imputed = [f.name for f in spec.features if f.nulls == "impute"]
    fit_row = F.col(REASON_COL).isNull() & label.isin(0, 1)
    stats = df.agg(
        *(F.count_if(fit_row & F.col(n).isNotNull() & ~F.isnan(F.col(n).cast("double")))
          .alias(f"values__{i}") for i, n in enumerate(imputed)),
        F.count(F.lit(1)).alias("read"),
        F.count_if(F.col(REASON_COL).isNotNull()).alias("bad"),
        F.count_if(F.col(REASON_COL).isNull() & label.isNull()).alias("unlabelled"),
        F.count_if(label.isNotNull() & ~label.isin(0, 1)).alias("bad_label"),
        F.count_if(F.col(REASON_COL).isNull() & (label == 1)).alias("pos"),
        F.count_if(F.col(REASON_COL).isNull() & (label == 0)).alias("neg"),
    ).first()
    assert stats is not None
    where = f" for as-of {as_of}" if as_of else ""
    if stats["read"] == 0:
        raise InputDataError(f"{settings.features} has no rows{where}: nothing to train on")
    if stats["bad_label"]:
        bad = [r[0] for r in df.where(label.isNotNull() & ~label.isin(0, 1))
               .select(spec.label).distinct().limit(5).collect()]
        raise InputDataError(
            f"label {spec.label} must be 0 or 1; {stats['bad_label']} row(s) hold other values "
            f"(e.g. {', '.join(map(str, bad))})"
        )
    if stats["pos"] == 0 or stats["neg"] == 0:
        only = 1 if stats["pos"] else 0
        raise InputDataError(
            f"label {spec.label} has one class only (all usable rows are {only}){where}: "
            "a classifier needs both 0 and 1 in the training data"
        )
    empty = [n for i, n in enumerate(imputed) if stats[f"values__{i}"] == 0]
    if empty:
        snapshot = f"as-of {as_of}" if as_of else "all snapshots"
        raise InputDataError(
            f"feature(s) {', '.join(empty)} hold no value in the usable rows of "
            f"{settings.features} ({snapshot}), so there is nothing to impute from; load the "
            "values, or set nulls: quarantine for them in the spec"
        )
    excluded = {"unlabelled": int(stats["unlabelled"]), "failed quality checks": int(stats["bad"])}
    usable = df.where(F.col(REASON_COL).isNull() & label.isNotNull()).drop(REASON_COL)
    return usable, int(stats["read"]), excluded


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
    import mlflow.spark

    storage = storage or storage_for(settings)
    dfs_tmpdir = registry.dfs_tmpdir(settings)  # before the fit: it is needed only after it
    registry.configure(settings)
    client = mlflow.MlflowClient()
    tolerance = spec.auc_tolerance if tolerance is None else tolerance
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    progress(f"reading {settings.features}")
    usable, rows_read, excluded = load_training_rows(spark, storage, settings, spec, as_of)
    train_df, test_df = split(usable, spec)
    lap("read_and_check")

    progress("fitting the SparkML pipeline")
    model = build_pipeline(spec).fit(train_df)
    lap("fit")

    progress("evaluating on the held-out rows")
    y, p = scored_arrays(model, test_df, spec.label)
    rows_test = len(y)
    if rows_test == 0 or len(set(y.tolist())) < 2:
        raise InputDataError(
            f"the held-out set ({rows_test} rows) does not hold both classes: add rows or raise "
            "split.test_fraction in the spec"
        )
    found = metrics(y, p, float(spec.model.get("threshold", 0.5)))
    coefs = coefficients(model, train_df, spec)
    if not all_finite(found) or not all_finite({"b": coefs.intercept, **coefs.as_dict()
                                                ["coefficients"]}):
        raise TrainingError(
            f"training gave non-finite metrics or coefficients ({found}); the model was not "
            "registered. Check the feature values and regParam"
        )
    lap("evaluate")

    champion = registry.version_for_alias(client, settings.model_name, registry.CHAMPION)
    champion_metrics = None
    if champion is not None and not force_promote:
        progress(f"evaluating champion v{champion.version} on the same held-out rows")
        try:
            yc, pc = scored_arrays(registry.load(settings, champion.version), test_df, spec.label)
            champion_metrics = metrics(yc, pc, float(spec.model.get("threshold", 0.5)))
        except Exception as e:  # e.g. a champion fitted on another spec
            promote, reason = False, (
                f"champion v{champion.version} could not score the new held-out rows "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}), so the gate cannot "
                "compare; use --force-promote to replace it"
            )
    if champion_metrics is not None or champion is None or force_promote:
        promote, reason = gate(
            found["auc_roc"],
            champion_metrics["auc_roc"] if champion_metrics else None,
            tolerance,
            force_promote,
        )
    lap("champion_evaluate")

    progress("logging to MLflow and registering")
    rows_train = rows_read - sum(excluded.values()) - rows_test
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
        mlflow.log_metrics({k: float(v) for k, v in found.items()})
        mlflow.log_metrics({"rows_read": rows_read, "rows_train": rows_train})
        if champion_metrics:
            mlflow.log_metric("champion_auc_roc", champion_metrics["auc_roc"])
        mlflow.log_dict(coefs.as_dict(), "coefficients.json")
        for name, figure in plots(y, p, coefs.as_dict()["coefficients"]).items():
            mlflow.log_figure(figure, name)
        lap("log_metrics_and_plots")
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "model"
            # save_model + log_artifacts + register_model: the same calls and arguments on
            # MLflow 2.22 (serverless environment 4) and 3.x, where log_model's artifact_path
            # became name.
            mlflow.spark.save_model(model, str(saved), signature=signature(spec),
                                    pip_requirements=pip_requirements(),
                                    code_paths=[str(pyfunc_code(Path(tmp)))],
                                    dfs_tmpdir=dfs_tmpdir)
            arrow_pyfunc(saved)
            mlflow.log_artifacts(str(saved), "model")
        lap("log_model")
        mlflow.set_tags({"yws.promoted": str(promote).lower(), "yws.gate": reason})
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", settings.model_name)
    client.set_registered_model_alias(settings.model_name, registry.CHALLENGER, version.version)
    client.set_model_version_tag(settings.model_name, version.version, "validation",
                                 "passed" if promote else "failed")
    if promote:
        client.set_registered_model_alias(settings.model_name, registry.CHAMPION, version.version)
    aliases = client.get_model_version(settings.model_name, version.version).aliases
    lap("register_and_alias")
    progress(
        f"registered {settings.model_name} v{version.version} "
        f"({'promoted to @champion' if promote else 'not promoted'}: {reason})"
    )
    return TrainResult(
        run_id=run.info.run_id,
        model_name=settings.model_name,
        version=str(version.version),
        aliases=sorted(aliases),
        promoted=promote,
        reason=reason,
        metrics=found,
        champion_metrics=champion_metrics,
        coefficients=coefs.as_dict()["coefficients"],
        intercept=coefs.intercept,
        rows_read=rows_read,
        rows_used=rows_train + rows_test,
        rows_train=rows_train,
        rows_test=rows_test,
        rows_excluded=excluded,
        timings=timings,
    )
