from __future__ import annotations

from pathlib import Path

import pytest

from yws.config import Settings, SettingsError, check_table_name


def test_defaults_name_every_object():
    s = Settings()
    assert s.target == "local"
    assert s.model_name == "yws_dev.ml.yws_lr"
    assert s.features == "yws_dev.ml.yws_features"
    assert s.predictions == "yws_dev.ml.yws_predictions"
    assert s.quarantine == "yws_dev.ml.yws_quarantine"
    assert s.score_runs == "yws_dev.ml.yws_score_runs"
    assert s.home == Path(".yws")


def test_environment_then_overrides():
    env = {"YWS_CATALOG": "prod", "YWS_SCHEMA": "risk", "YWS_HOME": "/tmp/x"}
    s = Settings.load(env, schema="scoring", target=None)
    assert s.catalog == "prod"  # from the environment
    assert s.schema == "scoring"  # an explicit override wins
    assert s.home == Path("/tmp/x")
    assert s.model_name == "prod.scoring.yws_lr"
    assert s.experiment_name == "yws"
    assert Settings.load({"YWS_TARGET": "databricks"}).experiment_name == "/Shared/yws"


@pytest.mark.parametrize(
    ("field", "value"),
    [("catalog", "yws-dev"), ("schema", "ml; DROP TABLE x"), ("catalog", ""),
     ("features_table", "a.b"), ("target", "cloud")],
)
def test_bad_values_are_refused_with_the_field_named(field, value):
    with pytest.raises(SettingsError, match=field.split("_")[0]):
        Settings(**{field: value})


def test_unknown_override_is_an_error():
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.load({}, colour="blue")


def test_three_level_names():
    assert check_table_name("a.b.c") == ("a", "b", "c")
    with pytest.raises(SettingsError, match="three parts"):
        check_table_name("b.c")
    with pytest.raises(SettingsError, match="not a valid identifier"):
        check_table_name("a.b.c`; --")
