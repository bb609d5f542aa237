"""The scoring job: score one feature snapshot with the registered model, idempotently.

Rows the model must not score go to the quarantine table with a reason; the rest go to the
predictions table; the batch's drift against the model version's baseline goes to the drift
table (:mod:`yws.monitoring`); every row carries the run's id. The run becomes visible in one
commit, its record in the score-runs table (:func:`publish`), which also supersedes the
batch's earlier run; until then readers (the views) see none of its rows, so a run that
fails, is interrupted or dies leaves nothing visible. A failed run deletes its own rows
(:func:`undo`), never another run's; :func:`sweep` removes superseded runs and long-dead ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.quality import InputDataError
from yws.contract.spec import Spec
from yws.contract.tables import SCORE_RUNS, arrow_schema
from yws.errors import YwsError
from yws.model import registry
from yws.monitoring import baseline as drift_baseline
from yws.monitoring.baseline import Baseline
from yws.monitoring.drift import Drift, compare
from yws.monitoring.profile import Plan, plain_plan
from yws.platform import storage_for, target_for
from yws.scoring import engines
from yws.scoring.base import Context, Pinned, RunIds, Scoring
from yws.storage import PublishConflictError, Storage, StorageError, check_literal

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class AccountingError(YwsError, RuntimeError):
    """Rows read did not equal rows scored plus rows quarantined; nothing was kept."""


@dataclass
class ScoreResult:
    run_id: str
    batch_id: str
    as_of_date: str
    model_name: str
    model_alias: str
    model_version: int
    rows_read: int
    rows_scored: int
    rows_quarantined: int
    bands: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    ended_at: str = ""
    duration_seconds: float = 0.0
    tables: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    engine: str = ""
    drift: dict[str, Any] = field(default_factory=dict)
    """The drift summary (status, worst feature and its PSI, score PSI) of the run's rows in
    the drift table (:mod:`yws.monitoring`)."""
    features_version: int | None = None
    """The features table's Delta version the run read (``yws score --replay`` reads it again)."""
    spec_hash: str = ""
    """:attr:`yws.contract.spec.Spec.hash` of the spec the run scored with."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _no_rows(settings: Settings, as_of: dt.date) -> InputDataError:
    return InputDataError(
        f"{settings.features} has no rows for as-of {as_of}: pick a date the table holds "
        "(`yws tables show` lists them) or load that snapshot first"
    )


def check_score_request(
    settings: Settings,
    spec: Spec,
    *,
    as_of: dt.date | None = None,
    batch_id: str | None = None,
    alias: str = registry.CHAMPION,
    storage: Storage | None = None,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Check what a score run was asked for, writing nothing: the batch id, the alias and the
    model behind it, the feature table's schema and that the snapshot has rows.

    The score job runs this as a task of its own, without retries, ahead of the retried score
    task: a wrong date or alias fails once, at once, and only infrastructure failures are
    retried. Raises the same errors :func:`score` would.
    """
    ctx = Context(settings, spec, storage or storage_for(settings), spark=spark)
    if batch_id:
        check_literal(batch_id, "batch id")
    model_version = registry.find(settings, alias).version
    found, rows = engines.counting_engine(ctx).count(as_of)
    if rows == 0:
        raise _no_rows(settings, found)
    return {"ok": True, "as_of_date": found.isoformat(), "batch_id": batch_id or found.isoformat(),
            "model_name": settings.model_name, "model_alias": alias,
            "model_version": model_version, "rows": rows}


