"""The logged model, self-contained (issue 16): its pyfunc answers what on-demand scoring
answers (``yws.scoring.records``: probability, prediction, band, error per row), it loads and
scores in a fresh virtualenv built from its own ``requirements.txt`` alone — no yws, no
pyspark — matching the batch job to 1e-9, and versions logged the old ways keep loading."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import SCORE_DAY
from yws.datasets.ingest import write_snapshot
from yws.datasets.synthetic import generate
from yws.model import registry
from yws.model.evaluator import CONTRACT_FILE, ArrowModel
from yws.platform import storage_for
from yws.scoring.records import score_records, score_table

SNAPSHOT_DAY = dt.date(2026, 12, 31)
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yws"


@pytest.fixture(scope="module")
def folder(trained_home, tmp_path_factory) -> Path:
    """The champion's model folder, as Model Serving downloads it."""
    import mlflow

    registry.configure(trained_home)
    version = registry.resolve(trained_home, "champion").version
    out = tmp_path_factory.mktemp("champion")
    return Path(mlflow.artifacts.download_artifacts(
        f"models:/{trained_home.model_name}/{version}", dst_path=str(out)))


@pytest.fixture(scope="module")
def arrow_model(folder) -> ArrowModel:
    return ArrowModel.load(folder)


def rows_of_every_kind(n: int = 1500) -> list[dict]:
    """Rows the batch job scores, rows it quarantines (forbidden nulls, infinities, unseen
    categories), and values of the wrong type."""
    rows = generate(n, SCORE_DAY, seed=21, labeled=False, anomalies=60).to_pylist()
    bad = [("credit_limit", "lots"), ("has_autopay", "yes"), ("region", 3),
           ("tenure_months", True), ("monthly_spend", "Infinity"),
           ("product_tier", "no-such-tier"),
           ("balance_utilization", float("nan")), ("is_business", None)]
    for i, (name, value) in enumerate(bad):
        rows[7 * i + 1][name] = value
    return rows


def test_the_pyfunc_answers_what_on_demand_scoring_answers(folder, arrow_model, spec):
    import mlflow
    import pandas as pd
    from mlflow.pyfunc.scoring_server import predictions_to_json

    model = mlflow.pyfunc.load_model(str(folder))
    # typed rows, through MLflow's own signature check: score_table's answer, bit for bit
    typed = generate(1500, SCORE_DAY, seed=5, labeled=False, anomalies=60)
    got = model.predict(typed.to_pandas()).to_dict("records")
    want = score_table(arrow_model, spec, typed.select(spec.feature_names)).to_pylist()
    assert got == want
    assert {r["band"] for r in got} == {"GREEN", "YELLOW", "RED", None}
    assert sum(r["error"] is not None for r in got) >= 30
    # JSON-like rows with values of the wrong type: score_records' answer, row by row, and as
    # Model Serving writes it (null, never NaN, for what a refused row lacks)
    rows = rows_of_every_kind()
    out = model._model_impl.predict(pd.DataFrame(rows))  # the pyfunc without MLflow's check
    want_rows = score_records(arrow_model, spec, rows)
    assert out.to_dict("records") == want_rows
    body = io.StringIO()
    predictions_to_json(out, body)

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in the served JSON")

    assert json.loads(body.getvalue(), parse_constant=no_constants) == \
        {"predictions": want_rows}
    refused = [r["error"] for r in want_rows if r["error"]]
    assert any("is not a number" in e for e in refused)
    assert any("unseen category 'no-such-tier'" in e for e in refused)


def test_the_model_folder_holds_its_code_contract_signature_and_example(folder, spec):
    from mlflow.models import Model

    mlmodel = Model.load(str(folder / "MLmodel"))
    pyfunc = mlmodel.flavors["python_function"]
    assert pyfunc["loader_module"] == "yws_arrow_engine" and pyfunc["code"] == "code"
    assert (folder / "code" / "yws_arrow_engine.py").is_file()
    assert (folder / CONTRACT_FILE).is_file()
    assert [c.name for c in mlmodel.signature.outputs.inputs] == [
        "probability", "prediction", "band", "error"]
    example = mlmodel.load_input_example(str(folder))
    assert list(example.columns) == spec.feature_names and len(example) == 5
    requirements = (folder / "requirements.txt").read_text().split()
    names = {r.split("==")[0] for r in requirements}
    assert {"mlflow-skinny", "numpy", "pandas", "pyarrow", "sqlglot"} == names
    assert "pyspark" not in names


