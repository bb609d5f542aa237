"""The drift of one batch against the baseline of the model version that scored it: pure math.

Population stability index, per column, over its cells (the value bins, then nulls, then — for
a categorical — unseen levels: a feature that turns null or takes new levels moves its PSI)::

    PSI = sum over cells of (a - e) * ln(a / e)

with ``a`` the batch's and ``e`` the baseline's share of rows in the cell. An empty cell would
make the logarithm infinite, so a share is floored at :data:`EPSILON` (1e-4, one row in ten
thousand) before the sum: a cell empty on one side adds a large but finite term.

Each row of the drift table gets a status, the worst of its metrics; the run gets the worst of
its rows (the score and the band mix included):

==========================  ==========  ==========  ===========
metric                      OK          WARN        ALERT
==========================  ==========  ==========  ===========
PSI                         < 0.10      0.10–0.25   >= 0.25
unseen-level rate           < 0.1%      0.1%–1%     >= 1%
null rate minus baseline's  < 2 points  2–5 points  >= 5 points
==========================  ==========  ==========  ===========

The PSI bands are the customary ones (below 0.1 no real shift, above 0.25 a major one). An
unseen level is a value the model was never fitted on: a few in ten thousand are typos, one in a
hundred is a new product or a broken feed. A null rate up by two points is more than sampling
noise for a held-out set of a few hundred rows (its standard error is about one point there).

A run of a version without a baseline (:mod:`yws.monitoring.baseline`) stores its null and
unseen rates with no PSI, and every status is ``NO_BASELINE``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from yws.contract.spec import Bands
from yws.contract.tables import DRIFT, arrow_schema
from yws.monitoring.baseline import Baseline
from yws.monitoring.profile import (
    BANDS,
    BANDS_FEATURE,
    CATEGORICAL,
    SCORE_FEATURE,
    Binning,
    Counts,
    Plan,
    Profile,
)

EPSILON = 1e-4
"""The smallest share of rows a cell is taken to hold in the PSI sum (an empty cell has 0)."""
PSI_WARN, PSI_ALERT = 0.10, 0.25
UNSEEN_WARN, UNSEEN_ALERT = 0.001, 0.01
NULL_WARN, NULL_ALERT = 0.02, 0.05
"""Null rate of the batch minus the baseline's, as a fraction of rows."""

OK, WARN, ALERT, NO_BASELINE = "OK", "WARN", "ALERT", "NO_BASELINE"
STATUSES = (OK, WARN, ALERT, NO_BASELINE)
_RANK = {NO_BASELINE: -1, OK: 0, WARN: 1, ALERT: 2}


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The PSI of ``actual`` against ``expected``: two lists of counts (or shares) over the
    same cells; each is made into shares, floored at :data:`EPSILON`."""
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"{len(e)} baseline cells against {len(a)} batch cells")
    if e.sum() <= 0 or a.sum() <= 0:
        return math.nan
    e = np.maximum(e / e.sum(), EPSILON)
    a = np.maximum(a / a.sum(), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def by_threshold(value: float | None, warn: float, alert: float) -> str:
    if value is None or math.isnan(value):
        return OK
    return ALERT if value >= alert else WARN if value >= warn else OK


def worst(statuses: Sequence[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default=OK)


def headline(rows: Sequence[tuple[str, str, float | None]]
             ) -> tuple[str, str | None, float | None]:
    """A run's summary from its rows, each (feature, status, PSI): the worst status, and the
    feature (not the score, not the band mix) with the worst status and then the largest PSI,
    with that PSI; no feature when nothing could be compared (``NO_BASELINE``). The audit row
    carries it; ``yws monitor`` recomputes it from the rows the view shows."""
    status = worst([s for _, s, _ in rows])
    if status == NO_BASELINE:
        return status, None, None
    features = [r for r in rows if r[0] not in (SCORE_FEATURE, BANDS_FEATURE)]
    top = max(features, key=lambda r: (_RANK[r[1]], r[2] or 0.0), default=None)
    return status, (top[0] if top else None), (top[2] if top else None)


def cells(b: Binning, c: Counts, *, nulls: bool = True) -> list[int]:
    """The cells the PSI sums over: value bins, nulls, and unseen levels of a categorical."""
    return [*c.values, *([c.nulls] if nulls else []),
            *([c.unseen] if b.kind == CATEGORICAL else [])]


def cell_labels(b: Binning, *, nulls: bool = True) -> list[str]:
    return [*b.labels(), *(["null"] if nulls else []),
            *(["unseen"] if b.kind == CATEGORICAL else [])]


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [round(n / total, 6) if total else 0.0 for n in counts]


@dataclass
class DriftRow:
    """One row of the drift table: a feature, the score or the band mix of one run."""

    feature: str
    kind: str
    rows: int
    psi: float | None
    null_rate: float | None
    baseline_null_rate: float | None
    unseen_rate: float | None
    status: str
    bins: dict[str, list[Any]] = field(default_factory=dict)
    """What the report plots: cell labels, baseline and batch shares."""


@dataclass
class Drift:
    """A run's drift: its rows and the summary its audit row carries."""

    status: str
    worst_feature: str | None
    worst_psi: float | None
    rows: list[DriftRow]

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "worst_feature": self.worst_feature,
                "worst_psi": self.worst_psi}

    def row(self, feature: str) -> DriftRow:
        return next(r for r in self.rows if r.feature == feature)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]

    def table(self, *, run_id: str, batch_id: str, as_of: dt.date, model_name: str,
              model_version: int, at: dt.datetime) -> pa.Table:
        """The drift table's rows of the run (``sql/10_tables/14_yws_drift.sql``)."""
        return pa.Table.from_pylist([{
            "run_id": run_id, "batch_id": batch_id, "as_of_date": as_of,
            "model_name": model_name, "model_version": model_version,
            "feature": r.feature, "kind": r.kind, "rows_counted": r.rows, "psi": r.psi,
            "null_rate": r.null_rate, "baseline_null_rate": r.baseline_null_rate,
            "unseen_rate": r.unseen_rate, "status": r.status,
            "shares_json": json.dumps(r.bins, separators=(",", ":")), "computed_at": at,
        } for r in self.rows], schema=arrow_schema(DRIFT))


