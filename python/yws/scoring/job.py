"""The scoring job: score one feature snapshot with the registered model, idempotently.

Rows the model must not score go to the quarantine table with a reason; the rest go to the
predictions table; every row carries the run's id. The run becomes visible in one commit, its
record in the score-runs table (:func:`publish`), which also supersedes the batch's earlier
run; until then readers (the views) see none of its rows, so a run that fails, is interrupted
or dies leaves nothing visible. A failed run deletes its own rows (:func:`undo`), never
another run's; :func:`sweep` removes superseded runs and long-dead ones.
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.quality import REASON_COL, InputDataError, check_schema, with_reason
from yws.contract.spec import Spec
from yws.contract.tables import (
    FEATURES_HINT,
    PREDICTIONS,
    QUARANTINE,
    SCORE_RUNS,
    arrow_schema,
    conform,
)
from yws.errors import InvalidValueError, YwsError
from yws.model import registry
from yws.model.pipeline import category_labels
from yws.storage import (
    PublishConflictError,
    Storage,
    StorageError,
    check_literal,
    storage_for,
)

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession


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
    engine: str = "spark"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def band_column(spec: Spec, probability: str = "probability"):  # -> Column
    """:class:`yws.contract.spec.Bands` compiled to a Spark expression: the highest band reached."""
    from pyspark.sql import functions as F

    p, bands = F.col(probability), spec.bands
    starts = list(zip(bands.thresholds, bands.NAMES[1:], strict=True))
    (first, name), rest = starts[-1], reversed(starts[:-1])
    out = F.when(p >= first, F.lit(name))
    for threshold, name in rest:
        out = out.when(p >= threshold, F.lit(name))
    return out.otherwise(F.lit(bands.NAMES[0]))


def predict(
    model: PipelineModel, rows: DataFrame, spec: Spec, *, batch_id: str, run_id: str,
    model_name: str, model_version: int, scored_at: dt.datetime,
) -> DataFrame:
    """Predictions table rows for ``rows`` (which must all pass the quality checks)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = model.transform(rows).select(
        F.col(spec.entity_key).cast("string").alias("entity_id"),
        F.col(spec.as_of_column).alias("as_of_date"),
        F.lit(batch_id).alias("batch_id"),
        F.lit(run_id).alias("run_id"),
        vector_to_array(F.col("probability"))[1].alias("probability"),
        F.col("prediction").cast("int").alias("prediction"),
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
        F.lit(scored_at).alias("scored_at"),
    ).withColumn("band", band_column(spec))
    return conform(scored, PREDICTIONS)


def quarantined(rows: DataFrame, spec: Spec, *, batch_id: str, run_id: str,
                at: dt.datetime) -> DataFrame:
    """Quarantine table rows: the reason and the whole input row as JSON."""
    from pyspark.sql import functions as F

    inputs = [c for c in rows.columns if c != REASON_COL]
    out = rows.select(
        F.col(spec.entity_key).cast("string").alias("entity_id"),
        F.col(spec.as_of_column).alias("as_of_date"),
        F.lit(batch_id).alias("batch_id"),
        F.lit(run_id).alias("run_id"),
        F.col(REASON_COL).alias("reason"),
        F.to_json(F.struct(*[F.col(c) for c in inputs])).alias("record"),
        F.lit(at).alias("quarantined_at"),
    )
    return conform(out, QUARANTINE)


def snapshot(
    spark: SparkSession, storage: Storage, settings: Settings, spec: Spec, as_of: dt.date | None,
) -> tuple[DataFrame, dt.date]:
    """The feature rows for ``as_of`` (default: the latest date in the table)."""
    from pyspark.sql import functions as F

    storage.require(settings.features, FEATURES_HINT)
    df = storage.read(spark, settings.features)
    check_schema(df, spec, settings.features, need_label=False)
    if as_of is None:
        latest = df.agg(F.max(spec.as_of_column)).first()
        if latest is None or latest[0] is None:
            raise InputDataError(f"{settings.features} is empty: there is nothing to score")
        as_of = latest[0]
    assert as_of is not None
    return df.where(F.col(spec.as_of_column) == F.lit(as_of)), as_of


ENGINES = ("auto", "spark", "arrow")


