"""The arrow engine: the logged SparkML PipelineModel evaluated with NumPy and Arrow, no Spark.

It reads the fitted parameters from the saved model itself (each stage's ``metadata`` JSON and
``data`` Parquet) and implements exactly the stage types the YWS pipeline uses: the cast
``SQLTransformer``, ``Imputer``, ``StringIndexer``, ``OneHotEncoder``, ``VectorAssembler``,
``StandardScaler`` and binomial ``LogisticRegression``. Anything else — another stage type, a
parameter value it does not implement — is a :class:`UnsupportedModelError`, never an
approximation; ``--engine auto`` then falls back to Spark.

This file is also each registered model's pyfunc code (:func:`yws.model.flavor.pyfunc_code` logs
it as ``code/yws_arrow_engine.py``), so it imports nothing from ``yws`` but the errors' root, and
that only when it is there; and only packages listed in :data:`yws.model.flavor.PYFUNC_PACKAGES`.
With it travels the spec's row contract (:class:`RowContract`: which rows the batch job would
quarantine, and the bands), so the pyfunc answers what on-demand scoring answers
(probability, prediction, band, error per row) with no ``yws`` installed.

Reason codes (:class:`ReasonPlan`): each scored row's top :data:`REASONS` features by their
contribution to its log-odds, coefficient × (the value entering the regression − that column's
training mean), summed over a feature's encoded columns. The training means are the
StandardScaler's (Spark stores them whatever withMean and withStd say); a model without one
has no reasons. The Spark engine computes the same plan with DataFrame expressions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

try:  # inside YWS, its errors' root; logged as a model's code, the file stands alone
    from yws.errors import YwsError as _Root
except ImportError:  # pragma: no cover - only where yws is not installed

    class _Root(Exception):  # type: ignore[no-redef]
        """The errors' root where the file runs alone (a class, so ValueError can join it)."""

Columns = dict[str, Any]  # name -> np.ndarray (float64 with NaN for null, or 2-D), or pa.Array


class UnsupportedModelError(_Root, ValueError):
    """The model holds a stage or setting the arrow engine does not implement."""


class InvalidInputError(_Root, ValueError):
    """A row the model itself refuses (as Spark would): a null or NaN where no stage handles it,
    an unseen category under handleInvalid=error."""


def _metadata(stage_dir: Path) -> dict[str, Any]:
    files = sorted((stage_dir / "metadata").glob("part-*"))
    if not files:
        raise UnsupportedModelError(f"{stage_dir}: no metadata")
    meta: dict[str, Any] = json.loads(files[0].read_text().splitlines()[0])
    return meta


def _data(stage_dir: Path) -> dict[str, Any]:
    table = pq.read_table(stage_dir / "data")
    if table.num_rows != 1:
        raise UnsupportedModelError(f"{stage_dir}: expected one row of fitted data")
    row: dict[str, Any] = table.to_pylist()[0]
    return row


def _param(meta: dict[str, Any], name: str) -> Any:
    return meta.get("paramMap", {}).get(name, meta.get("defaultParamMap", {}).get(name))


def _vector(v: dict[str, Any]) -> np.ndarray:
    """A Spark ML vector as saved in Parquet (type 0 sparse, 1 dense)."""
    if v["type"] == 1:
        return np.asarray(v["values"], dtype=np.float64)
    out = np.zeros(int(v["size"]))
    out[np.asarray(v["indices"], dtype=np.int64)] = v["values"]
    return out


def _matrix_row0(m: dict[str, Any]) -> np.ndarray:
    """The first row of a Spark ML matrix (dense type 1 or sparse CSC/CSR type 0)."""
    rows, cols = int(m["numRows"]), int(m["numCols"])
    values = np.asarray(m["values"], dtype=np.float64)
    if m["type"] == 1:
        dense = values.reshape((rows, cols)) if m["isTransposed"] else \
            values.reshape((cols, rows)).T
        return dense[0].copy()
    out = np.zeros(cols)
    ptrs, idx = m["colPtrs"], m["rowIndices"]
    if m["isTransposed"]:  # CSR: pointers over rows, indices are columns
        for k in range(ptrs[0], ptrs[1]):
            out[idx[k]] = values[k]
    else:  # CSC: pointers over columns, indices are rows
        for j in range(cols):
            for k in range(ptrs[j], ptrs[j + 1]):
                if idx[k] == 0:
                    out[j] = values[k]
    return out


def _as_float(array: Any) -> np.ndarray:
    """A column as float64 with NaN for null (booleans become 1.0 / 0.0)."""
    if isinstance(array, np.ndarray):
        return array.astype(np.float64)
    arr = pa.chunked_array([array]) if isinstance(array, pa.Array) else array
    return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


