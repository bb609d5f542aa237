"""An R model logged as a self-contained MLflow pyfunc (yws.model.r_glm_flavor, issue 17).

The contract is MLflow's pyfunc format (mlflow.org/docs, ``mlflow.pyfunc``: "Filesystem
format" — the MLmodel's ``python_function`` flavour names a ``loader_module`` whose
``_load_pyfunc(data_path)`` returns an object with ``predict``, imported from the model's
``code`` folder; "Inference API" — ``predict`` takes a pandas DataFrame) and its model
metadata (``signature`` with inputs and outputs, ``input_example``, ``metadata``, and
``requirements.txt`` from ``pip_requirements``). The answers are the SparkML pyfunc's
(yws.model.evaluator.ArrowPyfunc): probability, prediction, band, error per row, a refused
row answered with its reasons and None elsewhere; the probabilities are RGlm.predict's, bit
for bit. The registry and a fresh virtualenv are tests/integration/test_r_glm_flavor.py's.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from test_r_glm import description
from yws.contract.rules import REASONS, Rule
from yws.contract.spec import Spec
from yws.errors import YwsError
from yws.model import r_glm_flavor
from yws.model.r_glm import RGlm, RModelFormatError

CODE_MODULES = ("yws_r_glm_pyfunc", "yws_r_glm", "yws_arrow_engine")


def rows() -> pd.DataFrame:
    """Rows R scores, and rows R would answer NA or refuse (a missing value, an unseen
    level), and an infinite value the batch job holds back."""
    return pd.DataFrame({
        "tenure_months": [1.0, 0.25, -3.0, 80.0, np.nan, 2.0, 2.0, np.inf, 1.5],
        "has_autopay": [True, False, True, False, True, None, True, True, False],
        "region": ["east", "east", "west", "north", "east", "west", "mars", "east", None],
        "customer_id": [f"C{i}" for i in range(9)],  # not read by the model: ignored
    })


@pytest.fixture
def saved(tmp_path: Path, spec: Spec) -> Path:
    return r_glm_flavor.save(description(), spec, tmp_path, rows().head(4),
                             features_table="yws_dev.ml.yws_features")


@pytest.fixture
def clean_modules(monkeypatch: pytest.MonkeyPatch):
    """Forget the logged modules a load imported (MLflow puts code/ on sys.path and imports
    them by name), so each test imports its own folder's copies; restored afterwards."""
    for name in CODE_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield monkeypatch
    for name in CODE_MODULES:
        sys.modules.pop(name, None)


def test_the_model_folder_holds_its_code_data_signature_example_and_requirements(
        saved: Path) -> None:
    from mlflow.models import Model

    mlmodel = Model.load(str(saved / "MLmodel"))
    pyfunc = mlmodel.flavors["python_function"]
    assert pyfunc["loader_module"] == "yws_r_glm_pyfunc" and pyfunc["code"] == "code"
    assert sorted(p.name for p in (saved / "code").iterdir()) == [
        "yws_arrow_engine.py", "yws_r_glm.py", "yws_r_glm_pyfunc.py"]
    data = saved / pyfunc["data"]
    assert RGlm.load(data / "r_glm.json") == RGlm.from_dict(description())
    assert json.loads((data / "prediction.json").read_text()) == {"threshold": 0.5}
    assert json.loads((data / "row_contract.json").read_text())["bands"] == {
        "names": ["GREEN", "YELLOW", "RED"], "thresholds": [0.15, 0.4]}
    inputs = mlmodel.signature.inputs.to_dict()
    assert [(c["name"], c["type"], c["required"]) for c in inputs] == [
        ("tenure_months", "double", False), ("has_autopay", "boolean", False),
        ("region", "string", False)]
    assert [c.name for c in mlmodel.signature.outputs.inputs] == [
        "probability", "prediction", "band", "error"]
    example = mlmodel.load_input_example(str(saved))
    assert list(example.columns) == ["tenure_months", "has_autopay", "region"]
    assert len(example) == 4
    assert mlmodel.metadata == {
        "flavor": "r-glm", "formula": "defaulted_90d ~ tenure_months + has_autopay + region",
        "r_version": "4.2.2", "as_of": "2026-08-31", "features_table": "yws_dev.ml.yws_features",
        "features_version": "3", "nobs": "2000"}
    names = {line.split("==")[0] for line in (saved / "requirements.txt").read_text().split()}
    assert names == {"mlflow-skinny", "numpy", "pandas", "pyarrow"}


