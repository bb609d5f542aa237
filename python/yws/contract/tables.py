"""The columns of the tables the jobs write: predictions, quarantine, score runs and drift.

The DDL in ``sql/10_tables`` is the one source of truth; writers select exactly its columns,
cast to its types, so both targets hold the schema the SQL layer declares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yws.contract.sqlfiles import table_columns
from yws.errors import InvalidValueError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# column -> (Spark SQL type, comment), read from the CREATE TABLE files in sql/10_tables.
PREDICTIONS: dict[str, tuple[str, str]] = table_columns("yws_predictions")
QUARANTINE: dict[str, tuple[str, str]] = table_columns("yws_quarantine")
SCORE_RUNS: dict[str, tuple[str, str]] = table_columns("yws_score_runs")
DRIFT: dict[str, tuple[str, str]] = table_columns("yws_drift")

FEATURES_HINT = "create it with `yws data generate` or `yws tables import FILE TABLE`"
"""What to do when the features table is missing (training and scoring both read it)."""


def conform(df: DataFrame, columns: dict[str, tuple[str, str]]) -> DataFrame:
    """Exactly ``columns``, in order, cast to their declared types."""
    from pyspark.sql import functions as F

    selected: list[Column] = [
        F.col(name).cast(kind.lower()).alias(name) for name, (kind, _) in columns.items()
    ]
    return df.select(*selected)


def arrow_type(databricks_type: str):  # -> pa.DataType
    """The Arrow type of a Databricks column type (the subset the YWS tables use)."""
    import pyarrow as pa

    kinds = {
        "STRING": pa.string(),
        "DATE": pa.date32(),
        "DOUBLE": pa.float64(),
        "FLOAT": pa.float32(),
        "INT": pa.int32(),
        "BIGINT": pa.int64(),
        "SMALLINT": pa.int16(),
        "TINYINT": pa.int8(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    }
    key = databricks_type.upper()
    if key not in kinds:
        raise InvalidValueError(f"column type {databricks_type} has no local equivalent; "
                                f"use one of {', '.join(kinds)}")
    return kinds[key]


def arrow_schema(columns: dict[str, tuple[str, str]]):  # -> pa.Schema
    """The Arrow schema matching ``columns`` (for rows built in Python, like a run record)."""
    import pyarrow as pa

    return pa.schema([pa.field(name, arrow_type(kind)) for name, (kind, _) in columns.items()])
