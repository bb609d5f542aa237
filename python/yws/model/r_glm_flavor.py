"""How an R model version is logged: a ``yws-r-glm/1`` description as a self-contained MLflow
pyfunc model, registered as a new version with ``@challenger`` (issue 17).

The SparkML model's pyfunc (:mod:`yws.model.flavor`) is the arrow engine logged as code with
the spec's row contract beside it; an R model's is the same idea with R's own rules:

* ``code/``: this file (``yws_r_glm_pyfunc.py``, the loader), ``yws/model/r_glm.py``
  (``yws_r_glm.py``, which scores as R's ``predict(type = "response")``) and
  ``yws/model/evaluator.py`` (``yws_arrow_engine.py``, for the row contract and the outputs);
* ``data/rglm/r_glm.json``: the description, validated; ``prediction.json``: the spec's
  threshold (``prediction`` is 1 where ``probability > threshold``, as the SparkML model's);
  ``row_contract.json``: the rows R would not score — a numeric term null, NaN or infinite, a
  logical or factor term null, a level the fit has not seen — as quarantine rules, in the
  words of :mod:`yws.contract.rules`, and the spec's bands.

``mlflow.pyfunc.load_model`` (and Model Serving) then answer, per row, ``probability``,
``prediction``, ``band`` and ``error`` as the SparkML model's pyfunc does: a refused row has
its reasons in ``error`` and null elsewhere. The requirements are what the loader imports
(MLflow's pyfunc loader, NumPy, pandas, pyarrow): no yws, no pyspark. The MLmodel's metadata
and the version's tags say ``flavor = r-glm``, the formula, the R version, the as-of date and
the features table and its version.

Inside YWS this module imports its siblings from ``yws.model``; logged as a model's code it
imports their logged copies, so a version scores with the code it was logged with.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa

if TYPE_CHECKING or __name__ == "yws.model.r_glm_flavor":
    from yws.model.evaluator import CONTRACT_FILE, OUTPUTS, ContractFeature, RowContract, RowRule
    from yws.model.r_glm import RGlm, RModelFormatError
else:  # pragma: no cover - logged as the model's code (code/), beside its siblings
    from yws_arrow_engine import (
        CONTRACT_FILE,
        OUTPUTS,
        ContractFeature,
        RowContract,
        RowRule,
    )
    from yws_r_glm import RGlm, RModelFormatError

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

    from yws.contract.spec import Spec
    from yws.model.evaluator import ArrowModel

FLAVOR = "r-glm"
"""The model family, in the MLmodel's metadata and the version's ``flavor`` tag."""

PYFUNC_MODULE = "yws_r_glm_pyfunc"
"""This file's name in the model's ``code/`` folder: the pyfunc loader module."""
R_GLM_MODULE = "yws_r_glm"
"""``yws/model/r_glm.py``'s name in the model's ``code/`` folder."""

DATA = "rglm"
"""The model's data folder: the description, the threshold and the row contract."""
DESCRIPTION_FILE = "r_glm.json"
PREDICTION_FILE = "prediction.json"

PYFUNC_PACKAGES = ("mlflow-skinny", "numpy", "pandas", "pyarrow")
"""What the pyfunc imports: MLflow's loader, and the three the logged code imports."""

# A term's kind -> the spec feature type it must be (when the spec has the column).
_SPEC_TYPE = {"numeric": "numeric", "logical": "boolean", "factor": "categorical"}
# A term's kind -> (pyarrow type factory, categorical, checks_finite), as ContractFeature.
_CONTRACT_KIND = {"numeric": ("float64", False, True), "logical": ("bool_", False, False),
                  "factor": ("string", True, False)}
_MLFLOW_TYPE = {"numeric": "double", "logical": "boolean", "factor": "string"}