# -- a fresh virtualenv from the model's requirements.txt alone --------------------------------
def _run(argv: list, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kw)


def _clean_env() -> dict[str, str]:
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SPARK_", "PYSPARK_", "MLFLOW_", "YWS_",
            "DATABRICKS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def fresh_venv(requirements: Path) -> Path:
    """A virtualenv with ``requirements`` installed and nothing else, built on first use and
    kept under ~/.cache/yws keyed on the interpreter and the requirements' text (as the
    environment-4 replica is); returns its python."""
    version = sys.version
    key = hashlib.sha256(json.dumps([version, requirements.read_text()]).encode()) \
        .hexdigest()[:12]
    home = CACHE / f"model-venv-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".model-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".complete").exists():
            building = CACHE / f"building-{key}"
            shutil.rmtree(building, ignore_errors=True)
            started = time.monotonic()
            done = _run([sys.executable, "-m", "venv", building], env=_clean_env())
            assert done.returncode == 0, done.stderr
            done = _run([building / "bin" / "python", "-m", "pip", "install", "-q",
                         "--disable-pip-version-check", "-r", requirements], env=_clean_env())
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
            shutil.copy(requirements, building / "requirements.txt")
            (building / ".complete").write_text(
                f"built in {time.monotonic() - started:.0f} s\n")
            shutil.rmtree(home, ignore_errors=True)
            building.rename(home)
    return home / "bin" / "python"


FRESH_SCRIPT = """
import importlib.util, json, sys
found = [m for m in ("yws", "pyspark") if importlib.util.find_spec(m) is not None]
assert not found, f"importable in the fresh virtualenv: {found}"
import mlflow, pandas as pd
from mlflow.models import Model
folder, rows, out = sys.argv[1:4]
model = mlflow.pyfunc.load_model(folder)
example = Model.load(folder).load_input_example(folder)
model.predict(example).to_parquet(out + "/example.parquet")
model.predict(pd.read_parquet(rows)).to_parquet(out + "/snapshot.parquet")
print(json.dumps({"mlflow": mlflow.__version__, "python": sys.version.split()[0]}))
"""


