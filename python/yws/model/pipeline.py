"""The SparkML pipeline: the one place the YWS model code lives.

Raw feature columns go in, exactly as the feature table holds them; the fitted PipelineModel
carries every preparation step (casts, imputation, indexing, one-hot, assembly, optional
scaling), so scoring applies the same preparation as training and needs only the model.
Stage output columns use a ``__`` suffix so they never clash with feature names.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yws.contract.spec import Spec

if TYPE_CHECKING:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import DataFrame

FEATURES_COL = "features__vec"
SCALED_COL = "features__scaled"
UNKNOWN = "<unknown>"  # the bucket for a null or unseen category (StringIndexer "keep")


def numeric_col(name: str) -> str:
    return f"{name}__num"


def imputed_col(name: str) -> str:
    return f"{name}__imp"


def index_col(name: str) -> str:
    return f"{name}__idx"


def onehot_col(name: str) -> str:
    return f"{name}__onehot"


def model_input_col(spec: Spec, name: str) -> str:
    """The column a raw feature becomes just before assembly."""
    feature = next(f for f in spec.features if f.name == name)
    if feature.kind.categorical:
        return onehot_col(name)
    return imputed_col(name) if feature.nulls == "impute" else numeric_col(name)


def build_pipeline(spec: Spec, *, seed: int | None = None) -> Pipeline:
    """The unfitted pipeline for ``spec``: preparation stages, then LogisticRegression."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import (
        Imputer,
        OneHotEncoder,
        SQLTransformer,
        StandardScaler,
        StringIndexer,
        VectorAssembler,
    )

    stages: list[Any] = []
    to_double = [f for f in spec.features if not f.kind.categorical]
    if to_double:
        casts = ", ".join(f"CAST(`{f.name}` AS DOUBLE) AS `{numeric_col(f.name)}`"
                          for f in to_double)
        stages.append(SQLTransformer(statement=f"SELECT *, {casts} FROM __THIS__"))

    by_strategy: dict[str, list[str]] = defaultdict(list)
    for f in to_double:
        if f.nulls == "impute":
            by_strategy[f.impute or "mean"].append(f.name)
    for strategy, names in sorted(by_strategy.items()):
        stages.append(
            Imputer(
                strategy=strategy,
                inputCols=[numeric_col(n) for n in names],
                outputCols=[imputed_col(n) for n in names],
            )
        )

    categoricals = [f.name for f in spec.categorical]
    if categoricals:
        stages.append(
            StringIndexer(
                inputCols=categoricals,
                outputCols=[index_col(n) for n in categoricals],
                handleInvalid="keep",  # nulls and unseen values: one extra bucket
                stringOrderType="frequencyDesc",
            )
        )
        stages.append(
            OneHotEncoder(
                inputCols=[index_col(n) for n in categoricals],
                outputCols=[onehot_col(n) for n in categoricals],
                handleInvalid="keep",
            )
        )

    stages.append(
        VectorAssembler(
            inputCols=[model_input_col(spec, f.name) for f in spec.features],
            outputCol=FEATURES_COL,
            handleInvalid="error",
        )
    )
    # Always a StandardScaler: its fitted model keeps the training mean of every assembled
    # column, which the reason codes measure each row against (yws.model.evaluator.ReasonPlan).
    # Without scaleFeatures it scales nothing (withStd=False: Spark passes the vector through
    # as it is), so the regression and its coefficients are what they would be without it.
    stages.append(StandardScaler(inputCol=FEATURES_COL, outputCol=SCALED_COL,
                                 withMean=False, withStd=spec.scale_features))
    features_col = SCALED_COL
    stages.append(
        LogisticRegression(
            featuresCol=features_col,
            labelCol=spec.label,
            family="binomial",
            **spec.lr_params,
        )
    )
    return Pipeline(stages=stages)


