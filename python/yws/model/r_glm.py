"""R models: a binomial ``glm`` exported by the R package, read and scored as R scores it.

``yws_export_glm()`` (``r_client/R/glm_export.R``) describes a fitted logistic regression as a
versioned JSON document, format ``"yws-r-glm/1"`` (docs/r-models.md, field by field). This
module reads one (:meth:`RGlm.from_dict`, :meth:`RGlm.from_json`, :meth:`RGlm.load`), refusing
anything that is not exactly that format with an :class:`RModelFormatError` that names the
field; and evaluates it on an Arrow table or a pandas frame (:meth:`RGlm.predict`) as R's
``predict(fit, newdata, type = "response")`` does:

* the design row as R's ``model.matrix`` builds it: ``(Intercept)``, a numeric term's value,
  ``<name>TRUE`` for a logical term, ``<name><level>`` indicators for a factor's levels but its
  baseline (treatment contrasts), every level when the description says there is no baseline;
* the linear predictor summed column by column in model-matrix order, from 0.0, as the
  reference BLAS ``dgemv`` that ``%*%`` calls does;
* the inverse link as R's C ``logit_linkinv`` (``binomial()$linkinv``) computes it: with
  ``t = DBL_EPSILON`` for eta < -30, ``1 / DBL_EPSILON`` for eta > 30, else ``exp(eta)`` (the
  C library's, as R's), the probability is ``t / (1 + t)``.

On the same machine the probabilities are R's to the last bit when R's ``%*%`` takes the BLAS
path; when ``newdata`` holds a missing value R sums in long double instead, and they agree to
a few units in the last place.

A row R would answer with ``NA`` (a null or NaN value) or refuse (an unseen factor level:
``factor <name> has new levels``), and a value that is not finite, is not guessed at: it is
refused, with the quarantine rules' words (:mod:`yws.contract.rules`), so a job holds it back
as it holds back the rows the SparkML model refuses. A missing term column, or one of a type
R's ``predict`` would refuse (text for a numeric term, numbers for a logical one), refuses the
whole input (:class:`RModelInputError`), as R does.

This file is also each registered R model's code (:mod:`yws.model.r_glm_flavor` logs it as
``code/yws_r_glm.py``): it imports from ``yws`` only the errors' root and the rules' words, and
those only where they are, and otherwise only NumPy and pyarrow (pandas when given a frame).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:  # inside YWS; logged as an R model's code (yws.model.r_glm_flavor) it stands alone
    from yws.contract.rules import Rule
    from yws.errors import YwsError as _Root
except ImportError:  # pragma: no cover - only where yws is not installed

    class _Root(Exception):  # type: ignore[no-redef]
        """The errors' root where the file runs alone (a class, so ValueError can join it)."""

    @dataclass(frozen=True)
    class Rule:  # type: ignore[no-redef]
        """The quarantine rules' words for the checks an R model makes, where
        ``yws.contract.rules`` is absent (tests/unit/test_r_glm_pyfunc.py holds them equal)."""

        check: str
        column: str

        def reason(self, value: str | None = None) -> str:
            return {"null": f"{self.column} is null",
                    "null_or_nan": f"{self.column} is null or NaN",
                    "infinite": f"{self.column} is infinite",
                    "unseen": f"{self.column} has unseen category '{value}'"}[self.check]

FORMAT = "yws-r-glm/1"
"""The description format this module reads (the R package's ``yws_export_glm()`` writes it)."""

INTERCEPT = "(Intercept)"
CONTRASTS = "contr.treatment"
LOGICAL_LEVELS = ("FALSE", "TRUE")

# R's thresholds in logit_linkinv (src/library/stats/src/family.c).
THRESH, MTHRESH = 30.0, -30.0
DBL_EPSILON = float(np.finfo(np.float64).eps)
INVEPS = 1.0 / DBL_EPSILON

Kind = Literal["numeric", "logical", "factor"]

