"""The labelled rows a model is fitted on: read them, check them, account for each, split.

Every row read is accounted for: it is trained on, held out, or left out with a reason
(unlabelled, or failed a quality check). The checks run in one pass over the rows, which also
caches them where the session can cache, so the fit and the held-out evaluation read the
checked rows from memory instead of reading and checking the table again on every pass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yws.config import Settings
from yws.contract.quality import REASON_COL, InputDataError, check_schema, with_reason
from yws.contract.spec import Spec
from yws.contract.tables import FEATURES_HINT
from yws.platform import target_for
from yws.storage import Storage

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

UNLABELLED = "unlabelled"
FAILED_CHECKS = "failed quality checks"


HELD_OUT = "held_out__flag"
"""A column of the checked rows: whether :func:`held_out` puts the row in the held-out set."""


@dataclass
class TrainingRows:
    """The checked rows: how many were read and why some were left out, and the usable ones
    (label as 0/1 integers), split into training and held-out rows. :meth:`release` frees the
    session's cache of the rows (also on leaving a ``with`` block)."""

    checked: DataFrame = field(repr=False)
    """Usable rows: the spec's label and features, and :data:`HELD_OUT`."""
    read: int
    excluded: dict[str, int]
    _cached: DataFrame | None = field(default=None, repr=False)
    features_version: int | None = None
    """The features table's Delta version the rows were read at (logged as the run's input)."""

    @property
    def used(self) -> int:
        return self.read - sum(self.excluded.values())

    @property
    def usable(self) -> DataFrame:
        return self.checked.drop(HELD_OUT)

    def split(self) -> tuple[DataFrame, DataFrame]:
        """(training rows, held-out rows), as :func:`split` divides them."""
        from pyspark.sql import functions as F

        flag = F.col(HELD_OUT)
        return (self.checked.where(~flag).drop(HELD_OUT),
                self.checked.where(flag).drop(HELD_OUT))

    def release(self) -> None:
        if self._cached is not None:
            self._cached.unpersist()
            self._cached = None

    def __enter__(self) -> TrainingRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_out(spec: Spec) -> Column:
    """Whether a row is held out: a seeded hash of entity and date, so the split is stable
    whatever the partitioning."""
    from pyspark.sql import functions as F

    bucket = F.abs(F.xxhash64(F.col(spec.entity_key).cast("string"),
                              F.col(spec.as_of_column), F.lit(spec.split_seed))) % 10_000
    return bucket < int(round(spec.test_fraction * 10_000))


def split(df: DataFrame, spec: Spec) -> tuple[DataFrame, DataFrame]:
    """(training rows, held-out rows) of ``df``, by :func:`held_out`."""
    flag = held_out(spec)
    return df.where(~flag), df.where(flag)


def _split_once(rows: DataFrame, spec: Spec) -> DataFrame:
    """``rows`` with :data:`HELD_OUT` in place of key and date, which the fit does not need."""
    return rows.withColumn(HELD_OUT, held_out(spec)).drop(spec.entity_key, spec.as_of_column)


KEY_HASH = "key__hash"
"""A column of the cached rows: a 64-bit hash of entity and date, for the duplicate check."""


def key_hash(spec: Spec) -> Column:
    """:data:`KEY_HASH` of a row."""
    from pyspark.sql import functions as F

    return F.xxhash64(F.col(spec.entity_key), F.col(spec.as_of_column))


def _cached_unique(df: DataFrame, spec: Spec, settings: Settings) -> DataFrame | None:
    """The checked rows with :data:`KEY_HASH`, cached, in one pass over the table; ``None``
    when a key may repeat (or the session cannot cache), and then nothing is left cached.

    The rows are spread over the session's cores by :data:`KEY_HASH` (no sort; a snapshot
    written as one file would otherwise be one partition, every pass of the fit one task), so
    rows with one key sit in one partition and counting hashes in the cache needs no shuffle
    and no second read of the table. A repeated hash is a repeated key or (about once in
    10^13 snapshots of a million rows) two keys with one hash: either way the caller checks
    the keys themselves, as the scoring job does.
    """
    from pyspark.sql import functions as F

    hashed = with_reason(df, spec, duplicates=False).withColumn(KEY_HASH, key_hash(spec))
    cached = _cache(_split_once(hashed.repartition(KEY_HASH), spec), settings)
    if cached is None:
        return None
    try:
        # One job: an aggregate over the per-hash counts (a limit(1) scans one partition,
        # then the rest, in two).
        most = cached.groupBy(KEY_HASH).count().agg(F.max("count")).first()
    except BaseException:
        cached.unpersist()
        raise
    if most is not None and (most[0] or 0) > 1:
        cached.unpersist()
        return None
    return cached


