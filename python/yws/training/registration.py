"""Models fitted elsewhere (an R user's glm) in the same registry, through the same gate.

* :func:`register_r_model` logs an exported R glm (``yws-r-glm/1``, :mod:`yws.model.r_glm`)
  as a new version with ``@challenger`` and evaluates the gate against ``@champion`` on the
  held-out rows, but moves no champion: the R user promotes with :func:`promote`.
* :func:`compare` scores any registered versions, whatever their families, on the same
  held-out rows and reports each one's metrics.
* :func:`promote` puts a version through the validation gate of :mod:`yws.training.gate`
  and moves ``@champion`` when it passes (or is forced).

"The same held-out rows" are the training job's: the rows of one snapshot that pass the
spec's checks, labelled, in the held-out part of the seeded split
(:func:`yws.training.rows.held_out`). A model family may refuse some of them (an R glm has no
answer for a missing value that the SparkML pipeline imputes): models are compared on the rows
every one of them scores, and the result says how many rows that is and how many were left
out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from yws.config import Settings, check_table_name
from yws.console import Progress, quiet
from yws.contract.quality import InputDataError
from yws.contract.spec import Spec
from yws.errors import InvalidValueError
from yws.model import families, registry
from yws.model.families import FamilyModel
from yws.platform import storage_for
from yws.training.evaluation import metrics
from yws.training.gate import gate
from yws.training.rows import load_training_rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class Ref:
    """A registered version named by a caller: ``catalog.schema.model@alias`` or
    ``catalog.schema.model/version``."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str, settings: Settings) -> Ref:
        ref = text.strip()
        name, alias, version = ref, None, None
        if "@" in ref:
            name, alias = ref.split("@", 1)
            registry.check_alias(alias)
        elif "/" in ref:
            name, number = ref.split("/", 1)
            if not number.isdigit() or int(number) < 1:
                raise InvalidValueError(
                    f"model {text!r}: the version after '/' must be a positive whole number")
            version = int(number)
        else:
            raise InvalidValueError(
                f"model {text!r} names no version: use catalog.schema.model@alias or "
                "catalog.schema.model/version")
        return cls(model_name(name, settings), alias, version)

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


def model_name(name: str, settings: Settings) -> str:
    """``name`` if it is a model of the job's catalog and schema (the only ones its identity
    may write to and read from), else an error that says so."""
    catalog, schema, _ = check_table_name(name)
    if (catalog, schema) != (settings.catalog, settings.schema):
        raise InvalidValueError(
            f"model {name!r} is not in {settings.catalog}.{settings.schema}, the catalog and "
            "schema these jobs read and write; register it there")
    return name


@dataclass
class Candidate:
    ref: str
    name: str
    version: int
    model: FamilyModel


def _resolve(ref: Ref) -> Candidate:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    if ref.alias is not None:
        found = registry.version_for_alias(client, ref.name, ref.alias)
        if found is None:
            raise registry.ModelNotFoundError(
                f"{ref.name} has no @{ref.alias}: `yws model versions` lists the versions "
                "and their aliases")
        version = int(found.version)
    else:
        assert ref.version is not None
        version = ref.version
    uri = f"models:/{ref.name}/{version}"
    try:
        model = families.from_registry(uri)
    except OSError as e:
        raise registry.ModelNotFoundError(f"{uri} cannot be read: {e}") from None
    except MlflowException:
        raise registry.ModelNotFoundError(
            f"{ref.name} has no version {version}: `yws model versions` lists them") from None
    return Candidate(str(ref), ref.name, version, model)


def held_out_rows(spark: SparkSession, settings: Settings, spec: Spec,
                  as_of: dt.date | None) -> pa.Table:
    """The training job's held-out rows of ``as_of`` (labelled, passing the spec's checks)."""
    storage = storage_for(settings)
    with load_training_rows(spark, storage, settings, spec, as_of) as rows:
        _, test = rows.split()
        table = test.toArrow()
    if table.num_rows == 0:
        raise InputDataError(f"{settings.features} has no held-out rows for as-of "
                             f"{as_of or 'any date'}: nothing to compare the models on")
    return table


@dataclass
class Comparison:
    rows: int  # the held-out rows every model scores
    left_out: int  # held-out rows some model refuses
    metrics: list[dict[str, float]]  # per candidate, in order


def evaluate(candidates: list[Candidate], table: pa.Table, spec: Spec) -> Comparison:
    """Each candidate's metrics on the rows of ``table`` that every candidate scores."""
    keep = np.ones(table.num_rows, dtype=bool)
    for c in candidates:
        refused = c.model.refusals(table)
        if refused is not None:
            keep &= np.array([r is None for r in refused], dtype=bool)
    if not keep.any():
        raise InputDataError(
            f"none of the {table.num_rows} held-out rows is scored by every model "
            f"({', '.join(c.ref for c in candidates)}): nothing to compare them on")
    rows = table.filter(pa.array(keep))
    y = np.asarray(rows[spec.label].to_numpy(zero_copy_only=False), dtype=np.int64)
    threshold = float(spec.model.get("threshold", 0.5))
    found = [metrics(y, c.model.predict(rows)[0], threshold) for c in candidates]
    return Comparison(int(keep.sum()), int((~keep).sum()), found)


