"""The training baseline: what the held-out rows looked like, saved with the model version.

Training computes it once the held-out probabilities are known (:func:`compute`, from the
held-out rows' feature columns collected with their scores) and writes it into the model
folder (:func:`save`, ``drift_baseline.json`` beside the row contract), so it is logged,
registered and copied with the version and every score run compares its batch with the
baseline of the version that scored it. Per feature: numeric — the held-out deciles as bin
edges (ties merged: a feature that is zero for 60% of the rows has fewer bins) and the rows per
bin; boolean and categorical — the rows per level (the model's fitted categories; a held-out
value outside them counts as unseen); nulls apart. The score: deciles of the held-out
probabilities and the rows per bin. The band mix of the held-out rows. Counts, not
proportions, so nothing is rounded.

A version without the file (an R glm registered from R, a version logged before issue 18) has
no baseline: its runs store null and unseen rates only, with drift status ``NO_BASELINE``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yws.contract.spec import Bands, Spec
from yws.errors import YwsError
from yws.monitoring.profile import (
    BOOLEAN_LEVELS,
    CATEGORICAL,
    NUMERIC,
    SCORE,
    SCORE_FEATURE,
    Binning,
    Counts,
    Plan,
    count_column,
    count_numbers,
    kind_of,
    plain_plan,
)

if TYPE_CHECKING:
    from yws.config import Settings

BASELINE_FILE = "drift_baseline.json"
"""The baseline's file in a model folder (beside ``row_contract.json``)."""
FORMAT = 1
QUANTILES = tuple(q / 10 for q in range(1, 10))
"""Bin edges at the held-out deciles: ten bins where the values allow it."""


class BaselineError(YwsError, ValueError):
    """A baseline file that cannot be read."""


@dataclass(frozen=True)
class Reference:
    """One column of the baseline: its bins and the held-out rows' counts on them."""

    binning: Binning
    counts: Counts

    def to_dict(self) -> dict[str, Any]:
        return {**self.binning.to_dict(), **self.counts.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reference:
        return cls(Binning.from_dict(d), Counts([int(v) for v in d["values"]],
                                                int(d.get("nulls", 0)), int(d.get("unseen", 0))))


@dataclass(frozen=True)
class Baseline:
    features: dict[str, Reference]
    score: Reference
    bands: dict[str, int]
    """Held-out rows per band, in :attr:`Bands.NAMES` order."""
    rows: int

    def plan(self, spec: Spec, categories: Mapping[str, Any] | None = None) -> Plan:
        """The bins a run counts in: the baseline's, in the spec's order (a feature the baseline
        lacks — the spec grew since — is counted as :func:`plain_plan` counts it)."""
        plain = {b.name: b for b in plain_plan(spec, categories or {}).features}
        return Plan(tuple(self.features[f.name].binning if f.name in self.features
                          else plain[f.name] for f in spec.features), self.score.binning)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "rows": self.rows,
                "features": [r.to_dict() for r in self.features.values()],
                "score": self.score.to_dict(), "bands": dict(self.bands)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Baseline:
        if d.get("format") != FORMAT:
            raise BaselineError(f"drift baseline format {d.get('format')!r} is not {FORMAT}: "
                                "written by another release of yws")
        refs = [Reference.from_dict(f) for f in d["features"]]
        return cls({r.binning.name: r for r in refs}, Reference.from_dict(d["score"]),
                   {str(k): int(v) for k, v in d["bands"].items()}, int(d["rows"]))

    def save(self, folder: Path) -> Path:
        """Write the baseline into the model folder ``folder``; returns ``folder`` (so the
        training job writes it on the way to logging the folder)."""
        (folder / BASELINE_FILE).write_text(json.dumps(self.to_dict(), indent=1))
        return folder


def edges(x: np.ndarray) -> tuple[float, ...]:
    """The deciles of the finite values of ``x`` (NaN: null), each once, increasing."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return ()
    return tuple(float(e) for e in np.unique(np.quantile(x, QUANTILES)))


def compute(features: pa.Table, probabilities: np.ndarray, spec: Spec,
            categories: Mapping[str, list[str]]) -> Baseline:
    """The baseline of the held-out rows: ``features`` holds their feature columns,
    ``probabilities`` their predicted P(label = 1) (the rows need not be in the same order:
    each distribution is taken on its own); ``categories`` are the model's fitted levels."""
    refs = {}
    for f in spec.features:
        kind = kind_of(spec, f.name)
        col = features[f.name]
        if kind == NUMERIC:
            x = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False),
                           dtype=np.float64)
            b = Binning(f.name, kind, edges=edges(x))
            refs[f.name] = Reference(b, count_numbers(b, x))
            continue
        levels = (BOOLEAN_LEVELS if kind != CATEGORICAL else
                  tuple(categories.get(f.name) or sorted(
                      {v for v in col.to_pylist() if v is not None})))
        b = Binning(f.name, kind, levels=tuple(str(v) for v in levels))
        refs[f.name] = Reference(b, count_column(b, col))
    p = np.asarray(probabilities, dtype=np.float64)
    score = Binning(SCORE_FEATURE, SCORE, edges=edges(p))
    level = np.zeros(len(p), dtype=np.int64)
    for threshold in spec.bands.thresholds:
        level += p >= threshold
    per_band = np.bincount(level, minlength=len(Bands.NAMES))
    return Baseline(refs, Reference(score, count_numbers(score, p)),
                    {name: int(n) for name, n in zip(Bands.NAMES, per_band, strict=True)},
                    features.num_rows)


def load(folder: Path) -> Baseline | None:
    """The baseline in a model folder, or None when the version has none."""
    path = Path(folder) / BASELINE_FILE
    if not path.is_file():
        return None
    try:
        return Baseline.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise BaselineError(f"{path} is not a drift baseline yws can read ({e})") from e


def for_version(settings: Settings, version: int, folder: Path | None) -> Baseline | None:
    """The baseline of a registered version: from its folder when it is on this machine, else
    the one file downloaded from the registry (``models:/<name>/<version>/<file>``); None when
    the version has none."""
    if folder is not None:
        return load(folder)
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            got = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{settings.model_name}/{version}/{BASELINE_FILE}",
                dst_path=tmp)
        except (MlflowException, OSError):
            return None  # no such file in the version: it has no baseline
        return load(Path(got).parent)