def _cache(df: DataFrame, settings: Settings) -> DataFrame | None:
    """``df`` cached in the session, or ``None`` where the target's session cannot cache
    (serverless environments before version 5 refuse ``cache()``): the rows are then read and
    checked again on every pass. The target decides (:meth:`yws.platform.Target.cached`).
    """
    return target_for(settings).cached(df)


def load_training_rows(
    spark: SparkSession, storage: Storage, settings: Settings, spec: Spec,
    as_of: dt.date | None,
) -> TrainingRows:
    """Read the feature table, check it against the spec and account for every row.

    Raises :class:`~yws.contract.quality.FeatureSchemaError` or
    :class:`~yws.contract.quality.InputDataError` (nothing cached is left behind) when there
    is nothing a classifier could be fitted on.
    """
    from pyspark.sql import functions as F

    storage.require(settings.features, FEATURES_HINT)
    version = storage.version(settings.features)  # every pass reads this version
    df = storage.read(spark, settings.features, version)
    check_schema(df, spec, settings.features, need_label=True)
    # The columns the spec names, nothing else: the pipeline reads no others, and the cache
    # holds no others.
    df = df.select(spec.entity_key, spec.as_of_column, spec.label, *spec.feature_names)
    if as_of is not None:
        df = df.where(F.col(spec.as_of_column) == F.lit(as_of))
    df = df.withColumn(spec.label, F.col(spec.label).cast("int"))
    cached = _cached_unique(df, spec, settings)
    if cached is None:  # repeated keys (quarantined by name), or a session that cannot cache
        checked = with_reason(df, spec)
        cached = _cache(_split_once(checked.repartition(spec.entity_key, spec.as_of_column),
                                    spec), settings)
        rows = _split_once(checked, spec) if cached is None else cached
    else:
        rows = cached.drop(KEY_HASH)  # `cached` itself is what release() unpersists
    try:
        found = _account(rows, cached, spec, settings, as_of)
        found.features_version = version
        return found
    except BaseException:
        if cached is not None:
            cached.unpersist()
        raise


def _account(rows: DataFrame, cached: DataFrame | None, spec: Spec, settings: Settings,
             as_of: dt.date | None) -> TrainingRows:
    from pyspark.sql import functions as F

    label = F.col(spec.label)
    ok = F.col(REASON_COL).isNull()
    # One pass counts every kind of row (and fills the cache). The imputer learns a fill value
    # from the rows it fits on: a column with no value there fails deep inside Spark's fit, so
    # its values are counted in the same pass.
    imputed = [f.name for f in spec.features if f.nulls == "impute"]
    fit_row = ok & label.isin(0, 1)
    stats = rows.agg(
        *(F.count_if(fit_row & F.col(n).isNotNull() & ~F.isnan(F.col(n).cast("double")))
          .alias(f"values__{i}") for i, n in enumerate(imputed)),
        F.count(F.lit(1)).alias("read"),
        F.count_if(~ok).alias("bad"),
        F.count_if(ok & label.isNull()).alias("unlabelled"),
        F.count_if(label.isNotNull() & ~label.isin(0, 1)).alias("bad_label"),
        F.count_if(ok & (label == 1)).alias("pos"),
        F.count_if(ok & (label == 0)).alias("neg"),
    ).first()
    assert stats is not None
    where = f" for as-of {as_of}" if as_of else ""
    if stats["read"] == 0:
        raise InputDataError(f"{settings.features} has no rows{where}: nothing to train on")
    if stats["bad_label"]:
        bad = [r[0] for r in rows.where(label.isNotNull() & ~label.isin(0, 1))
               .select(spec.label).distinct().limit(5).collect()]
        raise InputDataError(
            f"label {spec.label} must be 0 or 1; {stats['bad_label']} row(s) hold other values "
            f"(e.g. {', '.join(map(str, bad))})"
        )
    if stats["pos"] == 0 or stats["neg"] == 0:
        only = 1 if stats["pos"] else 0
        raise InputDataError(
            f"label {spec.label} has one class only (all usable rows are {only}){where}: "
            "a classifier needs both 0 and 1 in the training data"
        )
    empty = [n for i, n in enumerate(imputed) if stats[f"values__{i}"] == 0]
    if empty:
        snapshot = f"as-of {as_of}" if as_of else "all snapshots"
        raise InputDataError(
            f"feature(s) {', '.join(empty)} hold no value in the usable rows of "
            f"{settings.features} ({snapshot}), so there is nothing to impute from; load the "
            "values, or set nulls: quarantine for them in the spec"
        )
    excluded = {UNLABELLED: int(stats["unlabelled"]), FAILED_CHECKS: int(stats["bad"])}
    usable = rows.where(ok & label.isNotNull()).drop(REASON_COL)
    return TrainingRows(usable, int(stats["read"]), excluded, cached)
