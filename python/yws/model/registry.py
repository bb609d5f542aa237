"""MLflow tracking and the model registry, on Unity Catalog or a local SQLite store."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from yws.config import Settings, SettingsError
from yws.errors import InvalidValueError, YwsError
from yws.platform import LocalTarget, quiet_mlflow_logs, target_for

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from pyspark.ml import PipelineModel

CHAMPION = "champion"
CHALLENGER = "challenger"
RESERVED_ALIASES = ("latest",)


class ModelNotFoundError(YwsError, LookupError):
    """No registered model version answers to the name and alias asked for."""


def configure(settings: Settings) -> None:
    """Point MLflow at the target's tracking server and registry."""
    quiet_mlflow_logs()
    target_for(settings).configure_mlflow()


def dfs_tmpdir(settings: Settings) -> str | None:
    """Where MLflow stages SparkML model files between Spark and this process.

    On serverless (Spark Connect) that must be a Unity Catalog volume, ``/Volumes/...``, which
    the Spark side writes and this process reads through its FUSE mount; MLflow 2.22 and 3.x
    both refuse anything else there, but only after the model is fitted. Checked up front here.
    ``--dfs-tmpdir`` wins over ``MLFLOW_DFS_TMP``, MLflow's own setting.
    """
    value = settings.dfs_tmpdir or os.environ.get("MLFLOW_DFS_TMP") or None
    if target_for(settings).needs_volume_tmpdir and not (value and value.startswith("/Volumes/")):
        raise SettingsError(
            f"the Databricks target needs --dfs-tmpdir (or MLFLOW_DFS_TMP) set to a Unity "
            f"Catalog volume path, /Volumes/<catalog>/<schema>/<volume>/..., for MLflow's "
            f"SparkML files; got {value!r}"
        )
    return value


def tracking_uri(settings: Settings) -> str:
    """The local registry's MLflow URI (the embedded default's SQLite store)."""
    return LocalTarget(settings).tracking_uri()


def check_alias(alias: str) -> str:
    import re

    if alias in RESERVED_ALIASES or re.fullmatch(r"v\d+", alias) or not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_\-]{0,254}", alias
    ):
        raise InvalidValueError(
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


@dataclass(frozen=True)
class VersionInfo:
    version: int
    aliases: list[str]
    run_id: str | None
    created: str
    auc_roc: float | None
    family: str = "spark-lr"  # yws.model.families: the version's flavor tag (none: SparkML)


def versions(settings: Settings) -> list[VersionInfo]:
    """Every registered version of the model, newest first, with its aliases, AUC-ROC and
    family (an R glm registered beside the SparkML versions says ``r-glm``)."""
    import datetime as dt

    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{settings.model_name}'")
    if not found:
        return []
    # search results leave aliases out on some stores; the registered model has them all
    aliases: dict[str, list[str]] = {}
    for alias, number in (client.get_registered_model(settings.model_name).aliases or {}).items():
        aliases.setdefault(str(number), []).append(alias)
    out = []
    for v in sorted(found, key=lambda v: int(v.version), reverse=True):
        try:
            metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
        except MlflowException:  # the training run was deleted: the version stays usable
            metrics = {}
        out.append(VersionInfo(
            int(v.version), sorted(aliases.get(str(v.version), [])), v.run_id,
            dt.datetime.fromtimestamp(v.creation_timestamp / 1000, dt.UTC).isoformat(
                timespec="seconds"),
            metrics.get("auc_roc"), str((v.tags or {}).get("flavor") or "spark-lr")))
    return out


def set_alias(settings: Settings, alias: str, version: int) -> int | None:
    """Point ``alias`` at ``version`` (a roll-back, or a manual promotion); returns the version
    it pointed at before (None: it was not set)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    check_alias(alias)
    client = mlflow.MlflowClient()
    try:
        client.get_model_version(settings.model_name, str(version))
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
                                "NOT_FOUND"):
            raise
        raise ModelNotFoundError(
            f"model {settings.model_name} has no version {version}: `yws model versions` "
            "lists them") from None
    before = version_for_alias(client, settings.model_name, alias)
    client.set_registered_model_alias(settings.model_name, alias, str(version))
    return int(before.version) if before is not None else None


def load(settings: Settings, version: int | str) -> PipelineModel:
    import mlflow.spark

    return mlflow.spark.load_model(
        f"models:/{settings.model_name}/{version}", dfs_tmpdir=dfs_tmpdir(settings)
    )


# -- the local fast path ------------------------------------------------------------------------
@dataclass(frozen=True)
class Located:
    """A model version and the local folder holding its files (``None`` when they are not on
    this machine: load them through MLflow)."""

    version: int
    path: Path | None


CACHE_SETTLE_SECONDS = 1.0
"""The registry files must have been still this long before a lookup may be cached: a write
in the same clock tick as the lookup could otherwise leave the file times unchanged (file
systems keep times to a tick of up to a second)."""


def _store_state(settings: Settings) -> list[int]:
    """What changes whenever the local registry (SQLite, with any write-ahead log) is written."""
    state: list[int] = []
    for path in (settings.mlflow_db, Path(f"{settings.mlflow_db}-wal")):
        try:
            st = path.stat()
            state += [st.st_ino, st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            state += [0, 0, 0]
    return state


def _save(cache: Path, content: dict[str, object]) -> None:
    """Replace the cache file atomically; a home that cannot be written only loses the cache."""
    tmp = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".registry.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
        os.replace(tmp, cache)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def locate(settings: Settings, alias: str) -> Located:
    """``alias``'s version and its files on the local target, without importing MLflow when the
    registry has not changed since the last lookup.

    The answer comes from MLflow and is kept in ``$YWS_HOME/cache/registry.json`` with the
    registry files' identity, size and modification time; any write to the registry (a new
    version, an alias moved by MLflow's client or UI) changes those and sends the next
    lookup back to MLflow. Importing MLflow costs ~2 s, more than scoring 1M rows.
    """
    if not target_for(settings).embedded:
        raise ValueError("locate() is for the embedded target; use resolve()")
    check_alias(alias)
    key = f"{settings.model_name}@{alias}"
    cache = settings.home.resolve() / "cache" / "registry.json"
    before = _store_state(settings)
    try:
        saved = json.loads(cache.read_text())
        if saved["store"] == before and key in saved["entries"]:
            hit = saved["entries"][key]
            path = Path(hit["path"])
            if (path / "MLmodel").is_file():
                return Located(int(hit["version"]), path)
    except (OSError, ValueError, KeyError, TypeError):
        saved = None
    configure(settings)
    version = resolve(settings, alias)
    import mlflow

    uri = mlflow.MlflowClient().get_model_version_download_uri(settings.model_name,
                                                               version.version)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    else:  # not a local folder: a private copy, not cached
        return Located(int(version.version),
                       Path(mlflow.artifacts.download_artifacts(
                           f"models:/{settings.model_name}/{version.version}")))
    after = _store_state(settings)
    settled = time.time() - max(before[2], before[5]) / 1e9 > CACHE_SETTLE_SECONDS
    if after == before and settled:
        entries = saved["entries"] if saved and saved.get("store") == before else {}
        entries[key] = {"version": int(version.version), "path": str(path)}
        _save(cache, {"store": before, "entries": entries})
    return Located(int(version.version), path)


def find(settings: Settings, alias: str) -> Located:
    """``alias``'s version, with its local folder on the embedded target (cached, see
    :func:`locate`); elsewhere through the target's registry, with no folder."""
    if target_for(settings).embedded:
        return locate(settings, alias)
    check_alias(alias)
    configure(settings)
    return Located(int(resolve(settings, alias).version), None)
