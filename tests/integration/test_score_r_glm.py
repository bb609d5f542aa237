"""The batch job scores a registered R glm (issue 17): the same job, no branch per family.

An R model answers ``NA`` for a row with a missing value, even one the spec lets the SparkML
pipeline impute; such rows, and rows with a level the model never saw, are quarantined with
the quarantine rules' words, and every other row gets R's probability exactly (RGlm.predict,
which tests/integration/test_r_glm_export.py holds to R's ``predict(type = "response")``).
Rows read = rows scored + rows quarantined, as for the SparkML model. The Spark engine, which
runs SparkML pipelines, refuses the version by its family and names the engine to use.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tests.unit.test_r_glm import description

from conftest import copy_home
from yws.config import Settings
from yws.contract.spec import Spec
from yws.datasets.ingest import write_snapshot
from yws.datasets.synthetic import generate
from yws.model import r_glm_flavor, registry
from yws.model.evaluator import UnsupportedModelError
from yws.model.families import R_GLM, family_of, family_of_version
from yws.model.r_glm import RGlm
from yws.scoring.arrow import reasons
from yws.scoring.job import score
from yws.storage.local import LocalStorage

DAY = dt.date(2026, 9, 30)


@pytest.fixture(scope="module")
def r_champion_once(tmp_path_factory: pytest.TempPathFactory, spec: Spec) -> Settings:
    """The hand-built glm of tests/unit/test_r_glm.py registered as @champion of its own
    model name, and a snapshot with missing values, unseen regions and the generator's
    anomalies: registered once, each test scores in its own copy (``r_champion``)."""
    r_settings = Settings(home=tmp_path_factory.mktemp("r-champion") / "yws",
                          model="yws_glm_r")
    registry.configure(r_settings)
    done = r_glm_flavor.register(description(), spec, r_settings.model_name,
                                 example=generate(5, DAY, missing=False),
                                 features_table=r_settings.features)
    mlflow.MlflowClient().set_registered_model_alias(r_settings.model_name, registry.CHAMPION,
                                                     str(done.version))
    write_snapshot(LocalStorage(r_settings), generate(3000, DAY, labeled=False, anomalies=8),
                   r_settings.features, "as_of_date", DAY)
    return r_settings


@pytest.fixture
def r_champion(r_champion_once: Settings, tmp_path) -> Settings:
    return copy_home(r_champion_once, tmp_path / "yws")


@pytest.mark.parametrize("engine", ["arrow", "auto"])
def test_the_batch_job_scores_an_r_model_as_r_and_quarantines_what_r_would_not_score(
        r_champion: Settings, spec: Spec, engine: str) -> None:
    storage = LocalStorage(r_champion)
    result = score(r_champion, spec, as_of=DAY, engine=engine)
    assert result.engine == "arrow"
    assert result.rows_read == 3000 == result.rows_scored + result.rows_quarantined

    snap = storage.read_arrow(r_champion.features, where=("as_of_date", DAY))
    want = RGlm.from_dict(description()).predict(snap)
    # The model alone refuses rows the spec lets through: a missing tenure_months (imputed
    # for the SparkML model), a region it never saw (south, central).
    assert want.refused.sum() > 50
    preds = storage.read_arrow(r_champion.predictions, where=("batch_id", result.batch_id))
    quarantine = storage.read_arrow(r_champion.quarantine, where=("batch_id", result.batch_id))
    assert preds.num_rows == result.rows_scored and quarantine.num_rows == result.rows_quarantined

    ids = snap["customer_id"].to_pylist()
    at = {k: i for i, k in enumerate(ids)}
    rows = np.array([at[k] for k in preds["entity_id"].to_pylist()], dtype=np.int64)
    assert result.rows_scored > 1500, result.quarantine_reasons
    assert not want.refused[rows].any()
    got = preds["probability"].to_numpy()
    assert np.array_equal(got, want.probability[rows])  # R's probabilities, to the last bit
    assert pc.all(pc.equal(preds["model_version"], pa.scalar(1, pa.int32()))).as_py()

    held = dict(zip(quarantine["entity_id"].to_pylist(), quarantine["reason"].to_pylist(),
                    strict=False))
    # Every row R refuses is held back; where the spec's rules find nothing wrong with it
    # (no other reason, a key that occurs once), the reason is R's own, word for word.
    spec_only, _ = reasons(snap, spec, {}, pa.array([], pa.string()))
    once = {k for k, n in Counter(ids).items() if n == 1}
    own = 0
    for i in np.nonzero(want.refused)[0]:
        assert ids[i] in held, (ids[i], want.reasons[i])
        if not spec_only[i] and ids[i] in once:
            assert held[ids[i]] == want.reasons[i]
            own += 1
    assert own > 50
    assert {"tenure_months is null or NaN", "has_autopay is null"} <= set(held.values())
    assert any(r.startswith("region has unseen category") for r in held.values())


def test_the_spark_engine_refuses_an_r_model_by_its_family(
        r_champion: Settings, spec: Spec, spark) -> None:
    folder = registry.find(r_champion, registry.CHAMPION).path
    assert folder is not None and family_of(folder) == R_GLM
    # Where the files are not on this machine (Databricks), the version's tag says it.
    assert family_of_version(r_champion.model_name, 1, None) == R_GLM
    with pytest.raises(UnsupportedModelError, match=r"r-glm model.*--engine arrow"):
        score(r_champion, spec, spark, as_of=DAY, engine="spark")


def test_the_score_task_takes_the_model_by_name_in_the_jobs_catalog_and_schema(
        r_champion: Settings, capsys) -> None:
    """yws_score's model_name job parameter (jobs/resources/yws_jobs.yml) reaches the task:
    an R user scores with their own model; a model outside the job's catalog and schema is
    refused before anything is read."""
    import json

    from yws.deploy.tasks import score_main

    base = ["--target", "local", "--home", str(r_champion.home), "--as-of-date", str(DAY),
            "--batch-id", "r-glm-batch"]
    score_main([*base, "--model-name", r_champion.model_name])
    out = json.loads(capsys.readouterr().out)
    assert (out["model_name"], out["model_version"], out["engine"]) == \
        (r_champion.model_name, 1, "arrow")
    assert out["rows_read"] == 3000 == out["rows_scored"] + out["rows_quarantined"]
    with pytest.raises(SystemExit) as e:
        score_main([*base, "--model-name", "elsewhere.ml.yws_glm_r"])
    assert e.value.code == 1
    assert "is not in yws_dev.ml" in capsys.readouterr().err


def test_serving_and_ai_query_answer_an_r_version_as_r(r_champion: Settings, spec: Spec) -> None:
    """The on-demand paths (Model Serving's invocations on ``yws serve`` and the local
    warehouse's ``ai_query``, both through yws.scoring.records) answer an R version with R's
    probabilities, and refuse what R would not score with an error, never a probability."""
    from yws.model import families
    from yws.scoring.ai_query import Endpoints, Route
    from yws.scoring.records import score_records

    snap = LocalStorage(r_champion).read_arrow(r_champion.features, where=("as_of_date", DAY))
    want = RGlm.from_dict(description()).predict(snap)
    folder = registry.find(r_champion, registry.CHAMPION).path
    assert folder is not None
    served = score_records(families.load(folder), spec, snap.to_pylist())
    endpoints = Endpoints(r_champion, spec, {"glm": Route(r_champion.model_name, "champion")})
    answered = endpoints("glm", snap.select(spec.feature_names)).to_pylist()
    for out in (served, answered):
        assert len(out) == snap.num_rows
        for i, row in enumerate(out):
            if want.refused[i]:
                assert row["probability"] is None and row["band"] is None and row["error"], i
            elif row["error"] is None:  # the spec's contract refuses some rows R would score
                assert row["probability"] == want.probability[i], i  # to the last bit
                assert row["prediction"] == int(want.probability[i] > 0.5)
        assert sum(r["error"] is None for r in out) > 1500
        assert {"tenure_months is null or NaN", "has_autopay is null"} <= \
            {r["error"] for r in out}
