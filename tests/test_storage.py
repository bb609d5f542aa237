from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from yws.ingest import import_file
from yws.storage import StorageError, TableNotFoundError, storage_for
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


def test_transaction_puts_every_table_back(storage):
    other = "yws_dev.ml.other"
    storage.write(rows("a", 3), NAME)
    with pytest.raises(RuntimeError, match="boom"), storage.transaction([NAME, other]):
        storage.write(rows("b", 5), NAME)
        storage.write(rows("b", 5), other)  # created inside the transaction
        raise RuntimeError("boom")
    assert storage.read_arrow(NAME).num_rows == 3
    assert not storage.exists(other)


def test_spark_reads_the_current_snapshot_only(storage, spark):
    storage.write(rows("a", 3), NAME)
    storage.write(rows("a", 2), NAME, mode="overwrite")  # the first file is now removed
    assert storage.read(spark, NAME).count() == 2


def test_spark_reads_an_empty_table(storage, spark):
    storage.write(rows("a", 0), NAME)
    df = storage.read(spark, NAME)
    assert df.count() == 0
    assert df.columns == ["batch_id", "k", "d"]


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