def score(
    settings: Settings,
    spec: Spec,
    spark: SparkSession | None = None,
    *,
    as_of: dt.date | None = None,
    batch_id: str | None = None,
    alias: str = registry.CHAMPION,
    engine: str = "auto",
    storage: Storage | None = None,
    progress: Progress = quiet,
    reason_codes: bool = True,
    pinned: Pinned | None = None,
) -> ScoreResult:
    """Score the snapshot for ``as_of`` (default: the latest) as one batch, on ``engine``
    (a name in :data:`yws.scoring.engines.CHOICES`; ``auto`` lets the target choose).
    ``reason_codes``: each prediction carries its reason codes (False: the columns are null,
    ``yws score --no-reasons``).
    ``pinned``: read that Delta version of the features table and load that model version,
    recording ``alias`` as given (:func:`yws.scoring.replay.replay`); default: the table's
    current version, taken once, and ``alias``'s model version."""
    started = dt.datetime.now(dt.UTC)
    start = clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    ctx = Context(settings, spec, storage or storage_for(settings), progress, spark,
                  reasons=reason_codes,
                  features_version=pinned.features_version if pinned else None)
    storage = ctx.storage
    run_id = uuid.uuid4().hex
    if batch_id is not None:
        check_literal(batch_id, "batch id")
    engines.candidates(engine, ctx)  # an unknown engine fails before anything is read
    model = (registry.Located(pinned.model_version, None) if pinned
             else registry.find(settings, alias))
    chosen, as_of, rows_read, categories = engines.choose(engine, ctx, model, alias, as_of)
    baseline, plan = _drift_plan(settings, spec, model, categories)
    lap("load_model")
    batch_id = batch_id or as_of.isoformat()
    if rows_read == 0:
        raise _no_rows(settings, as_of)
    progress(f"reading {settings.features}")
    ids = RunIds(batch_id, run_id, settings.model_name, model.version, started)
    scoring = chosen.score(ids, rows_read, plan)
    lap("read_and_check")

    progress(f"scoring {rows_read} rows for as-of {as_of} as batch {batch_id} (run {run_id})")
    published = False
    superseded: list[str] = []
    try:
        for name, table in ((settings.predictions, "yws_predictions"),
                            (settings.quarantine, "yws_quarantine"),
                            (settings.score_runs, "yws_score_runs"),
                            (settings.drift, "yws_drift")):
            storage.ensure_ddl_table(name, table)  # adds the columns a new release brought
        written = storage.write(scoring.predictions(), settings.predictions, mode="append")
        lap("score_and_write_predictions")
        through = scoring.rows_through()
        if through is not None and through != rows_read:
            raise AccountingError(
                f"{settings.features} changed while it was read: {rows_read} rows were "
                f"counted for as-of {as_of}, {through} went through the model; "
                "nothing was published — run the score job again"
            )
        held = storage.write(scoring.quarantined(), settings.quarantine, mode="append")
        lap("write_quarantine")
        # What this run wrote, read back by its run id: other runs may be writing alongside.
        bands = storage.counts(settings.predictions, ("run_id", run_id), "band")
        reasons = storage.counts(settings.quarantine, ("run_id", run_id), "reason")
        rows_scored, rows_quarantined = sum(bands.values()), sum(reasons.values())
        if (rows_scored, rows_quarantined) != (written, held):
            raise StorageError(
                f"run {run_id} wrote {written} predictions and {held} quarantined rows but "
                f"{rows_scored} and {rows_quarantined} read back; nothing was published")
        if rows_read != rows_scored + rows_quarantined:
            raise AccountingError(
                f"rows read ({rows_read}) != rows scored ({rows_scored}) + rows quarantined "
                f"({rows_quarantined}); nothing was published"
            )
        lap("read_back")
        drift = _write_drift(storage, settings, scoring, plan, baseline, bands, ids, as_of)
        lap("drift")
        ended = dt.datetime.now(dt.UTC)
        result = ScoreResult(
            run_id=run_id,
            batch_id=batch_id,
            as_of_date=as_of.isoformat(),
            model_name=settings.model_name,
            model_alias=alias,
            model_version=model.version,
            rows_read=rows_read,
            rows_scored=rows_scored,
            rows_quarantined=rows_quarantined,
            bands=bands,
            quarantine_reasons=reasons,
            started_at=started.isoformat(),
            ended_at=ended.isoformat(),
            duration_seconds=round(time.perf_counter() - start, 3),
            tables={"predictions": settings.predictions, "quarantine": settings.quarantine,
                    "score_runs": settings.score_runs, "drift": settings.drift},
            timings=timings,
            engine=chosen.name,
            drift=_drift_summary(drift),
            features_version=ctx.features_version,
            spec_hash=spec.hash,
        )
        with interrupts_held():  # a cancel mid-commit must not leave "cancelled" but published
            superseded = publish(storage, settings, _run_record(result, as_of, started, ended),
                                 progress=progress)
            published = True
    except BaseException:
        if not published:
            undo(storage, settings, run_id, progress=progress)
        raise
    finally:
        scoring.close()
    lap("publish")
    sweep(storage, settings, superseded, progress=progress)
    track(settings, storage, result, progress)
    progress(f"scored {rows_scored} rows, quarantined {rows_quarantined}"
             + (f"; superseded run {', '.join(superseded)}" if superseded else ""))
    return result


