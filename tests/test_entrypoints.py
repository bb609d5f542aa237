"""The wheel's console scripts (what the job tasks run), on the local target."""

from __future__ import annotations

import json

from conftest import SCORE_DAY, TRAIN_DAY, load_demo_data
from yws.entrypoints import score_main, sql_apply_main, train_main


def test_train_then_score_with_job_style_parameters(settings, storage, capsys, spark):
    load_demo_data(storage, settings, rows=1500, anomalies=4)
    common = ["--target", "local", "--home", str(settings.home), "--catalog", "yws_dev",
              "--schema", "ml", "--dfs-tmpdir", ""]  # an empty job parameter means unset
    assert train_main([*common, "--as-of-date", TRAIN_DAY.isoformat()]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["promoted"] and trained["version"] == "1"
    assert score_main([*common, "--as-of-date", "", "--batch-id", "", "--model-alias", ""]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["batch_id"] == SCORE_DAY.isoformat() and scored["model_alias"] == "champion"
    assert scored["rows_read"] == scored["rows_scored"] + scored["rows_quarantined"] == 1500
    assert sql_apply_main(["--target", "local", "--home", str(settings.home),
                           "--analysts-group", "risk_analysts"]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["applied"] == 27


def test_errors_exit_1_with_the_message(settings, capsys):
    code = score_main(["--target", "local", "--home", str(settings.home),
                       "--model-alias", "champion"])
    assert code == 1
    assert "error: model yws_dev.ml.yws_lr has no version with alias @champion" in \
        capsys.readouterr().err
    assert train_main(["--target", "local", "--home", str(settings.home),
                       "--as-of-date", "30/11/2026"]) == 1
    assert "--as-of-date '30/11/2026' is not a date; use YYYY-MM-DD" in capsys.readouterr().err
