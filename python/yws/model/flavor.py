"""How a model version is logged: its signature, its requirements, and its two flavours.

The ``spark`` flavour is the fitted ``PipelineModel`` (``mlflow.spark.load_model``, for jobs,
where Spark is present). The ``python_function`` flavour is the arrow engine
(``yws/model/evaluator.py``) logged as code in the model's ``code/`` folder, with the spec's row
contract beside it (``row_contract.json``: the quarantine rules a single row must pass and the
bands, compiled from the spec by :func:`row_contract`). The model carries the code and the data
that evaluate it: ``mlflow.pyfunc.load_model`` (or Model Serving) needs neither Spark nor the
yws wheel, only :func:`pip_requirements`, and answers what on-demand scoring
(``yws.scoring.records``) answers — probability, prediction, band and error per row — as the
signature says; an input example shows the rows it takes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING

from yws.contract.rules import quarantine_rules
from yws.contract.spec import Spec
from yws.errors import YwsError
from yws.model.evaluator import CONTRACT_FILE, ContractFeature, RowContract, RowRule

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.models.signature import ModelSignature
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

PYFUNC_MODULE = "yws_arrow_engine"
"""The name the arrow engine (``yws/model/evaluator.py``) is logged under, in the model's
``code/`` folder."""

# What the pyfunc flavour imports (the evaluator and MLflow's pyfunc loader); no pyspark: the
# spark flavour is loaded by jobs, where Spark (Databricks Connect on serverless) is present.
PYFUNC_PACKAGES = ("mlflow-skinny", "numpy", "pandas", "pyarrow", "sqlglot")

MODEL_ARTIFACT = "model"
"""The run artifact folder a version is logged to (``runs:/<run id>/model``)."""


class ModelFolderError(YwsError, RuntimeError):
    """A saved model folder lacks what its pyfunc flavour needs."""


EXAMPLE_ROWS = 5
"""Rows of the training data logged as the model's input example."""

# The MLflow type of each output the pyfunc returns (evaluator.OUTPUTS), in order; every one is
# absent somewhere: a refused row has only an error, a scored one no error.
OUTPUT_TYPES = {"probability": "double", "prediction": "integer", "band": "string",
                "error": "string"}


def signature(spec: Spec) -> ModelSignature:
    """Inputs: the raw feature columns (each may be null: the row contract says which nulls
    refuse the row); outputs: every column the pyfunc returns; params: ``reasons`` (boolean,
    default false), which adds the reason code columns (``evaluator.REASON_OUTPUTS``) to the
    answer. MLflow passes the pyfunc only the params its signature declares. The outputs stay
    the four columns every answer has: ``ai_query`` without a return type reads its struct
    from them (``sql/30_functions``)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(f.kind.mlflow_type, f.name, required=False)
                     for f in spec.features])
    outputs = Schema([ColSpec(kind, name, required=False)
                      for name, kind in OUTPUT_TYPES.items()])
    params = ParamSchema([ParamSpec("reasons", "boolean", False)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def row_contract(spec: Spec) -> RowContract:
    """The spec's rules for one row and its bands, as the logged model applies them: the batch
    job's quarantine rules (:func:`yws.contract.rules.quarantine_rules`, with their wording)
    on the features — the entity key and duplicates are a batch's concern — and the bands."""
    rules = []
    for rule in quarantine_rules(spec, unseen=True, duplicates=False):
        if rule.column == spec.entity_key:
            continue
        before, after = rule.around_value()
        rules.append(RowRule(rule.check, rule.column, before, after))
    features = tuple(ContractFeature(f.name, f.kind.arrow_type, f.kind.categorical,
                                     f.kind.checks_finite) for f in spec.features)
    return RowContract(features, tuple(rules), spec.bands.NAMES, spec.bands.thresholds)


def pip_requirements() -> list[str]:
    """The model's requirements: what its pyfunc flavour needs, at this environment's versions.

    Never open-source ``pyspark``: on serverless, Databricks Connect provides pyspark and a
    pyspark installed beside it breaks it; the spark flavour is for jobs, which have Spark.
    ``mlflow-skinny`` is installed with MLflow everywhere (the full ``mlflow`` requires it;
    serverless environment 4 has only the skinny one).
    """
    return [f"{p}=={installed_version(p)}" for p in PYFUNC_PACKAGES]


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
        raise ModelFolderError(f"the model folder {saved} holds no code/{PYFUNC_MODULE}.py")
    pyfunc["loader_module"] = PYFUNC_MODULE
    pyfunc["data"] = "sparkml"
    pyfunc["code"] = "code"
    mlmodel.save(str(saved / "MLmodel"))


def input_example(saved: Path, example: pa.Table) -> None:
    """Log ``example`` (feature rows) as the model's input example, in MLflow's files
    (``input_example.json``, and ``serving_input_example.json`` where MLflow writes one).

    Written after the model is saved, not through ``save_model(input_example=...)``: that
    would check it by loading the model with its original pyfunc flavour, Spark's."""
    from mlflow.models import Model
    from mlflow.models.utils import _save_example

    mlmodel = Model.load(str(saved / "MLmodel"))
    _save_example(mlmodel, example.to_pandas(), str(saved))
    mlmodel.save(str(saved / "MLmodel"))


