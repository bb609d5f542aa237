"""The Databricks storage against a recording stand-in for the job's Spark session.

No workspace is reachable here, so this checks the exact statements and writer calls the
Unity Catalog implementation sends; the local implementation runs the same interface for real.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from yws.config import Settings
from yws.storage import StorageError, storage_for
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
        return Recorder.Result(self, text)

    def createDataFrame(self, data):  # noqa: N802
        self.calls.append(("createDataFrame", type(data).__name__))
        return Recorder.Frame(self)

    class Result:
        def __init__(self, rec: Recorder, text: str) -> None:
            self.rec, self.text = rec, text

        def first(self):
            if self.text.startswith("DESCRIBE HISTORY"):
                return {"version": self.rec.history_version,
                        "operationMetrics": {"numOutputRows": "42"}}
            return None

        def collect(self):
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
    assert n == 42  # from the commit's operation metrics
    assert rec.calls == [
        ("createDataFrame", "Table"),
        ("format", "delta"),
        ("mode", "overwrite"),
        ("option", "replaceWhere", "batch_id = 'b1'"),
        ("saveAsTable", "yws_prod.risk.yws_predictions"),
        ("sql", "DESCRIBE HISTORY yws_prod.risk.yws_predictions LIMIT 1"),
    ]


def test_plain_overwrite_may_change_the_schema(settings):
    storage, rec = make(settings, set())
    storage.write(pa.table({"a": [1]}), settings.features, mode="overwrite")
    assert ("option", "overwriteSchema", "true") in rec.calls


def test_version_restore_and_drop(settings):
    storage, rec = make(settings, {settings.predictions})
    assert storage.version(settings.predictions) == 7
    assert storage.version(settings.quarantine) is None
    storage.restore(settings.predictions, 5)
    storage.restore(settings.quarantine, None)
    sql = [c[1] for c in rec.calls if c[0] == "sql"]
    assert sql == [
        "DESCRIBE HISTORY yws_prod.risk.yws_predictions LIMIT 1",
        "RESTORE TABLE yws_prod.risk.yws_predictions TO VERSION AS OF 5",
        "DROP TABLE IF EXISTS yws_prod.risk.yws_quarantine",
    ]


def test_list_tables(settings):
    storage, rec = make(settings, set())
    assert storage.list_tables() == ["yws_prod.risk.yws_features", "yws_prod.risk.yws_predictions"]
    assert rec.calls == [("sql", "SHOW TABLES IN yws_prod.risk")]


def test_nothing_unvalidated_reaches_sql(settings):
    storage, rec = make(settings, set())
    with pytest.raises(ValueError, match="not a valid identifier"):
        storage.restore("yws_prod.risk.x; DROP TABLE y", 1)
    with pytest.raises(StorageError, match="not allowed"):
        storage.write(pa.table({"a": [1]}), settings.predictions, mode="overwrite",
                      replace_where=("batch_id", "' OR 1=1 --"))
    assert not [c for c in rec.calls if c[0] in ("sql", "saveAsTable")]