# -- stages ----------------------------------------------------------------------------------
@dataclass
class CastStage:
    """``SELECT *, CAST(`a` AS DOUBLE) AS `b`, …`` — the only SQLTransformer form accepted."""

    casts: list[tuple[str, str]]

    @classmethod
    def load(cls, meta: dict[str, Any]) -> CastStage:
        import sqlglot
        from sqlglot import exp

        statement = _param(meta, "statement")
        try:
            tree = sqlglot.parse_one(statement.replace("__THIS__", "t"), read="spark")
        except sqlglot.errors.ParseError:
            raise UnsupportedModelError(f"SQLTransformer statement does not parse: "
                                        f"{statement}") from None
        items = tree.expressions if isinstance(tree, exp.Select) else []
        casts = []
        ok = bool(items) and isinstance(items[0], exp.Star) and \
            [t.name for t in tree.find_all(exp.Table)] == ["t"] and \
            not tree.args.get("where") and not tree.args.get("group")
        for item in items[1:]:
            inner = item.this if isinstance(item, exp.Alias) else None
            if not (isinstance(inner, exp.Cast) and isinstance(inner.this, exp.Column)
                    and inner.to.this == exp.DataType.Type.DOUBLE):
                ok = False
                break
            casts.append((inner.this.name, item.alias))
        if not ok:
            raise UnsupportedModelError(
                "the arrow engine implements SQLTransformer only as "
                f"'SELECT *, CAST(col AS DOUBLE) AS name, ... FROM __THIS__'; got: {statement}")
        return cls(casts)

    def apply(self, cols: Columns) -> None:
        for source, target in self.casts:
            cols[target] = _as_float(cols[source])


@dataclass
class ImputerStage:
    inputs: list[str]
    outputs: list[str]
    surrogates: list[float]
    missing: float

    @classmethod
    def load(cls, meta: dict[str, Any], data: dict[str, Any]) -> ImputerStage:
        inputs = _param(meta, "inputCols") or [_param(meta, "inputCol")]
        outputs = _param(meta, "outputCols") or [_param(meta, "outputCol")]
        missing = float(_param(meta, "missingValue"))
        return cls(inputs, outputs, [float(data[c]) for c in inputs], missing)

    def apply(self, cols: Columns) -> None:
        for src, dst, value in zip(self.inputs, self.outputs, self.surrogates, strict=True):
            x = _as_float(cols[src])
            gap = np.isnan(x) if np.isnan(self.missing) else (np.isnan(x) | (x == self.missing))
            cols[dst] = np.where(gap, value, x)


@dataclass
class IndexerStage:
    inputs: list[str]
    outputs: list[str]
    labels: list[list[str]]
    handle_invalid: str

    @classmethod
    def load(cls, meta: dict[str, Any], data: dict[str, Any]) -> IndexerStage:
        inputs = _param(meta, "inputCols") or [_param(meta, "inputCol")]
        outputs = _param(meta, "outputCols") or [_param(meta, "outputCol")]
        handle = _param(meta, "handleInvalid")
        if handle not in ("keep", "error"):
            raise UnsupportedModelError(f"StringIndexer handleInvalid={handle} drops rows; the "
                                        "arrow engine implements keep and error")
        labels = data.get("labelsArray") or [data["labels"]]
        return cls(inputs, outputs, [list(x) for x in labels], handle)

    def apply(self, cols: Columns) -> None:
        for src, dst, labels in zip(self.inputs, self.outputs, self.labels, strict=True):
            values = cols[src]
            arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
            index = pc.index_in(pc.cast(arr, pa.string()), value_set=pa.array(labels,
                                                                           pa.string()))
            idx = np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.float64)
            unknown = np.isnan(idx)
            if unknown.any() and self.handle_invalid == "error":
                raise InvalidInputError(f"{src}: {int(unknown.sum())} value(s) are null or "
                                        "unseen and StringIndexer handleInvalid=error")
            cols[dst] = np.where(unknown, float(len(labels)), idx)


