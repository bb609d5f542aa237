"""MLflow tracking and the model registry, on Unity Catalog or a local SQLite store."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from yws.config import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from pyspark.ml import PipelineModel

CHAMPION = "champion"
CHALLENGER = "challenger"
RESERVED_ALIASES = ("latest",)


class ModelNotFoundError(LookupError):
    """No registered model version answers to the name and alias asked for."""


def configure(settings: Settings) -> None:
    """Point MLflow at the target's tracking server and registry, once per process."""
    import mlflow

    for name in ("mlflow", "alembic", "py4j"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if settings.target == "databricks":
        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri("databricks-uc")
        mlflow.set_experiment(settings.experiment_name)
        return
    settings.home.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(settings.experiment_name) is None:
        client.create_experiment(
            settings.experiment_name, artifact_location=settings.mlflow_artifacts.as_uri()
        )
    mlflow.set_experiment(settings.experiment_name)


def tracking_uri(settings: Settings) -> str:
    return f"sqlite:///{settings.mlflow_db}"


def check_alias(alias: str) -> str:
    import re

    if alias in RESERVED_ALIASES or re.fullmatch(r"v\d+", alias) or not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_\-]{0,254}", alias
    ):
        raise ValueError(
            f"model alias {alias!r} is not usable: aliases are letters, digits, '_' or '-', "
            "and 'latest' and v<N> are reserved"
        )
    return alias


def version_for_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def resolve(settings: Settings, alias: str) -> ModelVersion:
    """The model version behind ``alias``, or a :class:`ModelNotFoundError` saying what to do."""
    import mlflow

    check_alias(alias)
    version = version_for_alias(mlflow.MlflowClient(), settings.model_name, alias)
    if version is None:
        raise ModelNotFoundError(
            f"model {settings.model_name} has no version with alias @{alias}: "
            f"run `yws train` first, or name another alias with --model-alias"
        )
    return version


def load(settings: Settings, version: ModelVersion) -> PipelineModel:
    import mlflow.spark

    return mlflow.spark.load_model(
        f"models:/{settings.model_name}/{version.version}", dfs_tmpdir=settings.dfs_tmpdir
    )
