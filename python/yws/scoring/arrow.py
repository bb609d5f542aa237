"""The arrow engine: snapshot, quarantine rules and predictions without Spark.

The snapshot streams through in record batches (:class:`Scorer`), so memory stays flat as the
rows grow; the one whole-snapshot pass reads the entity keys alone, to find duplicates.

The quarantine rules, their order and wording come from :mod:`yws.contract.rules`, which the Spark
engine compiles too, so both engines hold back the same rows for the same reasons; the tests
run the same cases on both.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.quality import InputDataError, check_arrow_schema, check_duplicate_count
from yws.contract.rules import Rule, quarantine_rules
from yws.contract.spec import Spec
from yws.contract.tables import FEATURES_HINT, PREDICTIONS, QUARANTINE, arrow_schema
from yws.model import families
from yws.model.evaluator import no_reasons
from yws.model.families import FamilyModel
from yws.monitoring.profile import Plan, Profile, count_numbers, count_table
from yws.scoring.base import Engine, RunIds, Scoring, UnsuitableEngineError
from yws.storage import Storage

if TYPE_CHECKING:
    from yws.model.registry import Located

BATCH_ROWS = 262_144
"""Rows per record batch: big enough for NumPy to run at full speed, small enough that a few
batches in flight stay well under 1 GB whatever the snapshot's size."""
ARROW_BYTES_PER_ROW = 112
"""Memory the arrow path holds per snapshot row: the entity keys it checks for duplicates
(about 105 bytes per row measured at 10M rows, ``benchmarks/bench_core.py``)."""


STREAM_BYTES_PER_ROW = 2_400
"""Memory a row in flight takes (a few batches of raw columns, model matrices and output); the
stream holds at most four batches, about 600 MB, whatever the snapshot's size."""


@dataclass(frozen=True)
class Snapshot:
    table: str
    as_of: dt.date
    rows: int
    version: int | None  # every read of one run is of this table version


def snapshot(storage: Storage, settings: Settings, spec: Spec,
             as_of: dt.date | None, version: int | None = None) -> Snapshot:
    """Which rows one score run reads: found from the date column alone, a batch at a time,
    and pinned to ``version`` of the table (default: its current one) so every later read
    sees the same rows."""
    storage.require(settings.features, FEATURES_HINT)
    if version is None:
        version = storage.version(settings.features)
    schema = storage.read_arrow(settings.features, limit=0, version=version).schema
    check_arrow_schema(schema, spec, settings.features, need_label=False)
    latest, rows = as_of, 0
    for batch in storage.scan_arrow(settings.features, columns=[spec.as_of_column],
                                    version=version):
        dates = batch.column(0)
        if as_of is None:  # the latest snapshot: keep the newest date and its row count
            top = pc.max(dates).as_py()
            if top is None or (latest is not None and top < latest):
                continue
            if latest is None or top > latest:
                latest, rows = top, 0
        rows += pc.sum(pc.equal(dates, pa.scalar(latest, dates.type))).as_py() or 0
    if latest is None:
        raise InputDataError(f"{settings.features} is empty: there is nothing to score")
    return Snapshot(settings.features, latest, int(rows), version)