@dataclass
class OneHotStage:
    inputs: list[str]
    outputs: list[str]
    sizes: list[int]
    drop_last: bool
    keep: bool

    @classmethod
    def load(cls, meta: dict[str, Any], data: dict[str, Any]) -> OneHotStage:
        handle = _param(meta, "handleInvalid")
        if handle not in ("keep", "error"):
            raise UnsupportedModelError(f"OneHotEncoder handleInvalid={handle} is not "
                                        "implemented by the arrow engine")
        return cls(_param(meta, "inputCols") or [_param(meta, "inputCol")],
                   _param(meta, "outputCols") or [_param(meta, "outputCol")],
                   [int(s) for s in data["categorySizes"]], bool(_param(meta, "dropLast")),
                   handle == "keep")

    def apply(self, cols: Columns) -> None:
        for src, dst, size in zip(self.inputs, self.outputs, self.sizes, strict=True):
            idx = _as_float(cols[src])
            categories = size + (1 if self.keep else 0)  # keep adds one bucket for invalid
            width = categories - (1 if self.drop_last else 0)
            invalid = ~((idx >= 0) & (idx < size) & (idx == np.floor(idx)))
            if invalid.any() and not self.keep:
                raise InvalidInputError(f"{src}: index outside 0..{size - 1} and "
                                        "OneHotEncoder handleInvalid=error")
            pos = np.where(invalid, size, idx).astype(np.int64)
            out = np.zeros((len(idx), width), order="F")
            hit = pos < width
            out[np.nonzero(hit)[0], pos[hit]] = 1.0
            cols[dst] = out


@dataclass
class AssemblerStage:
    inputs: list[str]
    output: str

    @classmethod
    def load(cls, meta: dict[str, Any]) -> AssemblerStage:
        if _param(meta, "handleInvalid") != "error":
            raise UnsupportedModelError("VectorAssembler handleInvalid other than error is not "
                                        "implemented by the arrow engine")
        return cls(list(_param(meta, "inputCols")), _param(meta, "outputCol"))

    def apply(self, cols: Columns) -> None:
        parts = []
        for name in self.inputs:
            x = cols[name]
            x = _as_float(x) if not (isinstance(x, np.ndarray) and x.ndim == 2) else x
            if x.ndim == 1:
                if np.isnan(x).any():
                    raise InvalidInputError(f"{name}: null or NaN reaches VectorAssembler")
                x = x[:, None]
            parts.append(x)
        # Column-major, filled in place: each part is one contiguous copy.
        n = parts[0].shape[0] if parts else 0
        out = np.empty((n, sum(x.shape[1] for x in parts)), order="F")
        at = 0
        for x in parts:
            out[:, at:at + x.shape[1]] = x
            at += x.shape[1]
        cols[self.output] = out


@dataclass
class ScalerStage:
    source: str
    output: str
    std: np.ndarray
    mean: np.ndarray
    with_std: bool
    with_mean: bool

    @classmethod
    def load(cls, meta: dict[str, Any], data: dict[str, Any]) -> ScalerStage:
        return cls(_param(meta, "inputCol"), _param(meta, "outputCol"), _vector(data["std"]),
                   _vector(data["mean"]), bool(_param(meta, "withStd")),
                   bool(_param(meta, "withMean")))

    def apply(self, cols: Columns) -> None:
        x = np.array(cols[self.source], dtype=np.float64)
        if self.with_mean:
            x = x - self.mean
        if self.with_std:
            safe = np.where(self.std != 0.0, self.std, 1.0)
            x = np.where(self.std != 0.0, x / safe, 0.0)
        cols[self.output] = x


@dataclass
class LogisticStage:
    features: str
    coefficients: np.ndarray
    intercept: float
    threshold: float

    @classmethod
    def load(cls, meta: dict[str, Any], data: dict[str, Any]) -> LogisticStage:
        if int(data["numClasses"]) != 2 or data.get("isMultinomial"):
            raise UnsupportedModelError("the arrow engine implements binomial "
                                        "LogisticRegression only")
        if _param(meta, "thresholds"):
            raise UnsupportedModelError("LogisticRegression thresholds (plural) are not "
                                        "implemented by the arrow engine")
        return cls(_param(meta, "featuresCol"), _matrix_row0(data["coefficientMatrix"]),
                   float(_vector(data["interceptVector"])[0]),
                   float(_param(meta, "threshold")))

    def apply(self, cols: Columns) -> None:
        # Summed column by column, in the coefficients' order (as Spark's dot product walks a
        # row's values), not with a matrix product: BLAS sums in another order for one row
        # than for many, so a row's last bits depended on how many rows came with it.
        x = cols[self.features]
        margin = np.zeros(x.shape[0])
        for j, c in enumerate(self.coefficients):
            margin += x[:, j] * c
        margin += self.intercept
        p = 1.0 / (1.0 + np.exp(-margin))
        cols["probability__p1"] = p
        cols["prediction"] = (p > self.threshold).astype(np.int32)