# -- the pyfunc ------------------------------------------------------------------------------
class _Scorer:
    """An R model as :meth:`RowContract.score` calls a model: its categories (each factor's
    levels, for the unseen-level rule) and ``(probability, prediction)`` of rows that pass
    the rules."""

    def __init__(self, model: RGlm, threshold: float) -> None:
        self.model, self.threshold = model, threshold

    def categories(self) -> dict[str, list[str]]:
        return {t.name: list(t.levels) for t in self.model.terms if t.kind == "factor"}

    def predict(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        p = self.model.predict(table).probability
        return p, (p > self.threshold).astype(np.int32)


class RGlmPyfunc:
    """The MLflow pyfunc face of an R model: per input row, ``probability`` (R's
    ``predict(type = "response")``, to the last bit), ``prediction``, ``band`` and ``error``,
    as :class:`yws.model.evaluator.ArrowPyfunc` answers for the SparkML model. A value of the
    wrong type (text for a number, ...) or a row R would not score is refused: its reasons
    in ``error``, None elsewhere (JSON null when served)."""

    def __init__(self, model: RGlm, contract: RowContract, threshold: float) -> None:
        self.model, self.contract = model, contract
        self.scorer = _Scorer(model, threshold)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        table, errors = self.contract.typed(data)
        out = self.contract.score(cast("ArrowModel", self.scorer), table, errors)
        return pd.DataFrame({name: pd.Series(out[name].to_pylist(), dtype=object)
                             for name in OUTPUTS})


def _load_pyfunc(path: str) -> RGlmPyfunc:
    """MLflow's pyfunc loader hook: ``path`` is the model's data folder (:data:`DATA`)."""
    folder = Path(path)
    threshold = json.loads((folder / PREDICTION_FILE).read_text())["threshold"]
    contract = RowContract.load(folder)
    if contract is None:
        raise RModelFormatError(f"the R model's data folder {folder} has no {CONTRACT_FILE}")
    return RGlmPyfunc(RGlm.load(folder / DESCRIPTION_FILE), contract, float(threshold))


# -- what is logged ----------------------------------------------------------------------------
def as_model(description: RGlm | dict[str, Any] | str | bytes) -> RGlm:
    """The validated model of a description (a dict, its JSON, or an :class:`RGlm`)."""
    if isinstance(description, RGlm):
        return description
    if isinstance(description, dict):
        return RGlm.from_dict(description)
    return RGlm.from_json(description)


def check_against(model: RGlm, spec: Spec) -> None:
    """Refuse a model that reads a column the spec's features do not have, or reads one as
    another type: the jobs score it on the governed features table, typed by the spec."""
    features = {f.name: f for f in spec.features}
    for term in model.terms:
        feature = features.get(term.name)
        if feature is None:
            raise RModelFormatError(
                f"the R model reads {term.name}, which is not a feature of the spec "
                f"({spec.source}): fit it on the features table's columns "
                f"({', '.join(features)})")
        if feature.type != _SPEC_TYPE[term.kind]:
            raise RModelFormatError(
                f"the R model reads {term.name} as {term.kind}, but the spec's feature is "
                f"{feature.type}: fit it on the features table's column as it is "
                f"(yws_features() types it)")


def row_contract(model: RGlm, spec: Spec) -> RowContract:
    """The rows R would not score, as quarantine rules in the batch job's words (each
    term's, in the terms' order, as :meth:`RGlm.predict` lists its reasons), and the spec's
    bands."""
    from yws.contract.rules import Check, Rule

    checks: dict[str, tuple[Check, ...]] = {
        "numeric": ("null_or_nan", "infinite"), "logical": ("null",),
        "factor": ("null", "unseen")}
    rules: list[RowRule] = []
    for term in model.terms:
        for check in checks[term.kind]:
            before, after = Rule(check, term.name).around_value()
            rules.append(RowRule(check, term.name, before, after))
    features = tuple(ContractFeature(t.name, *_CONTRACT_KIND[t.kind]) for t in model.terms)
    return RowContract(features, tuple(rules), spec.bands.NAMES, spec.bands.thresholds)


def signature(model: RGlm) -> ModelSignature:
    """Inputs: the model's terms (each may be null: the row contract refuses the row);
    outputs: what the pyfunc returns, as the SparkML model's signature says."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    from yws.model.flavor import OUTPUT_TYPES

    inputs = Schema([ColSpec(_MLFLOW_TYPE[t.kind], t.name, required=False)
                     for t in model.terms])
    outputs = Schema([ColSpec(kind, name, required=False)
                      for name, kind in OUTPUT_TYPES.items()])
    return ModelSignature(inputs=inputs, outputs=outputs)


def metadata(model: RGlm, features_table: str | None = None) -> dict[str, str]:
    """What the MLmodel file, the run and the version say about an R model (all text:
    MLflow tags are strings; an unknown value is the empty string)."""
    training = model.training
    return {"flavor": FLAVOR, "formula": model.formula, "r_version": training.r_version,
            "as_of": training.as_of.isoformat() if training.as_of else "",
            "features_table": features_table or "",
            "features_version": "" if training.features_version is None
            else str(training.features_version),
            "nobs": str(training.nobs)}


def pip_requirements() -> list[str]:
    """The pyfunc's requirements at this environment's versions: never pyspark or yws."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in PYFUNC_PACKAGES]


def _code(folder: Path) -> list[str]:
    """The loader and its two siblings as modules of their own, for code_paths."""
    from yws.model import evaluator, r_glm
    from yws.model.flavor import PYFUNC_MODULE as ENGINE_MODULE

    out = []
    for source, name in ((Path(__file__), PYFUNC_MODULE), (Path(r_glm.__file__), R_GLM_MODULE),
                         (Path(evaluator.__file__), ENGINE_MODULE)):
        path = folder / f"{name}.py"
        shutil.copyfile(source, path)
        out.append(str(path))
    return out


def save(description: RGlm | dict[str, Any] | str | bytes, spec: Spec, folder: Path,
         example: Any = None, features_table: str | None = None) -> Path:
    """Save the R model as ``folder/model`` (a pyfunc with its code, data, row contract,
    requirements, signature and metadata) and ``example`` (rows with the model's columns: an
    Arrow table or a pandas frame; other columns are dropped) as its input example, ready
    for :func:`yws.model.flavor.log`. Refuses a description that is not ``yws-r-glm/1`` or
    does not fit the spec (:func:`check_against`)."""
    import mlflow.pyfunc

    from yws.model.flavor import MODEL_ARTIFACT

    model = as_model(description)
    check_against(model, spec)
    staging = folder / "r_glm_staging"
    data = staging / DATA
    data.mkdir(parents=True)
    (data / DESCRIPTION_FILE).write_text(json.dumps(model.to_dict(), indent=1))
    (data / PREDICTION_FILE).write_text(json.dumps(
        {"threshold": float(spec.model.get("threshold", 0.5))}))
    (data / CONTRACT_FILE).write_text(json.dumps(row_contract(model, spec).to_dict(), indent=1))
    if example is not None:
        table = example if isinstance(example, pa.Table) else \
            pa.Table.from_pandas(example, preserve_index=False)
        example = table.select(list(model.features)).to_pandas()
    saved = folder / MODEL_ARTIFACT
    # MLflow checks the input example by loading the model and scoring it (pyfunc, no yws)
    mlflow.pyfunc.save_model(str(saved), loader_module=PYFUNC_MODULE, data_path=str(data),
                             code_paths=_code(staging), pip_requirements=pip_requirements(),
                             signature=signature(model), input_example=example,
                             metadata=metadata(model, features_table))
    shutil.rmtree(staging)
    return saved


# -- the registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Registered:
    """A registered R model version."""

    name: str
    version: int
    run_id: str
    aliases: list[str]


def register(description: RGlm | dict[str, Any] | str | bytes, spec: Spec, name: str,
             example: Any = None, features_table: str | None = None) -> Registered:
    """Log the R model to a new run of the current MLflow experiment, register it as a new
    version of ``name`` in the current registry (configure it first:
    :func:`yws.model.registry.configure`), point ``@challenger`` at it and tag the run and the
    version with :func:`metadata`. ``@champion`` is left alone: the validation gate moves it.
    """
    import tempfile

    import mlflow

    from yws.model.flavor import log
    from yws.model.registry import CHALLENGER

    model = as_model(description)
    tags = metadata(model, features_table)
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        saved = save(model, spec, Path(tmp), example, features_table)
        with mlflow.start_run() as run:
            mlflow.log_params({"features_table": features_table or "",
                               "as_of": tags["as_of"] or "unknown", "nobs": tags["nobs"]})
            mlflow.set_tags(tags)
            artifact = log(saved)
            version = mlflow.register_model(f"runs:/{run.info.run_id}/{artifact}", name)
    number = str(version.version)
    for key, value in tags.items():
        client.set_model_version_tag(name, number, key, value)
    client.set_registered_model_alias(name, CHALLENGER, number)
    return Registered(name, int(number), run.info.run_id,
                      sorted(client.get_model_version(name, number).aliases))

