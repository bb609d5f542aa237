"""On-demand scoring of rows (what Model Serving and ai_query answer): the batch job's
probabilities for rows it would score, and a clear error — never a probability — for a row
it would quarantine or a value of the wrong type."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from conftest import SCORE_DAY
from yws.datasets.synthetic import generate
from yws.errors import InvalidValueError
from yws.model import registry
from yws.model.evaluator import ArrowModel
from yws.platform import storage_for
from yws.scoring.job import score
from yws.scoring.records import OUTPUTS, score_records, score_table


@pytest.fixture(scope="module")
def model(trained_home) -> ArrowModel:
    return ArrowModel.load(registry.locate(trained_home, "champion").path)


@pytest.fixture(scope="module")
def clean(spec, model) -> dict:
    """A synthetic row the model scores without complaint."""
    rows = generate(200, SCORE_DAY, labeled=False).to_pylist()
    return next(r for r, out in zip(rows, score_records(model, spec, rows), strict=True)
                if out["error"] is None)


def test_rows_score_as_the_batch_job_scores_them(trained_home, spec, model):
    """Every row the batch job scored gets the same probability, prediction and band, bit for
    bit; every row it quarantined is refused with the same reason."""
    result = score(trained_home, spec, engine="arrow", as_of=SCORE_DAY, batch_id="records")
    storage = storage_for(trained_home)
    features = storage.read_arrow(trained_home.features,
                                  where=(spec.as_of_column, SCORE_DAY)).to_pylist()
    batch = {r["entity_id"]: r for r in storage.read_arrow(
        trained_home.predictions, where=("run_id", result.run_id)).to_pylist()}
    held = {r["entity_id"]: r["reason"] for r in storage.read_arrow(
        trained_home.quarantine, where=("run_id", result.run_id)).to_pylist()}
    got = score_records(model, spec, features)
    assert len(got) == len(features) == result.rows_read
    keys = [row[spec.entity_key] for row in features]
    compared = 0
    for row, out in zip(features, got, strict=True):
        key = row[spec.entity_key]
        if key is None or keys.count(key) > 1:
            continue  # a missing or repeated entity key is the batch's concern, not a row's
        compared += 1
        key = str(key)
        if key in held:
            assert out["probability"] is None and out["band"] is None
            assert out["error"] == held[key]
        else:
            assert out["error"] is None
            assert out["probability"] == batch[key]["probability"]
            assert out["prediction"] == batch[key]["prediction"]
            assert out["band"] == batch[key]["band"]
    assert compared > 0.9 * len(features)
    assert any(r is not None for r in held.values()), "the snapshot has rows held back"


def test_a_value_of_the_wrong_type_is_that_rows_error(spec, model, clean):
    good = dict(clean)
    numeric = next(f.name for f in spec.features if f.kind.checks_finite)
    category = next(f.name for f in spec.features if f.kind.categorical)
    rows = [dict(good), {**good, numeric: "12"}, {**good, category: 7},
            {**good, numeric: True}]
    out = score_records(model, spec, rows)
    assert [o["error"] is None for o in out] == [True, False, False, False]
    assert f"{numeric}: '12' is not a number" in out[1]["error"]
    assert f"{category}: 7 is not a category name" in out[2]["error"]
    assert out[3]["probability"] is None
    assert list(out[0]) == list(OUTPUTS)


def test_a_missing_feature_refuses_the_request(spec, model):
    row = {f.name: None for f in spec.features[1:]}
    with pytest.raises(InvalidValueError, match=f"no column {spec.features[0].name}"):
        score_records(model, spec, [row])


def test_non_finite_values_follow_the_batch_rules(spec, model, clean):
    numeric = next(f for f in spec.features if f.kind.checks_finite)
    base = dict(clean)
    out = score_records(model, spec, [{**base, numeric.name: "Infinity"},
                                      {**base, numeric.name: float("nan")}])
    assert out[0]["error"] == f"{numeric.name} is infinite"
    if numeric.quarantine_nulls:
        assert "null or NaN" in out[1]["error"]
    else:  # imputed, as the batch job does
        assert out[1]["error"] is None and math.isfinite(out[1]["probability"])


def test_an_empty_request_scores_nothing(spec, model):
    assert score_records(model, spec, []) == []
    empty = pa.table({f.name: pa.array([], f.kind.arrow()) for f in spec.features})
    assert score_table(model, spec, empty).num_rows == 0