def choose_engine(engine: str, settings: Settings, arrow_model: Callable[[], Any],
                  rows: int | None = None, progress: Progress = quiet) -> tuple[str, Any]:
    """("arrow", ArrowModel) or ("spark", None). ``auto`` takes arrow on the local target when
    the model is one the arrow engine implements and ``rows`` fit this machine (see
    :func:`yws.scoring.arrow.fits`); on Databricks the batch stays on Spark."""
    from yws.model.evaluator import UnsupportedModelError
    from yws.scoring.arrow import available_memory, fits

    if engine not in ENGINES:
        raise InvalidValueError(f"engine {engine!r} is unknown; use one of {', '.join(ENGINES)}")
    if engine == "spark" or (engine == "auto" and settings.target == "databricks"):
        return "spark", None
    if engine == "auto" and rows is not None and not fits(rows):
        progress(f"{rows:,} rows is more than the arrow engine should hold with "
                 f"{available_memory() / 2**30:.1f} GiB free: scoring on Spark")
        return "spark", None
    try:
        return "arrow", arrow_model()
    except UnsupportedModelError as e:
        if engine == "arrow":
            raise
        progress(f"{e}: scoring on Spark")
        return "spark", None


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
    from yws.scoring import arrow as score_arrow

    storage = storage or storage_for(settings)
    if batch_id:
        check_literal(batch_id, "batch id")
    registry.check_alias(alias)
    if settings.target == "local":
        model_version = registry.locate(settings, alias).version
    else:
        registry.configure(settings)
        model_version = int(registry.resolve(settings, alias).version)
    if settings.target == "local" and spark is None:
        snap = score_arrow.snapshot(storage, settings, spec, as_of)
        found, rows = snap.as_of, snap.rows
    else:
        if spark is None:
            from yws.platform.spark import get_spark

            spark = get_spark(settings)
        df, found = snapshot(spark, storage, settings, spec, as_of)
        rows = df.count()
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
    engine: str = "spark",
    storage: Storage | None = None,
    progress: Progress = quiet,
) -> ScoreResult:
    """Score the snapshot for ``as_of`` (default: the latest) as one batch."""
    from yws.scoring import arrow as score_arrow

    started = dt.datetime.now(dt.UTC)
    start = clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    storage = storage or storage_for(settings)
    run_id = uuid.uuid4().hex
    if batch_id is not None:
        check_literal(batch_id, "batch id")
    located = None  # the local fast path to the model's files, for the arrow engine
    if engine != "spark" and settings.target == "local":
        located = registry.locate(settings, alias)
        model_version = located.version
    else:
        registry.configure(settings)
        model_version = int(registry.resolve(settings, alias).version)
    snap = None  # the arrow path's look at the snapshot, which auto also needs to choose
    if engine == "arrow" or (engine == "auto" and settings.target != "databricks"):
        snap = score_arrow.snapshot(storage, settings, spec, as_of)
        as_of = snap.as_of

    def load_arrow() -> Any:
        from yws.model.evaluator import ArrowModel

        if located is not None:
            return ArrowModel.load(located.path)
        return ArrowModel.from_registry(f"models:/{settings.model_name}/{model_version}")

    used, arrow_model = choose_engine(engine, settings, load_arrow,
                                      rows=snap.rows if snap else None, progress=progress)
    progress(f"loading {settings.model_name}@{alias} (v{model_version}) for the {used} "
             "engine")
    if used == "spark":
        if spark is None:
            from yws.platform.spark import get_spark

            spark = get_spark(settings)
        if located is not None:
            registry.configure(settings)
        model = registry.load(settings, model_version)
        categories = category_labels(model)
    else:
        categories = arrow_model.categories()
    lap("load_model")

    progress(f"reading {settings.features}")
    scorer = None
    if used == "spark":
        from pyspark.sql import functions as F

        assert spark is not None
        rows, as_of = snapshot(spark, storage, settings, spec, as_of)
        rows_read = rows.count()
    else:
        assert snap is not None
        rows_read = snap.rows
    assert as_of is not None
    batch_id = batch_id or as_of.isoformat()
    if rows_read == 0:
        raise _no_rows(settings, as_of)
    if used == "spark":
        checked = with_reason(rows, spec, categories)
        good_rows = predict(model, checked.where(F.col(REASON_COL).isNull()).drop(REASON_COL),
                            spec, batch_id=batch_id, run_id=run_id,
                            model_name=settings.model_name,
                            model_version=model_version, scored_at=started)
        bad_rows = quarantined(checked.where(F.col(REASON_COL).isNotNull()), spec,
                               batch_id=batch_id, run_id=run_id, at=started)
    else:
        assert snap is not None
        scorer = score_arrow.Scorer(
            arrow_model, spec, categories, score_arrow.duplicate_keys(storage, spec, snap),
            batch_id=batch_id, run_id=run_id, model_name=settings.model_name,
            model_version=model_version,
            at=started, total=rows_read, progress=progress)
        good_rows = scorer.predictions(storage.scan_arrow(
            settings.features, where=(spec.as_of_column, as_of),
            batch_rows=score_arrow.BATCH_ROWS, version=snap.version))
    lap("read_and_check")

    progress(f"scoring {rows_read} rows for as-of {as_of} as batch {batch_id} (run {run_id})")
    for name, columns in ((settings.predictions, PREDICTIONS), (settings.quarantine, QUARANTINE),
                          (settings.score_runs, SCORE_RUNS)):
        storage.ensure_table(name, arrow_schema(columns))
    published = False
    superseded: list[str] = []
    try:
        written = storage.write(good_rows, settings.predictions, mode="append")
        lap("score_and_write_predictions")
        if scorer is not None:  # the stream has gone through: what it held back is known
            bad_rows = scorer.quarantined()
            if scorer.rows_read != rows_read:
                raise AccountingError(
                    f"{settings.features} changed while it was read: {rows_read} rows were "
                    f"counted for as-of {as_of}, {scorer.rows_read} went through the model; "
                    "nothing was published — run the score job again"
                )
        held = storage.write(bad_rows, settings.quarantine, mode="append")
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
        ended = dt.datetime.now(dt.UTC)
        result = ScoreResult(
            run_id=run_id,
            batch_id=batch_id,
            as_of_date=as_of.isoformat(),
            model_name=settings.model_name,
            model_alias=alias,
            model_version=model_version,
            rows_read=rows_read,
            rows_scored=rows_scored,
            rows_quarantined=rows_quarantined,
            bands=bands,
            quarantine_reasons=reasons,
            started_at=started.isoformat(),
            ended_at=ended.isoformat(),
            duration_seconds=round(time.perf_counter() - start, 3),
            tables={"predictions": settings.predictions, "quarantine": settings.quarantine,
                    "score_runs": settings.score_runs},
            timings=timings,
            engine=used,
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
        if scorer is not None:
            scorer.close()
    lap("publish")
    sweep(storage, settings, superseded, progress=progress)
    progress(f"scored {rows_scored} rows, quarantined {rows_quarantined}"
             + (f"; superseded run {', '.join(superseded)}" if superseded else ""))
    return result


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
    for name in (settings.predictions, settings.quarantine):
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
                             (settings.quarantine, "quarantined_at")):
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
    }
    return pa.Table.from_pylist([row], schema=arrow_schema(SCORE_RUNS))
