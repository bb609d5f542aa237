"""One settings object: where YWS runs and what its Unity Catalog objects are called.

Configuration flows one way: bundle variable -> job parameter / CLI flag / ``YWS_*`` variable
-> :class:`Settings` -> functions. Full table names are built here and nowhere else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from yws.errors import YwsError

TARGETS = ("local", "databricks")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
# A Model Serving endpoint name: "alphanumeric characters, dashes, and underscores"
# (https://docs.databricks.com/gcp/dev-tools/cli/reference/serving-endpoints-commands), at most
# 63 characters. Nothing else, so a name can be written inside a SQL string literal as it is.
ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


class SettingsError(YwsError, ValueError):
    """A setting has a value YWS cannot use."""


def check_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a plain SQL identifier (letters, digits, underscore)."""
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise SettingsError(
            f"{what} {value!r} is not a valid identifier: use letters, digits and underscores, "
            "starting with a letter or underscore (at most 255 characters)"
        )
    return value


def check_endpoint_name(value: str, what: str = "serving endpoint") -> str:
    """Return ``value`` if it is a Model Serving endpoint name (see :data:`ENDPOINT_NAME`)."""
    if not isinstance(value, str) or not ENDPOINT_NAME.fullmatch(value):
        raise SettingsError(
            f"{what} {value!r} is not a Model Serving endpoint name: use letters, digits, '-' "
            "and '_' (at most 63 characters), as the bundle variable serving_endpoint does"
        )
    return value


def check_table_name(name: str) -> tuple[str, str, str]:
    """Split a three-level Unity Catalog name ``catalog.schema.table``, validating each part."""
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3:
        raise SettingsError(
            f"table name {name!r} must have three parts, catalog.schema.table "
            "(for example yws_dev.ml.yws_features)"
        )
    for part, what in zip(parts, ("catalog", "schema", "table"), strict=True):
        check_identifier(part, f"{what} name in {name!r}:")
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class Settings:
    """Where YWS runs and the names of everything it reads and writes."""

    target: str = "local"
    catalog: str = "yws_dev"
    schema: str = "ml"
    model: str = "yws_lr"
    features_table: str = "yws_features"
    predictions_table: str = "yws_predictions"
    quarantine_table: str = "yws_quarantine"
    score_runs_table: str = "yws_score_runs"
    home: Path = Path(".yws")
    spec: Path | None = None
    experiment: str | None = None
    dfs_tmpdir: str | None = None
    warehouse_id: str | None = None
    analysts_group: str = "yws_analysts"
    r_users_group: str = "yws_r_users"
    jobs_principal: str = "yws_jobs"
    # the Model Serving endpoint that serves the model (bundle variable serving_endpoint):
    # what ai_query in sql/ names
    serving_endpoint: str = "yws_lr"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise SettingsError(
                f"target {self.target!r} is unknown: choose one of {', '.join(TARGETS)}"
            )
        check_identifier(self.catalog, "catalog")
        check_identifier(self.schema, "schema")
        for name in ("model", "features_table", "predictions_table", "quarantine_table",
                     "score_runs_table"):
            check_identifier(getattr(self, name), name.replace("_", " "))
        check_endpoint_name(self.serving_endpoint)
        object.__setattr__(self, "home", Path(self.home))
        if self.spec is not None:
            object.__setattr__(self, "spec", Path(self.spec))

    # -- full names, built in one place ------------------------------------------------------
    def table(self, short: str) -> str:
        """The three-level name of a table in the configured catalog and schema."""
        return f"{self.catalog}.{self.schema}.{check_identifier(short, 'table')}"

    @property
    def model_name(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.model}"

    @property
    def features(self) -> str:
        return self.table(self.features_table)

    @property
    def predictions(self) -> str:
        return self.table(self.predictions_table)

    @property
    def quarantine(self) -> str:
        return self.table(self.quarantine_table)

    @property
    def score_runs(self) -> str:
        return self.table(self.score_runs_table)

    @property
    def drift(self) -> str:
        """The drift table (``sql/10_tables/14_yws_drift.sql``; its views name it so too)."""
        return self.table("yws_drift")

    @property
    def experiment_name(self) -> str:
        if self.experiment:
            return self.experiment
        return "/Shared/yws" if self.target == "databricks" else "yws"

    @property
    def warehouse_dir(self) -> Path:
        return self.home.resolve() / "warehouse"

    @property
    def mlflow_db(self) -> Path:
        return self.home.resolve() / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home.resolve() / "mlartifacts"

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from defaults, then ``YWS_*`` variables, then explicit overrides.

        Overrides whose value is ``None`` are ignored, so CLI options left unset fall through to
        the environment.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"YWS_{f.name.upper()}"
            if env.get(key):
                values[f.name] = env[key]
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
