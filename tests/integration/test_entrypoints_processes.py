"""The wheel's console scripts as the job tasks run them: real processes, exit codes, and a train
then score with job-style parameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCORE_DAY, TRAIN_DAY, load_demo_data
from yws.deploy.tasks import score_main, sql_apply_main, train_main


def test_train_then_score_with_job_style_parameters(settings, storage, capsys, spark):
    load_demo_data(storage, settings, rows=1500, anomalies=4)
    common = ["--target", "local", "--home", str(settings.home), "--catalog", "yws_dev",
              "--schema", "ml", "--dfs-tmpdir", ""]  # an empty job parameter means unset
    assert train_main([*common, "--as-of-date", TRAIN_DAY.isoformat()]) is None
    trained = json.loads(capsys.readouterr().out)
    assert trained["promoted"] and trained["version"] == "1"

    # --check-only answers what would be scored and writes nothing
    assert score_main([*common, "--check-only", "true", "--as-of-date", "",
                       "--batch-id", "", "--model-alias", ""]) is None
    checked = json.loads(capsys.readouterr().out)
    assert checked["model_version"] == 1 and checked["as_of_date"] == SCORE_DAY.isoformat()
    assert not storage.exists(settings.predictions)

    assert score_main([*common, "--as-of-date", "", "--batch-id", "", "--model-alias", ""]) \
        is None
    scored = json.loads(capsys.readouterr().out)
    assert scored["batch_id"] == SCORE_DAY.isoformat() and scored["model_alias"] == "champion"
    assert scored["rows_read"] == scored["rows_scored"] + scored["rows_quarantined"] == 1500
    assert sql_apply_main(["--target", "local", "--home", str(settings.home),
                           "--analysts-group", "risk_analysts"]) is None
    applied = json.loads(capsys.readouterr().out)
    assert applied["applied"] >= 27


@pytest.mark.integration  # a subprocess or Spark through the CLI
def test_console_script_exit_codes(settings):
    """The installed console scripts (what `yws serve` runs) exit non-zero with one line."""
    exe = Path(sys.executable).with_name("yws-train")
    done = subprocess.run([str(exe), "--target", "local", "--home", str(settings.home),
                           "--as-of-date", "2026-02-30"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: --as-of-date '2026-02-30' is not a date; use YYYY-MM-DD"]
    assert done.stdout == ""
