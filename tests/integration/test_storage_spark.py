"""Local storage read through Spark: the current snapshot only, and empty tables."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

NAME = "yws_dev.ml.things"


def rows(batch: str, n: int, start: int = 0) -> pa.Table:
    return pa.table({
        "batch_id": pa.array([batch] * n),
        "k": pa.array(range(start, start + n), pa.int64()),
        "d": pa.array([dt.date(2026, 1, 1)] * n, pa.date32()),
    })


def test_spark_reads_the_current_snapshot_only(storage, spark):
    storage.write(rows("a", 3), NAME)
    storage.write(rows("a", 2), NAME, mode="overwrite")  # the first file is now removed
    assert storage.read(spark, NAME).count() == 2


def test_spark_reads_an_empty_table(storage, spark):
    storage.write(rows("a", 0), NAME)
    df = storage.read(spark, NAME)
    assert df.count() == 0
    assert df.columns == ["batch_id", "k", "d"]