def test_the_pyfunc_answers_rglm_probabilities_with_bands_predictions_and_reasons(
        saved: Path, spec: Spec, clean_modules) -> None:
    import mlflow

    got = mlflow.pyfunc.load_model(str(saved)).predict(rows())
    assert list(got.columns) == ["probability", "prediction", "band", "error"]
    want = RGlm.from_dict(description()).predict(rows())
    out = got.to_dict("records")
    assert [r["error"] for r in out] == want.reasons
    assert want.refused.tolist() == [False] * 4 + [True] * 5
    for r, p in zip(out[:4], want.probability[:4], strict=True):
        assert r["probability"] == p  # RGlm's double itself, not a near one
        assert r["prediction"] == int(p > 0.5)
        assert r["band"] == spec.bands.band(p)
    assert {r["band"] for r in out[:4]} == {"GREEN", "YELLOW", "RED"}
    assert {0, 1} <= {r["prediction"] for r in out[:4]}
    for r in out[4:]:  # null, never NaN: JSON null when served
        assert r["probability"] is None and r["prediction"] is None and r["band"] is None
    assert out[6]["error"] == "region has unseen category 'mars'"
    assert out[7]["error"] == "tenure_months is infinite"


def test_the_threshold_and_the_bands_are_the_specs(tmp_path: Path, spec: Spec,
                                                    clean_modules) -> None:
    import mlflow

    low = spec.with_params({"threshold": "0.2"})
    folder = r_glm_flavor.save(description(), low, tmp_path, rows().head(4))
    out = mlflow.pyfunc.load_model(str(folder)).predict(rows().head(4)).to_dict("records")
    p = RGlm.from_dict(description()).predict(rows().head(4)).probability
    assert [r["prediction"] for r in out] == (p > 0.2).astype(int).tolist()
    assert (p > 0.2).sum() > (p > 0.5).sum()  # the threshold changes an answer


def test_a_value_of_the_wrong_type_is_refused_in_the_sparkml_pyfuncs_words(
        saved: Path, clean_modules) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model(str(saved))
    frame = pd.DataFrame({"tenure_months": ["lots", 1.0], "has_autopay": [True, "yes"],
                          "region": ["east", 3]}, dtype=object)
    out = model._model_impl.predict(frame).to_dict("records")  # without MLflow's own check
    assert out[0]["error"] == "tenure_months: 'lots' is not a number; tenure_months is null " \
                              "or NaN"
    assert out[1]["error"] == "has_autopay: 'yes' is not true or false; region: 3 is not a " \
                              "category name (text); has_autopay is null; region is null"
    assert all(r["probability"] is None for r in out)


def test_a_model_the_spec_cannot_feed_is_refused_before_anything_is_saved(
        tmp_path: Path, spec: Spec) -> None:
    other = description()
    other["terms"][0]["name"] = "shoe_size"
    other["coefficients"][1]["column"] = "shoe_size"
    other["formula"] = "defaulted_90d ~ shoe_size + has_autopay + region"
    with pytest.raises(RModelFormatError, match="reads shoe_size, which is not a feature"):
        r_glm_flavor.save(other, spec, tmp_path)
    numeric_as_factor = description()
    numeric_as_factor["terms"][2]["name"] = "credit_limit"
    numeric_as_factor["coefficients"][3:] = [
        {"column": "credit_limitnorth", "value": 1.5}, {"column": "credit_limitwest", "value": 2}]
    with pytest.raises(RModelFormatError, match="reads credit_limit as factor, but the spec's "
                                                "feature is numeric"):
        r_glm_flavor.save(numeric_as_factor, spec, tmp_path)
    broken = description()
    broken["link"] = "probit"
    with pytest.raises(YwsError, match="binomial/logit"):
        r_glm_flavor.save(broken, spec, tmp_path)
    assert not (tmp_path / "model").exists()


def test_the_logged_code_loads_and_scores_without_yws(saved: Path, clean_modules) -> None:
    """The three code files with every yws module unimportable: the loader, the R evaluator
    (its own copy of the rules' words) and the row contract, as in a serving container."""
    monkeypatch = clean_modules
    for name in [m for m in sys.modules if m == "yws" or m.startswith("yws.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import yws... raises ImportError
    monkeypatch.syspath_prepend(str(saved / "code"))
    loader = importlib.import_module("yws_r_glm_pyfunc")
    standalone = importlib.import_module("yws_r_glm")
    assert standalone.Rule.__module__ == "yws_r_glm"  # the fallback, not yws.contract.rules
    assert not issubclass(standalone.RModelFormatError, YwsError)
    for check in ("null", "null_or_nan", "infinite", "unseen"):
        assert standalone.Rule(check, "x").reason("v") == Rule(check, "x").reason("v") == \
            REASONS[check].format(column="x", value="v")
    out = loader._load_pyfunc(str(saved / "data" / "rglm")).predict(rows())
    want = RGlm.from_dict(description()).predict(pa.Table.from_pandas(rows()))
    assert out["error"].tolist() == want.reasons
    assert np.array_equal(out["probability"].to_numpy(dtype=float), want.probability,
                          equal_nan=True)


def test_the_metadata_says_what_is_unknown_as_empty_text() -> None:
    d = description()
    d["training"]["as_of"] = None
    d["training"]["features_version"] = None
    tags = r_glm_flavor.metadata(RGlm.from_dict(d))
    assert tags["as_of"] == tags["features_version"] == tags["features_table"] == ""
    assert all(isinstance(v, str) for v in tags.values())
