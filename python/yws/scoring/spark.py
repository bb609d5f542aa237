"""The Spark engine: the registered SparkML PipelineModel over the snapshot as a DataFrame.

The quarantine rules are compiled to column expressions by :func:`yws.contract.quality.with_reason`
(training uses the same compilation); the bands by :func:`band_column`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from yws.contract.quality import REASON_COL, InputDataError, check_schema, with_reason
from yws.contract.spec import Spec
from yws.contract.tables import FEATURES_HINT, PREDICTIONS, QUARANTINE, conform
from yws.model.evaluator import UnsupportedModelError
from yws.model.families import SPARK_LR, family_of_version
from yws.scoring.base import Engine, RunIds, Scoring

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

    from yws.model.registry import Located


def band_column(spec: Spec, probability: str = "probability"):  # -> Column
    """:class:`yws.contract.spec.Bands` compiled to a Spark expression: the highest band
    reached."""
    from pyspark.sql import functions as F

    p, bands = F.col(probability), spec.bands
    starts = list(zip(bands.thresholds, bands.NAMES[1:], strict=True))
    (first, name), rest = starts[-1], reversed(starts[:-1])
    out = F.when(p >= first, F.lit(name))
    for threshold, name in rest:
        out = out.when(p >= threshold, F.lit(name))
    return out.otherwise(F.lit(bands.NAMES[0]))


def predict(
    model: PipelineModel, rows: DataFrame, spec: Spec, *, batch_id: str, run_id: str,
    model_name: str, model_version: int, scored_at: dt.datetime,
) -> DataFrame:
    """Predictions table rows for ``rows`` (which must all pass the quality checks)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = model.transform(rows).select(
        F.col(spec.entity_key).cast("string").alias("entity_id"),
        F.col(spec.as_of_column).alias("as_of_date"),
        F.lit(batch_id).alias("batch_id"),
        F.lit(run_id).alias("run_id"),
        vector_to_array(F.col("probability"))[1].alias("probability"),
        F.col("prediction").cast("int").alias("prediction"),
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
        F.lit(scored_at).alias("scored_at"),
    ).withColumn("band", band_column(spec))
    return conform(scored, PREDICTIONS)


def quarantined(rows: DataFrame, spec: Spec, *, batch_id: str, run_id: str,
                at: dt.datetime) -> DataFrame:
    """Quarantine table rows: the reason and the whole input row as JSON."""
    from pyspark.sql import functions as F

    inputs = [c for c in rows.columns if c != REASON_COL]
    out = rows.select(
        F.col(spec.entity_key).cast("string").alias("entity_id"),
        F.col(spec.as_of_column).alias("as_of_date"),
        F.lit(batch_id).alias("batch_id"),
        F.lit(run_id).alias("run_id"),
        F.col(REASON_COL).alias("reason"),
        F.to_json(F.struct(*[F.col(c) for c in inputs])).alias("record"),
        F.lit(at).alias("quarantined_at"),
    )
    return conform(out, QUARANTINE)


class SparkScoring(Scoring):
    def __init__(self, good: DataFrame, bad: DataFrame) -> None:
        self.good, self.bad = good, bad

    def predictions(self) -> DataFrame:
        return self.good

    def quarantined(self) -> DataFrame:
        return self.bad


class SparkEngine(Engine):
    name = "spark"
    label = "Spark"
    rows: DataFrame | None = None
    model: Any = None
    categories: dict[str, list[str]] | None = None

    def count(self, as_of: dt.date | None) -> tuple[dt.date, int]:
        from pyspark.sql import functions as F

        ctx = self.ctx
        features = ctx.settings.features
        ctx.storage.require(features, FEATURES_HINT)
        df = ctx.storage.read(ctx.session(), features)
        check_schema(df, ctx.spec, features, need_label=False)
        if as_of is None:
            latest = df.agg(F.max(ctx.spec.as_of_column)).first()
            if latest is None or latest[0] is None:
                raise InputDataError(f"{features} is empty: there is nothing to score")
            as_of = latest[0]
        assert as_of is not None
        self.rows = df.where(F.col(ctx.spec.as_of_column) == F.lit(as_of))
        return as_of, self.rows.count()

    def load(self, model: Located) -> dict[str, list[str]]:
        from yws.model import registry
        from yws.model.pipeline import category_labels

        self.ctx.session()
        registry.configure(self.ctx.settings)
        family = family_of_version(self.ctx.settings.model_name, model.version, model.path)
        if family != SPARK_LR:
            raise UnsupportedModelError(
                f"{self.ctx.settings.model_name} v{model.version} is a {family} model, which "
                "the Spark engine does not score (it runs SparkML pipelines): use --engine "
                "arrow")
        self.model = registry.load(self.ctx.settings, model.version)
        self.categories = category_labels(self.model)
        return self.categories

    def score(self, ids: RunIds, rows: int) -> Scoring:
        from pyspark.sql import functions as F

        assert self.rows is not None and self.model is not None
        spec = self.ctx.spec
        checked = with_reason(self.rows, spec, self.categories)
        good = predict(self.model, checked.where(F.col(REASON_COL).isNull()).drop(REASON_COL),
                       spec, batch_id=ids.batch_id, run_id=ids.run_id,
                       model_name=ids.model_name, model_version=ids.model_version,
                       scored_at=ids.at)
        bad = quarantined(checked.where(F.col(REASON_COL).isNotNull()), spec,
                          batch_id=ids.batch_id, run_id=ids.run_id, at=ids.at)
        return SparkScoring(good, bad)
