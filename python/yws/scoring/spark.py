"""The Spark engine: the registered SparkML PipelineModel over the snapshot as a DataFrame.

The quarantine rules are compiled to column expressions by :func:`yws.contract.quality.with_reason`
(training uses the same compilation); the bands by :func:`band_column`; the reason codes by
:func:`reason_columns`, from the same plan the arrow engine evaluates
(:class:`yws.model.evaluator.ReasonPlan`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from yws.contract.quality import REASON_COL, InputDataError, check_schema, with_reason
from yws.contract.spec import Spec
from yws.contract.tables import FEATURES_HINT, PREDICTIONS, QUARANTINE, conform
from yws.model.evaluator import REASON_OUTPUTS, ArrowModel, ReasonPlan, UnsupportedModelError
from yws.model.families import SPARK_LR, family_of_version
from yws.monitoring.profile import (
    Plan,
    Profile,
    spark_aggregates,
    spark_profile,
    spark_score_aggregates,
    spark_score_counts,
)
from yws.scoring.base import Context, Engine, RunIds, Scoring

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


def reason_columns(plan: ReasonPlan | None) -> list[Any]:  # -> list[Column]
    """The reason code columns (:data:`yws.model.evaluator.REASON_OUTPUTS`) of a transformed
    DataFrame, as DataFrame expressions (no Python UDF: they run on Spark Connect too).

    The arithmetic is the arrow engine's, term by term in the same order, so the two engines
    agree to the last bit wherever the regression's inputs do: each feature's contribution is a
    struct (contribution, -position in the spec, name); sorted descending (a tie to the feature
    first in the spec), the first three are the reasons where positive. ``plan`` None: all
    null."""
    from pyspark.sql import functions as F

    if plan is None:
        return [F.lit(None).cast(str(kind)).alias(name)  # "string", "double"
                for name, kind in REASON_OUTPUTS.items()]
    z = F.col(REASON_VECTOR)
    items = []
    for k, f in enumerate(plan.features):
        c = F.lit(0.0)
        for j in range(f.start, f.stop):
            c = c + (z[j] - F.lit(float(plan.zbar[j]))) * F.lit(float(plan.beta[j]))
        name = F.lit(f.name) if f.index_column is None else \
            F.array(*[F.lit(v) for v in f.levels])[F.col(f.index_column).cast("int")]
        items.append(F.struct(c.alias("c"), F.lit(-k).alias("o"), name.alias("n")))
    ranked = F.sort_array(F.array(*items), asc=False)  # no lambda: it would not be compiled
    out = []
    for k in range(1, len(REASON_OUTPUTS) // 2 + 1):
        top = F.try_element_at(ranked, F.lit(k))  # null past the features
        positive = top["c"] > 0  # only what raised the log-odds is a reason: null otherwise
        out += [F.when(positive, top["n"]).alias(f"reason_{k}"),
                F.when(positive, top["c"]).alias(f"reason_{k}_contribution")]
    return out


REASON_VECTOR = "reasons__z"
"""The regression's input as an array, computed once per row for :func:`reason_columns`."""


def predict(
    model: PipelineModel, rows: DataFrame, spec: Spec, *, batch_id: str, run_id: str,
    model_name: str, model_version: int, scored_at: dt.datetime,
    reasons: ReasonPlan | None = None,
) -> DataFrame:
    """Predictions table rows for ``rows`` (which must all pass the quality checks), with
    the reason codes of ``reasons`` (None: null)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    transformed = model.transform(rows)
    if reasons is not None:
        transformed = transformed.withColumn(
            REASON_VECTOR, vector_to_array(F.col(reasons.features_column)))
    scored = transformed.select(
        *reason_columns(reasons),
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
    def __init__(self, good: DataFrame, bad: DataFrame, *, rows: DataFrame | None = None,
                 plan: Plan | None = None, ctx: Context | None = None,
                 run_id: str = "") -> None:
        self.good, self.bad = good, bad
        self.rows, self.plan, self.ctx, self.run_id = rows, plan, ctx, run_id

    def predictions(self) -> DataFrame:
        return self.good

    def quarantined(self) -> DataFrame:
        return self.bad

    def profile(self) -> Profile | None:
        """One Spark job: the features counted over the snapshot (every row read) beside the
        score counted over the run's predictions as written (read back by run id, rather than
        running the model again)."""
        from pyspark.sql import functions as F

        if self.plan is None or self.rows is None or self.ctx is None:
            return None
        counts = self.rows.agg(*spark_aggregates(self.plan))
        if self.plan.score is not None:
            ctx = self.ctx
            scored = ctx.storage.read(ctx.session(), ctx.settings.predictions).where(
                F.col("run_id") == F.lit(self.run_id))
            counts = counts.crossJoin(scored.agg(*spark_score_aggregates(self.plan.score)))
        row = counts.first()
        assert row is not None  # an aggregation without grouping has one row
        found = row.asDict()
        out = spark_profile(self.plan, found)
        if self.plan.score is not None:
            out.score = spark_score_counts(self.plan.score, found)
        return out


class SparkEngine(Engine):
    name = "spark"
    label = "Spark"
    rows: DataFrame | None = None
    model: Any = None
    categories: dict[str, list[str]] | None = None
    reason_plan: ReasonPlan | None = None

    def count(self, as_of: dt.date | None) -> tuple[dt.date, int]:
        from pyspark.sql import functions as F

        ctx = self.ctx
        features = ctx.settings.features
        ctx.storage.require(features, FEATURES_HINT)
        df = ctx.storage.read(ctx.session(), features, ctx.pin_features())
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
        if self.ctx.reasons:
            self.reason_plan = _reason_plan(self.ctx.settings.model_name, model)
        return self.categories

    def score(self, ids: RunIds, rows: int, plan: Plan | None = None) -> Scoring:
        from pyspark.sql import functions as F

        assert self.rows is not None and self.model is not None
        spec = self.ctx.spec
        checked = with_reason(self.rows, spec, self.categories)
        good = predict(self.model, checked.where(F.col(REASON_COL).isNull()).drop(REASON_COL),
                       spec, batch_id=ids.batch_id, run_id=ids.run_id,
                       model_name=ids.model_name, model_version=ids.model_version,
                       scored_at=ids.at,
                       reasons=self.reason_plan if self.ctx.reasons else None)
        bad = quarantined(checked.where(F.col(REASON_COL).isNotNull()), spec,
                          batch_id=ids.batch_id, run_id=ids.run_id, at=ids.at)
        return SparkScoring(good, bad, rows=self.rows, plan=plan, ctx=self.ctx,
                            run_id=ids.run_id)


def _reason_plan(model_name: str, model: Located) -> ReasonPlan | None:
    """The version's reason plan, read from its saved stages as the arrow engine reads them
    (one reading for both engines); None for a model it does not implement, or without
    training means: its reason columns are null."""
    try:
        loaded = ArrowModel.load(model.path) if model.path is not None else \
            ArrowModel.from_registry(f"models:/{model_name}/{model.version}")
    except UnsupportedModelError:
        return None
    return loaded.reason_plan
