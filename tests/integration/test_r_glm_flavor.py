"""An R glm, fitted and exported in R, registered as an MLflow pyfunc model version with
@challenger (yws.model.r_glm_flavor, issue 17), scores from the registry as R's predict(type =
"response") does: in this process through ``mlflow.pyfunc.load_model("models:/<name>@challenger")``
and in a fresh virtualenv built from the model's ``requirements.txt`` alone (no yws, no
pyspark), equal to RGlm.predict bit for bit and to R to 1e-12.

The contract is MLflow's (mlflow.org/docs, ``mlflow.pyfunc``, "Filesystem format": a model
folder is self-contained — its code, data and environment specification — and loads with
``mlflow.pyfunc.load_model``; the model registry's ``models:/<name>@<alias>`` URIs name the
version an alias points at) and the SparkML model's answers (tests/integration/test_flavor.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import copy_home
from test_flavor import FRESH_SCRIPT, _clean_env, _run, fresh_venv
from test_r_glm_export import R_SCRIPT, TRAIN_DAY, _csv, _score_rows, r_lib  # noqa: F401
from yws.config import Settings
from yws.contract.spec import Spec
from yws.datasets.synthetic import generate
from yws.model import r_glm_flavor, registry
from yws.model.r_glm import RGlm

NAME = "yws_dev.ml.yws_glm_r"


@pytest.fixture(scope="module")
def fitted(r_lib: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """R fits a glm on a training snapshot, exports it, and predicts a scoring snapshot
    (tests/integration/test_r_glm_export.py's script): the description, the rows, R's
    answers ("NA" where R answers NA, "unseen" where predict() would stop)."""
    tmp = tmp_path_factory.mktemp("rfit")
    train, score = generate(3000, TRAIN_DAY), _score_rows()
    _csv(train, tmp / "train.csv")
    _csv(score, tmp / "score.csv")
    (tmp / "fit.R").write_text(R_SCRIPT)
    done = subprocess.run(
        ["Rscript", str(tmp / "fit.R"), str(r_lib), str(tmp / "train.csv"),
         str(tmp / "score.csv"), str(tmp / "model.json"), str(tmp / "p.txt"),
         TRAIN_DAY.isoformat()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    r_out = (tmp / "p.txt").read_text().split()
    return {"description": (tmp / "model.json").read_text(), "train": train, "score": score,
            "r": np.array([float(v) if v not in ("NA", "unseen") else np.nan for v in r_out])}


@pytest.fixture(scope="module")
def registered_once(spec: Spec, fitted: dict, tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[Settings, r_glm_flavor.Registered]:
    """R's glm registered once; each test gets its own copy of that home (``registered``)."""
    home = Settings(home=tmp_path_factory.mktemp("r-registered") / "yws")
    registry.configure(home)
    return home, r_glm_flavor.register(fitted["description"], spec, NAME,
                                       example=fitted["train"].slice(0, 5),
                                       features_table=home.features)


@pytest.fixture
def registered(registered_once: tuple[Settings, r_glm_flavor.Registered],
               settings: Settings) -> r_glm_flavor.Registered:
    """The registration, in the test's home (``settings``), MLflow pointed at it."""
    once, done = registered_once
    copy_home(once, settings.home)
    registry.configure(settings)
    return done


def _compare(out: list[dict], fitted: dict) -> tuple[int, float]:
    """``out`` (the pyfunc's rows) against RGlm.predict (exactly) and R (to 1e-12); returns
    how many rows were scored and the largest difference from R."""
    want = RGlm.from_json(fitted["description"]).predict(fitted["score"])
    assert [r["error"] for r in out] == want.reasons
    scored = ~want.refused
    got = np.array([np.nan if r["probability"] is None else r["probability"] for r in out])
    assert np.array_equal(got, want.probability, equal_nan=True)  # 0 difference
    assert np.isnan(fitted["r"][scored]).sum() == 0  # R scored every row the model scores
    worst = float(np.abs(got[scored] - fitted["r"][scored]).max())
    assert worst <= 1e-12, worst
    assert all(r["prediction"] is None and r["band"] is None
               for r, s in zip(out, scored, strict=True) if not s)
    return int(scored.sum()), worst


def test_a_registered_r_model_scores_from_the_registry_as_r_predicts(
        registered, settings: Settings, spec: Spec, fitted: dict) -> None:
    import mlflow

    assert (registered.name, registered.version, registered.aliases) == (NAME, 1, ["challenger"])
    client = mlflow.MlflowClient()
    version = client.get_model_version(NAME, "1")
    assert version.tags["flavor"] == "r-glm"
    assert version.tags["formula"].startswith("defaulted_90d ~ tenure_months + monthly_spend")
    assert version.tags["r_version"] == RGlm.from_json(fitted["description"]).training.r_version
    assert version.tags["as_of"] == TRAIN_DAY.isoformat()
    assert version.tags["features_version"] == "0"
    assert version.tags["features_table"] == settings.features
    run = client.get_run(registered.run_id)
    assert run.data.tags["flavor"] == "r-glm"
    assert run.data.params["features_table"] == settings.features

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
    out = model.predict(fitted["score"].to_pandas()).to_dict("records")
    scored, worst = _compare(out, fitted)
    assert scored > 1500
    bands = spec.bands
    assert all(r["band"] == bands.band(r["probability"]) and
               r["prediction"] == int(r["probability"] > 0.5) for r in out if r["error"] is None)
    print(f"{scored} rows scored from the registry; largest difference from R {worst:.1e}")

    # a second registration is a new version; @challenger moves to it, @champion stays unset
    again = r_glm_flavor.register(fitted["description"], spec, NAME)
    assert (again.version, again.aliases) == (2, ["challenger"])
    assert client.get_model_version(NAME, "1").aliases == []
    assert registry.version_for_alias(client, NAME, registry.CHAMPION) is None


@pytest.mark.slow
def test_the_registered_r_model_loads_in_a_fresh_virtualenv_and_scores_as_r(
        registered, fitted: dict, tmp_path: Path) -> None:
    import mlflow

    work = tmp_path / "fresh"  # not tmp_path: its yws/ (the YWS home) would be importable
    work.mkdir()
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@challenger",
                                                      dst_path=str(work / "model")))
    pq.write_table(fitted["score"], work / "rows.parquet")
    started = time.monotonic()
    python = fresh_venv(folder / "requirements.txt")
    built = time.monotonic() - started
    done = _run([python, "-c", FRESH_SCRIPT, folder, work / "rows.parquet", work],
                timeout=600, env=_clean_env(), cwd=work)
    assert done.returncode == 0, done.stderr[-4000:]
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    example = pq.read_table(work / "example.parquet").to_pylist()
    want = RGlm.from_json(fitted["description"]).predict(fitted["train"].slice(0, 5))
    assert [r["error"] for r in example] == want.reasons
    assert [r["probability"] for r in example if r["error"] is None] == \
        want.probability[~want.refused].tolist()
    out = pq.read_table(work / "snapshot.parquet").to_pylist()
    scored, worst = _compare(out, fitted)
    print(f"fresh virtualenv ready in {built:.0f} s ({versions}); {scored} rows scored; "
          f"largest difference from R {worst:.1e}")
    requirements = (folder / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} == {"mlflow-skinny", "numpy", "pandas",
                                                        "pyarrow"}


def test_scores_of_an_arrow_table_and_of_pandas_agree(registered, fitted: dict) -> None:
    """Model Serving hands the pyfunc pandas; a job may hand it Arrow: the same answers."""
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
    table: pa.Table = fitted["score"]
    from_arrow = model._model_impl.predict(table).to_dict("records")
    from_pandas = model.predict(table.to_pandas()).to_dict("records")
    assert from_arrow == from_pandas