def track(settings: Settings, storage: Storage, result: ScoreResult,
          progress: Progress = quiet) -> None:
    """The published run as an MLflow run of the experiment, its input the features table at
    the version it read (:mod:`yws.model.lineage`), so Unity Catalog lineage links the table,
    the model version and the run. Best effort: the batch is published whatever happens.
    Only where the target tracks score runs (:attr:`yws.platform.Target.score_runs_tracked`)."""
    if not target_for(settings).score_runs_tracked:
        return
    try:
        import mlflow

        from yws.model import lineage

        registry.configure(settings)
        with mlflow.start_run(run_name=f"score {result.batch_id}"):
            mlflow.log_params({"yws_run_id": result.run_id, "batch_id": result.batch_id,
                               "as_of": result.as_of_date, "model_name": result.model_name,
                               "model_version": result.model_version, "engine": result.engine,
                               "features_version": result.features_version,
                               "spec_hash": result.spec_hash})
            lineage.log_features_input(settings.features, result.features_version, "scoring",
                                       storage.table_id(settings.features))
    except Exception as e:
        progress(f"warning: the run was published but not logged to MLflow ({e})")


PUBLISH_ATTEMPTS = 8
ORPHANS_AFTER = dt.timedelta(hours=6)
"""Rows of a run that never published (its process died) are removed by a later run once they
are this old: far longer than a score task may run (its timeout is one hour), so a run still
going is never touched."""


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM (a job cancel) while the run publishes: one that arrives then is
    dropped once the commit has landed — the run is published, so it succeeded — and delivered
    if the commit failed, so the run is cancelled as asked. Only the main thread can set
    handlers; elsewhere the block is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    before = {s: signal.signal(s, lambda sig, _frame: came.append(sig)) for s in INTERRUPTS}
    done = False
    try:
        yield
        done = True
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if came and not done:
            os.kill(os.getpid(), came[0])  # the cancel goes on as it would have


def publish(storage: Storage, settings: Settings, record: pa.Table,
            progress: Progress = quiet) -> list[str]:
    """Commit the run: its record lands in the runs table, in the one commit that supersedes
    the batch's earlier run. Until then no reader sees any of its rows. Another run publishing
    at the same moment makes the commit conflict: try again on the new state, so runs of the
    same batch take turns and the last to publish is the batch's run; both stay whole."""
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            return storage.publish_run(settings.score_runs, record)
        except PublishConflictError:
            if attempt == PUBLISH_ATTEMPTS:
                raise
            progress(f"another run published meanwhile; publishing again (attempt {attempt + 1})")
            time.sleep(random.uniform(0.05, 0.25) * attempt)
    raise AssertionError("unreachable")


def undo(storage: Storage, settings: Settings, run_id: str, progress: Progress = quiet) -> None:
    """Remove what run ``run_id`` wrote before it failed, and nothing else. Its rows are
    invisible anyway (it never published); if this fails too, a later run's sweep removes
    them. If the failure came while publishing, the commit may have landed all the same: then,
    or when that cannot be told, the rows stay (a published run is whole)."""
    try:
        runs = storage.read_arrow(settings.score_runs, where=("run_id", run_id),
                                  columns=["run_id"]) if storage.exists(settings.score_runs) \
            else None
    except Exception as e:
        progress(f"warning: could not tell whether run {run_id} was published ({e}); its rows "
                 "are left for a later run's sweep")
        return
    if runs is not None and runs.num_rows:
        progress(f"run {run_id} was published before it failed: its batch stays as published")
        return
    for name in (settings.predictions, settings.quarantine, settings.drift):
        try:
            storage.delete_runs(name, [run_id])
        except Exception as e:  # never hide the error that made the run fail
            progress(f"warning: could not remove run {run_id}'s rows from {name} ({e}); "
                     "they are not visible and a later run removes them")