def available_memory() -> int:
    """Bytes this process can still take without swapping: MemAvailable on Linux, lowered to
    what a container's memory limit (cgroup v2) leaves; the free pages elsewhere."""
    free: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):  # not every system has it (macOS): assume 4 GiB
            free = 4 * 2**30
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            free = min(free, max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    return free


def fits(rows: int, memory: int | None = None) -> bool:
    """Whether the arrow path can score ``rows`` here using at most half the free memory:
    the entity keys of the snapshot plus the batches in flight."""
    memory = available_memory() if memory is None else memory
    in_flight = min(rows, 4 * BATCH_ROWS) * STREAM_BYTES_PER_ROW
    return rows * ARROW_BYTES_PER_ROW + in_flight <= memory // 2


def duplicate_keys(storage: Storage, spec: Spec, snap: Snapshot) -> pa.Array:
    """Entity keys that occur more than once in the snapshot (nulls are never duplicates).

    Too many of them means the table is not one row per entity and date: the same error as
    the Spark path's, before anything is scored.
    """
    keys = storage.read_arrow(snap.table, where=(spec.as_of_column, snap.as_of),
                              columns=[spec.entity_key], version=snap.version).column(0)
    keys = pc.cast(keys, pa.string())
    distinct = len(pc.unique(keys)) - (1 if keys.null_count else 0)  # unique: 2x count_distinct
    if distinct == len(keys) - keys.null_count:
        out = pa.array([], pa.string())
    else:
        counts = pc.value_counts(keys)
        repeated = pc.and_(pc.greater(counts.field("counts"), 1),
                           pc.is_valid(counts.field("values")))
        out = counts.field("values").filter(repeated)
    del keys
    pa.default_memory_pool().release_unused()  # hand the key pass's memory back for the stream
    check_duplicate_count(len(out), spec)
    return out


def reasons(table: pa.Table, spec: Spec, categories: dict[str, list[str]],
            duplicates: pa.Array, rules: Iterable[Rule] | None = None,
            ) -> tuple[np.ndarray, list[str]]:
    """(mask of the rows that cannot be scored, why — '; '-joined — for each of them, in order).

    Vectorised: only the flagged rows, usually few, are visited one by one. ``duplicates``
    holds the snapshot's repeated keys (:func:`duplicate_keys`), so a batch needs no other.
    ``rules``: the batch job's (the default), or a subset of them (on-demand scoring).
    """
    n = table.num_rows
    checks: list[tuple[np.ndarray, str | Any]] = []  # (mask, text or per-row texts)

    def add(mask: np.ndarray, text: str | Any) -> None:
        if mask.any():
            checks.append((mask, text))

    floats: dict[str, np.ndarray] = {}  # each numeric column converted once per batch
    if rules is None:
        rules = quarantine_rules(spec, unseen=True, duplicates=len(duplicates) > 0)
    for rule in rules:
        col = table[rule.column]
        if rule.check == "null":
            add(_nulls(col), rule.reason())
        elif rule.check in ("null_or_nan", "infinite"):
            if rule.column not in floats:
                floats[rule.column] = np.asarray(
                    pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            x = floats[rule.column]
            add(np.isnan(x) if rule.check == "null_or_nan" else np.isinf(x), rule.reason())
        elif rule.check == "unseen":
            if rule.column not in categories:  # a column the model does not read
                continue
            known = pa.array(categories[rule.column], pa.string())
            values = pc.cast(col, pa.string())
            unseen = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known)))
            add(np.asarray(unseen.to_numpy(zero_copy_only=False), dtype=bool), (rule, values))
        elif rule.check == "duplicate":
            dup = pc.is_in(pc.cast(col, pa.string()), value_set=duplicates)
            add(np.asarray(dup.to_numpy(zero_copy_only=False), dtype=bool), rule.reason())
        else:  # pragma: no cover - a new check must be compiled here and in yws.contract.quality
            raise NotImplementedError(f"the arrow engine cannot check {rule.check!r}")
    bad = np.zeros(n, dtype=bool)
    for mask, _ in checks:
        bad |= mask
    texts = []
    for i in np.nonzero(bad)[0]:
        parts = []
        for mask, text in checks:
            if mask[i]:
                parts.append(text if isinstance(text, str) else
                             text[0].reason(text[1][int(i)].as_py()))
        texts.append("; ".join(parts))
    return bad, texts


