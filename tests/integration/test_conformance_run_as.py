"""A job run by `yws serve` acts as the job's run_as principal, as on Databricks.

On Databricks a job's tasks run with the identity of its ``run_as`` (the bundle sets it per
target: https://docs.databricks.com/dev-tools/bundles/run-as.html), and Model Serving checks
that identity's permission on the endpoint: ``CAN_MANAGE`` to change its config, ``CAN_QUERY``
to score, ``CAN_VIEW`` to read it (https://learn.microsoft.com/azure/databricks/dev-tools/
databricks-apps/model-serving). `yws serve` gives each run a token of the run_as principal
and its own address (``DATABRICKS_HOST``/``DATABRICKS_TOKEN``, which databricks-sdk reads),
and deletes the token when the run ends. These tests drive a real `yws serve` (uvicorn on a
loopback port, the real bundle) with the official databricks-sdk.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import RunResultState

from conftest import serving
from yws.config import Settings
from yws.model import registry
from yws.server.app import create_app
from yws.server.store import Store

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "yws_lr"

# A stand-in for the serving task: it calls the server with what it was given, as the run_as,
# and leaves the token where the test can try it once the run has ended.
FAKE_TASK = """\
import json, os, sys, urllib.request
host, token = os.environ.get("DATABRICKS_HOST"), os.environ.get("DATABRICKS_TOKEN")
request = urllib.request.Request(host + "/api/2.0/serving-endpoints/yws_lr",
                                 headers={"Authorization": "Bearer " + token})
answer = json.load(urllib.request.urlopen(request, timeout=30))
with open(os.environ["YWS_TEST_CAPTURE"], "w") as f:
    f.write(token)
print(json.dumps({"level": answer["permission_level"],
                  "profile": os.environ.get("DATABRICKS_CONFIG_PROFILE"),
                  "auth": os.environ.get("DATABRICKS_AUTH_TYPE")}))
