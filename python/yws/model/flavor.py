"""How a model version is logged: its signature, its requirements, and its two flavours.

The ``spark`` flavour is the fitted ``PipelineModel`` (``mlflow.spark.load_model``, for jobs,
where Spark is present). The ``python_function`` flavour is the arrow engine
(``yws/model/evaluator.py``) logged as code in the model's ``code/`` folder: the model carries
the code that evaluates it, and ``mlflow.pyfunc.load_model`` (or Model Serving) needs neither
Spark nor the yws wheel, only :func:`pip_requirements`.
"""

from __future__ import annotations

from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING

from yws.contract.spec import Spec
from yws.errors import YwsError

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature
    from pyspark.ml import PipelineModel

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


def signature(spec: Spec) -> ModelSignature:
    """Inputs: the raw feature columns (nullable where the spec allows); output: prediction."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    kinds = {"numeric": "double", "boolean": "boolean", "categorical": "string"}
    inputs = Schema([ColSpec(kinds[f.type], f.name, required=False) for f in spec.features])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "prediction")]))


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


def save(model: PipelineModel, spec: Spec, folder: Path, dfs_tmpdir: str | None) -> Path:
    """Save ``model`` with both flavours as ``folder/model``, ready for :func:`log`.

    Needs no active run: the training job saves while it evaluates the model.
    """
    import mlflow.spark

    saved = folder / MODEL_ARTIFACT
    # save_model + log_artifacts + register_model: the same calls and arguments on MLflow 2.22
    # (serverless environment 4) and 3.x, where log_model's artifact_path became name.
    mlflow.spark.save_model(model, str(saved), signature=signature(spec),
                            pip_requirements=pip_requirements(),
                            code_paths=[str(pyfunc_code(folder))], dfs_tmpdir=dfs_tmpdir)
    arrow_pyfunc(saved)
    return saved


def log(saved: Path) -> str:
    """Log a model folder from :func:`save` to the active run; returns the artifact path to
    register (``runs:/<run id>/<path>``)."""
    import mlflow

    mlflow.log_artifacts(str(saved), MODEL_ARTIFACT)
    return MODEL_ARTIFACT
