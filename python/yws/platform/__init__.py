"""Where YWS runs: one :class:`Target` per platform, chosen once from the settings.

A target builds what the jobs use — the storage behind the table names, the SQL warehouse,
the Spark session, MLflow's tracking and registry — and says how scoring picks its engine
and whether the model registry is a folder on this machine. Nothing above this package asks
*which* target it is on; it asks the target. A new platform is a new class here and a name in
:data:`yws.config.TARGETS`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from yws.config import TARGETS, Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from yws.storage import Storage
    from yws.warehouse import Warehouse


class Target:
    """What differs between platforms; one instance per settings."""

    name: ClassVar[str]
    embedded: ClassVar[bool]
    """Everything runs on this machine: ``yws serve``, ``yws up`` and ``yws demo`` need it."""
    auto_engines: ClassVar[tuple[str, ...]]
    """The scoring engines ``--engine auto`` tries, in order (see :mod:`yws.scoring.engines`)."""
    needs_volume_tmpdir: ClassVar[bool]
    """MLflow stages SparkML files through a Unity Catalog volume (serverless Spark Connect)."""
    volumes_mounted: ClassVar[bool]
    """Unity Catalog volumes are mounted at ``/Volumes`` where the jobs run (FUSE on Databricks
    compute): a volume path is read as it is. Elsewhere it maps to ``$YWS_HOME/volumes``."""
    spark_in_threads: ClassVar[bool]
    """Spark work may run on a second Python thread of the job. Classic PySpark shares one
    session across threads; Spark Connect's active session is per thread, and its ML writers
    assert one (``pyspark.ml.connect.readwrite``), so there it stays on the main thread."""
    score_runs_tracked: ClassVar[bool]
    """A score run is also an MLflow run that logs the features table version it read as its
    input, for Unity Catalog lineage (features → model → predictions). Locally it is not:
    importing MLflow and starting a run would cost a run more than scoring does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def storage(self) -> Storage:
        raise NotImplementedError

    def volume_path(self, path: str) -> Path:
        """Where a job reads or writes the volume file ``path`` (``/Volumes/c/s/v/a.json``) on
        this platform: the path itself where volumes are mounted, else its place under
        ``$YWS_HOME/volumes`` (:func:`yws.storage.volumes.local_path`, which checks the path)."""
        from yws.storage.volumes import local_path

        return local_path(self.settings, path, mounted=self.volumes_mounted)

    def warehouse(self) -> Warehouse:
        raise NotImplementedError

    def spark(self) -> SparkSession:
        raise NotImplementedError

    def configure_mlflow(self) -> None:
        """Point MLflow at this target's tracking server and registry, with the experiment."""
        raise NotImplementedError

    def cached(self, df: DataFrame) -> DataFrame | None:
        """``df`` cached in the session, or ``None`` where the session cannot cache (serverless
        environment 4 refuses ``cache()``): callers then read it again on every pass."""
        return None


class LocalTarget(Target):
    """The embedded default: Delta tables in ``$YWS_HOME``, DuckDB, local Spark, MLflow on
    SQLite."""

    name = "local"
    embedded = True
    auto_engines = ("arrow", "spark")
    needs_volume_tmpdir = False
    volumes_mounted = False
    spark_in_threads = True
    score_runs_tracked = False

    SPARK_CONF: ClassVar[dict[str, str]] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "true",
        "spark.driver.memory": "4g",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    """Confs of the local session (serverless refuses most confs; UTC and ANSI are its
    defaults, so the local session sets them to match)."""

    def storage(self) -> Storage:
        from yws.storage.local import LocalStorage

        return LocalStorage(self.settings)

    def warehouse(self) -> Warehouse:
        from yws.warehouse.local import LocalWarehouse

        return LocalWarehouse(self.settings)

    def spark(self) -> SparkSession:
        from pyspark.sql import SparkSession

        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = SparkSession.builder.master(os.environ.get("YWS_SPARK_MASTER", "local[*]"))
        builder = builder.appName("yws")
        for key, value in self.SPARK_CONF.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        return spark

    def tracking_uri(self) -> str:
        return f"sqlite:///{self.settings.mlflow_db}"

    def cached(self, df: DataFrame) -> DataFrame | None:
        return df.cache()

    def configure_mlflow(self) -> None:
        import mlflow

        settings = self.settings
        settings.home.mkdir(parents=True, exist_ok=True)
        uri = self.tracking_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = mlflow.MlflowClient()
        if client.get_experiment_by_name(settings.experiment_name) is None:
            client.create_experiment(
                settings.experiment_name, artifact_location=settings.mlflow_artifacts.as_uri()
            )
        mlflow.set_experiment(settings.experiment_name)


class DatabricksTarget(Target):
    """A Databricks workspace: Unity Catalog tables through the job's Spark session, a DBSQL
    warehouse, the workspace's MLflow and the Unity Catalog model registry."""

    name = "databricks"
    embedded = False
    # Spark for a SparkML pipeline; a model Spark does not run (an R glm) on the arrow engine,
    # which reads the snapshot through Spark into this process.
    auto_engines = ("spark", "arrow")
    needs_volume_tmpdir = True
    volumes_mounted = True
    spark_in_threads = False
    score_runs_tracked = True

    def storage(self) -> Storage:
        from yws.storage.databricks import DatabricksStorage

        return DatabricksStorage(self.settings, session=self.spark)

    def warehouse(self) -> Warehouse:
        from yws.warehouse.databricks import DatabricksWarehouse

        return DatabricksWarehouse(self.settings)

    def spark(self) -> SparkSession:
        from pyspark.sql import SparkSession

        return SparkSession.builder.getOrCreate()  # the job's own session, as it comes

    def configure_mlflow(self) -> None:
        import mlflow

        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri("databricks-uc")
        mlflow.set_experiment(self.settings.experiment_name)


PLATFORMS: dict[str, type[Target]] = {cls.name: cls for cls in (LocalTarget, DatabricksTarget)}
assert tuple(PLATFORMS) == TARGETS, "every name in yws.config.TARGETS needs a Target class"


def target_for(settings: Settings) -> Target:
    """The target the settings name."""
    return PLATFORMS[settings.target](settings)


def storage_for(settings: Settings) -> Storage:
    return target_for(settings).storage()


def warehouse_for(settings: Settings) -> Warehouse:
    return target_for(settings).warehouse()


def get_spark(settings: Settings) -> SparkSession:
    return target_for(settings).spark()


def quiet_mlflow_logs() -> None:
    """MLflow's and its database migrations' INFO lines off (importing MLflow sets its own
    loggers' level, so it is imported first)."""
    import mlflow  # noqa: F401

    for name in ("mlflow", "alembic", "py4j"):
        logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["PLATFORMS", "DatabricksTarget", "LocalTarget", "Target", "get_spark",
           "storage_for", "target_for", "warehouse_for"]
