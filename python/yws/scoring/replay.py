"""Exact replay: score a published run again from exactly its inputs and compare.

A score run records the features table's Delta version it read, the model version, the spec's
hash and the engine (``yws_score_runs``). :func:`replay` reads that record, scores the same
as-of date at that table version (Delta time travel) with that model version, on the same
engine (or another one, to compare engines), into a scratch batch ``replay-<run_id>``, then
compares every probability with the original run's by entity:

- on the same engine every probability must be the same to the last bit;
- across engines they must agree to :data:`CROSS_ENGINE_TOLERANCE`.

The scratch batch is published under the model alias :data:`REPLAY_ALIAS`, so it is never
official (the views count ``@champion`` batches of the deployment's model only) and never
supersedes the original batch; replaying the same run again supersedes the earlier replay.
It stays, to be inspected, until the next run's clean-up of superseded runs, or for good.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.spec import Spec
from yws.errors import NotFoundError, YwsError
from yws.platform import storage_for
from yws.scoring import engines
from yws.scoring.base import Context, Pinned
from yws.storage import Storage, check_literal

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REPLAY_ALIAS = "replay"
"""The alias a replay's run records: not ``champion``, so its batch is never official."""
CROSS_ENGINE_TOLERANCE = 1e-9
"""How far a probability may move when a run is replayed on another engine (the engines sum
the same margin in another order)."""
SHOWN = 5  # entity ids listed per kind of difference


class ReplayError(YwsError, ValueError):
    """The run cannot be replayed: its record lacks an input, or an input is not the same."""


class ReplayMismatchError(YwsError, RuntimeError):
    """The replay scored different probabilities than the original run."""

    def __init__(self, report: ReplayReport) -> None:
        super().__init__(report.verdict)
        self.report = report


@dataclass
class ReplayReport:
    run_id: str
    batch_id: str
    as_of_date: str
    model_name: str
    model_version: int
    features_version: int
    spec_hash: str
    engine: str  # the original run's
    replay_engine: str
    replay_run_id: str
    replay_batch_id: str
    tolerance: float  # 0.0: bit for bit (same engine)
    rows_compared: int
    bit_identical: int
    max_abs_diff: float
    differing: int  # rows past the tolerance
    missing_in_replay: int
    missing_in_original: int
    reasons_differ: int | None  # rows whose reason_1..3 differ; None: not compared
    examples: dict[str, list[str]] = field(default_factory=dict)
    matches: bool = False

    @property
    def verdict(self) -> str:
        how = ("bit for bit (same engine)" if self.tolerance == 0.0
               else f"within {self.tolerance:g} ({self.engine} vs {self.replay_engine})")
        if self.matches:
            return (f"run {self.run_id} replayed: all {self.rows_compared} probabilities match "
                    f"{how}")
        problems = []
        if self.differing:
            problems.append(f"{self.differing} probabilities differ (max |Δ| "
                            f"{self.max_abs_diff:.3g}), e.g. {', '.join(self.examples['differ'])}")
        if self.missing_in_replay:
            problems.append(f"{self.missing_in_replay} entities of the run are not in the "
                            f"replay, e.g. {', '.join(self.examples['missing_in_replay'])}")
        if self.missing_in_original:
            problems.append(f"{self.missing_in_original} entities of the replay are not in "
                            f"the run, e.g. {', '.join(self.examples['missing_in_original'])}")
        return (f"run {self.run_id} does NOT replay {how}: {'; '.join(problems)}. The replay "
                f"is batch {self.replay_batch_id} (run {self.replay_run_id}) to compare; see "
                "docs/operations.md, \"Prove last Tuesday's list\"")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def run_record(storage: Storage, settings: Settings, run_id: str) -> dict[str, Any]:
    """The published record of score run ``run_id`` (refused: unknown, or without the inputs
    a replay needs)."""
    check_literal(run_id, "run id")
    rows = (storage.read_arrow(settings.score_runs, where=("run_id", run_id)).to_pylist()
            if storage.exists(settings.score_runs) else [])
    if not rows:
        raise NotFoundError(
            f"no score run {run_id} in {settings.score_runs}: take a run_id from "
            f"{settings.catalog}.{settings.schema}.v_yws_score_runs (or the yws_score_runs "
            "table, which keeps superseded runs too)")
    record: dict[str, Any] = rows[0]
    if record.get("features_version") is None or not record.get("spec_hash"):
        raise ReplayError(
            f"run {run_id} was written by a release that did not record its inputs "
            "(features_version, spec_hash, engine are NULL): it cannot be replayed exactly; "
            "runs from this release on can")
    if record["status"] != "SUCCEEDED":
        raise ReplayError(
            f"run {run_id} is {record['status']}"
            + (f" by run {record['superseded_by']}" if record.get("superseded_by") else "")
            + ": its predictions were removed when it was superseded, so there is nothing to "
            "compare with; replay the run that superseded it")
    return record


