from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

import pyarrow as pa
import pytest

from yws.datasets.ingest import import_file
from yws.platform import storage_for
from yws.storage import StorageError, TableNotFoundError
from yws.storage.local import LocalStorage

NAME = "yws_dev.ml.things"


def rows(batch: str, n: int, start: int = 0) -> pa.Table:
    return pa.table({
        "batch_id": pa.array([batch] * n),
        "k": pa.array(range(start, start + n), pa.int64()),
        "d": pa.array([dt.date(2026, 1, 1)] * n, pa.date32()),
    })


def test_names_map_to_places(settings):
    storage = storage_for(settings)
    assert isinstance(storage, LocalStorage)
    assert storage.path(NAME) == settings.warehouse_dir / "yws_dev" / "ml" / "things"
    with pytest.raises(ValueError, match="three parts"):
        storage.path("things")


def test_replace_where_touches_one_batch_only(storage):
    assert storage.write(rows("a", 3), NAME, mode="overwrite", replace_where=("batch_id", "a")) == 3
    storage.write(rows("b", 2), NAME, mode="overwrite", replace_where=("batch_id", "b"))
    storage.write(rows("a", 4, 10), NAME, mode="overwrite", replace_where=("batch_id", "a"))
    got = storage.read_arrow(NAME).to_pydict()
    assert sorted(zip(got["batch_id"], got["k"], strict=True)) == [
        ("a", 10), ("a", 11), ("a", 12), ("a", 13), ("b", 0), ("b", 1)]
    assert storage.version(NAME) == 2


def test_predicate_values_are_validated(storage):
    with pytest.raises(StorageError, match="not allowed"):
        storage.write(rows("x", 1), NAME, mode="overwrite",
                      replace_where=("batch_id", "x' OR '1'='1"))


def run_rows(run: str, n: int, at: dt.datetime) -> pa.Table:
    return pa.table({"run_id": pa.array([run] * n), "k": pa.array(range(n), pa.int64()),
                     "at": pa.array([at] * n, pa.timestamp("us", tz="UTC"))})


T = dt.datetime(2026, 11, 30, 6, tzinfo=dt.UTC)


def test_delete_runs_removes_those_runs_only(storage):
    storage.write(run_rows("r1", 3, T), NAME)
    storage.write(run_rows("r2", 2, T), NAME)
    storage.write(run_rows("r3", 1, T), NAME)
    assert storage.delete_runs(NAME, ["r1", "r3", "never"]) == 4
    assert storage.read_arrow(NAME)["run_id"].to_pylist() == ["r2", "r2"]
    assert storage.delete_runs(NAME, []) == 0
    assert storage.delete_runs("yws_dev.ml.missing", ["r2"]) == 0
    with pytest.raises(StorageError, match="run id"):
        storage.delete_runs(NAME, ["r2') OR ('1'='1"])
    assert storage.read_arrow(NAME).num_rows == 2


def test_runs_before(storage):
    storage.write(run_rows("old", 2, T - dt.timedelta(hours=7)), NAME)
    storage.write(run_rows("new", 2, T), NAME)
    assert storage.runs_before(NAME, "at", T - dt.timedelta(hours=6)) == {"old"}
    assert storage.runs_before(NAME, "at", T + dt.timedelta(seconds=1)) == {"old", "new"}
    assert storage.runs_before("yws_dev.ml.missing", "at", T) == set()


def _record(run: str, batch: str) -> pa.Table:
    from yws.contract.tables import SCORE_RUNS, arrow_schema

    return pa.Table.from_pylist([{
        "run_id": run, "batch_id": batch, "as_of_date": dt.date(2026, 11, 30),
        "model_name": "m", "model_alias": "champion", "model_version": 1, "rows_read": 1,
        "rows_scored": 1, "rows_quarantined": 0, "started_at": T, "ended_at": T,
        "duration_seconds": 0.0, "status": "SUCCEEDED", "superseded_by": None,
    }], schema=arrow_schema(SCORE_RUNS))


