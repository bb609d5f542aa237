"""The yws command end to end: train, score, model versions, the demo and yws up, each in real
processes or with a real Spark session."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from yws.cli.main import main


@pytest.fixture
def yws(tmp_path, monkeypatch, capsys):
    """Run the CLI in this process (sharing the session's Spark); returns (code, out, err)."""
    monkeypatch.setenv("YWS_HOME", str(tmp_path / "yws"))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.integration  # a subprocess or Spark through the CLI
def test_train_and_score_json(yws):
    yws("data", "generate", "--rows", "1500", "--as-of", "2026-08-31")
    yws("data", "generate", "--rows", "500", "--as-of", "2026-11-30", "--unlabeled",
        "--anomalies", "4")
    code, out, err = yws("train", "--as-of", "2026-08-31", "--param", "maxIter=20", "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["model_name"] == "yws_dev.ml.yws_lr" and trained["version"] == "1"
    assert trained["promoted"] is True and trained["aliases"] == ["challenger", "champion"]
    assert 0.5 < trained["metrics"]["auc_roc"] <= 1.0
    assert set(trained["coefficients"]) >= {"tenure_months", "region=west"}
    assert isinstance(trained["intercept"], float)
    assert trained["rows_read"] == 1500 and trained["rows_used"] == 1500
    assert "fitting the SparkML pipeline" in err  # progress goes to stderr
    code, out, err = yws("score", "--json")
    assert code == 0, err
    scored = json.loads(out)
    assert scored["rows_read"] == 500
    assert scored["rows_scored"] + scored["rows_quarantined"] == 500
    assert scored["as_of_date"] == "2026-11-30" and scored["model_version"] == 1
    assert scored["drift"]["status"] in ("OK", "WARN")  # a batch drawn like the training one
    # drift (issue 18): a shifted snapshot, then `yws monitor` over both batches
    code, out, err = yws("data", "generate", "--rows", "500", "--as-of", "2026-12-31",
                         "--unlabeled", "--drift", "balance_utilization=+0.3,region")
    assert code == 0, err
    assert yws("score", "--as-of", "2026-12-31")[0] == 0
    assert yws("sql", "apply")[0] == 0
    report = Path(os.environ["YWS_HOME"]) / "drift.html"
    code, out, err = yws("monitor", "--batches", "5", "--report", str(report))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["batch", "as", "of", "model"]
    assert lines[1].split()[:6] == ["2026-12-31", "2026-12-31", "yws_dev.ml.yws_lr", "v1",
                                    "ALERT", "balance_utilization"]
    assert lines[2].startswith("2026-11-30") and lines[-1] == f"report: {report}"
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2  # the score histogram, PSI per feature
    assert "balance_utilization" in page and "<table>" in page
    code, _, err = yws("data", "generate", "--rows", "5", "--as-of", "2026-12-31",
                       "--drift", "income=+1")
    assert code == 1 and "'income' is not a feature" in err


@pytest.mark.integration  # a subprocess or Spark through the CLI
@pytest.mark.slow
def test_demo_end_to_end_through_the_console_script(tmp_path):
    """`yws demo` as a user runs it: a fresh process, a fresh home, the printed summary."""
    env = {**os.environ, "YWS_HOME": str(tmp_path / "home")}
    yws_bin = Path(sys.executable).with_name("yws")
    done = subprocess.run([str(yws_bin), "demo", "--rows", "3000"], env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "yws_dev.ml.yws_lr v1  aliases: challenger, champion" in out
    assert "read = " in out and "quarantined" in out
    why = next(line for line in out.splitlines() if line.startswith("  why RED     C"))
    assert re.search(r"\): [a-z0-9_]+(=\S+)? \+\d+\.\d\d", why), why  # its top reason first
    assert f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}" in out
    assert "mlflow ui --backend-store-uri" in out
    assert (tmp_path / "home" / "warehouse" / "yws_dev" / "ml" / "yws_predictions"
            / "_delta_log").is_dir()


@pytest.mark.integration  # a subprocess or Spark through the CLI
def test_model_versions_and_rolling_the_champion_back(yws, monkeypatch):
    from yws.model import registry

    monkeypatch.setattr(registry, "CACHE_SETTLE_SECONDS", 0.0)  # cache at once
    yws("data", "generate", "--rows", "1200", "--as-of", "2026-08-31")
    for _ in range(2):
        code, _, err = yws("train", "--param", "maxIter=5", "--force-promote")
        assert code == 0, err
    code, out, err = yws("model", "versions", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [v["version"] for v in listed] == [2, 1]
    assert listed[0]["aliases"] == ["challenger", "champion"] and listed[1]["aliases"] == []
    assert all(0.5 < v["auc_roc"] <= 1.0 and v["run_id"] for v in listed)
    assert [v["family"] for v in listed] == ["spark-lr", "spark-lr"]
    code, out, err = yws("score", "--json")
    assert code == 0, err
    assert json.loads(out)["model_version"] == 2
    assert (Path(os.environ["YWS_HOME"]) / "cache" / "registry.json").is_file()  # cached v2
    code, out, err = yws("model", "alias", "champion", "1")
    assert code == 0, err
    assert out.strip() == "yws_dev.ml.yws_lr@champion: v2 -> v1"
    code, out, err = yws("score", "--json", "--engine", "arrow")
    assert code == 0, err
    assert json.loads(out)["model_version"] == 1  # the arrow path sees the moved alias
    code, out, _ = yws("model", "versions")
    assert out.splitlines()[1].startswith("v1") and out.splitlines()[1].endswith("@champion")
    assert " spark-lr " in out.splitlines()[1]
    code, _, err = yws("model", "alias", "champion", "9")
    assert code != 0 and "has no version 9" in err
    code, _, err = yws("model", "alias", "latest", "1")
    assert code != 0 and "reserved" in err


@pytest.mark.integration  # yws up: yws serve and the MLflow UI as real processes
@pytest.mark.slow
def test_up_stops_the_mlflow_ui_and_its_workers_on_ctrl_c(tmp_path):
    """Ctrl-C on `yws up` leaves no MLflow UI process behind (issue 14, item 15)."""
    import signal
    import time
    import urllib.request

    from conftest import free_port

    env = {**os.environ, "YWS_HOME": str(tmp_path / "home")}
    yws_bin = Path(sys.executable).with_name("yws")
    ui_port = free_port()
    up = subprocess.Popen([str(yws_bin), "up", "--port", str(free_port()),
                           "--mlflow-port", str(ui_port)], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the UI answers: its workers are up
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the MLflow UI did not answer within 120 s")
        (ui_pid,) = [int(p.name) for p in Path("/proc").glob("[0-9]*") if _ppid(p) == up.pid
                     and b"mlflow" in (p / "cmdline").read_bytes()]
        ui_group = _group(ui_pid)
        assert ui_pid in ui_group and len(ui_group) >= 2, "the UI leads its own process group"
        up.send_signal(signal.SIGINT)
        up.wait(60)
        assert _group(ui_pid) == [], "MLflow UI processes survived yws up"
    finally:
        if up.poll() is None:
            up.kill()


@pytest.mark.integration  # a subprocess
def test_help_imports_no_engine_server_or_spark():
    """`yws --help` answers without Spark, Arrow, the scoring engines or the server: each
    command imports what it runs when it runs."""
    heavy = ("pyspark", "pyarrow", "numpy", "mlflow", "uvicorn", "yws.scoring", "yws.server",
             "yws.cli.demo")
    script = ("import sys\nfrom yws.cli.main import main\nassert main(['--help']) == 0\n"
              "print('\\n'.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split("Commands:")[-1].splitlines()
    assert [m for m in loaded if m.startswith(heavy)] == []