@pytest.mark.slow
def test_the_model_loads_in_a_fresh_virtualenv_and_matches_the_batch_job(
        trained_home, folder, arrow_model, spec, tmp_path):
    from yws.scoring.job import score

    # the batch job (on Spark, as on Databricks) scores a 10k-row snapshot
    storage = storage_for(trained_home)
    write_snapshot(storage, generate(10_000, SNAPSHOT_DAY, seed=9, labeled=False,
                                     anomalies=40), trained_home.features, "as_of_date",
                   SNAPSHOT_DAY)
    result = score(trained_home, spec, engine="spark", as_of=SNAPSHOT_DAY,
                   batch_id="fresh-venv")
    features = storage.read_arrow(trained_home.features, where=(spec.as_of_column,
                                                                SNAPSHOT_DAY))
    assert features.num_rows == result.rows_read == 10_000
    pq.write_table(features, tmp_path / "rows.parquet")
    batch = {r["entity_id"]: r for r in storage.read_arrow(
        trained_home.predictions, where=("run_id", result.run_id)).to_pylist()}
    held = {r["entity_id"]: r["reason"] for r in storage.read_arrow(
        trained_home.quarantine, where=("run_id", result.run_id)).to_pylist()}

    # the model folder alone, in a virtualenv of its requirements alone
    started = time.monotonic()
    python = fresh_venv(folder / "requirements.txt")
    built = time.monotonic() - started
    done = _run([python, "-c", FRESH_SCRIPT, folder, tmp_path / "rows.parquet", tmp_path],
                timeout=600, env=_clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"fresh virtualenv ready in {built:.0f} s; loaded and scored in "
          f"{time.monotonic() - started - built:.0f} s ({versions})")

    example = pq.read_table(tmp_path / "example.parquet").to_pylist()
    from mlflow.models import Model
    rows = Model.load(str(folder / "MLmodel")).load_input_example(str(folder))
    want = score_table(arrow_model, spec, pa.Table.from_pandas(rows, preserve_index=False)
                       ).to_pylist()
    assert [r["error"] for r in example] == [None] * 5  # the example's rows are all scored
    assert np.allclose([r["probability"] for r in example],
                       [r["probability"] for r in want], rtol=0, atol=1e-12)

    got = pq.read_table(tmp_path / "snapshot.parquet").to_pylist()
    keys = [str(k) if k is not None else None for k in features[spec.entity_key].to_pylist()]
    repeated = {k for k in keys if keys.count(k) > 1}
    compared = worst = 0.0
    for key, out in zip(keys, got, strict=True):
        if key is None or key in repeated:
            continue  # a missing or repeated key is the batch's concern, not a row's
        compared += 1
        if key in held:
            assert out["probability"] is None and out["band"] is None
            assert out["error"] == held[key]
        else:
            assert out["error"] is None, out
            b = batch[key]
            worst = max(worst, abs(out["probability"] - b["probability"]))
            assert (out["prediction"], out["band"]) == (b["prediction"], b["band"])
    print(f"{compared:.0f} rows compared, {len(held)} refused as quarantined; largest "
          f"probability difference from the batch job {worst:.1e}")
    assert math.isfinite(worst) and worst <= 1e-9, worst
    assert compared >= 9_900 and len(held) >= 20