def replay(settings: Settings, spec: Spec, run_id: str, *, engine: str | None = None,
           spark: SparkSession | None = None, storage: Storage | None = None,
           progress: Progress = quiet) -> ReplayReport:
    """Score run ``run_id`` again from its recorded inputs and compare every probability.

    ``engine``: the engine to replay on (default: the run's own). Raises
    :class:`ReplayMismatchError` (with the report) when the probabilities do not match,
    :class:`ReplayError` / :class:`yws.errors.NotFoundError` when the run cannot be replayed,
    :class:`yws.storage.VersionNotFoundError` when VACUUM removed the table version it read.
    """
    from yws.scoring.job import score

    storage = storage or storage_for(settings)
    record = run_record(storage, settings, run_id)
    if record["spec_hash"] != spec.hash:
        raise ReplayError(
            f"run {run_id} was scored with a spec whose hash is {record['spec_hash'][:12]}…; "
            f"the spec given ({spec.source}) hashes to {spec.hash[:12]}…: pass the spec file "
            "the run used (--spec PATH)")
    if record["model_name"] != settings.model_name:
        raise ReplayError(
            f"run {run_id} scored with model {record['model_name']}, not "
            f"{settings.model_name}: pass --model {record['model_name'].split('.')[-1]} "
            "(or the same settings the run had)")
    original_engine = record.get("engine") or ""
    chosen = engine or original_engine
    engines.candidates(chosen, Context(settings, spec, storage))  # a known name
    version = int(record["features_version"])
    storage.check_version(settings.features, version)
    batch = f"replay-{run_id}"
    progress(f"replaying run {run_id}: {settings.features} at version {version}, "
             f"{record['model_name']} v{record['model_version']}, {chosen} engine, "
             f"as batch {batch}")
    result = score(settings, spec, spark, as_of=record["as_of_date"], batch_id=batch,
                   alias=REPLAY_ALIAS, engine=chosen, storage=storage, progress=progress,
                   pinned=Pinned(version, int(record["model_version"])))
    report = compare(storage, settings, record, result.run_id, batch,
                     tolerance=0.0 if result.engine == original_engine
                     else CROSS_ENGINE_TOLERANCE)
    report.replay_engine = result.engine
    if not report.matches:
        raise ReplayMismatchError(report)
    return report


_REASONS = ("reason_1", "reason_2", "reason_3")


def _rows(storage: Storage, settings: Settings, run_id: str, reasons: bool) -> pa.Table:
    columns = ["entity_id", "probability", *(_REASONS if reasons else ())]
    return storage.read_arrow(settings.predictions, where=("run_id", run_id), columns=columns)


def compare(storage: Storage, settings: Settings, record: dict[str, Any], replay_run_id: str,
            replay_batch_id: str, tolerance: float) -> ReplayReport:
    """The replay's probabilities beside the original run's, by entity id."""
    names = storage.read_arrow(settings.predictions, limit=0).schema.names
    reasons = all(r in names for r in _REASONS)
    left = _rows(storage, settings, record["run_id"], reasons).to_pydict()
    right = _rows(storage, settings, replay_run_id, reasons).to_pydict()
    before = dict(zip(left["entity_id"], range(len(left["entity_id"])), strict=True))
    after = dict(zip(right["entity_id"], range(len(right["entity_id"])), strict=True))
    both = sorted(set(before) & set(after))
    a = np.array([left["probability"][before[e]] for e in both], dtype=np.float64)
    b = np.array([right["probability"][after[e]] for e in both], dtype=np.float64)
    same_bits = a.view(np.int64) == b.view(np.int64)
    delta = np.abs(a - b)
    off = ~same_bits if tolerance == 0.0 else ~(delta <= tolerance)
    reasons_differ = None
    if reasons:
        reasons_differ = sum(
            any(left[r][before[e]] != right[r][after[e]] for r in _REASONS) for e in both)
    missing_in_replay = sorted(set(before) - set(after))
    missing_in_original = sorted(set(after) - set(before))
    differ = [e for e, bad in zip(both, off, strict=True) if bad]
    report = ReplayReport(
        run_id=record["run_id"], batch_id=record["batch_id"],
        as_of_date=_iso(record["as_of_date"]), model_name=record["model_name"],
        model_version=int(record["model_version"]),
        features_version=int(record["features_version"]), spec_hash=record["spec_hash"],
        engine=record.get("engine") or "", replay_engine="", replay_run_id=replay_run_id,
        replay_batch_id=replay_batch_id, tolerance=tolerance, rows_compared=len(both),
        bit_identical=int(same_bits.sum()),
        max_abs_diff=float(delta.max()) if len(both) else 0.0, differing=len(differ),
        missing_in_replay=len(missing_in_replay), missing_in_original=len(missing_in_original),
        reasons_differ=reasons_differ,
        examples={"differ": differ[:SHOWN], "missing_in_replay": missing_in_replay[:SHOWN],
                  "missing_in_original": missing_in_original[:SHOWN]})
    report.matches = not (differ or missing_in_replay or missing_in_original)
    return report


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)
