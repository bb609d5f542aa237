"""Held-out metrics and diagnostic plots, from label and probability arrays."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

PROBABILITY_COL = "probability__p1"
Y_COL = "label__y"


def preload() -> None:
    """Import what :func:`metrics` and :func:`plots` need (about a second of imports): the
    training job does it in a thread while Spark fits, when this process is only waiting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401
    import sklearn.calibration  # noqa: F401
    import sklearn.metrics  # noqa: F401


def scored_arrays(model: PipelineModel, df: DataFrame, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(label = 1)) for ``df`` in one Spark job (the gate scores the champion so)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    out = model.transform(df).select(
        F.col(label).cast("int").alias(Y_COL),
        vector_to_array(F.col("probability"))[1].alias(PROBABILITY_COL),
    ).toArrow()
    return (out.column(Y_COL).to_numpy(zero_copy_only=False),
            out.column(PROBABILITY_COL).to_numpy(zero_copy_only=False))


def metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC-ROC, AUC-PR, log loss, Brier score and the confusion matrix at ``threshold``."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    if len(y) == 0 or len(np.unique(y)) < 2:
        nan = float("nan")
        return {"auc_roc": nan, "auc_pr": nan, "log_loss": nan, "brier": nan}
    predicted = p >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    tn = int(np.sum(~predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    return {
        "auc_roc": float(roc_auc_score(y, p)),
        "auc_pr": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": (tp + tn) / len(y),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "test_rows": int(len(y)),
        "test_positive_rate": float(np.mean(y)),
    }


def all_finite(values: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in values.values())


def plots(y: np.ndarray, p: np.ndarray, coefficients: dict[str, float]) -> dict[str, Figure]:
    """ROC curve, calibration curve and coefficient bars, as matplotlib figures."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    figures: dict[str, Figure] = {}
    fpr, tpr, _ = roc_curve(y, p)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (held out)")
    ax.legend(loc="lower right")
    figures["roc_curve.png"] = fig

    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(mean_pred, frac_pos, marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate",
           title="Calibration (held out, deciles)")
    ax.legend(loc="upper left")
    figures["calibration_curve.png"] = fig

    names = list(coefficients)
    fig = Figure(figsize=(7, max(3.0, 0.28 * len(names))))
    ax = fig.subplots()
    ax.barh(names, [coefficients[n] for n in names])
    ax.invert_yaxis()
    ax.set(xlabel="coefficient (per unit of the raw feature)", title="Coefficients")
    fig.tight_layout()
    figures["coefficients.png"] = fig
    return figures


def write_plots(y: np.ndarray, p: np.ndarray, coefficients: dict[str, float],
                folder: Path) -> Path:
    """:func:`plots` rendered to PNG files in ``folder`` (created), as ``mlflow.log_figure``
    would render them; the training job renders them in a thread while Spark saves the model."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, figure in plots(y, p, coefficients).items():
        figure.savefig(folder / name)
    return folder