# -- versions logged the old ways -----------------------------------------------------------
def _older(folder: Path, to: Path, *, loader: str, code: bool) -> Path:
    """A copy of ``folder`` as an older version was logged: no row contract; with the
    ``yws.engine`` loader, no code either (yws installed supplied it)."""
    shutil.copytree(folder, to)
    (to / CONTRACT_FILE).unlink()
    mlmodel = yaml.safe_load((to / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    pyfunc["loader_module"] = loader
    if not code:
        pyfunc.pop("code", None)
        shutil.rmtree(to / "code")
    (to / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return to


def test_a_version_with_the_old_yws_engine_loader_keeps_loading(folder, arrow_model,
                                                                   tmp_path):
    import mlflow

    old = _older(folder, tmp_path / "old", loader="yws.engine", code=False)
    rows = generate(300, SCORE_DAY, labeled=False)
    out = mlflow.pyfunc.load_model(str(old)).predict(rows.to_pandas())
    p, y = arrow_model.predict(rows)
    assert list(out.columns) == ["prediction", "probability"]
    assert np.array_equal(out["probability"].to_numpy(), p)
    assert np.array_equal(out["prediction"].to_numpy(), y.astype(np.float64))


def test_a_version_logged_with_code_but_no_contract_keeps_loading_without_yws(
        folder, arrow_model, tmp_path):
    old = _older(folder, tmp_path / "old", loader="yws_arrow_engine", code=True)
    rows = generate(300, SCORE_DAY, labeled=False)
    rows.to_pandas().to_parquet(tmp_path / "rows.parquet")
    script = f"""
import sys, json
sys.modules["pyspark"] = None
sys.modules["yws"] = None
import mlflow, pandas as pd
rows = pd.read_parquet({str(tmp_path / "rows.parquet")!r})
out = mlflow.pyfunc.load_model({str(old)!r}).predict(rows)
print(json.dumps([list(out.columns), out["probability"].tolist()]))
"""
    done = _run([sys.executable, "-c", script], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    columns, got = json.loads(done.stdout.strip().splitlines()[-1])
    assert columns == ["prediction", "probability"]
    assert np.array_equal(np.array(got), arrow_model.predict(rows)[0])


def test_stages_saved_at_once_make_the_folder_sparks_writer_makes(folder, spark, tmp_path):
    """Training saves the pipeline's stages in parallel threads (``flavor.save_stages_at_once``)
    instead of Spark's one-after-the-other writer: the folder must be the one Spark writes — the
    same files, the same metadata but the write time, the same fitted data — and load as a
    Java pipeline (``PipelineModel.load`` and MLflow's spark flavour) scoring the same."""
    import mlflow.spark
    from pyspark.ml import PipelineModel

    from yws.model import flavor

    model = PipelineModel.load(str(folder / "sparkml"))
    model.write().save(str(tmp_path / "spark"))
    flavor.save_stages_at_once(model, str(tmp_path / "at_once"))

    def files(root: Path) -> dict[str, Path]:
        # Part files carry a random id in their names; crc files mirror their neighbours.
        out = {}
        for p in root.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                rel = p.relative_to(root)
                out[str(rel.parent / ("part" if p.name.startswith("part-") else p.name))] = p
        return out

    ours, spark_s = files(tmp_path / "at_once"), files(tmp_path / "spark")
    assert sorted(ours) == sorted(spark_s)
    for rel, path in spark_s.items():
        if rel.startswith("stages/") and rel.endswith("/data/part"):
            assert pq.read_table(ours[rel]).equals(pq.read_table(path)), rel
        elif rel.endswith("metadata/part"):
            a, b = json.loads(ours[rel].read_text()), json.loads(path.read_text())
            a.pop("timestamp"), b.pop("timestamp")
            assert a == b, rel
    assert json.loads(next((tmp_path / "at_once" / "metadata").glob("part-*")).read_text())[
        "class"] == "org.apache.spark.ml.PipelineModel"

    rows = spark.createDataFrame(generate(300, SCORE_DAY, seed=5, labeled=False))
    loaded = PipelineModel.load(str(tmp_path / "at_once"))
    assert [type(s).__name__ for s in loaded.stages] == [type(s).__name__ for s in model.stages]
    want = [r.probability for r in model.transform(rows).select("probability").collect()]
    got = [r.probability for r in loaded.transform(rows).select("probability").collect()]
    assert got == want

    # Through MLflow, as the training job saves (the shadowed save is gone afterwards).
    from yws.contract.spec import load_spec

    saved = flavor.save(model, load_spec(), tmp_path, None, stages_at_once=True)
    assert "save" not in vars(model)
    reloaded = mlflow.spark.load_model(str(saved))
    assert [r.probability for r in reloaded.transform(rows).select("probability").collect()] \
        == want


def test_the_save_tells_when_spark_has_written_the_pipeline(folder, tmp_path, monkeypatch):
    """The training job reads the held-out rows once Spark has written the pipeline, while
    MLflow finishes the folder: the event is set before MLflow's part ends, and also when
    Spark's write fails, so the job raises the save's error instead of waiting for ever."""
    import threading

    from pyspark.ml import PipelineModel

    from yws.contract.spec import load_spec
    from yws.model import flavor

    model = PipelineModel.load(str(folder / "sparkml"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    written = threading.Event()
    seen: list[bool] = []
    real_arrow_pyfunc = flavor.arrow_pyfunc

    def arrow_pyfunc_after_mlflow(saved: Path) -> None:  # runs once MLflow's save_model ends
        seen.append(written.is_set())
        real_arrow_pyfunc(saved)

    monkeypatch.setattr(flavor, "arrow_pyfunc", arrow_pyfunc_after_mlflow)
    flavor.save(model, load_spec(), tmp_path / "a", None, stages_at_once=True,
                stages_written=written)
    assert seen == [True]
    assert "save" not in vars(model)

    def broken(model: PipelineModel, path: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(flavor, "save_stages_at_once", broken)
    failed = threading.Event()
    with pytest.raises(OSError, match="disk full"):
        flavor.save(model, load_spec(), tmp_path / "b", None, stages_at_once=True,
                    stages_written=failed)
    assert failed.is_set()
    assert "save" not in vars(model)
