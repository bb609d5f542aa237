"""Model families: what fitted a registered version, and how the engines without Spark score it.

A version's folder says its family (the ``flavor`` of its ``MLmodel`` metadata; versions
logged before there was a second family have none and are SparkML pipelines):

* ``spark-lr``: a SparkML ``PipelineModel`` ending in a LogisticRegression, evaluated with
  NumPy by :class:`yws.model.evaluator.ArrowModel`; it scores every row the spec's quarantine
  rules let through (its imputer fills the nulls the spec allows, unseen categories are
  quarantined by the rules);
* ``r-glm``: an R ``glm`` exported by ``yws_export_glm()`` (:mod:`yws.model.r_glm`), which
  R would answer ``NA`` for a row with a missing value, whatever the spec allows: such rows
  are refused by the model, with the quarantine rules' words, and the job quarantines them.

The jobs see one protocol, :class:`FamilyModel`, and never branch on the family: a new family
is a class here and a line in :data:`LOADERS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa

from yws.model.evaluator import ArrowModel, UnsupportedModelError

if TYPE_CHECKING:
    from collections.abc import Callable

    from yws.model.r_glm import RGlm

SPARK_LR = "spark-lr"
R_GLM = "r-glm"


class FamilyModel(Protocol):
    """A registered version as the arrow engine, serving and ``ai_query`` score it."""

    family: str

    def __hash__(self) -> int:  # one loaded model, one key (Model Serving batches by model)
        ...

    def categories(self) -> dict[str, list[str]]:
        """The labels the model knows per categorical feature (the unseen-category rule)."""
        ...

    def refusals(self, table: pa.Table) -> list[str | None] | None:
        """Why the model cannot score each row that the spec's rules let through (None where
        it can); None when it scores every such row."""
        ...

    def predict(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(P(label = 1), prediction) of rows it does not refuse, in order."""
        ...

    def explain(self, table: pa.Table,
                ) -> tuple[np.ndarray, np.ndarray, dict[str, pa.Array] | None]:
        """:meth:`predict` and, from the same pass, each row's reason codes
        (:data:`yws.model.evaluator.REASON_OUTPUTS`: its top features by contribution to the
        log-odds); None where the family gives none (the reason columns are then null)."""
        ...


class SparkPipeline:
    """A SparkML pipeline version: :class:`ArrowModel` refuses no row the rules pass."""

    family = SPARK_LR

    def __init__(self, model: ArrowModel) -> None:
        self.model = model

    def categories(self) -> dict[str, list[str]]:
        return self.model.categories()

    def refusals(self, table: pa.Table) -> list[str | None] | None:
        return None

    def predict(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(table)

    def explain(self, table: pa.Table,
                ) -> tuple[np.ndarray, np.ndarray, dict[str, pa.Array] | None]:
        return self.model.explain(table)


@dataclass(eq=False)  # compared and hashed by identity, as loaded models are
class RGlmModel:
    """An R glm version: R's probabilities, prediction = probability above the threshold the
    version was logged with (as the SparkML LogisticRegression predicts)."""

    model: RGlm
    threshold: float
    family = R_GLM

    def categories(self) -> dict[str, list[str]]:
        return {t.name: list(t.levels) for t in self.model.terms if t.kind == "factor"}

    def refusals(self, table: pa.Table) -> list[str | None] | None:
        return self.model.predict(table).reasons

    def predict(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        p = self.model.predict(table).probability
        return p, (p > self.threshold).astype(np.int32)

    def explain(self, table: pa.Table,
                ) -> tuple[np.ndarray, np.ndarray, dict[str, pa.Array] | None]:
        """No reason codes for an R glm yet: its rows' reason columns are null."""
        return (*self.predict(table), None)


def _mlmodel(folder: Path) -> dict[str, object]:
    """The version's ``MLmodel`` (YAML), or {} for a bare SparkML folder."""
    import yaml

    path = folder / "MLmodel"
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def family_of(folder: str | Path) -> str:
    """The family of the version in ``folder`` (:data:`SPARK_LR` when it names none)."""
    meta = _mlmodel(Path(folder)).get("metadata")
    family = meta.get("flavor") if isinstance(meta, dict) else None
    return str(family) if family else SPARK_LR


def family_of_version(name: str, version: int, folder: Path | None) -> str:
    """The family of a registered version: from its folder when it is on this machine, else
    from the version's ``flavor`` tag (untagged versions are SparkML)."""
    if folder is not None:
        return family_of(folder)
    import mlflow

    tags = mlflow.MlflowClient().get_model_version(name, str(version)).tags or {}
    return str(tags.get("flavor") or SPARK_LR)


def _spark_lr(folder: Path) -> FamilyModel:
    return SparkPipeline(ArrowModel.load(folder))


def _r_glm(folder: Path) -> FamilyModel:
    from yws.model import r_glm_flavor
    from yws.model.r_glm import RGlm

    pyfunc = _mlmodel(folder).get("flavors", {})
    data = pyfunc.get("python_function", {}).get("data") if isinstance(pyfunc, dict) else None
    root = folder / str(data or Path("data") / r_glm_flavor.DATA)
    threshold = json.loads((root / r_glm_flavor.PREDICTION_FILE).read_text())["threshold"]
    return RGlmModel(RGlm.load(root / r_glm_flavor.DESCRIPTION_FILE), float(threshold))


LOADERS: dict[str, Callable[[Path], FamilyModel]] = {SPARK_LR: _spark_lr, R_GLM: _r_glm}
"""Family name -> how its version folder is read."""


def load(folder: str | Path) -> FamilyModel:
    """The version in ``folder`` (an MLflow model folder), whatever its family."""
    root = Path(folder)
    family = family_of(root)
    if family not in LOADERS:
        raise UnsupportedModelError(
            f"{root} holds a {family!r} model; this YWS scores {', '.join(LOADERS)} models: "
            "upgrade yws")
    return LOADERS[family](root)


def from_registry(model_uri: str) -> FamilyModel:
    import mlflow

    return load(mlflow.artifacts.download_artifacts(model_uri))