LOADERS = {
    "org.apache.spark.ml.feature.SQLTransformer": lambda m, d: CastStage.load(m),
    "org.apache.spark.ml.feature.ImputerModel": ImputerStage.load,
    "org.apache.spark.ml.feature.StringIndexerModel": IndexerStage.load,
    "org.apache.spark.ml.feature.OneHotEncoderModel": OneHotStage.load,
    "org.apache.spark.ml.feature.VectorAssembler": lambda m, d: AssemblerStage.load(m),
    "org.apache.spark.ml.feature.StandardScalerModel": ScalerStage.load,
    "org.apache.spark.ml.classification.LogisticRegressionModel": LogisticStage.load,
}
# A pipeline saved by classic Spark names the JVM class; one saved over Spark Connect (as on
# serverless) is written by pyspark and names the Python class. Its stages are the same.
PIPELINE_CLASSES = {"org.apache.spark.ml.PipelineModel", "pyspark.ml.pipeline.PipelineModel"}
NO_DATA = {"org.apache.spark.ml.feature.SQLTransformer",
           "org.apache.spark.ml.feature.VectorAssembler"}


class ArrowModel:
    """A saved SparkML PipelineModel, evaluated without Spark."""

    def __init__(self, stages: list[Any]) -> None:
        if not stages or not isinstance(stages[-1], LogisticStage):
            raise UnsupportedModelError("the pipeline must end with a LogisticRegression")
        self.stages = stages
        self.reason_plan = ReasonPlan.of(stages)

    @classmethod
    def load(cls, path: str | Path) -> ArrowModel:
        """``path``: the ``sparkml`` folder of an MLflow Spark model, or the model folder."""
        root = Path(path)
        if (root / "sparkml").is_dir():
            root = root / "sparkml"
        meta = _metadata(root)
        if meta.get("class") not in PIPELINE_CLASSES:
            raise UnsupportedModelError(f"{root} is a {meta.get('class')}, not a PipelineModel")
        stages = []
        for uid, stage_dir in zip(meta["paramMap"]["stageUids"],
                                  sorted((root / "stages").iterdir(),
                                         key=lambda p: int(p.name.split("_")[0])),
                                  strict=True):
            stage_meta = _metadata(stage_dir)
            kind = stage_meta["class"]
            if kind not in LOADERS:
                raise UnsupportedModelError(
                    f"stage {uid} is a {kind.rsplit('.', 1)[-1]}, which the arrow engine "
                    "does not implement; use --engine spark")
            data = {} if kind in NO_DATA else _data(stage_dir)
            stages.append(LOADERS[kind](stage_meta, data))
        return cls(stages)

    @classmethod
    def from_registry(cls, model_uri: str) -> ArrowModel:
        import mlflow

        return cls.load(mlflow.artifacts.download_artifacts(model_uri))

    def categories(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for stage in self.stages:
            if isinstance(stage, IndexerStage):
                out.update(zip(stage.inputs, stage.labels, strict=True))
        return out

    def _run(self, data: pa.Table | pa.RecordBatch) -> Columns:
        cols: Columns = {name: data.column(name) for name in data.column_names}
        for stage in self.stages:
            stage.apply(cols)
        return cols

    def predict(self, data: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """(P(label = 1), prediction) for every row, in order."""
        cols = self._run(data)
        return cols["probability__p1"], cols["prediction"]

    def explain(self, data: pa.Table | pa.RecordBatch,
                ) -> tuple[np.ndarray, np.ndarray, dict[str, pa.Array] | None]:
        """:meth:`predict`, and each row's reasons (:data:`REASON_OUTPUTS`) from the same pass
        through the stages; None for a model without training means (no StandardScaler)."""
        cols = self._run(data)
        plan = self.reason_plan
        return cols["probability__p1"], cols["prediction"], \
            plan.reasons(cols) if plan is not None else None


# -- reason codes ----------------------------------------------------------------------------
REASONS = 3
"""Reasons per scored row: the features that raised its log-odds the most."""
UNKNOWN_LEVEL = "<unknown>"
"""How a reason names the StringIndexer's extra bucket (a null or unseen category under
handleInvalid=keep): ``region=<unknown>``, as the training's coefficient names do."""
REASON_OUTPUTS = {name: kind for k in range(1, REASONS + 1)
                  for name, kind in ((f"reason_{k}", pa.string()),
                                     (f"reason_{k}_contribution", pa.float64()))}
"""The reason columns, in order: ``reason_1``, ``reason_1_contribution``, … (null where the row
has fewer positive contributions, or the model no reasons)."""


def no_reasons(n: int) -> dict[str, pa.Array]:
    """:data:`REASON_OUTPUTS` for ``n`` rows, all null."""
    return {name: pa.nulls(n, kind) for name, kind in REASON_OUTPUTS.items()}


@dataclass(frozen=True)
class ReasonFeature:
    """One raw feature's encoded columns ``[start, stop)`` of the regression's input; for a
    categorical, the column holding its StringIndexer index and the name of each level."""

    name: str
    start: int
    stop: int
    index_column: str | None = None
    levels: tuple[str, ...] = ()  # "feature=level" per index, the extra bucket last


@dataclass(frozen=True)
class ReasonPlan:
    """How each feature's contribution is computed from the columns the stages produce:
    ``sum over j in [start, stop) of (z[j] - zbar[j]) * beta[j]``, added column by column in
    the coefficients' order (as the margin is: a row's answer never depends on the rows beside
    it), where ``z`` is :attr:`features_column` (what the LogisticRegression reads) and
    ``zbar`` its training mean. The Spark engine builds the same sums with DataFrame
    expressions from this plan (``yws.scoring.spark``), so both engines agree."""

    features: tuple[ReasonFeature, ...]
    features_column: str
    beta: np.ndarray
    zbar: np.ndarray

    @classmethod
    def of(cls, stages: list[Any]) -> ReasonPlan | None:
        """The plan of a pipeline: LogisticRegression ← StandardScaler ← VectorAssembler, each
        assembled column traced back through the casts, imputers, indexers and encoders to
        the raw feature it came from. None when the shape is another (no scaler: no training
        means)."""
        lr = stages[-1]
        scaler = next((s for s in stages if isinstance(s, ScalerStage)
                       and s.output == lr.features), None)
        if scaler is None:
            return None
        assembler = next((s for s in stages if isinstance(s, AssemblerStage)
                          and s.output == scaler.source), None)
        if assembler is None:
            return None
        source: dict[str, str] = {}  # a stage's output column -> its input column
        encoders: dict[str, OneHotStage] = {}
        labels: dict[str, list[str]] = {}  # an index column -> its labels
        for stage in stages:
            if isinstance(stage, CastStage):
                source.update((target, src) for src, target in stage.casts)
            elif isinstance(stage, ImputerStage | IndexerStage | OneHotStage):
                source.update(zip(stage.outputs, stage.inputs, strict=True))
                if isinstance(stage, IndexerStage):
                    labels.update(zip(stage.outputs, stage.labels, strict=True))
                if isinstance(stage, OneHotStage):
                    encoders.update((o, stage) for o in stage.outputs)

        def root(column: str) -> str:
            seen = set()
            while column in source and column not in seen:
                seen.add(column)
                column = source[column]
            return column

        features, at = [], 0
        for column in assembler.inputs:
            name = root(column)
            if column in encoders:
                encoder = encoders[column]
                size = encoder.sizes[encoder.outputs.index(column)]
                width = size + (1 if encoder.keep else 0) - (1 if encoder.drop_last else 0)
                index = source[column]
                if index not in labels:
                    return None
                levels = (*labels[index], UNKNOWN_LEVEL)
                features.append(ReasonFeature(name, at, at + width, index,
                                              tuple(f"{name}={v}" for v in levels)))
            else:
                width = 1
                features.append(ReasonFeature(name, at, at + 1))
            at += width
        if not features or at != len(lr.coefficients) or at != len(scaler.mean):
            return None
        mean = scaler.mean
        if scaler.with_mean:
            zbar = np.zeros(at)
        elif scaler.with_std:
            zbar = np.where(scaler.std != 0.0, mean / np.where(scaler.std != 0.0, scaler.std,
                                                               1.0), 0.0)
        else:
            zbar = mean.copy()
        return cls(tuple(features), lr.features, lr.coefficients.copy(), zbar)

    def contributions(self, z: np.ndarray) -> np.ndarray:
        """Rows × features (column-major): each feature's contribution to each row's log-odds.
        In place, one scratch column: the same operations, in the same order, as a plain
        ``c += (z[:, j] - zbar[j]) * beta[j]``, at a fraction of the memory traffic."""
        n = z.shape[0]
        out = np.empty((n, len(self.features)), order="F")
        term = np.empty(n)
        for k, f in enumerate(self.features):
            c = out[:, k]
            c[:] = 0.0
            for j in range(f.start, f.stop):
                np.subtract(z[:, j], self.zbar[j], out=term)
                term *= self.beta[j]
                c += term
        return out

    def reasons(self, cols: Columns) -> dict[str, pa.Array]:
        """:data:`REASON_OUTPUTS` of the rows whose stage outputs are ``cols``: the features
        with the largest positive contributions, largest first; a tie goes to the feature that
        comes first in the spec (the assembler's order: ``argmax`` takes the first); fewer than
        :data:`REASONS` positive contributions leave the rest null."""
        # rows × features, row-major: argmax along a row then reads contiguous memory (on the
        # column-major sums it is twice as slow, numpy copying the matrix for every call)
        work = np.ascontiguousarray(self.contributions(cols[self.features_column]))
        n, width = work.shape
        table: list[str] = []
        code = np.empty((n, width), dtype=np.int32)  # each entry's name, as an index in table
        for k, f in enumerate(self.features):
            if f.index_column is None:
                code[:, k] = len(table)
                table.append(f.name)
            else:
                code[:, k] = np.asarray(cols[f.index_column], dtype=np.float64)
                code[:, k] += len(table)
                table.extend(f.levels)
        names = pa.array(table, pa.string())
        flat, codes = work.reshape(-1), code.reshape(-1)  # [row * width + k], views
        first = np.arange(0, n * width, width)
        out: dict[str, pa.Array] = {}
        for k in range(1, REASONS + 1):
            at = first + np.argmax(work, axis=1)
            value = flat[at]
            if k < REASONS:
                flat[at] = -np.inf  # taken
            none = ~(value > 0.0)
            out[f"reason_{k}"] = names.take(pa.array(codes[at], pa.int32(), mask=none))
            out[f"reason_{k}_contribution"] = pa.array(value, pa.float64(), mask=none)
        return out


# -- what one row gets: the spec's row contract, logged with the model ----------------------
CONTRACT_FILE = "row_contract.json"
"""The :class:`RowContract` in the model folder (beside ``sparkml/``), as JSON."""

OUTPUTS = {"probability": pa.float64(), "prediction": pa.int32(), "band": pa.string(),
           "error": pa.string()}
"""What each scored row carries, in order: a refused row has an error and nothing else."""

ROW_CHECKS = ("null", "null_or_nan", "infinite", "unseen")
"""The quarantine checks that concern one row (a duplicated key is the batch's concern)."""


@dataclass(frozen=True)
class RowRule:
    """One check of one feature; its reason is ``before + <the value, for unseen> + after``."""

    check: str
    column: str
    before: str
    after: str


@dataclass(frozen=True)
class ContractFeature:
    name: str
    arrow: str  # a pyarrow type factory: pa.<arrow>()
    categorical: bool  # a value must be text
    checks_finite: bool  # a value must be a number ("NaN", "Infinity", "-Infinity" too)
    # neither: a value must be true or false


@dataclass(frozen=True)
class RowContract:
    """Which rows the model refuses and how it bands a probability: the batch job's quarantine
    rules on the features (``yws.contract.rules``) and the spec's bands, compiled to data by
    :func:`yws.model.flavor.row_contract` and logged with the model as :data:`CONTRACT_FILE`.

    :meth:`score` is on-demand scoring: a row the batch job would quarantine, or holding a
    value of the wrong type, gets no probability and says why in ``error``.
    """

    features: tuple[ContractFeature, ...]
    rules: tuple[RowRule, ...]
    band_names: tuple[str, ...]
    thresholds: tuple[float, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RowContract:
        rules = tuple(RowRule(**r) for r in d["rules"])
        unknown = sorted({r.check for r in rules} - set(ROW_CHECKS))
        if unknown:
            raise UnsupportedModelError(f"the model's row contract has check(s) "
                                        f"{', '.join(unknown)}, which this code does not know")
        return cls(tuple(ContractFeature(**f) for f in d["features"]), rules,
                   tuple(d["bands"]["names"]), tuple(float(t) for t in d["bands"]["thresholds"]))

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.__dict__ for f in self.features],
                "rules": [r.__dict__ for r in self.rules],
                "bands": {"names": list(self.band_names), "thresholds": list(self.thresholds)}}

    @classmethod
    def load(cls, model_folder: str | Path) -> RowContract | None:
        """The contract logged in ``model_folder``; None for a model logged without one."""
        path = Path(model_folder) / CONTRACT_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else None

    # -- the input, typed ---------------------------------------------------------------------
    def typed(self, data: Any) -> tuple[pa.Table, list[str | None]]:
        """The feature columns of ``data`` (an Arrow table, a pandas DataFrame, or what
        ``pandas.DataFrame`` takes) as the features' Arrow types; and per row, why a value
        could not be taken (that value is left null). A missing feature refuses the whole
        input; other columns are ignored."""
        if not isinstance(data, pa.Table):
            import pandas as pd

            data = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
            names = [str(c) for c in data.columns]
        else:
            names = data.column_names
        missing = [f.name for f in self.features if f.name not in names]
        if missing and len(data):
            raise InvalidInputError(
                f"the rows have no column {', '.join(missing)}: send every feature the model "
                f"reads ({', '.join(f.name for f in self.features)}); a missing value is null")
        n = len(data)
        errors: list[str | None] = [None] * n
        columns = {}
        for f in self.features:
            kind = getattr(pa, f.arrow)()
            if f.name not in names:
                columns[f.name] = pa.nulls(n, kind)
            elif isinstance(data, pa.Table):
                columns[f.name] = pc.cast(data[f.name], kind)
            else:
                columns[f.name] = _typed_column(data[f.name], f, kind, errors)
        return pa.table(columns), errors

    # -- the rules and the bands --------------------------------------------------------------
    def refusals(self, table: pa.Table, categories: dict[str, list[str]],
                 errors: list[str | None] | None = None) -> list[str | None]:
        """Per row, why the batch job would hold it back ('; '-joined, after ``errors``, in the
        rules' order), or None."""
        texts: list[str | None] = list(errors) if errors is not None else [None] * len(table)
        floats: dict[str, np.ndarray] = {}
        for rule in self.rules:
            col = table[rule.column]
            values = None
            if rule.check == "null":
                mask = np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)
            elif rule.check in ("null_or_nan", "infinite"):
                if rule.column not in floats:
                    floats[rule.column] = np.asarray(
                        pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False),
                        dtype=np.float64)
                x = floats[rule.column]
                mask = np.isnan(x) if rule.check == "null_or_nan" else np.isinf(x)
            else:  # unseen (from_dict admits nothing else)
                if rule.column not in categories:  # a column the model does not read
                    continue
                known = pa.array(categories[rule.column], pa.string())
                values = pc.cast(col, pa.string())
                mask = np.asarray(pc.and_(pc.is_valid(values), pc.invert(
                    pc.is_in(values, value_set=known))).to_numpy(zero_copy_only=False),
                                  dtype=bool)
            for i in np.nonzero(mask)[0]:
                value = values[int(i)].as_py() if values is not None else ""
                text = f"{rule.before}{value}{rule.after}"
                texts[i] = text if texts[i] is None else f"{texts[i]}; {text}"
        return texts

    def bands(self, p: np.ndarray) -> pa.Array:
        """Each probability's band: ``band_names[number of thresholds it reaches]``."""
        level = np.zeros(len(p), dtype=np.int8)
        for threshold in self.thresholds:
            level += p >= threshold
        return pa.array(self.band_names, pa.string()).take(pa.array(level))

    def score(self, model: Any, table: pa.Table,
              errors: list[str | None] | None = None, *, reasons: bool = False) -> pa.Table:
        """:data:`OUTPUTS` for every row of ``table`` (the features, typed), in order.
        ``errors``: rows already refused (a value of the wrong type). ``model``: an
        :class:`ArrowModel`, or any model with ``categories()`` and ``predict(table)``; one
        with ``refusals(table)`` (an R glm, :mod:`yws.model.families`) also refuses, with its
        reasons, rows the contract lets through that it cannot score. ``reasons``: the
        :data:`REASON_OUTPUTS` columns follow, from the model's ``explain(table)`` (null for a
        refused row, and for a model that gives none)."""
        n = table.num_rows
        texts = self.refusals(table, model.categories(), errors)
        own = getattr(model, "refusals", None)
        more = own(table) if own is not None else None
        if more is not None:
            texts = [t if t is not None else m for t, m in zip(texts, more, strict=True)]
        refused = np.array([t is not None for t in texts], dtype=bool)
        p = np.full(n, np.nan)
        y = np.zeros(n, dtype=np.int32)
        good = np.nonzero(~refused)[0]
        why: dict[str, pa.Array] | None = None
        if len(good):
            rows = table.take(pa.array(good))
            explain = getattr(model, "explain", None) if reasons else None
            if explain is not None:
                p_good, y_good, why = explain(rows)
            else:
                p_good, y_good = model.predict(rows)
            p[good], y[good] = p_good, y_good
        band = self.bands(np.where(refused, 0.0, p)).to_pylist()
        out = pa.table({
            "probability": pa.array(p, pa.float64(), mask=refused),
            "prediction": pa.array(y, pa.int32(), mask=refused),
            "band": pa.array([None if r else b for r, b in zip(refused, band, strict=True)],
                             pa.string()),
            "error": pa.array(texts, pa.string()),
        }, schema=pa.schema(OUTPUTS))
        if not reasons:
            return out
        if why is None:
            extra = no_reasons(n)
        else:  # the scored rows' reasons in their places, null for the refused ones
            where = np.full(n, -1, dtype=np.int64)
            where[good] = np.arange(len(good))
            at = pa.array(where, pa.int64(), mask=refused)
            extra = {name: why[name].take(at) for name in REASON_OUTPUTS}
        for name, kind in REASON_OUTPUTS.items():
            out = out.append_column(pa.field(name, kind), extra[name])
        return out