def sweep(storage: Storage, settings: Settings, superseded: list[str],
          now: dt.datetime | None = None, progress: Progress = quiet) -> dict[str, int]:
    """After a publish: remove the rows of the runs it superseded, and of runs that never
    published and are older than :data:`ORPHANS_AFTER`. Best effort: the batch is published
    whatever happens here."""
    removed: dict[str, int] = {}
    cutoff = (now or dt.datetime.now(dt.UTC)) - ORPHANS_AFTER
    try:
        runs = storage.read_arrow(settings.score_runs, columns=["run_id", "status"]).to_pylist()
        published = {r["run_id"] for r in runs if r["status"] == "SUCCEEDED"}
        gone = {r["run_id"] for r in runs if r["status"] == "SUPERSEDED"}
        for name, column in ((settings.predictions, "scored_at"),
                             (settings.quarantine, "quarantined_at"),
                             (settings.drift, "computed_at")):
            old = storage.runs_before(name, column, cutoff)
            doomed = set(superseded) | (old - published) | (old & gone)
            removed[name] = storage.delete_runs(name, sorted(doomed)) if doomed else 0
    except Exception as e:
        progress(f"warning: clean-up of superseded and abandoned runs failed ({e}); "
                 "readers are not affected and the next run tries again")
    return removed


def _run_record(r: ScoreResult, as_of: dt.date, started: dt.datetime,
                ended: dt.datetime) -> pa.Table:
    row = {
        "run_id": r.run_id, "batch_id": r.batch_id, "as_of_date": as_of,
        "model_name": r.model_name, "model_alias": r.model_alias,
        "model_version": r.model_version, "rows_read": r.rows_read,
        "rows_scored": r.rows_scored, "rows_quarantined": r.rows_quarantined,
        "started_at": started, "ended_at": ended, "duration_seconds": r.duration_seconds,
        "status": "SUCCEEDED", "superseded_by": None,
        "drift_status": r.drift.get("status"), "drift_worst_feature": r.drift.get("worst_feature"),
        "drift_worst_psi": r.drift.get("worst_psi"),
        "features_version": r.features_version, "spec_hash": r.spec_hash or None,
        "engine": r.engine or None,
    }
    return pa.Table.from_pylist([row], schema=arrow_schema(SCORE_RUNS))


def _drift_plan(settings: Settings, spec: Spec, model: registry.Located,
                categories: dict[str, list[str]]) -> tuple[Baseline | None, Plan]:
    """The version's training baseline and the bins the run counts in (no baseline: one bin
    per numeric feature, the model's categories: null and unseen rates only)."""
    baseline = drift_baseline.for_version(settings, model.version, model.path)
    return baseline, (baseline.plan(spec, categories) if baseline is not None
                      else plain_plan(spec, categories))


def _write_drift(storage: Storage, settings: Settings, scoring: Scoring, plan: Plan,
                 baseline: Baseline | None, bands: dict[str, int], ids: RunIds,
                 as_of: dt.date) -> Drift:
    """The run's drift rows, written to the drift table before the run publishes (tagged with
    its run id, so invisible until then and removed by :func:`undo` and :func:`sweep`)."""
    profile = scoring.profile()
    assert profile is not None  # every engine counts on the plan it is given
    drift = compare(plan, profile, baseline, bands)
    storage.write(drift.table(run_id=ids.run_id, batch_id=ids.batch_id, as_of=as_of,
                              model_name=ids.model_name, model_version=ids.model_version,
                              at=dt.datetime.now(dt.UTC)), settings.drift, mode="append")
    return drift


def _drift_summary(drift: Drift) -> dict[str, Any]:
    score = next((r for r in drift.rows if r.kind == "score"), None)
    return {**drift.summary(), "score_psi": score.psi if score is not None else None,
            "rows": len(drift.rows)}
