"""Synthetic feature snapshots for the default spec, drawn from a known logistic model.

The label is Bernoulli(sigmoid(intercept + sum of effects)) with the effects in
:data:`TRUE_MODEL`, in the raw units of each column, so a test can check that training
recovers them. Missing values appear at realistic rates where the default spec imputes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from yws.errors import InvalidValueError


@dataclass(frozen=True)
class TrueModel:
    intercept: float
    numeric: dict[str, float]
    boolean: dict[str, float]
    # effect of each level; the first level of each categorical is the reference (0.0)
    categorical: dict[str, dict[str, float]]


TRUE_MODEL = TrueModel(
    intercept=-2.1,
    numeric={
        "tenure_months": -0.008,
        "monthly_spend": -0.004,
        "balance_utilization": 2.6,
        "days_past_due_avg": 0.06,
        "late_payments_12m": 0.45,
        "credit_limit": -0.00008,
        "support_calls_90d": 0.15,
    },
    boolean={"has_autopay": -0.6, "is_business": -0.3},
    categorical={
        "region": {"north": 0.0, "south": 0.2, "east": -0.1, "west": 0.3, "central": 0.0},
        "product_tier": {"bronze": 0.0, "silver": -0.3, "gold": -0.6, "platinum": -0.9},
        "channel": {"web": 0.0, "branch": -0.2, "phone": 0.25},
    },
)

CATEGORY_SHARES = {
    "region": [0.25, 0.2, 0.2, 0.2, 0.15],
    "product_tier": [0.4, 0.3, 0.2, 0.1],
    "channel": [0.5, 0.3, 0.2],
}

# Share of values left missing, only in columns the default spec imputes or keeps.
MISSING_RATES = {
    "tenure_months": 0.01,
    "monthly_spend": 0.03,
    "days_past_due_avg": 0.05,
    "late_payments_12m": 0.01,
    "support_calls_90d": 0.02,
    "has_autopay": 0.02,
    "region": 0.02,
    "channel": 0.01,
}

SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("as_of_date", pa.date32(), nullable=False),
        pa.field("tenure_months", pa.float64()),
        pa.field("monthly_spend", pa.float64()),
        pa.field("balance_utilization", pa.float64()),
        pa.field("days_past_due_avg", pa.float64()),
        pa.field("late_payments_12m", pa.float64()),
        pa.field("credit_limit", pa.float64()),
        pa.field("support_calls_90d", pa.float64()),
        pa.field("has_autopay", pa.bool_()),
        pa.field("is_business", pa.bool_()),
        pa.field("region", pa.string()),
        pa.field("product_tier", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("defaulted_90d", pa.int32()),
    ]
)


def _rng(seed: int, as_of: dt.date) -> np.random.Generator:
    # Different snapshots of the same customers differ, and each is reproducible.
    return np.random.default_rng([seed, as_of.toordinal()])


def generate(
    rows: int,
    as_of: dt.date,
    seed: int = 7,
    *,
    missing: bool = True,
    labeled: bool = True,
    anomalies: int = 0,
    drift: Mapping[str, str | None] | None = None,
) -> pa.Table:
    """A feature snapshot of ``rows`` customers as of ``as_of``.

    ``anomalies`` rows are made bad on purpose, in turn: a forbidden null, an infinite value,
    an unseen product tier, a duplicated customer id. Scoring quarantines them.

    ``drift`` shifts features on purpose (:func:`parse_drift` reads the command line's form);
    the others are drawn exactly as without it, and the label follows the shifted values.
    """
    if rows < 1:
        raise InvalidValueError(f"rows must be at least 1, got {rows}")
    if not 0 <= anomalies <= rows // 2:
        raise InvalidValueError(
            f"anomalies must be between 0 and rows/2 ({rows // 2}), got {anomalies}")
    rng = _rng(seed, as_of)
    n = rows
    cols: dict[str, np.ndarray] = {
        "tenure_months": np.round(np.minimum(rng.exponential(40.0, n) + 1, 360)),
        "monthly_spend": np.round(rng.lognormal(4.2, 0.6, n), 2),
        "balance_utilization": np.round(rng.beta(2.0, 5.0, n), 4),
        "days_past_due_avg": np.round(rng.gamma(0.5, 6.0, n) * (rng.random(n) < 0.35), 1),
        "late_payments_12m": rng.poisson(0.6, n).astype(np.float64),
        "credit_limit": np.round(rng.lognormal(8.4, 0.5, n), -1),
        "support_calls_90d": rng.poisson(1.2, n).astype(np.float64),
        "has_autopay": rng.random(n) < 0.55,
        "is_business": rng.random(n) < 0.15,
    }
    cats: dict[str, np.ndarray] = {}
    for name, effects in TRUE_MODEL.categorical.items():
        levels = np.array(list(effects), dtype=object)
        cats[name] = levels[rng.choice(len(levels), size=n, p=CATEGORY_SHARES[name])]
    if drift:
        _shift(cols, cats, check_drift(drift), np.random.default_rng([seed, as_of.toordinal(), 18]))

    logit = np.full(n, TRUE_MODEL.intercept)
    for name, beta in TRUE_MODEL.numeric.items():
        logit += beta * cols[name]
    for name, beta in TRUE_MODEL.boolean.items():
        logit += beta * cols[name]
    for name, effects in TRUE_MODEL.categorical.items():
        logit += np.vectorize(lambda v, e=effects: e.get(v, 0.0), otypes=[float])(cats[name])
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int32)

    masks: dict[str, np.ndarray] = {}
    if missing:
        for name, rate in MISSING_RATES.items():
            masks[name] = rng.random(n) < rate

    ids = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 8))
    arrays: dict[str, pa.Array] = {
        "customer_id": pa.array(ids, pa.string()),
        "as_of_date": pa.array(np.full(n, as_of), pa.date32()),
    }
    for name in [*TRUE_MODEL.numeric, *TRUE_MODEL.boolean]:
        arrays[name] = pa.array(cols[name], mask=masks.get(name))
    for name in TRUE_MODEL.categorical:
        arrays[name] = pa.array(cats[name], pa.string(), mask=masks.get(name))
    arrays["defaulted_90d"] = (
        pa.array(label, pa.int32()) if labeled else pa.nulls(n, pa.int32())
    )
    table = pa.table(arrays, schema=SCHEMA)
    return _inject_anomalies(table, anomalies) if anomalies else table


DRIFT_SHARE = 0.5
"""Share of the rows a categorical or boolean drift moves to its level."""


def parse_drift(text: str) -> dict[str, str | None]:
    """``balance_utilization=+0.3,region`` as ``{feature: how}`` (checked by :func:`check_drift`).

    A numeric feature: ``NAME=+X`` or ``NAME=-X`` adds X to every value; ``NAME`` alone adds
    one standard deviation. A categorical or boolean feature: ``NAME=LEVEL`` gives half the rows
    that level (a level the model never saw makes unseen values); ``NAME`` alone gives half the
    rows its least common level."""
    out: dict[str, str | None] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, how = part.partition("=")
        out[name.strip()] = how.strip() if eq else None
    if not out:
        raise InvalidValueError(f"--drift {text!r} names no feature: use e.g. "
                                "balance_utilization=+0.3,region")
    return check_drift(out)


def check_drift(drift: Mapping[str, str | None]) -> dict[str, str | None]:
    known = [*TRUE_MODEL.numeric, *TRUE_MODEL.boolean, *TRUE_MODEL.categorical]
    for name, how in drift.items():
        if name not in known:
            raise InvalidValueError(f"--drift: {name!r} is not a feature of the synthetic data; "
                                    f"use one of {', '.join(known)}")
        if name in TRUE_MODEL.numeric and how is not None:
            try:
                float(how)
            except ValueError:
                raise InvalidValueError(
                    f"--drift: {name}={how!r} needs a signed number to add, e.g. {name}=+0.3"
                ) from None
        if name in TRUE_MODEL.boolean and how is not None and how not in ("true", "false"):
            raise InvalidValueError(f"--drift: {name}={how!r}: a boolean takes true or false")
        if name in TRUE_MODEL.categorical and how == "":
            raise InvalidValueError(f"--drift: {name}= needs a level, e.g. {name}=north")
    return dict(drift)


def _shift(cols: dict[str, np.ndarray], cats: dict[str, np.ndarray],
           drift: Mapping[str, str | None], rng: np.random.Generator) -> None:
    for name, how in drift.items():
        if name in TRUE_MODEL.numeric:
            x = cols[name]
            cols[name] = x + (float(how) if how is not None else float(np.std(x)))
            continue
        moved = rng.random(len(cols["has_autopay"])) < DRIFT_SHARE
        if name in TRUE_MODEL.boolean:
            x = cols[name]
            value = (how == "true") if how is not None else not bool(np.mean(x) >= 0.5)
            cols[name] = np.where(moved, value, x)
        else:
            levels = list(TRUE_MODEL.categorical[name])
            rarest = levels[int(np.argmin(CATEGORY_SHARES[name]))]
            cats[name] = np.where(moved, how if how is not None else rarest, cats[name])


def _inject_anomalies(table: pa.Table, count: int) -> pa.Table:
    data = table.to_pydict()
    n = table.num_rows
    # Spread the bad rows over the snapshot, one kind of fault after another.
    positions = np.linspace(0, n - 1, count * 2, dtype=int)[1::2]
    for k, i in enumerate(positions):
        fault = k % 4
        if fault == 0:
            data["balance_utilization"][i] = None
        elif fault == 1:
            data["credit_limit"][i] = float("inf")
        elif fault == 2:
            data["product_tier"][i] = "diamond"
        else:
            data["customer_id"][i] = data["customer_id"][(i + 1) % n]
    return pa.table(data, schema=table.schema)


def true_coefficients() -> dict[str, float]:
    """The generating coefficients by expanded feature name (``region=west``), for tests."""
    out = {**TRUE_MODEL.numeric, **{k: float(v) for k, v in TRUE_MODEL.boolean.items()}}
    for name, effects in TRUE_MODEL.categorical.items():
        for level, beta in effects.items():
            out[f"{name}={level}"] = beta
    return out
