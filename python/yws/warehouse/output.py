"""Query results to a terminal or a pipe: an aligned table, CSV or JSON, streamed by batch."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_batches(batches: Iterator[pa.RecordBatch], fmt: str, out: IO[str]) -> int:
    """Write every batch as it arrives (CSV and JSON stream); returns the number of rows."""
    rows = 0
    if fmt == "csv":
        import pyarrow.csv as csv

        writer = None
        sink = pa.BufferOutputStream()
        for batch in batches:
            if writer is None:
                writer = csv.CSVWriter(sink, batch.schema)
            writer.write_batch(batch)
            out.write(sink.getvalue().to_pybytes().decode("utf-8"))
            out.flush()
            sink = pa.BufferOutputStream()
            writer = csv.CSVWriter(sink, batch.schema, write_options=csv.WriteOptions(
                include_header=False))
            rows += batch.num_rows
        return rows
    if fmt == "json":
        out.write("[")
        first = True
        for batch in batches:
            for record in batch.to_pylist():
                out.write(("\n  " if first else ",\n  ") + json.dumps(record,
                                                                     default=_json_default))
                first = False
            rows += batch.num_rows
            out.flush()
        out.write("\n]\n" if not first else "]\n")
        return rows
    table = pa.Table.from_batches(list(batches))
    out.write(table.to_pandas().to_string(index=False) + "\n")
    return table.num_rows
