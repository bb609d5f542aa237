"""What a scoring run counts for drift: the bins (:class:`Plan`) and the counts (:class:`Profile`).

A numeric value falls in bin ``i`` = the number of edges it reaches (``edges[j] <= x``): bin 0
holds what is below the first edge, the last bin what reaches the last one (infinities
included). Null and NaN are counted apart, as nulls. A categorical value is counted under its
level; a value the plan does not list is *unseen*. Booleans have the levels ``false`` and
``true``. The arrow engine counts with :func:`count_table` (NumPy, a record batch at a time), the
Spark engine with :func:`spark_aggregates` (one aggregation, plain column expressions: no UDF,
so it runs on Spark Connect); both compile the same rule, and the tests check that they agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yws.contract.spec import Spec

if TYPE_CHECKING:
    from pyspark.sql import Column

NUMERIC, BOOLEAN, CATEGORICAL, SCORE, BANDS = (
    "numeric", "boolean", "categorical", "score", "bands")
SCORE_FEATURE = "__score__"
"""The drift table's ``feature`` for the distribution of the predicted probability."""
BANDS_FEATURE = "__bands__"
"""The drift table's ``feature`` for the band mix."""
BOOLEAN_LEVELS = ("false", "true")


@dataclass(frozen=True)
class Binning:
    """How one column's values are counted: by ``edges`` (numeric, score) or by ``levels``."""

    name: str
    kind: str
    edges: tuple[float, ...] = ()
    levels: tuple[str, ...] = ()

    @property
    def by_edges(self) -> bool:
        return self.kind in (NUMERIC, SCORE)

    @property
    def size(self) -> int:
        """Value bins (nulls and unseen values are counted apart)."""
        return len(self.edges) + 1 if self.by_edges else len(self.levels)

    def labels(self) -> list[str]:
        """The value bins' names, for the report: ``< 0.2``, ``[0.2, 0.4)``, ``>= 0.8``, or the
        levels."""
        if not self.by_edges:
            return list(self.levels)
        e = [f"{x:.4g}" for x in self.edges]
        if not e:
            return ["all"]
        return [f"< {e[0]}", *(f"[{a}, {b})" for a, b in zip(e, e[1:], strict=False)),
                f">= {e[-1]}"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.by_edges:
            out["edges"] = list(self.edges)
        else:
            out["levels"] = list(self.levels)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Binning:
        return cls(str(d["name"]), str(d["kind"]), tuple(float(x) for x in d.get("edges", ())),
                   tuple(str(x) for x in d.get("levels", ())))


@dataclass
class Counts:
    """One column's counts on its :class:`Binning`."""

    values: list[int]
    nulls: int = 0
    unseen: int = 0

    @property
    def rows(self) -> int:
        return sum(self.values) + self.nulls + self.unseen

    def add(self, other: Counts) -> None:
        self.values = [a + b for a, b in zip(self.values, other.values, strict=True)]
        self.nulls += other.nulls
        self.unseen += other.unseen

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "nulls": self.nulls, "unseen": self.unseen}


@dataclass(frozen=True)
class Plan:
    """What one run counts: every feature of the spec, and the score when there are bins for it
    (a baseline)."""

    features: tuple[Binning, ...]
    score: Binning | None = None


@dataclass
class Profile:
    """A run's counts: per feature over every row read (quarantined rows too: an unseen level
    or a new null is exactly what drift must see), the score over the rows scored."""

    features: dict[str, Counts] = field(default_factory=dict)
    score: Counts | None = None

    def add(self, other: Profile) -> None:
        for name, counts in other.features.items():
            if name in self.features:
                self.features[name].add(counts)
            else:
                self.features[name] = Counts([0] * len(counts.values))
                self.features[name].add(counts)
        if other.score is not None:
            if self.score is None:
                self.score = Counts([0] * len(other.score.values))
            self.score.add(other.score)

    def to_dict(self) -> dict[str, Any]:
        return {"features": {k: v.to_dict() for k, v in self.features.items()},
                "score": None if self.score is None else self.score.to_dict()}


def kind_of(spec: Spec, name: str) -> str:
    f = next(f for f in spec.features if f.name == name)
    if f.kind.categorical:
        return CATEGORICAL
    return NUMERIC if f.kind.checks_finite else BOOLEAN


def plain_plan(spec: Spec, categories: Mapping[str, Iterable[str]]) -> Plan:
    """The plan without a baseline: one bin per numeric feature, the model's categories as
    the levels (so the unseen rate means what the quarantine rule means), no score bins."""
    out = []
    for f in spec.features:
        kind = kind_of(spec, f.name)
        levels = (BOOLEAN_LEVELS if kind == BOOLEAN else
                  tuple(str(v) for v in categories.get(f.name, ())) if kind == CATEGORICAL
                  else ())
        out.append(Binning(f.name, kind, levels=levels))
    return Plan(tuple(out))


