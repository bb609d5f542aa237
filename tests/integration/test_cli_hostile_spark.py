"""Hostile input that reaches Spark: refusals from a real fit and a real run, each one line with
no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from tests.support import DAY, FEATURES, one_error, seed_features, spec_with

from yws.config import Settings
from yws.datasets.synthetic import generate
from yws.storage.local import LocalStorage


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "yws"
    monkeypatch.setenv("YWS_HOME", str(path))
    return path


@pytest.fixture
def storage(home: Path) -> LocalStorage:
    return LocalStorage(Settings(home=home))


# -- end to end, as a user runs it ----------------------------------------------------------------
def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YWS_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "yws.cli.main", *args], capture_output=True,
                          text=True, env=env, timeout=120)


# -- training: an imputed column with no value -------------------------------------------------
def test_all_null_imputed_column_is_named_before_the_fit(spark, tmp_path):
    from yws.contract.quality import InputDataError
    from yws.contract.spec import load_spec
    from yws.training.rows import load_training_rows

    settings = Settings(home=tmp_path / "yws")
    storage = LocalStorage(settings)
    table = generate(400, DAY)
    empty = pa.nulls(table.num_rows, pa.float64())
    table = table.set_column(table.schema.get_field_index("tenure_months"), "tenure_months",
                             empty)
    storage.write(table, settings.features, mode="overwrite")
    spec = load_spec()
    with pytest.raises(InputDataError, match=(
            r"feature\(s\) tenure_months hold no value in the usable rows of "
            r"yws_dev\.ml\.yws_features \(as-of 2026-09-30\)")):
        load_training_rows(spark, storage, settings, spec, DAY)
    with pytest.raises(InputDataError, match=r"\(all snapshots\)"):
        load_training_rows(spark, storage, settings, spec, None)


@pytest.mark.integration  # a subprocess or Spark through the CLI
def test_end_to_end_refusals_have_no_traceback(home, storage, tmp_path):
    before = seed_features(storage)
    semi = tmp_path / "semi.csv"
    semi.write_bytes(b"customer_id;as_of_date\nc1;2026-10-31\n")
    done = _run(home, "tables", "import", str(semi), "yws_features")
    assert done.returncode == 1 and "separated by semicolons" in one_error(done.stderr)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_with(model__maxIter=10**12))
    done = _run(home, "train", "--spec", str(spec))
    assert done.returncode == 1 and "maxIter must be between" in one_error(done.stderr)
    done = _run(home, "train", "--as-of", "2026-02-30")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert storage.version(FEATURES) == before