def test_publish_run_supersedes_the_batch_in_one_commit(storage, settings):
    runs = settings.score_runs
    assert storage.publish_run(runs, _record("r1", "b1")) == []  # creates the table
    assert storage.publish_run(runs, _record("r2", "b2")) == []
    version = storage.version(runs)
    assert storage.publish_run(runs, _record("r3", "b1")) == ["r1"]
    assert storage.version(runs) == version + 1  # one commit
    got = {r["run_id"]: (r["batch_id"], r["status"], r["superseded_by"])
           for r in storage.read_arrow(runs).to_pylist()}
    assert got == {"r1": ("b1", "SUPERSEDED", "r3"), "r2": ("b2", "SUCCEEDED", None),
                   "r3": ("b1", "SUCCEEDED", None)}
    with pytest.raises(StorageError, match="one record"):
        storage.publish_run(runs, pa.concat_tables([_record("a", "b"), _record("c", "d")]))


def test_a_stale_publish_conflicts_and_commits_nothing(storage, settings, monkeypatch):
    """Two runs publishing from the same table version: Delta's conflict check refuses the
    second commit, which the score job then retries on the new state."""
    from deltalake import DeltaTable

    from yws.storage import PublishConflictError

    runs = settings.score_runs
    storage.publish_run(runs, _record("r1", "b1"))
    stale = DeltaTable(str(storage.path(runs)))  # read before the other run's commit
    storage.publish_run(runs, _record("r2", "b1"))
    monkeypatch.setattr(storage, "_table", lambda *a, **k: stale)
    with pytest.raises(PublishConflictError, match="another run committed"):
        storage.publish_run(runs, _record("r3", "b1"))
    monkeypatch.undo()
    statuses = {r["run_id"]: r["status"] for r in storage.read_arrow(runs).to_pylist()}
    assert statuses == {"r1": "SUPERSEDED", "r2": "SUCCEEDED"}


def test_ensure_table_creates_once_and_refuses_an_old_schema(storage):
    schema = pa.schema([("run_id", pa.string()), ("k", pa.int64())])
    assert storage.ensure_table(NAME, schema) == []
    storage.ensure_table(NAME, schema)
    assert storage.version(NAME) == 0 and storage.read_arrow(NAME).num_rows == 0
    with pytest.raises(StorageError, match="lacks NOT NULL column\\(s\\) extra: it was created "
                                           "by an older release"):
        storage.ensure_table(NAME, schema.append(pa.field("extra", pa.string())),
                             not_null={"extra"})
    assert storage.version(NAME) == 0  # nothing was changed


def test_ensure_table_adds_the_nullable_columns_a_new_release_brought(storage):
    """A table an older release created (with a row) gets the new nullable columns at the end,
    in one commit, with their comments where Spark keeps them; the old row reads NULL."""
    storage.write(rows("a", 1), NAME)
    new = pa.schema([("batch_id", pa.string()), ("k", pa.int64()), ("d", pa.date32()),
                     ("engine", pa.string()), ("features_version", pa.int64())])
    added = storage.ensure_table(NAME, new, comments={"engine": "which engine"},
                                 not_null={"batch_id", "k"})
    assert added == ["engine", "features_version"] and storage.version(NAME) == 1
    schema = storage.arrow_schema(NAME)
    assert schema.names == new.names
    assert schema.field("features_version").type == pa.int64()
    assert schema.field("engine").metadata == {b"comment": b"which engine"}
    assert storage.read_arrow(NAME).to_pylist() == [
        {"batch_id": "a", "k": 0, "d": dt.date(2026, 1, 1), "engine": None,
         "features_version": None}]
    assert storage.ensure_table(NAME, new) == [] and storage.version(NAME) == 1


def test_describe_list_and_missing(storage, settings):
    storage.write(rows("a", 3), NAME)
    info = storage.describe(NAME)
    assert (info.rows, info.version) == (3, 0)
    assert [c for c, _ in info.columns] == ["batch_id", "k", "d"]
    assert storage.list_tables() == [NAME]
    with pytest.raises(TableNotFoundError, match="yws_dev.ml.nope does not exist"):
        storage.describe("yws_dev.ml.nope")