def fit(pipeline: Pipeline, rows: DataFrame,
        cache: Callable[[DataFrame], DataFrame | None]) -> PipelineModel:
    """``pipeline.fit(rows)``, stage by stage as Spark's ``Pipeline`` fits (each estimator on
    what the stages before it output), but where ``cache`` caches (a target's
    :meth:`~yws.platform.Target.cached`; ``None`` where its session cannot) the assembled
    vectors and the label are cached as they are first computed. The scaler's pass and the
    regression's two (its summary, then its training blocks) then read them from memory
    instead of running the casts, imputers, indexers, encoders and assembler once each again.
    The vectors keep their rows' partitions and order, so the fit is the one ``pipeline.fit``
    gives (to the last bits, which differ between two runs of ``pipeline.fit`` too: Spark adds
    partial sums in the order tasks end; ``tests/integration/test_pipeline.py``). The cache
    is released before this returns."""
    from pyspark.ml import PipelineModel, Transformer
    from pyspark.ml.feature import VectorAssembler

    stages = pipeline.getStages()
    regression: Any = stages[-1]
    kept = [FEATURES_COL, regression.getLabelCol()]
    if regression.isDefined("weightCol") and regression.getWeightCol():
        kept.append(regression.getWeightCol())
    fitted: list[Any] = []
    cached: DataFrame | None = None
    try:
        for i, stage in enumerate(stages):
            model = stage if isinstance(stage, Transformer) else stage.fit(rows)
            fitted.append(model)
            if i == len(stages) - 1:
                break
            rows = model.transform(rows)
            if isinstance(stage, VectorAssembler):  # the pipeline's one assembler
                rows = rows.select(*kept)
                cached = cache(rows)
                rows = rows if cached is None else cached
    finally:
        if cached is not None:
            cached.unpersist()
    return PipelineModel(fitted)


@dataclass(frozen=True)
class Coefficients:
    """The fitted regression in terms of the assembled (unscaled) feature vector."""

    names: list[str]
    values: list[float]
    intercept: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "intercept": self.intercept,
            "coefficients": dict(zip(self.names, self.values, strict=True)),
            "feature_order": self.names,
        }


def expanded_feature_names(model: PipelineModel, sample: DataFrame, spec: Spec) -> list[str]:
    """Readable names of the assembled vector's slots: ``tenure_months``, ``region=west``."""
    meta = model.transform(sample.limit(0)).schema[FEATURES_COL].metadata["ml_attr"]
    attrs = sorted(
        (a for group in meta["attrs"].values() for a in group), key=lambda a: a["idx"]
    )
    names = []
    suffixes = {onehot_col(f.name) + "_": f.name for f in spec.categorical}
    plain = {model_input_col(spec, f.name): f.name for f in spec.features}
    for attr in attrs:
        raw = attr["name"]
        if raw in plain:
            names.append(plain[raw])
            continue
        for prefix, feature in suffixes.items():
            if raw.startswith(prefix):
                level = raw[len(prefix):]
                names.append(f"{feature}={UNKNOWN if level == '__unknown' else level}")
                break
        else:
            names.append(raw)
    return names


def coefficients(model: PipelineModel, sample: DataFrame, spec: Spec) -> Coefficients:
    """Coefficients on the unscaled vector: a StandardScaler stage that scales (withStd) is
    folded in."""
    from pyspark.ml.feature import StandardScalerModel

    lr: Any = model.stages[-1]  # LogisticRegressionModel
    values = [float(v) for v in lr.coefficients.toArray()]
    scaler = next((s for s in model.stages if isinstance(s, StandardScalerModel)), None)
    if scaler is not None and scaler.getWithStd():
        std = scaler.std.toArray()
        values = [v / s if s != 0 else 0.0 for v, s in zip(values, std, strict=True)]
    names = expanded_feature_names(model, sample, spec)
    return Coefficients(names=names, values=values, intercept=float(lr.intercept))


def category_labels(model: PipelineModel) -> dict[str, list[str]]:
    """The categories each categorical feature was fitted on, by feature name."""
    from pyspark.ml.feature import StringIndexerModel

    out: dict[str, list[str]] = {}
    for stage in model.stages:
        if isinstance(stage, StringIndexerModel):
            cols = stage.getInputCols() if stage.isSet("inputCols") else [stage.getInputCol()]
            for col, labels in zip(cols, stage.labelsArray, strict=True):
                out[col] = list(labels)
    return out
