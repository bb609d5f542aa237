"""Input checks: the feature table against the spec, and the rows the model must not score.

Schema problems stop a job before anything is written. Row problems send the row to
quarantine with a reason, so that rows read = rows scored + rows quarantined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yws.contract.features import DATE, KEY, LABEL, ColumnKind
from yws.contract.rules import quarantine_rules
from yws.contract.spec import Spec
from yws.errors import YwsError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

REASON_COL = "quarantine_reason"


class FeatureSchemaError(YwsError, ValueError):
    """The feature table lacks a column the spec needs, or holds one of the wrong type."""


class InputDataError(YwsError, ValueError):
    """The rows cannot be used as they are (empty, one label class, bad label values, ...)."""


def _expected(spec: Spec, need_label: bool) -> dict[str, ColumnKind]:
    """Column -> what it may hold, for every column the job reads."""
    cols = {spec.entity_key: KEY, spec.as_of_column: DATE}
    if need_label:
        cols[spec.label] = LABEL
    for f in spec.features:
        cols[f.name] = f.kind.column
    return cols


def _raise_schema_problems(actual: dict[str, Any], type_name: Any, fits: Any, spec: Spec,
                           table: str, need_label: bool) -> None:
    expected = _expected(spec, need_label)
    missing = [c for c in expected if c not in actual]
    wrong = [f"{c} is {type_name(actual[c])}, expected {kind.description}"
             for c, kind in expected.items()
             if c in actual and not fits(kind, actual[c])]
    problems = []
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if wrong:
        problems.append("wrong type(s): " + "; ".join(wrong))
    if problems:
        raise FeatureSchemaError(
            f"{table} does not match the feature spec ({spec.source}): " + " | ".join(problems)
        )


def check_schema(df: DataFrame, spec: Spec, table: str, *, need_label: bool) -> None:
    """Raise :class:`FeatureSchemaError` naming every missing or mistyped column."""
    _raise_schema_problems({f.name: f.dataType for f in df.schema.fields},
                           lambda t: t.simpleString(), ColumnKind.fits_spark, spec, table,
                           need_label)


MAX_DUPLICATE_KEYS = 100_000
_DUP_FLAG = "duplicate__flag"


def check_duplicate_count(found: int, spec: Spec) -> None:
    """Refuse a snapshot with more than :data:`MAX_DUPLICATE_KEYS` repeated keys (both
    engines: it is not one row per entity and date)."""
    if found > MAX_DUPLICATE_KEYS:
        raise too_many_duplicates(spec)


def too_many_duplicates(spec: Spec) -> InputDataError:
    return InputDataError(
        f"more than {MAX_DUPLICATE_KEYS} {spec.entity_key} values occur twice or more for "
        f"one {spec.as_of_column}: the table is not one row per entity and date. Check the "
        "entity_key and as_of_column of the spec"
    )


def duplicate_keys(df: DataFrame, spec: Spec) -> DataFrame | None:
    """The (entity, as-of) pairs that occur more than once, as a small local DataFrame.

    One aggregation, collected to the driver, so later passes over the rows (each pass of a
    fit, the scoring and the quarantine writes) need no shuffle. ``None`` when there are none.
    """
    from pyspark.sql import functions as F

    keys = [spec.entity_key, spec.as_of_column]
    found = (df.groupBy(*keys).count().where(F.col("count") > 1).select(*keys)
             .limit(MAX_DUPLICATE_KEYS + 1).collect())
    check_duplicate_count(len(found), spec)
    if not found:
        return None
    return df.sparkSession.createDataFrame(found, schema=df.select(*keys).schema)


def check_arrow_schema(schema: Any, spec: Spec, table: str, *, need_label: bool) -> None:
    """:func:`check_schema` for an Arrow schema (the arrow engine's input)."""
    _raise_schema_problems({f.name: f.type for f in schema}, str, ColumnKind.fits_arrow, spec,
                           table, need_label)


def quarantine_reason(
    spec: Spec, categories: dict[str, list[str]] | None = None, duplicates: bool = False
) -> Column:
    """A column holding why a row cannot be scored ('; '-joined), or null when it can: the
    rules of :func:`yws.contract.rules.quarantine_rules` compiled to Spark expressions.

    ``categories`` are the fitted labels per categorical feature the model reads (a feature
    it does not read is not checked); without them (training) unseen categories are not
    checked. ``duplicates`` reads the flag :func:`with_reason` joins.
    """
    from pyspark.sql import functions as F

    checks: list[Column] = []
    for rule in quarantine_rules(spec, unseen=categories is not None, duplicates=duplicates):
        c = F.col(rule.column)
        if rule.check == "null":
            checks.append(F.when(c.isNull(), F.lit(rule.reason())))
        elif rule.check == "null_or_nan":
            checks.append(F.when(c.isNull() | F.isnan(c.cast("double")),
                                 F.lit(rule.reason())))
        elif rule.check == "infinite":
            checks.append(F.when(c.cast("double").isin(float("inf"), float("-inf")),
                                 F.lit(rule.reason())))
        elif rule.check == "unseen":
            if rule.column not in (categories or {}):  # a column the model does not read
                continue
            known = (categories or {})[rule.column]
            before, after = rule.around_value()
            checks.append(F.when(c.isNotNull() & ~c.isin(*known) if known else c.isNotNull(),
                                 F.concat(F.lit(before), c, F.lit(after))))
        elif rule.check == "duplicate":
            checks.append(F.when(F.col(_DUP_FLAG).isNotNull(), F.lit(rule.reason())))
        else:  # pragma: no cover - a new check must be compiled here and in score_arrow
            raise NotImplementedError(f"the Spark engine cannot check {rule.check!r}")
    joined = F.concat_ws("; ", *checks)
    return F.when(joined == "", F.lit(None).cast("string")).otherwise(joined)


def with_reason(
    df: DataFrame, spec: Spec, categories: dict[str, list[str]] | None = None, *,
    duplicates: bool = True,
) -> DataFrame:
    """``df`` with a :data:`REASON_COL` column (null for rows that may be used).

    ``duplicates=False`` leaves repeated keys unchecked: for a caller that has made sure
    there are none (:func:`yws.training.rows.load_training_rows` checks a hash of the key in
    its cached rows, and comes back here when one repeats).
    """
    from pyspark.sql import functions as F

    dupes = duplicate_keys(df, spec) if duplicates else None
    if dupes is not None:
        flagged = dupes.withColumn(_DUP_FLAG, F.lit(True))
        df = df.join(F.broadcast(flagged), on=[spec.entity_key, spec.as_of_column], how="left")
    out = df.withColumn(REASON_COL, quarantine_reason(spec, categories, dupes is not None))
    return out.drop(_DUP_FLAG) if dupes is not None else out
