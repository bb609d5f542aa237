"""The Databricks storage against a recording stand-in for the job's Spark session.

No workspace is reachable here, so this checks the exact statements and writer calls the
Unity Catalog implementation sends; the local implementation runs the same interface for real.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from yws.config import Settings
from yws.platform import storage_for
from yws.storage import StorageError
from yws.storage.databricks import DatabricksStorage


class Recorder:
    def __init__(self, existing: set[str], history_version: int = 7) -> None:
        self.calls: list[tuple] = []
        self.existing = existing
        self.history_version = history_version
        self.catalog = self

    # spark.catalog
    def tableExists(self, name: str) -> bool:  # noqa: N802 - Spark's name
        self.calls.append(("tableExists", name))
        return name in self.existing

    # spark
    def sql(self, text: str) -> Recorder.Result:
        self.calls.append(("sql", text))
        if self.fail_next_sql is not None and text.startswith("MERGE"):
            error, self.fail_next_sql = self.fail_next_sql, None
            raise error
        return Recorder.Result(self, text)

    def createDataFrame(self, data):  # noqa: N802
        self.calls.append(("createDataFrame", type(data).__name__))
        return Recorder.Frame(self)

    fail_next_sql: Exception | None = None

    class Result:
        def __init__(self, rec: Recorder, text: str) -> None:
            self.rec, self.text = rec, text

        def first(self):
            if self.text.startswith("DESCRIBE HISTORY"):
                return {"version": self.rec.history_version,
                        "operationMetrics": {"numOutputRows": "42"}}
            if self.text.startswith("DELETE"):
                return {"num_affected_rows": 5}
            return None

        def collect(self):
            if self.text.startswith("DESCRIBE HISTORY"):  # newest first: another run's commit
                tag = next(c[2] for c in self.rec.calls if c[:2] == ("option", "userMetadata"))
                return [
                    {"version": 9, "userMetadata": "yws-write-other",
                     "operationMetrics": {"numOutputRows": "7"}},
                    {"version": 8, "userMetadata": tag,
                     "operationMetrics": {"numOutputRows": "42"}},
                ]
            if self.text.startswith("SELECT run_id"):
                return [{"run_id": "r1"}]
            return [{"tableName": "yws_predictions"}, {"tableName": "yws_features"}]

    class Frame:
        def __init__(self, rec: Recorder) -> None:
            self.rec = rec
            self.write = self

        def format(self, fmt):
            self.rec.calls.append(("format", fmt))
            return self

        def mode(self, mode):
            self.rec.calls.append(("mode", mode))
            return self

        def option(self, key, value):
            self.rec.calls.append(("option", key, value))
            return self

        def saveAsTable(self, name):  # noqa: N802
            self.rec.calls.append(("saveAsTable", name))

        def createOrReplaceTempView(self, name):  # noqa: N802
            self.rec.calls.append(("createOrReplaceTempView", name))


@pytest.fixture
def settings() -> Settings:
    return Settings(target="databricks", catalog="yws_prod", schema="risk")


def make(settings: Settings, existing: set[str]) -> tuple[DatabricksStorage, Recorder]:
    storage = storage_for(settings)
    assert isinstance(storage, DatabricksStorage)
    rec = Recorder(existing)
    storage._spark = rec  # type: ignore[assignment]
    return storage, rec


def test_replace_batch_is_one_replace_where_write(settings):
    storage, rec = make(settings, {settings.predictions})
    n = storage.write(pa.table({"batch_id": ["b1"]}), settings.predictions, mode="overwrite",
                      replace_where=("batch_id", "b1"))
    tag = rec.calls[3][2]
    assert tag.startswith("yws-write-")
    assert n == 42  # from this write's own commit, found by its tag, not the newest commit
    assert rec.calls == [
        ("createDataFrame", "Table"),
        ("format", "delta"),
        ("mode", "overwrite"),
        ("option", "userMetadata", tag),
        ("option", "replaceWhere", "batch_id = 'b1'"),
        ("saveAsTable", "yws_prod.risk.yws_predictions"),
        ("sql", "DESCRIBE HISTORY yws_prod.risk.yws_predictions LIMIT 50"),
    ]


def test_plain_overwrite_may_change_the_schema(settings):
    storage, rec = make(settings, set())
    storage.write(pa.table({"a": [1]}), settings.features, mode="overwrite")
    assert ("option", "overwriteSchema", "true") in rec.calls


def test_version_and_delete_runs(settings):
    storage, rec = make(settings, {settings.predictions})
    assert storage.version(settings.predictions) == 7
    assert storage.version(settings.quarantine) is None
    assert storage.delete_runs(settings.predictions, ["r2", "r1", "r2"]) == 5
    assert storage.delete_runs(settings.quarantine, ["r1"]) == 0  # no table, no statement
    sql = [c[1] for c in rec.calls if c[0] == "sql"]
    assert sql == [
        "DESCRIBE HISTORY yws_prod.risk.yws_predictions LIMIT 1",
        "DELETE FROM yws_prod.risk.yws_predictions WHERE run_id IN ('r1', 'r2')",
    ]


def _record(run: str = "r2", batch: str = "b1") -> pa.Table:
    return pa.table({"run_id": [run], "batch_id": [batch], "status": ["SUCCEEDED"],
                     "superseded_by": pa.array([None], pa.string())})


def test_publish_run_is_one_merge(settings):
    """One MERGE is one Delta commit: the run's record and the superseding of the batch's
    earlier run land together (Databricks SQL reference, MERGE INTO: WHEN MATCHED /
    WHEN NOT MATCHED [AND condition] clauses)."""
    storage, rec = make(settings, {settings.score_runs})
    assert storage.publish_run(settings.score_runs, _record()) == ["r1"]
    sql = [c[1] for c in rec.calls if c[0] == "sql"]
    assert ("createOrReplaceTempView", "yws_publish_r2") in rec.calls
    assert sql == [
        "MERGE INTO yws_prod.risk.yws_score_runs AS t USING ("
        "SELECT *, CAST(NULL AS STRING) AS _key FROM yws_publish_r2 "
        "UNION ALL SELECT *, batch_id AS _key FROM yws_publish_r2) AS s "
        "ON t.status = 'SUCCEEDED' AND t.batch_id = s._key "
        "WHEN MATCHED THEN UPDATE SET t.status = 'SUPERSEDED', t.superseded_by = s.run_id "
        "WHEN NOT MATCHED AND s._key IS NULL THEN INSERT "
        "(run_id, batch_id, status, superseded_by) "
        "VALUES (s.run_id, s.batch_id, s.status, s.superseded_by)",
        "DROP VIEW IF EXISTS yws_publish_r2",
        "SELECT run_id FROM yws_prod.risk.yws_score_runs WHERE superseded_by = 'r2'",
    ]


def test_a_concurrent_commit_is_a_publish_conflict(settings):
    """Delta reports a conflicting concurrent commit as a ConcurrentAppendException
    ([DELTA_CONCURRENT_APPEND]; Databricks docs, "Isolation levels and write conflicts")."""
    from yws.storage import PublishConflictError

    storage, rec = make(settings, {settings.score_runs})
    rec.fail_next_sql = RuntimeError(
        "[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added to the root of "
        "the table by a concurrent update. Please try the operation again.")
    with pytest.raises(PublishConflictError, match="while run r2 was being published"):
        storage.publish_run(settings.score_runs, _record())
    assert rec.calls[-1] == ("sql", "DROP VIEW IF EXISTS yws_publish_r2")
    rec.fail_next_sql = RuntimeError("[TABLE_OR_VIEW_NOT_FOUND] yws_score_runs")
    with pytest.raises(RuntimeError, match="TABLE_OR_VIEW_NOT_FOUND"):
        storage.publish_run(settings.score_runs, _record())


def test_list_tables(settings):
    storage, rec = make(settings, set())
    assert storage.list_tables() == ["yws_prod.risk.yws_features", "yws_prod.risk.yws_predictions"]
    assert rec.calls == [("sql", "SHOW TABLES IN yws_prod.risk")]


def test_nothing_unvalidated_reaches_sql(settings):
    storage, rec = make(settings, set())
    with pytest.raises(ValueError, match="not a valid identifier"):
        storage.delete_runs("yws_prod.risk.x; DROP TABLE y", ["r1"])
    with pytest.raises(StorageError, match="not allowed"):
        storage.delete_runs(settings.predictions, ["r1') OR ('1'='1"])
    with pytest.raises(StorageError, match="not allowed"):
        storage.publish_run(settings.score_runs, _record(batch="b' OR 1=1 --"))
    with pytest.raises(StorageError, match="not allowed"):
        storage.write(pa.table({"a": [1]}), settings.predictions, mode="overwrite",
                      replace_where=("batch_id", "' OR 1=1 --"))
    assert not [c for c in rec.calls if c[0] in ("sql", "saveAsTable")]


def test_new_nullable_columns_are_one_alter_table(settings):
    """Databricks SQL reference, ALTER TABLE … COLUMN clause: ``ADD [COLUMN | COLUMNS]
    ( column_identifier data_type [COMMENT comment] … )`` appends at the end, and "all columns
    added to Delta tables are treated as NULL for existing rows"."""
    storage, rec = make(settings, {settings.score_runs})
    storage.add_columns(settings.score_runs,
                        [pa.field("features_version", pa.int64()), pa.field("engine", pa.string())],
                        {"features_version": "Delta version's \\ read"})
    assert rec.calls == [("sql", "ALTER TABLE yws_prod.risk.yws_score_runs ADD COLUMNS "
                                 "(features_version BIGINT COMMENT 'Delta version\\'s \\\\ read', "
                                 "engine STRING)")]
    with pytest.raises(ValueError, match="not a valid identifier"):
        storage.add_columns(settings.score_runs, [pa.field("x INT, y", pa.int64())], {})
