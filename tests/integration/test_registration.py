"""An R user's glm in the registry, through the same gate as the SparkML model (issue 17):
registered as @challenger with the gate evaluated but not applied, compared with any other
version on the training job's held-out rows whatever its family, promoted only when the gate
passes (or is forced). Models are compared on the rows every one of them scores: an R glm
refuses a missing value or a level it never saw, which the SparkML pipeline imputes or keeps.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from tests.unit.test_r_glm import description

from yws.config import Settings
from yws.contract.quality import InputDataError
from yws.contract.spec import Spec
from yws.datasets.ingest import write_snapshot
from yws.datasets.synthetic import generate, true_coefficients
from yws.errors import InvalidValueError
from yws.model.registry import ModelNotFoundError
from yws.storage.local import LocalStorage
from yws.training import registration
from yws.training.job import train

DAY = dt.date(2026, 8, 31)
NAME = "yws_dev.ml.yws_glm_r"


def glm(sign: float) -> dict:
    """The hand-built description of tests/unit/test_r_glm.py with the generating model's
    effects (sign 1: a good model) or their opposites (sign -1: worse than chance)."""
    truth = true_coefficients()
    d = copy.deepcopy(description())
    values = {"(Intercept)": -1.0, "tenure_months": truth["tenure_months"],
              "has_autopayTRUE": truth["has_autopay"],
              "regionnorth": truth["region=north"] - truth["region=east"],
              "regionwest": truth["region=west"] - truth["region=east"]}
    d["coefficients"] = [{"column": c["column"], "value": sign * values[c["column"]]
                          if c["column"] != "(Intercept)" else -1.0}
                         for c in d["coefficients"]]
    return d


def _write(tmp_path: Path, d: dict, name: str) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


@pytest.fixture
def snapshot(settings: Settings) -> Settings:
    write_snapshot(LocalStorage(settings), generate(4000, DAY), settings.features,
                   "as_of_date", DAY)
    return settings


def test_register_compare_and_promote_through_the_gate(snapshot: Settings, spec: Spec, spark,
                                                      tmp_path: Path) -> None:
    settings = snapshot
    good = registration.register_r_model(settings, spec, spark,
                                         _write(tmp_path, glm(1), "good.json"), NAME, DAY)
    assert good["version"] == "1" and good["family"] == "r-glm"
    assert good["aliases"] == ["challenger"]  # registered, not promoted
    assert good["gate"]["promote"] is True and good["gate"]["reason"].startswith("no champion")
    assert good["gate"]["metrics"]["auc_roc"] > 0.55
    # South and central are levels this glm never saw: those rows are left out, not guessed.
    assert good["gate"]["rows_left_out"] > 0

    up = registration.promote(settings, spec, spark, NAME, 1, DAY)
    assert up["promoted"] is True and "champion" in up["aliases"]

    bad = registration.register_r_model(settings, spec, spark,
                                        _write(tmp_path, glm(-1), "bad.json"), NAME, None)
    assert bad["version"] == "2" and bad["gate"]["promote"] is False
    assert bad["gate"]["champion_version"] == "1"
    assert "worse than the champion" in bad["gate"]["reason"]
    assert bad["gate"]["metrics"]["auc_roc"] < 0.5 < bad["gate"]["champion_metrics"]["auc_roc"]

    refused = registration.promote(settings, spec, spark, NAME, 2, DAY)
    assert refused["promoted"] is False and "champion" not in refused["aliases"]
    dry = registration.promote(settings, spec, spark, NAME, 2, DAY, force=True, dry_run=True)
    assert dry["promoted"] is False and "champion" not in dry["aliases"]
    forced = registration.promote(settings, spec, spark, NAME, 2, DAY, force=True)
    assert forced["promoted"] is True and "champion" in forced["aliases"]

    both = registration.compare(settings, spec, spark, [f"{NAME}/1", f"{NAME}@champion"], DAY)
    first, second = both["models"]
    assert (first["version"], second["version"]) == ("1", "2")
    # Opposite effects rank the rows in reverse (up to ties where probabilities saturate).
    assert first["metrics"]["auc_roc"] == pytest.approx(1 - second["metrics"]["auc_roc"],
                                                        abs=0.01)
    assert both["rows"] == good["gate"]["rows"] == first["metrics"]["test_rows"] == \
        second["metrics"]["test_rows"]
    assert both["rows_left_out"] == good["gate"]["rows_left_out"]


@pytest.mark.slow
def test_an_r_model_is_compared_with_the_sparkml_champion_on_the_same_rows(
        snapshot: Settings, spec: Spec, spark, tmp_path: Path) -> None:
    settings = snapshot
    trained = train(settings, spec, spark, as_of=DAY)
    sparkml = f"{settings.model_name}@champion"
    r_model = registration.register_r_model(settings, spec, spark,
                                            _write(tmp_path, glm(1), "good.json"),
                                            settings.model_name, DAY)
    # Registered under the SparkML model's own name: gated against the SparkML champion.
    assert r_model["version"] == "2" and r_model["gate"]["champion_version"] == "1"
    assert r_model["gate"]["champion_metrics"] is not None
    found = registration.compare(settings, spec, spark, [sparkml, f"{settings.model_name}/2"],
                                 DAY)
    families = [m["family"] for m in found["models"]]
    assert families == ["spark-lr", "r-glm"]
    # `yws model versions` shows each version's family
    from yws.model.registry import versions
    assert [(v.version, v.family) for v in versions(settings)] == [(2, "r-glm"), (1, "spark-lr")]
    # The SparkML champion scores every held-out row; only the glm's refusals are left out.
    assert found["rows"] + found["rows_left_out"] == trained.rows_test
    assert found["models"][0]["metrics"]["test_rows"] == found["rows"]


def test_bad_requests_are_refused_before_anything_is_registered(
        snapshot: Settings, spec: Spec, spark, tmp_path: Path) -> None:
    settings = snapshot
    with pytest.raises(InvalidValueError, match="not in yws_dev.ml"):
        registration.register_r_model(settings, spec, spark, tmp_path / "x.json",
                                      "other.ml.yws_glm_r", DAY)
    with pytest.raises(ModelNotFoundError, match="upload it first"):
        registration.register_r_model(settings, spec, spark, tmp_path / "missing.json",
                                      NAME, DAY)
    with pytest.raises(InvalidValueError, match="names no version"):
        registration.compare(settings, spec, spark, [NAME], DAY)
    with pytest.raises(ModelNotFoundError, match="has no @champion"):
        registration.compare(settings, spec, spark, [f"{NAME}@champion"], DAY)
    with pytest.raises(InputDataError, match="no rows"):
        registration.register_r_model(settings, spec, spark,
                                      _write(tmp_path, glm(1), "g.json"), NAME,
                                      dt.date(2020, 1, 31))
