"""Lineage: the features table, at the Delta version a run read, logged as the MLflow run's
dataset input, so Unity Catalog lineage (and the MLflow UI) shows features → model →
predictions.

Only a reference is logged (``mlflow.data.meta_dataset.MetaDataset`` over a
``DeltaDatasetSource`` naming the table and version): nothing is read again, and it needs no
Spark session (``mlflow.data.load_delta`` would read the table through Spark).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.data.meta_dataset import MetaDataset


def features_dataset(table: str, version: int, table_id: str | None = None) -> MetaDataset:
    """The dataset ``<catalog.schema.table>@<version>`` (the name form the Databricks
    log-inputs API documents for a UC table version: "my.uc.table@2"), its source the Delta
    table at that version.

    ``table_id``: the table's id when the storage knows it (the local Delta log's); without
    it MLflow asks Unity Catalog for the table's id when the source is logged, which is what
    links the run to the UC table in lineage (and costs a failed lookup anywhere else).
    """
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    source = DeltaDatasetSource(delta_table_name=table, delta_table_version=int(version),
                                delta_table_id=table_id)
    return MetaDataset(source=source, name=f"{table}@{int(version)}")  # type: ignore[abstract]


def log_features_input(table: str, version: int | None, context: str,
                       table_id: str | None = None) -> None:
    """Log ``table`` at ``version`` as an input of the active MLflow run (``context``:
    ``training`` or ``scoring``); nothing when the version is unknown."""
    if version is None:
        return
    import mlflow

    mlflow.log_input(features_dataset(table, version, table_id), context=context)