def _rate(n: int, rows: int) -> float | None:
    return n / rows if rows else None


def _column(b: Binning, batch: Counts, ref: Counts | None, *, nulls: bool = True) -> DriftRow:
    rows = batch.rows
    null_rate = _rate(batch.nulls, rows) if nulls else None
    unseen_rate = _rate(batch.unseen, rows) if b.kind == CATEGORICAL else None
    bins: dict[str, list[Any]] = {"labels": cell_labels(b, nulls=nulls),
                                  "batch": _shares(cells(b, batch, nulls=nulls))}
    if ref is None:
        return DriftRow(b.name, b.kind, rows, None, null_rate, None, unseen_rate, NO_BASELINE,
                        bins)
    bins["baseline"] = _shares(cells(b, ref, nulls=nulls))
    value = psi(cells(b, ref, nulls=nulls), cells(b, batch, nulls=nulls))
    found = None if math.isnan(value) else round(value, 6)
    base_null = _rate(ref.nulls, ref.rows) if nulls else None
    statuses = [by_threshold(found, PSI_WARN, PSI_ALERT),
                by_threshold(unseen_rate, UNSEEN_WARN, UNSEEN_ALERT)]
    if null_rate is not None and base_null is not None:
        statuses.append(by_threshold(null_rate - base_null, NULL_WARN, NULL_ALERT))
    return DriftRow(b.name, b.kind, rows, found, null_rate, base_null, unseen_rate,
                    worst(statuses), bins)


def compare(plan: Plan, profile: Profile, baseline: Baseline | None,
            bands: Mapping[str, int]) -> Drift:
    """The drift rows of a run: per feature (counted over every row read), the score and the
    band mix (over the rows scored, ``bands`` as the job read them back)."""
    rows = [_column(b, profile.features[b.name],
                    baseline.features[b.name].counts if baseline is not None
                    and b.name in baseline.features else None)
            for b in plan.features]
    if baseline is None:
        return Drift(NO_BASELINE, None, None, rows)
    if plan.score is not None and profile.score is not None:
        rows.append(_column(plan.score, profile.score, baseline.score.counts, nulls=False))
    mix = Binning(BANDS_FEATURE, BANDS, levels=Bands.NAMES)
    rows.append(_column(mix, Counts([int(bands.get(n, 0)) for n in Bands.NAMES]),
                        Counts([baseline.bands.get(n, 0) for n in Bands.NAMES]), nulls=False))
    return Drift(*headline([(r.feature, r.status, r.psi) for r in rows]), rows)