def save(model: PipelineModel, spec: Spec, folder: Path, dfs_tmpdir: str | None,
         example: pa.Table | None = None, *, stages_at_once: bool = False,
         stages_written: threading.Event | None = None) -> Path:
    """Save ``model`` with both flavours, its row contract and ``example`` (a few rows of
    the features, see :func:`example_rows`) as ``folder/model``, ready for :func:`log`.

    Needs no active run: the training job saves while it evaluates the model.
    ``stages_at_once`` writes the pipeline's stages in parallel threads
    (:func:`save_stages_at_once`); only where Spark work may run on other threads
    (:attr:`yws.platform.Target.spark_in_threads`). With it, ``stages_written`` is set once
    Spark has written the pipeline (or failed to): what follows is MLflow's, with no Spark job
    but one copy of the folder, and may overlap the caller's own Spark work.
    """
    import mlflow.spark

    saved = folder / MODEL_ARTIFACT
    # save_model + log_artifacts + register_model: the same calls and arguments on MLflow 2.22
    # (serverless environment 4) and 3.x, where log_model's artifact_path became name.
    with _stages_at_once(model, stages_at_once, stages_written):
        mlflow.spark.save_model(model, str(saved), signature=signature(spec),
                                pip_requirements=pip_requirements(),
                                code_paths=[str(pyfunc_code(folder))], dfs_tmpdir=dfs_tmpdir)
    (saved / CONTRACT_FILE).write_text(json.dumps(row_contract(spec).to_dict(), indent=1))
    arrow_pyfunc(saved)
    if example is not None:
        input_example(saved, example)
    return saved


def save_stages_at_once(model: PipelineModel, path: str) -> None:
    """``model.save(path)``, with the stages written at the same time.

    Spark's writer saves a pipeline's stages one after the other, each a few tiny Spark jobs
    (metadata, fitted data) that keep the cores mostly idle: nine stages take 3-5 s here. This
    writes the same folder with PySpark's own helpers — the pipeline's metadata as Spark's
    writer makes it (same class name and stage list, so it loads as a Java pipeline), each stage
    by its own writer at the path Spark would give it — the stages in threads."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    from pyspark.ml.pipeline import PipelineSharedReadWrite
    from pyspark.ml.util import DefaultParamsWriter
    from pyspark.sql import SparkSession

    stages = model.stages
    folder = f"{path.rstrip('/')}/stages"

    def write(index: int) -> None:
        stage = stages[index]
        stage.write().save(  # type: ignore[attr-defined]
            PipelineSharedReadWrite.getStagePath(stage.uid, index, len(stages), folder))

    spark = SparkSession.builder.getOrCreate()  # the session that fitted it
    with ThreadPoolExecutor(max_workers=len(stages) or 1,
                            thread_name_prefix="yws-save-stage") as pool:
        written = [pool.submit(write, i) for i in range(len(stages))]
        # The pipeline's own metadata, as DefaultParamsWriter.saveMetadata writes it, but from
        # an Arrow table: saveMetadata builds its one-row DataFrame from a Python list, which
        # classic PySpark turns into a Python RDD, so the write starts a Python worker process
        # (1.0-2.8 s, most of a training run's save). Same JSON, same files.
        metadata = DefaultParamsWriter._get_metadata_to_save(
            model, spark, extraMetadata={"class": "org.apache.spark.ml.PipelineModel"},
            paramMap={"stageUids": [s.uid for s in stages]})
        spark.createDataFrame(pa.table({"value": [metadata]})).coalesce(1).write.text(
            f"{path.rstrip('/')}/metadata")
        for done in written:
            done.result()


@contextlib.contextmanager
def _stages_at_once(model: PipelineModel, enabled: bool,
                    written: threading.Event | None = None) -> Iterator[None]:
    """While MLflow saves ``model`` (it calls ``model.save(path)``), save it with
    :func:`save_stages_at_once`, and set ``written`` once that has written it (or failed to):
    the instance's ``save`` is shadowed for the call only."""
    if not enabled:
        yield
        return

    def save(path: str) -> None:
        try:
            save_stages_at_once(model, path)
        finally:
            if written is not None:
                written.set()

    model.save = save  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.save


def example_rows(df: DataFrame, spec: Spec) -> pa.Table:
    """The first :data:`EXAMPLE_ROWS` rows of ``df``'s features (rows the model scores: the
    training rows passed the checks), for :func:`save`."""
    return df.select(*spec.feature_names).limit(EXAMPLE_ROWS).toArrow()


def log(saved: Path) -> str:
    """Log a model folder from :func:`save` to the active run; returns the artifact path to
    register (``runs:/<run id>/<path>``)."""
    import mlflow

    mlflow.log_artifacts(str(saved), MODEL_ARTIFACT)
    return MODEL_ARTIFACT