def _missing(raw: Any) -> bool:
    """None, and pandas' other marks of a missing value (NaN, NA, NaT) — but a float NaN is a
    value of a numeric feature, kept as NaN."""
    if raw is None:
        return True
    try:
        return bool(raw != raw) and not isinstance(raw, float)  # pd.NA, pd.NaT
    except TypeError:
        return True  # pd.NA refuses a truth value
    except ValueError:
        return False  # an array: a value, of the wrong type


def _value(raw: Any, f: ContractFeature) -> tuple[Any, str | None]:
    """(the value as the feature's type, or None with why it cannot be) — the same verdicts
    and words as on-demand scoring's JSON rows (``yws.scoring.records``)."""
    if _missing(raw):
        return None, None
    if isinstance(raw, np.generic):
        raw = raw.item()
    if f.categorical:
        if isinstance(raw, str):
            return raw, None
        if isinstance(raw, float) and raw != raw:
            return None, None  # pandas' NaN for a missing text
        return None, f"{f.name}: {raw!r} is not a category name (text)"
    if f.checks_finite:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            if isinstance(raw, str) and raw in ("NaN", "Infinity", "-Infinity"):
                return float(raw.replace("Infinity", "inf")), None
            return None, f"{f.name}: {raw!r} is not a number"
        return float(raw), None
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, float) and raw != raw:
        return None, None  # pandas' NaN for a missing boolean
    return None, f"{f.name}: {raw!r} is not true or false"


