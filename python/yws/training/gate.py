"""The validation gate: a new version becomes @champion only if it is not worse than the current
champion on the same held-out rows (or the operator forces it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from yws.config import Settings
from yws.console import Progress, quiet
from yws.model import registry
from yws.training.evaluation import metrics, scored_arrays

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    champion_metrics: dict[str, float] | None = None


def gate(
    challenger_auc: float,
    champion_auc: float | None,
    tolerance: float,
    force: bool = False,
) -> tuple[bool, str]:
    """Whether the challenger becomes champion, and why (both AUCs on the same held-out rows)."""
    if force:
        return True, "promotion forced by the operator (--force-promote)"
    if champion_auc is None:
        return True, "no champion yet"
    if challenger_auc >= champion_auc - tolerance:
        return True, (
            f"AUC-ROC {challenger_auc:.4f} is within {tolerance} of the champion's "
            f"{champion_auc:.4f} or better"
        )
    return False, (
        f"AUC-ROC {challenger_auc:.4f} is worse than the champion's {champion_auc:.4f} by more "
        f"than the tolerance {tolerance}; use --force-promote to promote anyway"
    )


def decide(
    settings: Settings,
    client: MlflowClient,
    challenger_auc: float,
    held_out: DataFrame,
    label: str,
    *,
    threshold: float,
    tolerance: float,
    force: bool = False,
    progress: Progress = quiet,
) -> Decision:
    """Score the current champion (if any) on ``held_out`` and :func:`gate` the challenger.

    A champion that cannot score the rows (e.g. fitted on another spec) blocks the promotion
    unless it is forced: the gate cannot compare.
    """
    champion = registry.version_for_alias(client, settings.model_name, registry.CHAMPION)
    if champion is None or force:
        return Decision(*gate(challenger_auc, None, tolerance, force))
    progress(f"evaluating champion v{champion.version} on the same held-out rows")
    try:
        y, p = scored_arrays(registry.load(settings, champion.version), held_out, label)
        found = metrics(y, p, threshold)
    except Exception as e:  # any failure of the old model on the new rows
        return Decision(False, (
            f"champion v{champion.version} could not score the new held-out rows "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]}), so the gate cannot "
            "compare; use --force-promote to replace it"
        ))
    return Decision(*gate(challenger_auc, found["auc_roc"], tolerance), found)
