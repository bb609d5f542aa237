"""Feature types and column kinds, written once as data.

Each feature of the spec has a type; everything YWS does differently per type reads it from
the type's :class:`FeatureType` here: the column types a table may hold for it (Spark and
Arrow), the null policies it allows and their defaults, whether it is categorical (indexed
and one-hot encoded, with an unseen-category policy), whether NaN and infinities are checked,
its MLflow signature type and the Arrow type a file import gives it. A new feature type is
one entry in :data:`FEATURE_TYPES` — and, if it needs a model stage of its own, the pipeline
and the evaluator learn it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPARK_INTEGRAL = ("byte", "short", "integer", "long")


@dataclass(frozen=True)
class ColumnKind:
    """What a column read by the jobs may hold: Spark type names (``DataType.typeName()``)
    and Arrow type predicates (``pyarrow.types.is_<name>``)."""

    name: str
    description: str
    spark: tuple[str, ...]
    arrow: tuple[str, ...]

    def fits_spark(self, dtype: Any) -> bool:
        return str(dtype.typeName()) in self.spark

    def fits_arrow(self, dtype: Any) -> bool:
        import pyarrow as pa

        return any(getattr(pa.types, f"is_{name}")(dtype) for name in self.arrow)


KEY = ColumnKind("key", "string or integer", ("string", *SPARK_INTEGRAL),
                 ("string", "large_string", "integer"))
DATE = ColumnKind("date", "date", ("date",), ("date32",))
LABEL = ColumnKind("label", "integer or boolean (0/1)", ("boolean", *SPARK_INTEGRAL),
                   ("boolean", "integer"))
NUMERIC_COLUMN = ColumnKind("numeric", "numeric",
                            (*SPARK_INTEGRAL, "float", "double", "decimal"),
                            ("integer", "floating", "decimal"))
BOOLEAN_COLUMN = ColumnKind("boolean", "boolean", ("boolean",), ("boolean",))
STRING_COLUMN = ColumnKind("categorical", "string", ("string",), ("string", "large_string"))


@dataclass(frozen=True)
class FeatureType:
    name: str
    column: ColumnKind
    null_policies: tuple[str, ...]
    """What a null may do: ``impute`` it, ``quarantine`` the row, or (categoricals) ``keep`` it
    as a category of its own. The first is the default."""
    impute_default: str | None
    categorical: bool
    """Indexed and one-hot encoded; has an ``unseen`` policy for categories not seen in
    training."""
    checks_finite: bool
    """NaN counts as null, and an infinite value is held back."""
    mlflow_type: str
    arrow_type: str  # a pyarrow type factory: pa.<arrow_type>()

    def arrow(self) -> Any:
        import pyarrow as pa

        return getattr(pa, self.arrow_type)()


FEATURE_TYPES: dict[str, FeatureType] = {t.name: t for t in (
    FeatureType("numeric", NUMERIC_COLUMN, ("impute", "quarantine"), "mean",
                categorical=False, checks_finite=True, mlflow_type="double",
                arrow_type="float64"),
    FeatureType("boolean", BOOLEAN_COLUMN, ("impute", "quarantine"), "mode",
                categorical=False, checks_finite=False, mlflow_type="boolean",
                arrow_type="bool_"),
    FeatureType("categorical", STRING_COLUMN, ("keep", "quarantine"), None,
                categorical=True, checks_finite=False, mlflow_type="string",
                arrow_type="string"),
)}
IMPUTE_STRATEGIES = ("mean", "median", "mode")
UNSEEN_POLICIES = ("keep", "quarantine")
