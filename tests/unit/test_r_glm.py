"""The yws-r-glm/1 description of an R glm: validation, and evaluation as R's predict(fit,
newdata, type = "response") computes it (tests/integration/test_r_glm_export.py compares with
R itself)."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from yws.contract.rules import Rule
from yws.errors import YwsError
from yws.model.r_glm import (
    DBL_EPSILON,
    FORMAT,
    RGlm,
    RModelFormatError,
    RModelInputError,
    logit_linkinv,
)

TRAINING = {"r_version": "4.2.2", "nobs": 2000, "prior_weights": False, "converged": True,
            "as_of": "2026-08-31", "features_version": 3}


def description() -> dict[str, Any]:
    """defaulted_90d ~ tenure_months + has_autopay + region, coefficients chosen by hand."""
    return {
        "format": FORMAT, "response": "defaulted_90d",
        "formula": "defaulted_90d ~ tenure_months + has_autopay + region",
        "family": "binomial", "link": "logit", "intercept": True,
        "terms": [
            {"name": "tenure_months", "kind": "numeric"},
            {"name": "has_autopay", "kind": "logical", "contrasts": "contr.treatment",
             "baseline": "FALSE"},
            {"name": "region", "kind": "factor", "levels": ["east", "north", "west"],
             "contrasts": "contr.treatment", "baseline": "east"},
        ],
        "coefficients": [
            {"column": "(Intercept)", "value": -1.0},
            {"column": "tenure_months", "value": 0.5},
            {"column": "has_autopayTRUE", "value": 0.25},
            {"column": "regionnorth", "value": 1.5},
            {"column": "regionwest", "value": -2},  # JSON may hold a whole number
        ],
        "training": dict(TRAINING),
    }


def p(eta: float) -> float:
    t = math.exp(eta)
    return t / (1 + t)


# -- reading ---------------------------------------------------------------------------------
def test_a_description_reads_into_terms_columns_and_coefficients() -> None:
    m = RGlm.from_dict(description())
    assert m.features == ("tenure_months", "has_autopay", "region")
    assert m.columns == ("(Intercept)", "tenure_months", "has_autopayTRUE", "regionnorth",
                         "regionwest")
    assert m.coefficients.tolist() == [-1.0, 0.5, 0.25, 1.5, -2.0]
    assert m.coefficients.dtype == np.float64
    assert m.training.as_of.isoformat() == "2026-08-31"
    assert m.training.features_version == 3
    assert RGlm.from_dict(m.to_dict()) == m
    assert m.to_dict()["terms"] == description()["terms"]


def test_a_description_reads_from_json_text_and_a_file(tmp_path) -> None:
    text = json.dumps(description())
    path = tmp_path / "model.json"
    path.write_text(text)
    assert RGlm.from_json(text) == RGlm.load(path) == RGlm.from_dict(description())
    # 17 significant digits read back as the very double R wrote
    d = description()
    d["coefficients"][1]["value"] = 0.33333333333333331
    assert RGlm.from_json(json.dumps(d)).coefficients[1] == 1 / 3


def test_without_an_intercept_the_first_categorical_term_has_every_level() -> None:
    d = description()
    d["intercept"] = False
    d["terms"][1]["baseline"] = None
    d["coefficients"] = [{"column": c, "value": v} for c, v in [
        ("tenure_months", 0.5), ("has_autopayFALSE", -1.0), ("has_autopayTRUE", -0.75),
        ("regionnorth", 1.5), ("regionwest", -2.0)]]
    m = RGlm.from_dict(d)
    assert m.columns[:3] == ("tenure_months", "has_autopayFALSE", "has_autopayTRUE")
    got = m.predict(pa.table({"tenure_months": [1.0, 2.0], "has_autopay": [True, False],
                              "region": ["west", "east"]})).probability
    assert got.tolist() == [p(0.5 - 0.75 - 2.0), p(1.0 - 1.0)]


def _set(path: str, value: Any):
    def change(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = d
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        key: int | str = int(last) if isinstance(target, list) else last
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return change


_DELETE = object()

INVALID = {
    "another format": (_set("format", "yws-sparkml/1"), "must be 'yws-r-glm/1'"),
    "a newer version": (_set("format", "yws-r-glm/2"), "reads yws-r-glm/1 only"),
    "no format": (_set("format", _DELETE), "must be 'yws-r-glm/1'"),
    "a missing field": (_set("training", _DELETE), "has no training"),
    "an unknown field": (_set("offset", 1.0), "unknown field(s) offset"),
    "another link": (_set("link", "probit"), "binomial/logit"),
    "another family": (_set("family", "poisson"), "binomial/logit"),
    "intercept not a flag": (_set("intercept", 1), "intercept must be true or false"),
    "an unknown kind": (_set("terms.0.kind", "spline"), "terms[0].kind must be one of"),
    "a term without its kind's fields": (_set("terms.2.levels", _DELETE),
                                         "terms[2] has no levels"),
    "sum contrasts": (_set("terms.2.contrasts", "contr.sum"), "terms[2].contrasts"),
    "one level": (_set("terms.2.levels", ["east"]), "two or more distinct strings"),
    "repeated levels": (_set("terms.2.levels", ["east", "east", "west"]), "distinct"),
    "a level not text": (_set("terms.2.levels", ["east", 2, "west"]), "distinct strings"),
    "a baseline not the first level": (_set("terms.2.baseline", "north"),
                                       "must be the first level 'east'"),
    "no baseline with an intercept": (_set("terms.1.baseline", None), "baseline must be null"),
    "a non-syntactic name": (_set("terms.0.name", "tenure months"), "not a syntactic R name"),
    "a term named twice": (_set("terms.1.name", "tenure_months"), "distinct columns"),
    "the response as a term": (_set("terms.0.name", "defaulted_90d"), "other than the response"),
    "coefficients out of order": (_set("coefficients.3.column", "regionwest"),
                                  "one per model-matrix column, in order"),
    "a coefficient missing": (_set("coefficients.4", _DELETE), "one per model-matrix column"),
    "a NaN coefficient": (_set("coefficients.1.value", float("nan")), "finite number"),
    "an infinite coefficient": (_set("coefficients.1.value", float("inf")), "finite number"),
    "a coefficient as text": (_set("coefficients.1.value", "0.5"), "finite number"),
    "a coefficient true": (_set("coefficients.1.value", True), "finite number"),
    "a bad as-of date": (_set("training.as_of", "2026-02-30"), "training.as_of"),
    "an as-of date and time": (_set("training.as_of", "2026-08-31T00:00"), "training.as_of"),
    "no rows": (_set("training.nobs", 0), "training.nobs must be a whole number, 1 or more"),
    "a negative table version": (_set("training.features_version", -1),
                                 "training.features_version"),
    "terms not an array": (_set("terms", {}), "terms must be an array"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_description_is_refused_naming_what_is_wrong(case: str) -> None:
    change, words = INVALID[case]
    d = copy.deepcopy(description())
    change(d)
    with pytest.raises(RModelFormatError) as caught:
        RGlm.from_dict(d)
    assert words in str(caught.value)
    assert isinstance(caught.value, YwsError) and isinstance(caught.value, ValueError)


def test_the_no_intercept_coding_must_be_rs() -> None:
    d = description()
    d["intercept"] = False  # the first categorical term must then have every level
    del d["coefficients"][0]
    with pytest.raises(RModelFormatError, match="baseline must be null"):
        RGlm.from_dict(d)


def test_text_that_is_not_a_description_is_refused() -> None:
    for text in ("not json", "[1, 2]", json.dumps(description()).replace("-1.0", "NaN")):
        with pytest.raises(RModelFormatError):
            RGlm.from_json(text)


# -- scoring ---------------------------------------------------------------------------------
ROWS = {"tenure_months": [1.0, 4.0, 0.0, 2.5], "has_autopay": [True, False, False, True],
        "region": ["east", "north", "west", "north"]}
# eta by hand: -1 + 0.5 * tenure + 0.25 * autopay + 1.5 * north - 2 * west
ETA = [-1 + 0.5 + 0.25, -1 + 2.0 + 1.5, -1 - 2.0, -1 + 1.25 + 0.25 + 1.5]


def test_probabilities_are_the_inverse_logit_of_the_hand_computed_linear_predictor() -> None:
    m = RGlm.from_dict(description())
    scores = m.predict(pa.table(ROWS))
    assert scores.reasons == [None] * 4
    assert not scores.refused.any()
    assert scores.probability.tolist() == [p(e) for e in ETA]
    assert scores.probability[0] == pytest.approx(0.43782349911420193, abs=1e-16)
    assert m.design(pa.table(ROWS)).tolist() == [
        [1, 1.0, 1, 0, 0], [1, 4.0, 0, 1, 0], [1, 0.0, 0, 0, 1], [1, 2.5, 1, 1, 0]]


def test_pandas_frames_and_arrow_types_score_alike() -> None:
    m = RGlm.from_dict(description())
    want = m.predict(pa.table(ROWS)).probability.tolist()
    frame = pd.DataFrame({**ROWS, "extra": ["ignored"] * 4})
    assert m.predict(frame).probability.tolist() == want
    frame["region"] = frame["region"].astype("category")
    frame["tenure_months"] = pd.array([1, 4, 0, 2], dtype="Int64")  # an integer column
    got = m.predict(frame).probability.tolist()
    assert got[:3] == want[:3] and got[3] == p(-1 + 1.0 + 0.25 + 1.5)
    dictionary = pa.table({**ROWS, "region": pa.array(ROWS["region"]).dictionary_encode()})
    assert m.predict(dictionary).probability.tolist() == want
    assert m.predict(pa.table(ROWS).to_batches()[0]).probability.tolist() == want


def test_the_inverse_link_is_rs_with_its_thresholds_at_30() -> None:
    eps = DBL_EPSILON
    got = logit_linkinv(np.array([-40.0, -30.0000001, -30.0, 0.0, 30.0, 30.0000001, 800.0,
                                  -np.inf, np.inf, np.nan]))
    assert got[0] == got[1] == got[7] == eps / (1 + eps)
    assert got[2] == math.exp(-30) / (1 + math.exp(-30))
    assert got[3] == 0.5
    assert got[4] == math.exp(30) / (1 + math.exp(30))
    assert got[5] == got[6] == got[8] == (1 / eps) / (1 + 1 / eps)
    assert got[5] < 1.0  # R never answers exactly 1 (nor 0)
    assert np.isnan(got[9])


def test_rows_r_would_not_score_are_refused_with_the_quarantine_rules_words() -> None:
    m = RGlm.from_dict(description())
    rows = pa.table({
        "tenure_months": [1.0, None, float("nan"), float("inf"), 2.0, 1.0],
        "has_autopay": [True, False, None, True, False, True],
        "region": ["east", "north", "west", "south", None, "north"],
    })
    scores = m.predict(rows)
    assert scores.reasons == [
        None,
        Rule("null_or_nan", "tenure_months").reason(),
        f"{Rule('null_or_nan', 'tenure_months').reason()}; "
        f"{Rule('null', 'has_autopay').reason()}",
        f"{Rule('infinite', 'tenure_months').reason()}; "
        f"{Rule('unseen', 'region').reason('south')}",
        Rule("null", "region").reason(),
        None,
    ]
    assert scores.reasons[3] == "tenure_months is infinite; region has unseen category 'south'"
    assert scores.refused.tolist() == [False, True, True, True, True, False]
    assert np.isnan(scores.probability[1:5]).all()
    assert scores.probability[[0, 5]].tolist() == [p(ETA[0]), p(-1 + 0.5 + 0.25 + 1.5)]
    # a refused row changes nothing for the others
    assert m.predict(rows.take([0, 5])).probability.tolist() == scores.probability[[0, 5]] \
        .tolist()


def test_a_column_r_would_refuse_refuses_the_whole_input() -> None:
    m = RGlm.from_dict(description())
    with pytest.raises(RModelInputError, match="no column region"):
        m.predict(pa.table({k: v for k, v in ROWS.items() if k != "region"}))
    wrong = {
        "tenure_months": pa.array(["1", "2", "3", "4"]),  # text for a numeric term
        "has_autopay": pa.array([1, 0, 0, 1]),  # numbers for a logical term
        "region": pa.array([1, 2, 3, 4]),  # numbers for a factor
    }
    for name, column in wrong.items():
        with pytest.raises(RModelInputError, match=f"column {name} is"):
            m.predict(pa.table({**ROWS, name: column}))
    with pytest.raises(RModelInputError, match="tenure_months: its values are not all numbers"):
        m.predict(pd.DataFrame({**ROWS, "tenure_months": [1.0, "x", 2.0, 3.0]}))
    with pytest.raises(RModelInputError, match="Arrow table or a pandas DataFrame"):
        m.predict([ROWS])


def test_all_null_columns_are_refused_rows_not_a_type_error() -> None:
    m = RGlm.from_dict(description())
    rows = pa.table({name: pa.nulls(2) for name in ROWS})
    assert m.predict(rows).reasons == [
        "tenure_months is null or NaN; has_autopay is null; region is null"] * 2