class Scorer:
    """Streams one snapshot through the quality rules and the model, a record batch at a time.

    :meth:`predictions` is a stream for the predictions table; once it has been consumed,
    :meth:`quarantined` streams the rows it held back and :attr:`rows_read` counts every row
    that went through. Held-back rows wait in a Parquet file in a temporary folder, not in
    memory, so a snapshot that is bad throughout costs disk, not RAM; :meth:`close` removes it.
    """

    def __init__(self, model: FamilyModel, spec: Spec, categories: dict[str, list[str]],
                 duplicates: pa.Array, *, batch_id: str, run_id: str, model_name: str,
                 model_version: int, at: dt.datetime, total: int = 0,
                 progress: Progress = quiet) -> None:
        self.model, self.spec, self.categories, self.duplicates = (
            model, spec, categories, duplicates)
        self.plan: Plan | None = None
        self.profile: Profile | None = None
        self.model_name, self.model_version = model_name, model_version
        self.batch_id, self.run_id = batch_id, run_id
        self.at, self.total, self.progress = at, total, progress
        self.rows_read = 0
        clean_stale_spills()
        folder = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX))
        self._lock = open(folder / SPILL_LOCK, "w")  # held while the run lives; see below
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._spill = folder / "held.parquet"
        self._writer: pq.ParquetWriter | None = None

    reasons = True
    """Whether the predictions carry reason codes (``yws score --no-reasons``: null)."""

    def count_on(self, plan: Plan | None) -> Scorer:
        """Count the rows for drift on ``plan`` as they stream (:attr:`profile`)."""
        self.plan, self.profile = plan, Profile() if plan is not None else None
        return self

    def predictions(self, batches: Iterable[pa.RecordBatch]) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(arrow_schema(PREDICTIONS),
                                                 ahead(self._run(batches)))

    def _run(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        said = 0
        for batch in batches:
            table = pa.Table.from_batches([batch])
            if self.plan is not None and self.profile is not None:  # every row read
                self.profile.add(count_table(self.plan, table))
            bad, why = refused(table, self.model, self.spec, self.categories,
                               self.duplicates)
            if bad.any():
                self._hold(quarantined(table.filter(pa.array(bad)), why, self.spec,
                                       batch_id=self.batch_id, run_id=self.run_id, at=self.at))
                table = table.filter(pa.array(~bad))
            self.rows_read += batch.num_rows
            scored = predictions(
                self.model, table, self.spec, batch_id=self.batch_id, run_id=self.run_id,
                model_name=self.model_name,
                model_version=self.model_version, scored_at=self.at, reasons=self.reasons)
            if self.plan is not None and self.plan.score is not None \
                    and self.profile is not None:
                self.profile.add(Profile(score=count_numbers(
                    self.plan.score, scored["probability"].to_numpy())))  # the rows scored
            yield from scored.to_batches()
            if self.rows_read - said >= 10 * BATCH_ROWS:
                said = self.rows_read
                self.progress(f"  {self.rows_read:,} of {self.total:,} rows through the model")

    def _hold(self, rows: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._spill, arrow_schema(QUARANTINE))
        self._writer.write_table(rows)

    def quarantined(self) -> pa.Table | pa.RecordBatchReader:
        if self._writer is None:
            return arrow_schema(QUARANTINE).empty_table()
        self._writer.close()
        self._writer = None
        held = pq.ParquetFile(self._spill)
        return pa.RecordBatchReader.from_batches(arrow_schema(QUARANTINE),
                                                 held.iter_batches(BATCH_ROWS))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        shutil.rmtree(self._spill.parent, ignore_errors=True)
        self._lock.close()


T = TypeVar("T")


def ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items``, computed in a thread up to ``depth`` items ahead of the one who reads them.

    The writer (delta-rs, in Rust, without the GIL) encodes and writes one batch of
    predictions while this thread reads, checks and scores the next, so a run takes about
    the longer of the two rather than their sum. An error in ``items`` is raised to the
    reader, as it was raised; a reader that stops early (a failed write, an interrupt) stops
    the thread before this generator returns, and ``items`` is closed (its ``finally`` runs).
    At ``depth`` 1 three batches of predictions exist at once (one being written, one waiting,
    one being made): within the four that :data:`STREAM_BYTES_PER_ROW` allows for."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as e:  # the reader raises it
            put((False, e))

    worker = threading.Thread(target=produce, name="yws-score-ahead", daemon=True)
    worker.start()
    try:
        while True:
            more, item = box.get()
            if more:
                yield item
            elif item is None:
                return
            else:
                raise item
    finally:
        stop.set()
        worker.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


SPILL_PREFIX = "yws-quarantine-"
SPILL_LOCK = "owner.lock"


def clean_stale_spills(root: Path | None = None) -> list[Path]:
    """Remove the spill folders of runs that died (``kill -9`` skips :meth:`Scorer.close`).

    A live run holds an exclusive lock on its folder's lock file; the kernel drops it when the
    process dies, however it dies. A folder whose lock can be taken is therefore abandoned; one
    without a lock file is abandoned once it is an hour old (it was killed while being made).
    """
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(SPILL_PREFIX + "*"):
        try:
            with open(folder / SPILL_LOCK) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)  # ours now: nobody else holds it
                removed.append(folder)
        except BlockingIOError:
            continue  # a live run's folder
        except FileNotFoundError:
            try:
                if time.time() - folder.stat().st_mtime > 3600:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
            except FileNotFoundError:
                pass
        except OSError:
            continue
    return removed


def _nulls(col: Any) -> np.ndarray:
    return np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)


def bands(p: np.ndarray, spec: Spec) -> pa.Array:
    """:class:`yws.contract.spec.Bands` compiled to NumPy: each probability's band name."""
    level = np.zeros(len(p), dtype=np.int8)
    for threshold in spec.bands.thresholds:
        level += p >= threshold
    return pa.array(spec.bands.NAMES, pa.string()).take(pa.array(level))


def predictions(model: FamilyModel, good: pa.Table, spec: Spec, *, batch_id: str, run_id: str,
                model_name: str, model_version: int, scored_at: dt.datetime,
                reasons: bool = True) -> pa.Table:
    """Predictions table rows for ``good`` (rows that passed the checks); ``reasons``: with
    each row's reason codes from the model (:meth:`FamilyModel.explain`), else null."""
    n = good.num_rows
    why = None
    if not n:
        p, y = np.zeros(0), np.zeros(0, dtype=np.int32)
    elif reasons:
        p, y, why = model.explain(good)
    else:
        p, y = model.predict(good)
    return pa.table({
        "entity_id": pc.cast(good[spec.entity_key], pa.string()),
        "as_of_date": good[spec.as_of_column],
        "batch_id": pa.array([batch_id] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "probability": pa.array(p, pa.float64()),
        "prediction": pa.array(y, pa.int32()),
        "band": bands(p, spec),
        "model_name": pa.array([model_name] * n, pa.string()),
        "model_version": pa.array(np.full(n, model_version, dtype=np.int32)),
        "scored_at": pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n),
        **(why if why is not None else no_reasons(n)),
    }, schema=arrow_schema(PREDICTIONS))


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return v