_SYNTACTIC = re.compile(r"(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*|\.")
_TOP_KEYS = ("format", "response", "formula", "family", "link", "intercept", "terms",
             "coefficients", "training")
_TERM_KEYS: dict[str, tuple[str, ...]] = {
    "numeric": ("name", "kind"),
    "logical": ("name", "kind", "contrasts", "baseline"),
    "factor": ("name", "kind", "levels", "contrasts", "baseline"),
}
_TRAINING_KEYS = ("r_version", "nobs", "prior_weights", "converged", "as_of",
                  "features_version")


class RModelFormatError(_Root, ValueError):
    """A description that is not a valid ``yws-r-glm/1`` document; the message names the
    field and what is wrong with it."""


class RModelInputError(_Root, ValueError):
    """Rows an R model cannot take at all: a term's column is missing or of a type R's
    ``predict()`` refuses."""


def _fail(where: str, problem: str) -> RModelFormatError:
    return RModelFormatError(f"R model description ({FORMAT}): {where} {problem}")


def _keys(d: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise _fail(where, f"must be an object, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    unknown = sorted(set(d) - set(keys))
    if missing:
        raise _fail(where, f"has no {', '.join(missing)}")
    if unknown:
        raise _fail(where, f"has unknown field(s) {', '.join(unknown)} ({FORMAT} has "
                           f"{', '.join(keys)}; a newer export needs a newer YWS)")
    return d


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, f"must be a non-empty string, got {value!r}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, got {value!r}")
    return value


def _whole(value: Any, where: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise _fail(where, f"must be a whole number, {least} or more, got {value!r}")
    return value


@dataclass(frozen=True)
class Term:
    """One main effect: a column of the data and the model-matrix columns it becomes."""

    name: str
    kind: Kind
    levels: tuple[str, ...] = ()  # a factor's levels, in R's order (fit$xlevels)
    baseline: str | None = None  # the level without a column; None: every level has one

    @property
    def coded(self) -> tuple[str, ...]:
        """The levels that have a model-matrix column, in order."""
        levels = LOGICAL_LEVELS if self.kind == "logical" else self.levels
        return tuple(lv for lv in levels if lv != self.baseline)

    @property
    def columns(self) -> tuple[str, ...]:
        """The model-matrix columns, named as R names them."""
        if self.kind == "numeric":
            return (self.name,)
        return tuple(self.name + level for level in self.coded)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Term:
        kind = d.get("kind") if isinstance(d, dict) else None
        if kind not in _TERM_KEYS:
            raise _fail(f"{where}.kind", f"must be one of {', '.join(_TERM_KEYS)}, got "
                                         f"{kind!r}")
        _keys(d, where, _TERM_KEYS[kind])
        name = _text(d["name"], f"{where}.name")
        if not _SYNTACTIC.fullmatch(name):
            raise _fail(f"{where}.name", f"{name!r} is not a syntactic R name")
        if kind == "numeric":
            return cls(name, "numeric")
        if d["contrasts"] != CONTRASTS:
            raise _fail(f"{where}.contrasts", f"must be {CONTRASTS!r}, got {d['contrasts']!r}")
        levels: tuple[str, ...] = ()
        if kind == "factor":
            raw = d["levels"]
            if not isinstance(raw, list) or len(raw) < 2 or \
                    not all(isinstance(v, str) for v in raw) or len(set(raw)) != len(raw):
                raise _fail(f"{where}.levels", f"must be two or more distinct strings, got "
                                               f"{raw!r}")
            levels = tuple(raw)
        first = levels[0] if kind == "factor" else LOGICAL_LEVELS[0]
        baseline = d["baseline"]
        if baseline is not None and baseline != first:
            raise _fail(f"{where}.baseline", f"must be the first level {first!r} (treatment "
                                             f"contrasts) or null, got {baseline!r}")
        return cls(name, kind, levels, baseline)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "numeric":
            return {"name": self.name, "kind": self.kind}
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "factor":
            out["levels"] = list(self.levels)
        return {**out, "contrasts": CONTRASTS, "baseline": self.baseline}


@dataclass(frozen=True)
class Training:
    """What the model was trained on and with."""

    r_version: str
    nobs: int
    prior_weights: bool
    converged: bool
    as_of: dt.date | None
    features_version: int | None

    @classmethod
    def from_dict(cls, d: Any) -> Training:
        _keys(d, "training", _TRAINING_KEYS)
        as_of = d["as_of"]
        if as_of is not None:
            try:
                if not isinstance(as_of, str) or len(as_of) != 10:
                    raise ValueError(as_of)
                as_of = dt.date.fromisoformat(as_of)
            except ValueError:
                raise _fail("training.as_of", f"must be a date YYYY-MM-DD or null, got "
                                              f"{d['as_of']!r}") from None
        version = d["features_version"]
        return cls(_text(d["r_version"], "training.r_version"),
                   _whole(d["nobs"], "training.nobs", 1),
                   _flag(d["prior_weights"], "training.prior_weights"),
                   _flag(d["converged"], "training.converged"), as_of,
                   None if version is None else _whole(version, "training.features_version",
                                                       0))

    def to_dict(self) -> dict[str, Any]:
        return {"r_version": self.r_version, "nobs": self.nobs,
                "prior_weights": self.prior_weights, "converged": self.converged,
                "as_of": None if self.as_of is None else self.as_of.isoformat(),
                "features_version": self.features_version}


@dataclass(frozen=True)
class RGlmScores:
    """Per row, in order: P(response = 1), NaN where the row is refused; and why a row is
    refused ('; '-joined, in the terms' order), None where it is scored."""

    probability: np.ndarray
    reasons: list[str | None]

    @property
    def refused(self) -> np.ndarray:
        return np.array([r is not None for r in self.reasons], dtype=bool)


@dataclass(frozen=True)
class RGlm:
    """A validated ``yws-r-glm/1`` description: a binomial glm with the logit link."""

    response: str
    formula: str
    intercept: bool
    terms: tuple[Term, ...]
    columns: tuple[str, ...]  # the model-matrix columns, in order
    coefficients: np.ndarray  # float64, one per column
    training: Training

    # -- reading ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any) -> RGlm:
        """The model a description holds, or a :class:`RModelFormatError` naming what is not
        ``yws-r-glm/1``."""
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt != FORMAT:
            if isinstance(fmt, str) and fmt.startswith("yws-r-glm/"):
                raise _fail("format", f"is {fmt!r}: this YWS reads {FORMAT} only")
            raise _fail("format", f"must be {FORMAT!r}, got {fmt!r}: not an R model exported "
                                  "by yws_export_glm()")
        _keys(d, "the description", _TOP_KEYS)
        if d["family"] != "binomial" or d["link"] != "logit":
            raise _fail("family/link", f"must be binomial/logit, got {d['family']!r}/"
                                       f"{d['link']!r}")
        response = _text(d["response"], "response")
        intercept = _flag(d["intercept"], "intercept")
        if not isinstance(d["terms"], list):
            raise _fail("terms", "must be an array")
        terms = tuple(Term.from_dict(t, f"terms[{i}]") for i, t in enumerate(d["terms"]))
        names = [t.name for t in terms]
        if len(set(names)) != len(names) or response in names:
            raise _fail("terms", f"must name distinct columns other than the response, got "
                                 f"{names}")
        # Without an intercept R codes the first logical or factor term with every level.
        categorical = [t for t in terms if t.kind != "numeric"]
        for i, t in enumerate(categorical):
            full = not intercept and i == 0
            if (t.baseline is None) != full:
                raise _fail(f"term {t.name!r} baseline",
                            "must be null for the first logical or factor term of a model "
                            "without an intercept, and the first level otherwise (as R's "
                            "model.matrix codes it)")
        columns = ((INTERCEPT,) if intercept else ()) + \
            tuple(c for t in terms for c in t.columns)
        coefficients = d["coefficients"]
        if not isinstance(coefficients, list):
            raise _fail("coefficients", "must be an array")
        got, values = [], []
        for i, b in enumerate(coefficients):
            _keys(b, f"coefficients[{i}]", ("column", "value"))
            value = b["value"]
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not math.isfinite(value):
                raise _fail(f"coefficients[{i}].value", f"must be a finite number, got "
                                                        f"{value!r}")
            got.append(b["column"])
            values.append(float(value))
        if tuple(got) != columns:
            raise _fail("coefficients", f"must be one per model-matrix column, in order: "
                                        f"{list(columns)}; got {got}")
        if not columns:
            raise _fail("coefficients", "are empty: a model with no intercept and no terms")
        formula = d["formula"]
        if not isinstance(formula, str):
            raise _fail("formula", f"must be a string, got {formula!r}")
        return cls(response, formula, intercept, terms, columns,
                   np.array(values, dtype=np.float64), Training.from_dict(d["training"]))

    @classmethod
    def from_json(cls, text: str | bytes) -> RGlm:
        try:
            d = json.loads(text, parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RModelFormatError(f"R model description ({FORMAT}) is not JSON: {e}") \
                from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | Path) -> RGlm:
        return cls.from_json(Path(path).read_bytes())

    def to_dict(self) -> dict[str, Any]:
        """The description again (``from_dict(m.to_dict()) == m``)."""
        return {"format": FORMAT, "response": self.response, "formula": self.formula,
                "family": "binomial", "link": "logit", "intercept": self.intercept,
                "terms": [t.to_dict() for t in self.terms],
                "coefficients": [{"column": c, "value": float(v)} for c, v in
                                 zip(self.columns, self.coefficients, strict=True)],
                "training": self.training.to_dict()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RGlm) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def features(self) -> tuple[str, ...]:
        """The columns the model reads, in the terms' order."""
        return tuple(t.name for t in self.terms)

    # -- scoring ----------------------------------------------------------------------------
    def predict(self, data: Any) -> RGlmScores:
        """P(response = 1) for each row of ``data`` (an Arrow table or a pandas DataFrame with
        a column per term; other columns are ignored), as ``predict(fit, newdata, type =
        "response")`` computes it; rows R would not score are refused with their reasons."""
        columns, n = _term_columns(data, self.terms)
        reasons: list[str | None] = [None] * n
        for term in self.terms:
            for rule, mask, values in _refusals(term, columns[term.name]):
                for i in np.nonzero(mask)[0]:
                    text = rule.reason(None if values is None else values[int(i)].as_py())
                    reasons[i] = text if reasons[i] is None else f"{reasons[i]}; {text}"
        eta = np.zeros(n, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # NaN in refused rows only
            for j, x in enumerate(self._design_columns(columns, n)):
                eta += x * self.coefficients[j]
        p = logit_linkinv(eta)
        refused = np.array([r is not None for r in reasons], dtype=bool)
        p[refused] = np.nan
        return RGlmScores(p, reasons)

    def design(self, data: Any) -> np.ndarray:
        """The model matrix of ``data`` (rows × :attr:`columns`), as R's ``model.matrix``
        builds it; a refused row's entries are meaningless."""
        columns, n = _term_columns(data, self.terms)
        out = np.empty((n, len(self.columns)), order="F")
        for j, x in enumerate(self._design_columns(columns, n)):
            out[:, j] = x
        return out

    def _design_columns(self, columns: dict[str, pa.ChunkedArray], n: int) -> Any:
        if self.intercept:
            yield np.ones(n)
        for term in self.terms:
            col = columns[term.name]
            if term.kind == "numeric":
                yield _floats(col)
                continue
            text = pc.cast(col, pa.string()) if term.kind == "factor" else \
                pc.if_else(pc.cast(col, pa.bool_()), "TRUE", "FALSE")
            for level in term.coded:
                hit = pc.fill_null(pc.equal(text, level), False)
                yield np.asarray(hit.to_numpy(zero_copy_only=False), dtype=np.float64)


def logit_linkinv(eta: np.ndarray) -> np.ndarray:
    """R's ``binomial()$linkinv`` (C ``logit_linkinv``): ``t / (1 + t)`` with ``t`` =
    ``DBL_EPSILON`` below -30, ``1 / DBL_EPSILON`` above 30, else ``exp(eta)``.

    ``exp`` is the C library's, which R's C code calls: NumPy's vectorised ``exp`` differs
    from it in the last bit for some 5% of values (0.2 s more per million rows buys the very
    doubles R computes)."""
    eta = np.asarray(eta, dtype=np.float64)
    inside = np.clip(np.nan_to_num(eta, nan=0.0), MTHRESH, THRESH)
    t = np.fromiter(map(math.exp, inside.tolist()), np.float64, inside.size) \
        .reshape(eta.shape)
    t = np.where(eta < MTHRESH, DBL_EPSILON, np.where(eta > THRESH, INVEPS, t))
    t = np.where(np.isnan(eta), np.nan, t)
    out: np.ndarray = t / (1.0 + t)
    return out


def _no_constant(name: str) -> Any:
    raise RModelFormatError(f"R model description ({FORMAT}) holds {name}, which is not JSON")


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


def _accepts(kind: Kind, t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return kind == "factor" and _accepts(kind, t.value_type)
    if pa.types.is_null(t):
        return True
    if kind == "numeric":
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if kind == "logical":
        return pa.types.is_boolean(t)
    return pa.types.is_string(t) or pa.types.is_large_string(t)


_R_TYPE = {"numeric": "numbers", "logical": "true/false", "factor": "text (the level's name)"}


def _term_columns(data: Any, terms: tuple[Term, ...]) -> tuple[dict[str, pa.ChunkedArray],
                                                                int]:
    """Each term's column of ``data`` as Arrow, checked as R's predict() checks them."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not isinstance(data, pa.Table):
        import pandas as pd

        if not isinstance(data, pd.DataFrame):
            raise RModelInputError(f"rows to score must be an Arrow table or a pandas "
                                   f"DataFrame, got {type(data).__name__}")
    names = [str(c) for c in data.columns] if not isinstance(data, pa.Table) else \
        data.column_names
    missing = [t.name for t in terms if t.name not in names]
    if missing:
        raise RModelInputError(f"the rows have no column {', '.join(missing)}: the R model "
                               f"reads {', '.join(t.name for t in terms)}")
    out: dict[str, pa.ChunkedArray] = {}
    for term in terms:
        if isinstance(data, pa.Table):
            col = data.column(term.name)
        else:
            try:
                col = pa.chunked_array([pa.array(data[term.name], from_pandas=True)])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise RModelInputError(f"column {term.name}: its values are not all "
                                       f"{_R_TYPE[term.kind]} ({e})") from None
        if not _accepts(term.kind, col.type):
            raise RModelInputError(f"column {term.name} is {col.type}: the R model was fitted "
                                   f"with {term.kind} {term.name}, so it takes "
                                   f"{_R_TYPE[term.kind]}")
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, pa.string())
        out[term.name] = col
    return out, len(data)


def _refusals(term: Term, col: pa.ChunkedArray) -> Any:
    """(rule, mask, offending values or None) for each way a value of ``term`` is refused."""
    if term.kind == "numeric":
        x = _floats(col)
        yield Rule("null_or_nan", term.name), np.isnan(x), None
        yield Rule("infinite", term.name), np.isinf(x), None
        return
    null = np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)
    yield Rule("null", term.name), null, None
    if term.kind == "factor":
        values = pc.cast(col, pa.string())
        known = pa.array(term.levels, pa.string())
        unseen = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known)))
        yield (Rule("unseen", term.name),
               np.asarray(unseen.to_numpy(zero_copy_only=False), dtype=bool), values)