def compare(settings: Settings, spec: Spec, spark: SparkSession, refs: list[str],
            as_of: dt.date | None, progress: Progress = quiet) -> dict[str, Any]:
    """The metrics of each named version on the same held-out rows."""
    parsed = [Ref.parse(r, settings) for r in refs if r.strip()]
    if not parsed:
        raise InvalidValueError("name at least one model to compare (catalog.schema.model@alias)")
    registry.configure(settings)
    candidates = [_resolve(r) for r in parsed]
    progress(f"reading the held-out rows of {settings.features}")
    table = held_out_rows(spark, settings, spec, as_of)
    found = evaluate(candidates, table, spec)
    return {"as_of": str(as_of) if as_of else None, "rows": found.rows,
            "rows_left_out": found.left_out,
            "models": [{"ref": c.ref, "name": c.name, "version": str(c.version),
                        "family": c.model.family, "metrics": m}
                       for c, m in zip(candidates, found.metrics, strict=True)]}


def _gate(spec: Spec, table: pa.Table, name: str, version: int, force: bool,
          tolerance: float | None) -> dict[str, Any]:
    """The gate of ``name/version`` against ``name@champion`` on the held-out rows ``table``."""
    import mlflow

    tolerance = spec.auc_tolerance if tolerance is None else tolerance
    challenger = _resolve(Ref(name, version=version))
    champion = registry.version_for_alias(mlflow.MlflowClient(), name, registry.CHAMPION)
    candidates = [challenger]
    if champion is not None and int(champion.version) != version:
        candidates.append(_resolve(Ref(name, alias=registry.CHAMPION)))
    found = evaluate(candidates, table, spec)
    champion_metrics = found.metrics[1] if len(candidates) > 1 else None
    if champion is not None and int(champion.version) == version:
        promote, reason = False, f"v{version} is already @champion"
    else:
        promote, reason = gate(found.metrics[0]["auc_roc"],
                               None if champion_metrics is None
                               else champion_metrics["auc_roc"], tolerance, force)
    if found.left_out:
        reason += (f" (on the {found.rows} held-out rows both score; {found.left_out} "
                   "left out that one of them refuses)")
    return {"metrics": found.metrics[0], "champion_metrics": champion_metrics,
            "champion_version": None if champion is None else str(champion.version),
            "family": challenger.model.family, "rows": found.rows,
            "rows_left_out": found.left_out, "promote": promote, "reason": reason}


def register_r_model(settings: Settings, spec: Spec, spark: SparkSession, description: Path,
                     name: str, as_of: dt.date | None,
                     progress: Progress = quiet) -> dict[str, Any]:
    """Log the R glm described in ``description`` as a new version of ``name`` with
    @challenger, and evaluate (not apply) the gate against ``name@champion``."""
    import mlflow

    from yws.model import r_glm_flavor
    from yws.model.r_glm import RGlm

    name = model_name(name, settings)
    try:
        model = RGlm.load(description)
    except FileNotFoundError:
        raise registry.ModelNotFoundError(
            f"no R model description at {description}: upload it first (yws_register_model "
            "in R does)") from None
    as_of = as_of or model.training.as_of
    registry.configure(settings)
    progress(f"reading the held-out rows of {settings.features}")
    example = held_out_rows(spark, settings, spec, as_of)
    progress(f"registering {name} ({model.formula})")
    done = r_glm_flavor.register(model, spec, name, example=example.slice(0, 5),
                                 features_table=settings.features)
    progress("evaluating the gate against @champion")
    decision = _gate(spec, example, name, done.version, False, None)
    client = mlflow.MlflowClient()
    for key, value in decision["metrics"].items():
        client.log_metric(done.run_id, key, float(value))
    client.set_tag(done.run_id, "yws.gate", decision["reason"])
    return {"model_name": name, "version": str(done.version), "aliases": done.aliases,
            "family": families.R_GLM, "run_id": done.run_id, "gate": decision}


def promote(settings: Settings, spec: Spec, spark: SparkSession, name: str, version: int,
            as_of: dt.date | None, *, force: bool = False, dry_run: bool = False,
            tolerance: float | None = None, progress: Progress = quiet) -> dict[str, Any]:
    """Put ``name/version`` through the gate and move @champion to it when it passes."""
    import mlflow

    name = model_name(name, settings)
    registry.configure(settings)
    table = held_out_rows(spark, settings, spec, as_of)
    progress(f"gating {name} v{version} against @champion")
    decision = _gate(spec, table, name, version, force, tolerance)
    client = mlflow.MlflowClient()
    promoted = bool(decision["promote"]) and not dry_run
    if promoted:
        client.set_registered_model_alias(name, registry.CHAMPION, str(version))
    if not dry_run:
        client.set_model_version_tag(name, str(version), "validation",
                                     "passed" if decision["promote"] else "failed")
    aliases = sorted(client.get_model_version(name, str(version)).aliases)
    return {"model_name": name, "version": str(version), "promoted": promoted,
            "dry_run": dry_run, "reason": decision["reason"], "metrics": decision["metrics"],
            "champion_metrics": decision["champion_metrics"],
            "champion_version": decision["champion_version"], "rows": decision["rows"],
            "rows_left_out": decision["rows_left_out"], "family": decision["family"],
            "aliases": aliases}