def test_import_csv_and_parquet(storage, tmp_path):
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    csv.write_csv(rows("a", 4), tmp_path / "f.csv")
    pq.write_table(rows("b", 2), tmp_path / "f.parquet")
    assert import_file(storage, tmp_path / "f.csv", NAME) == 4
    assert import_file(storage, tmp_path / "f.parquet", NAME, mode="append") == 2
    assert storage.read_arrow(NAME).num_rows == 6
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(StorageError, match="cannot tell the format"):
        import_file(storage, tmp_path / "f.txt", NAME)
    with pytest.raises(StorageError, match="does not exist"):
        import_file(storage, tmp_path / "missing.csv", NAME)


def test_rows_a_merge_rewrote_are_found_by_run_id(storage, settings):
    """A MERGE (publish_run) writes text columns as string_view; a file holding both the
    superseded run and the new one cannot be ruled out by its statistics, so the filter runs
    on its rows: it must still compare text with text (pyarrow has no string = string_view)."""
    runs = settings.score_runs
    storage.publish_run(runs, _record("r1", "b1"))
    storage.publish_run(runs, _record("r2", "b1"))
    for run in ("r1", "r2"):
        assert storage.read_arrow(runs, where=("run_id", run)).column("run_id").to_pylist() == [
            run]
        assert sum(b.num_rows for b in storage.scan_arrow(runs, where=("run_id", run))) == 1


def test_an_append_in_flight_survives_another_runs_delete(storage):
    # Databricks: under WriteSerializable, a blind INSERT "cannot conflict" with a concurrent
    # DELETE (docs.databricks.com, "Isolation levels and write conflicts", the write-conflicts
    # table). delta-rs treats an append as having read every file of its snapshot, so a delete
    # committed mid-append failed it ("a concurrent transaction deleted data this operation
    # read"): CI saw a scoring run fail that way while another run cleaned up. Locally, an
    # append now shares the table and a delete waits for the appends in flight.
    import threading

    storage.write(run_rows("old", 3, T), NAME)
    deleted = threading.Event()
    counts: list[int] = []

    def delete_old() -> None:
        counts.append(storage.delete_runs(NAME, ["old"]))
        deleted.set()

    deleter = threading.Thread(target=delete_old)

    def batches():
        yield run_rows("new", 2, T).to_batches()[0]
        deleter.start()  # the delete is under way while the append has not committed
        deleted.wait(1.0)  # without the lock, it commits here and the append then conflicts
        yield run_rows("new", 2, T).to_batches()[0]

    schema = run_rows("x", 1, T).schema
    assert storage.write(pa.RecordBatchReader.from_batches(schema, batches()), NAME) == 4
    deleter.join(30)
    assert counts == [3]
    assert storage.read_arrow(NAME)["run_id"].to_pylist() == ["new"] * 4


def at_once(calls: list[Callable[[], object]]) -> list[BaseException]:
    """Run ``calls`` in threads released together; the errors they raised."""
    import threading

    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        start.wait()
        try:
            call()
        except BaseException as e:  # noqa: B036 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


def test_runs_that_create_a_table_at_once_all_land(storage):
    # Several first writes at once: delta-rs lets one commit version 0 and fails the others
    # ("protocol changed"); on Databricks CREATE TABLE IF NOT EXISTS then INSERT succeeds for
    # all. A replace of the same as-of by two first writers leaves one copy, not two.
    for trial in range(5):
        name = f"yws_dev.ml.race{trial}"
        assert at_once([functools.partial(storage.write, run_rows(f"r{i}", 2, T), name)
                        for i in range(4)]) == []
        assert sorted(storage.read_arrow(name)["run_id"].to_pylist()) == [
            f"r{i}" for i in range(4) for _ in range(2)]

    replace = functools.partial(storage.write, rows("b", 3), "yws_dev.ml.snapshot",
                                mode="overwrite", replace_where=("batch_id", "b"))
    assert at_once([replace, replace]) == []
    assert storage.read_arrow("yws_dev.ml.snapshot").num_rows == 3