def refused(table: pa.Table, model: FamilyModel, spec: Spec, categories: dict[str, list[str]],
            duplicates: pa.Array) -> tuple[np.ndarray, list[str]]:
    """:func:`reasons`, and the rows the model itself cannot score among those the rules let
    through (an R glm answers NA for a missing value the spec allows): the rows the batch
    job quarantines, and why."""
    bad, why = reasons(table, spec, categories, duplicates)
    more = model.refusals(table)
    if more is None:
        return bad, why
    extra = np.array([r is not None for r in more], dtype=bool) & ~bad
    if not extra.any():
        return bad, why
    texts = iter(why)
    merged = [next(texts) if bad[i] else more[i] for i in np.nonzero(bad | extra)[0]]
    return bad | extra, [str(t) for t in merged]


def quarantined(bad: pa.Table, why: list[str], spec: Spec, *, batch_id: str, run_id: str,
                at: dt.datetime) -> pa.Table:
    """The whole input row as JSON (nulls left out, as Spark's to_json does)."""
    records = [json.dumps({k: _json_value(v) for k, v in row.items() if v is not None})
               for row in bad.to_pylist()]
    n = bad.num_rows
    return pa.table({
        "entity_id": pc.cast(bad[spec.entity_key], pa.string()),
        "as_of_date": bad[spec.as_of_column],
        "batch_id": pa.array([batch_id] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "reason": pa.array(why, pa.string()),
        "record": pa.array(records, pa.string()),
        "quarantined_at": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
    }, schema=arrow_schema(QUARANTINE))


class ArrowScoring(Scoring):
    def __init__(self, scorer: Scorer, batches: Iterable[pa.RecordBatch]) -> None:
        self.scorer, self.batches = scorer, batches

    def predictions(self) -> pa.RecordBatchReader:
        return self.scorer.predictions(self.batches)

    def quarantined(self) -> pa.Table | pa.RecordBatchReader:
        return self.scorer.quarantined()

    def rows_through(self) -> int | None:
        return self.scorer.rows_read

    def profile(self) -> Profile | None:
        return self.scorer.profile

    def close(self) -> None:
        self.scorer.close()


class ArrowEngine(Engine):
    """The registered version evaluated with NumPy (:mod:`yws.model.families`: a SparkML
    pipeline or an R glm) over the snapshot streamed in record batches: no Spark."""

    name = "arrow"
    label = "arrow"
    snap: Snapshot | None = None
    model: FamilyModel | None = None

    def count(self, as_of: dt.date | None) -> tuple[dt.date, int]:
        ctx = self.ctx
        ctx.storage.require(ctx.settings.features, FEATURES_HINT)
        self.snap = snapshot(ctx.storage, ctx.settings, ctx.spec, as_of, ctx.pin_features())
        return self.snap.as_of, self.snap.rows

    def check_size(self, rows: int) -> None:
        if not fits(rows):
            raise UnsuitableEngineError(
                f"{rows:,} rows is more than the arrow engine should hold with "
                f"{available_memory() / 2**30:.1f} GiB free")

    def load(self, model: Located) -> dict[str, list[str]]:
        if model.path is not None:
            self.model = families.load(model.path)
        else:
            self.model = families.from_registry(
                f"models:/{self.ctx.settings.model_name}/{model.version}")
        return self.model.categories()

    def score(self, ids: RunIds, rows: int, plan: Plan | None = None) -> Scoring:
        ctx, snap, model = self.ctx, self.snap, self.model
        assert snap is not None and model is not None
        scorer = Scorer(model, ctx.spec, model.categories(),
                        duplicate_keys(ctx.storage, ctx.spec, snap),
                        batch_id=ids.batch_id, run_id=ids.run_id, model_name=ids.model_name,
                        model_version=ids.model_version, at=ids.at, total=rows,
                        progress=ctx.progress).count_on(plan)
        scorer.reasons = ctx.reasons
        batches = ctx.storage.scan_arrow(ctx.settings.features,
                                         where=(ctx.spec.as_of_column, snap.as_of),
                                         batch_rows=BATCH_ROWS, version=snap.version)
        return ArrowScoring(scorer, batches)
