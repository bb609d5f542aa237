"""The columns of the tables the jobs write: predictions, quarantine and score runs.

Writers select exactly these columns, cast to these types, so both targets hold the same
schema. (The SQL layer's DDL in ``sql/`` is checked against this in tests.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# column -> (Spark SQL type, comment)
PREDICTIONS: dict[str, tuple[str, str]] = {
    "entity_id": ("STRING", "The entity key from the feature table, as text"),
    "as_of_date": ("DATE", "The feature snapshot date that was scored"),
    "batch_id": ("STRING", "The scoring batch; a re-run of a batch replaces its rows"),
    "probability": ("DOUBLE", "Predicted probability of the positive label"),
    "prediction": ("INT", "1 when probability >= the model threshold, else 0"),
    "band": ("STRING", "GREEN, YELLOW or RED, from the spec's probability bands"),
    "model_name": ("STRING", "Registered model (catalog.schema.model)"),
    "model_version": ("INT", "Registered model version that scored the row"),
    "scored_at": ("TIMESTAMP", "When the batch was scored (UTC)"),
}

QUARANTINE: dict[str, tuple[str, str]] = {
    "entity_id": ("STRING", "The entity key from the feature table, as text (may be null)"),
    "as_of_date": ("DATE", "The feature snapshot date"),
    "batch_id": ("STRING", "The scoring batch that set the row aside"),
    "reason": ("STRING", "Why the row was not scored; several reasons are joined by '; '"),
    "record": ("STRING", "The whole input row as JSON, so nothing is lost"),
    "quarantined_at": ("TIMESTAMP", "When the row was set aside (UTC)"),
}

SCORE_RUNS: dict[str, tuple[str, str]] = {
    "run_id": ("STRING", "Unique id of this scoring run"),
    "batch_id": ("STRING", "The scoring batch"),
    "as_of_date": ("DATE", "The feature snapshot date"),
    "model_name": ("STRING", "Registered model (catalog.schema.model)"),
    "model_alias": ("STRING", "The alias the model was loaded by"),
    "model_version": ("INT", "Registered model version"),
    "rows_read": ("BIGINT", "Rows in the snapshot"),
    "rows_scored": ("BIGINT", "Rows written to the predictions table"),
    "rows_quarantined": ("BIGINT", "Rows written to the quarantine table"),
    "started_at": ("TIMESTAMP", "Run start (UTC)"),
    "ended_at": ("TIMESTAMP", "Run end (UTC)"),
    "duration_seconds": ("DOUBLE", "ended_at - started_at in seconds"),
    "status": ("STRING", "SUCCEEDED (failed runs leave every table as it was)"),
}


def conform(df: DataFrame, columns: dict[str, tuple[str, str]]) -> DataFrame:
    """Exactly ``columns``, in order, cast to their declared types."""
    from pyspark.sql import functions as F

    selected: list[Column] = [
        F.col(name).cast(kind.lower()).alias(name) for name, (kind, _) in columns.items()
    ]
    return df.select(*selected)


def arrow_schema(columns: dict[str, tuple[str, str]]):  # -> pa.Schema
    """The Arrow schema matching ``columns`` (for rows built in Python, like a run record)."""
    import pyarrow as pa

    kinds = {
        "STRING": pa.string(),
        "DATE": pa.date32(),
        "DOUBLE": pa.float64(),
        "INT": pa.int32(),
        "BIGINT": pa.int64(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(name, kinds[kind]) for name, (kind, _) in columns.items()])
