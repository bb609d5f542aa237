from __future__ import annotations

import copy

import pytest
import yaml

from yws.contract.spec import SpecError, default_spec_text, load_spec, parse_spec


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(default_spec_text())


def test_default_spec_contract():
    spec = load_spec()
    assert spec.entity_key == "customer_id"
    assert spec.as_of_column == "as_of_date"
    assert spec.label == "defaulted_90d"
    assert len(spec.features) == 12
    assert {f.type for f in spec.features} == {"numeric", "boolean", "categorical"}
    assert spec.bands.band(0.05) == "GREEN"
    assert spec.bands.band(spec.bands.yellow) == "YELLOW"
    assert spec.bands.band(0.99) == "RED"
    assert spec.lr_params["fitIntercept"] is True
    tier = next(f for f in spec.features if f.name == "product_tier")
    assert (tier.nulls, tier.unseen) == ("quarantine", "quarantine")


def test_spec_from_a_file(tmp_path, raw):
    raw["bands"] = {"yellow": 0.3, "red": 0.6}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    assert (spec.bands.yellow, spec.bands.red) == (0.3, 0.6)
    assert spec.source == str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["features"][0].update(type="float"), "type 'float' is unknown"),
        (lambda d: d["features"][9].update(nulls="impute"), "nulls 'impute' is not allowed"),
        (lambda d: d["features"][0].update(impute="zero"), "impute 'zero' is unknown"),
        (lambda d: d["features"][0].update(name="bad name"), "not a valid identifier"),
        (lambda d: d["features"].append({"name": "region", "type": "categorical"}),
         "used twice: region"),
        (lambda d: d.update(bands={"yellow": 0.6, "red": 0.3}), "0 < yellow < red"),
        (lambda d: d["model"].update(learningRate=0.1), "unknown hyperparameter"),
        (lambda d: d["model"].update(elasticNetParam=2), "between 0.0 and 1.0"),
        (lambda d: d["model"].update(maxIter="many"), "expected a whole number"),
        (lambda d: d.pop("label"), "missing required field 'label'"),
        (lambda d: d.update(features=[]), "non-empty list"),
        (lambda d: d["features"][0].update(colour="red"), "unknown field"),
    ],
)
def test_bad_specs_name_the_field(raw, change, message):
    bad = copy.deepcopy(raw)
    change(bad)
    with pytest.raises(SpecError, match=message):
        parse_spec(bad, source="test.yaml")


def test_param_overrides_are_typed_and_checked():
    spec = load_spec().with_params({"regParam": "0.5", "standardization": "false",
                                    "maxIter": "7", "scaleFeatures": "true"})
    assert spec.model["regParam"] == 0.5
    assert spec.model["standardization"] is False
    assert spec.model["maxIter"] == 7
    assert spec.scale_features is True
    with pytest.raises(SpecError, match="unknown hyperparameter"):
        load_spec().with_params({"depth": "3"})
    with pytest.raises(SpecError, match="expected true or false"):
        load_spec().with_params({"fitIntercept": "maybe"})


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_quarantine_rules_are_one_ordered_list_both_engines_compile(spec):
    from yws.contract.rules import Rule, quarantine_rules

    training = quarantine_rules(spec, unseen=False, duplicates=False)
    scoring = quarantine_rules(spec, unseen=True, duplicates=True)
    assert training[0] == Rule("null", spec.entity_key)  # the key first, always
    assert scoring[-1] == Rule("duplicate", spec.entity_key)  # duplicates last
    assert not any(r.check == "unseen" for r in training)
    assert [r for r in scoring if r.check not in ("unseen", "duplicate")] == list(training)
    numeric = [f.name for f in spec.features if f.type == "numeric"]
    assert {r.column for r in scoring if r.check == "infinite"} == set(numeric)
    assert Rule("unseen", "region").reason("mars") == "region has unseen category 'mars'"
    assert Rule("unseen", "region").around_value() == ("region has unseen category '", "'")
    assert Rule("null_or_nan", "x").reason() == "x is null or NaN"


def test_bands_are_data_each_engine_compiles_alike(spec):
    import numpy as np

    from yws.scoring.arrow import bands

    b = spec.bands
    edges = [0.0, np.nextafter(b.yellow, 0), b.yellow, np.nextafter(b.red, 0), b.red, 1.0]
    expected = ["GREEN", "GREEN", "YELLOW", "YELLOW", "RED", "RED"]
    assert [b.band(float(p)) for p in edges] == expected
    assert bands(np.array(edges), spec).to_pylist() == expected


def test_spec_hash_is_the_content_not_the_text(tmp_path):
    """Replay compares spec hashes: comments, whitespace, key order, an explicit default and
    the file's place do not change it; any value does."""
    text = default_spec_text()
    base = load_spec()
    assert len(base.hash) == 64 and base.hash == load_spec().hash
    data = yaml.safe_load(text)
    reordered = dict(reversed(list(data.items())))
    shuffled = tmp_path / "elsewhere.yaml"
    shuffled.write_text("# the same spec, written otherwise\n\n"
                        + yaml.safe_dump(reordered, sort_keys=False, indent=4), encoding="utf-8")
    assert load_spec(shuffled).source != base.source
    assert load_spec(shuffled).hash == base.hash
    explicit = copy.deepcopy(data)
    explicit.setdefault("split", {}).setdefault("test_fraction", base.test_fraction)
    assert parse_spec(explicit).hash == base.hash
    for change in (lambda d: d["bands"].update(red=d["bands"]["red"] - 0.01),
                   lambda d: d["features"].pop(),
                   lambda d: d["features"][0].update(name="renamed")):
        changed = copy.deepcopy(data)
        change(changed)
        assert parse_spec(changed).hash != base.hash