def _typed_column(series: Any, f: ContractFeature, kind: pa.DataType,
                  errors: list[str | None]) -> pa.Array:
    """A pandas column as ``kind``: at once when its dtype is the feature's, else value by
    value (a wrong value left null, its row's error said)."""
    dtype = series.dtype
    if (f.checks_finite and dtype.kind in "iuf") or \
            (not f.checks_finite and not f.categorical and dtype.kind == "b"):
        return pa.array(series, kind, from_pandas=not f.checks_finite)
    values = []
    for i, raw in enumerate(series.tolist()):
        value, why = _value(raw, f)
        if why is not None:
            errors[i] = why if errors[i] is None else f"{errors[i]}; {why}"
        values.append(value)
    return pa.array(values, kind)


class ArrowPyfunc:
    """The MLflow pyfunc face of :class:`ArrowModel` (see :func:`yws.model.flavor.arrow_pyfunc`).

    With the model's :class:`RowContract` it answers what Model Serving answers: a row per
    input row with ``probability``, ``prediction``, ``band`` and ``error``; a refused row has
    an error and None elsewhere (JSON null: the columns are Python objects, so a served answer
    holds null, never NaN). A model logged without a contract answers ``prediction`` and
    ``probability`` as it always did.
    """

    def __init__(self, model: ArrowModel, contract: RowContract | None = None) -> None:
        self.model, self.contract = model, contract

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """``params``: ``{"reasons": true}`` adds the :data:`REASON_OUTPUTS` columns (MLflow's
        scoring protocol passes a request's ``params`` here); without it the answer is what it
        always was."""
        import pandas as pd

        reasons = reasons_param(params)
        if self.contract is None:
            table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(
                pd.DataFrame(data), preserve_index=False)
            p, y, why = self.model.explain(table) if reasons else (*self.model.predict(table),
                                                                   None)
            frame = pd.DataFrame({"prediction": y.astype(np.float64), "probability": p})
            if reasons:
                for name, values in (why or no_reasons(len(p))).items():
                    frame[name] = pd.Series(values.to_pylist(), dtype=object)
            return frame
        table, errors = self.contract.typed(data)
        out = self.contract.score(self.model, table, errors, reasons=reasons)
        return pd.DataFrame({name: pd.Series(out[name].to_pylist(), dtype=object)
                             for name in out.column_names})


PARAMS = {"reasons": bool}
"""The inference parameters the model takes (a request's ``params``), and their types."""


def reasons_param(params: Any) -> bool:
    """Whether ``params`` (a request's inference parameters, or None) asks for reasons; any
    other parameter, or a value of the wrong type, is an :class:`InvalidInputError`."""
    if not params:
        return False
    if not isinstance(params, dict):
        raise InvalidInputError("params must be an object of inference parameters, such as "
                                '{"reasons": true}')
    unknown = sorted(str(k) for k in params if k not in PARAMS)
    if unknown:
        raise InvalidInputError(f"params: unknown inference parameter {unknown[0][:100]!r}; "
                                "the model takes reasons (true or false)")
    value = params.get("reasons", False)
    if not isinstance(value, bool | np.bool_):
        raise InvalidInputError(f"params: reasons must be true or false, not {value!r:.100}")
    return bool(value)


def _load_pyfunc(path: str) -> ArrowPyfunc:
    """MLflow's pyfunc loader hook: ``path`` is the model's ``sparkml`` folder; its row
    contract, when the model has one, is beside it."""
    return ArrowPyfunc(ArrowModel.load(path), RowContract.load(Path(path).parent))