"""


def _runs_as(root: Path, principal: str) -> Path:
    """A copy of jobs/ (with sql/ and pyproject.toml) whose targets run the jobs as
    ``principal``, which may query the endpoint (so it may read it) but not manage it."""
    for part in ("jobs", "sql"):
        shutil.copytree(ROOT / part, root / part)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    path = root / "jobs" / "databricks.yml"
    data = yaml.safe_load(path.read_text())
    for target in data["targets"].values():
        target["run_as"] = {"service_principal_name": principal}
    path.write_text(yaml.safe_dump(data))
    path = root / "jobs" / "resources" / "yws_serving.yml"
    data = yaml.safe_load(path.read_text())
    data["resources"]["model_serving_endpoints"]["yws_lr"]["permissions"].append(
        {"level": "CAN_QUERY", "service_principal_name": principal})
    path.write_text(yaml.safe_dump(data))
    return root / "jobs"


@pytest.fixture
def home(trained_home, tmp_path) -> Settings:
    settings = Settings(home=tmp_path / "yws")
    shutil.copytree(trained_home.home, settings.home)
    return settings


def _tokens(settings: Settings) -> dict[str, str]:
    store = Store(settings.home.resolve() / "server.db")
    return {"orchestrator": store.create_token("yws_orchestrator", []),
            "analyst": store.create_token("ana", ["yws_analysts"])}


def _job_id(w: WorkspaceClient, name: str) -> int:
    (job,) = list(w.jobs.list(name=name))
    return int(job.job_id)


def _served_version(w: WorkspaceClient) -> str:
    (entity,) = w.serving_endpoints.get(ENDPOINT).config.served_entities
    return str(entity.entity_version)


def _no_secret_kept(settings: Settings, run: Any, w: WorkspaceClient, secret: str = "dapi"
                    ) -> None:
    """No run output, error or stored task row holds a token; no run token is left."""
    for task in run.tasks:
        out = w.jobs.get_run_output(task.run_id)
        assert secret not in json.dumps(out.as_dict())
    db = sqlite3.connect(settings.home.resolve() / "server.db")
    try:
        rows = db.execute("SELECT coalesce(logs, '') || coalesce(error, '') || "
                          "coalesce(error_trace, '') || state_message FROM task_runs").fetchall()
        assert not any(secret in r[0] for r in rows)
        assert db.execute("SELECT count(*) FROM tokens WHERE run_id IS NOT NULL"
                          ).fetchone()[0] == 0
    finally:
        db.close()


def test_the_train_job_moves_the_endpoint_to_the_new_champion(home):
    """yws_train's serving task (yws-serving-update) runs as run_as (yws_jobs, which has
    CAN_MANAGE on the endpoint in jobs/resources/yws_serving.yml) against yws serve itself:
    after the run the endpoint serves the version training promoted to @champion (Serving takes
    a version; the task moves it with PUT /api/2.0/serving-endpoints/{name}/config,
    https://databrickslabs.github.io/databricks-sdk-r/reference/update_serving_endpoint_config.html)."""
    tokens = _tokens(home)
    with serving(create_app(home, bundle_root=ROOT / "jobs", target="dev")) as host:
        w = WorkspaceClient(host=host, token=tokens["orchestrator"])
        analyst = WorkspaceClient(host=host, token=tokens["analyst"])
        assert _served_version(analyst) == "1"
        run = w.jobs.run_now(_job_id(w, "yws_train")).result(timeout=timedelta(minutes=10))
        assert run.state.result_state == RunResultState.SUCCESS, run.state.state_message
        train, update = run.tasks
        trained = json.loads(w.jobs.get_run_output(train.run_id).logs)
        moved = json.loads(w.jobs.get_run_output(update.run_id).logs)
        assert trained["promoted"] is True and trained["version"] == "2"
        assert moved["updated"] is True and moved["before"] == ["1"]
        assert moved["version"] == 2
        assert _served_version(analyst) == "2"
        assert registry.find(home, "champion").version == 2
        # invocations follow: the endpoint answers with the new version
        answer = analyst.serving_endpoints.get(ENDPOINT)
        assert answer.state.ready.value == "READY"
        _no_secret_kept(home, run, w)


def test_can_manage_is_checked_against_the_run_as_principal(home, tmp_path):
    """A job that runs as a principal without CAN_MANAGE on the endpoint (CAN_QUERY only) cannot
    move it: the serving task fails with Serving's PERMISSION_DENIED, and the endpoint keeps its
    version,
    whoever started the run (the orchestrator here; CAN_MANAGE_RUN on the job lets it run the
    job, not act on the endpoint). Levels: CAN VIEW < CAN QUERY < CAN MANAGE
    (https://learn.microsoft.com/azure/databricks/dev-tools/databricks-apps/model-serving);
    the job runs as run_as (https://docs.databricks.com/dev-tools/bundles/run-as.html)."""
    tokens = _tokens(home)
    jobs = _runs_as(tmp_path / "bundle", "yws_other_sp")
    # the endpoint serves version 2 (not registered), the champion is 1: the task must move it
    with serving(create_app(home, bundle_root=jobs, target="dev",
                            variables={"serving_model_version": "2"})) as host:
        w = WorkspaceClient(host=host, token=tokens["orchestrator"])
        assert w.jobs.get(_job_id(w, "yws_train")).run_as_user_name == "yws_other_sp"
        run = w.jobs.run_now(_job_id(w, "yws_train"), only=["serving"]).result(
            timeout=timedelta(minutes=5))
        assert run.state.result_state == RunResultState.FAILED
        (update,) = run.tasks
        error = w.jobs.get_run_output(update.run_id).error
        assert "yws_other_sp does not have permission 'CAN_MANAGE' on serving endpoint " \
               "yws_lr" in error, error
        assert _served_version(WorkspaceClient(host=host, token=tokens["analyst"])) == "2"
        _no_secret_kept(home, run, w)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "yws-serving-update"
    script.write_text(f"#!{sys.executable}\n{FAKE_TASK}")
    script.chmod(0o755)
    return bin_dir


def test_the_runs_token_acts_as_run_as_and_stops_working_when_the_run_ends(
        home, fake_bin, tmp_path, monkeypatch):
    """The task process gets this server's address and a token of the job's run_as (here
    yws_jobs, CAN_MANAGE on the endpoint), and none of the server's own DATABRICKS_* settings;
    once the run has ended the same token is refused (401 Invalid access token), and it is
    nowhere in the run's output or the server's state. The SDK takes a token and host from
    DATABRICKS_TOKEN / DATABRICKS_HOST
    (https://pypi.org/project/databricks-sdk/0.110.0/, "Default authentication flow")."""
    capture = tmp_path / "token"
    monkeypatch.setenv("YWS_TEST_CAPTURE", str(capture))
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "someones-real-workspace")
    tokens = _tokens(home)
    with serving(create_app(home, bundle_root=ROOT / "jobs", target="dev",
                            bin_dir=fake_bin)) as host:
        w = WorkspaceClient(host=host, token=tokens["orchestrator"])
        run = w.jobs.run_now(_job_id(w, "yws_train"), only=["serving"]).result(
            timeout=timedelta(minutes=5))
        assert run.state.result_state == RunResultState.SUCCESS, run.state.state_message
        seen = json.loads(w.jobs.get_run_output(run.tasks[0].run_id).logs)
        assert seen == {"level": "CAN_MANAGE", "profile": None, "auth": "pat"}
        token = capture.read_text()
        assert token.startswith("dapi") and token not in tokens.values()
        request = urllib.request.Request(f"{host}/api/2.0/serving-endpoints/{ENDPOINT}",
                                         headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401
        assert json.load(refused.value)["message"] == "Invalid access token."
        _no_secret_kept(home, run, w, secret=token)
    assert "DATABRICKS_TOKEN" not in os.environ