# -- NumPy: the arrow engine ---------------------------------------------------------------------
def count_numbers(b: Binning, x: np.ndarray) -> Counts:
    """Counts of float values (NaN: null) on ``b``'s edges."""
    missing = np.isnan(x)
    bins = np.searchsorted(np.asarray(b.edges, dtype=np.float64), x[~missing], side="right")
    return Counts(np.bincount(bins, minlength=b.size).tolist(), int(missing.sum()))


def count_column(b: Binning, col: pa.Array | pa.ChunkedArray) -> Counts:
    if b.by_edges:
        x = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False),
                       dtype=np.float64)
        return count_numbers(b, x)
    nulls = col.null_count
    if b.kind == BOOLEAN:
        true = int(pc.sum(pc.cast(col, pa.int64())).as_py() or 0)
        return Counts([len(col) - nulls - true, true], nulls)
    values = pc.value_counts(pc.cast(col, pa.string()))
    found = {v: int(n) for v, n in zip(values.field("values").to_pylist(),
                                        values.field("counts").to_pylist(), strict=True)
             if v is not None}
    known = [found.pop(level, 0) for level in b.levels]
    return Counts(known, nulls, sum(found.values()))


def count_table(plan: Plan, table: pa.Table) -> Profile:
    """The features' counts of ``table`` (a record batch of the snapshot)."""
    return Profile({b.name: count_column(b, table[b.name]) for b in plan.features})


# -- Spark: one aggregation ----------------------------------------------------------------------
def spark_aggregates(plan: Plan, prefix: str = "f") -> list[Column]:
    """Aggregate expressions counting every feature of ``plan`` in one pass over the snapshot;
    :func:`spark_profile` reads their row back. A numeric feature counts the values reaching
    each edge (bins are their differences: the edges increase), so it costs one expression
    per edge, not one per bin and edge."""
    from pyspark.sql import functions as F

    def n(cond: Column, alias: str) -> Column:
        return F.count(F.when(cond, F.lit(1))).alias(alias)

    out: list[Column] = []
    for i, b in enumerate(plan.features):
        key = f"{prefix}{i}"
        if b.by_edges:
            x = F.col(b.name).cast("double")
            valid = x.isNotNull() & ~F.isnan(x)
            out.append(n(valid, f"{key}_valid"))
            out += [n(valid & (x >= F.lit(float(e))), f"{key}_ge{j}")
                    for j, e in enumerate(b.edges)]
            out.append(n(~valid, f"{key}_null"))
            continue
        c = F.col(b.name)
        if b.kind == BOOLEAN:
            out += [n(c == F.lit(False), f"{key}_v0"), n(c == F.lit(True), f"{key}_v1")]
        else:
            c = c.cast("string")
            out += [n(c == F.lit(level), f"{key}_v{j}") for j, level in enumerate(b.levels)]
            other = c.isNotNull()
            if b.levels:
                other = other & ~c.isin(*b.levels)
            out.append(n(other, f"{key}_unseen"))
        out.append(n(c.isNull(), f"{key}_null"))
    return out


def spark_profile(plan: Plan, row: Mapping[str, Any], prefix: str = "f") -> Profile:
    """The :class:`Profile` in the row that :func:`spark_aggregates` computed."""
    out = {}
    for i, b in enumerate(plan.features):
        key = f"{prefix}{i}"
        if b.by_edges:
            reach = [int(row[f"{key}_valid"])] + [int(row[f"{key}_ge{j}"])
                                                  for j in range(len(b.edges))] + [0]
            values = [a - c for a, c in zip(reach, reach[1:], strict=False)]
            out[b.name] = Counts(values, int(row[f"{key}_null"]))
        else:
            values = [int(row[f"{key}_v{j}"]) for j in range(b.size)]
            unseen = int(row[f"{key}_unseen"]) if b.kind == CATEGORICAL else 0
            out[b.name] = Counts(values, int(row[f"{key}_null"]), unseen)
    return Profile(out)


def spark_score_aggregates(b: Binning, probability: str = "probability",
                           prefix: str = "s") -> list[Column]:
    """The score's counts on ``b`` in one pass over the scored rows."""
    return spark_aggregates(Plan((Binning(probability, NUMERIC, b.edges),)), prefix)


def spark_score_counts(b: Binning, row: Mapping[str, Any], probability: str = "probability",
                       prefix: str = "s") -> Counts:
    plan = Plan((Binning(probability, NUMERIC, b.edges),))
    return spark_profile(plan, row, prefix).features[probability]
