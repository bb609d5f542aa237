"""Bring files into tables: ``yws tables import`` and ``yws data generate``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from yws.storage import Storage, StorageError
from yws.storage.base import WriteMode

FORMATS = ("csv", "parquet")


def read_file(path: Path, fmt: str | None = None) -> pa.Table:
    """A CSV or Parquet file as Arrow; the format comes from the suffix unless given."""
    if not path.is_file():
        raise StorageError(f"file {str(path)!r} does not exist")
    fmt = fmt or path.suffix.lower().lstrip(".")
    if fmt == "pq":
        fmt = "parquet"
    if fmt not in FORMATS:
        raise StorageError(
            f"cannot tell the format of {str(path)!r}: name it *.csv or *.parquet, or pass "
            f"--format ({', '.join(FORMATS)})"
        )
    try:
        if fmt == "csv":
            from pyarrow import csv

            return csv.read_csv(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise StorageError(f"could not read {str(path)!r} as {fmt}: {e}") from e


def import_file(
    storage: Storage, path: Path, name: str, *, mode: WriteMode = "overwrite",
    fmt: str | None = None,
) -> int:
    """Load a file into the Delta table ``name``; returns the number of rows written."""
    table = read_file(path, fmt)
    return storage.write(table, name, mode=mode)


def write_snapshot(storage: Storage, table: pa.Table, name: str, as_of_column: str,
                   as_of: dt.date) -> int:
    """Replace the rows of one as-of date (idempotent: generating a date twice keeps one copy)."""
    return storage.write(table, name, mode="overwrite", replace_where=(as_of_column, as_of))
