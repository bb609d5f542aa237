"""The arrow engine: the logged SparkML PipelineModel evaluated with NumPy and Arrow, no Spark.

It reads the fitted parameters from the saved model itself (each stage's ``metadata`` JSON and
``data`` Parquet) and implements exactly the stage types the YWS pipeline uses: the cast
``SQLTransformer``, ``Imputer``, ``StringIndexer``, ``OneHotEncoder``, ``VectorAssembler``,
``StandardScaler`` and binomial ``LogisticRegression``. Anything else — another stage type, a
parameter value it does not implement — is a :class:`UnsupportedModelError`, never an
approximation; ``--engine auto`` then falls back to Spark.

This file is also each registered model's pyfunc code (``yws.training.job.pyfunc_code`` logs it as
``code/yws_arrow_engine.py``), so it imports nothing from ``yws`` but the errors' root, and
that only when it is there; and only packages listed in ``yws.training.job.PYFUNC_PACKAGES``.
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
        margin = cols[self.features] @ self.coefficients + self.intercept
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

    def predict(self, data: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """(P(label = 1), prediction) for every row, in order."""
        cols: Columns = {name: data.column(name) for name in data.column_names}
        for stage in self.stages:
            stage.apply(cols)
        return cols["probability__p1"], cols["prediction"]


class ArrowPyfunc:
    """The MLflow pyfunc face of :class:`ArrowModel` (see ``yws.training.job.arrow_pyfunc``)."""

    def __init__(self, model: ArrowModel) -> None:
        self.model = model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(
            pd.DataFrame(data), preserve_index=False)
        p, y = self.model.predict(table)
        return pd.DataFrame({"prediction": y.astype(np.float64), "probability": p})


def _load_pyfunc(path: str) -> ArrowPyfunc:
    """MLflow's pyfunc loader hook: ``path`` is the model's ``sparkml`` folder."""
    return ArrowPyfunc(ArrowModel.load(path))
