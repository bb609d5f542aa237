"""`yws serve` with the official databricks-sdk as its client: jobs, runs, SQL, security."""

from __future__ import annotations

import json
import shutil
import socket
import time
from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    InvalidParameterValue,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState
from databricks.sdk.service.sql import StatementState

from conftest import SCORE_DAY, free_port, point_sdk_at, serving
from yws.config import Settings
from yws.contract.sqlfiles import statements
from yws.scoring.results import read_predictions
from yws.server import sql_api
from yws.server.app import create_app
from yws.server.store import Store
from yws.warehouse.databricks import DatabricksWarehouse
from yws.warehouse.local import LocalWarehouse


@pytest.fixture(scope="module")
def served(trained_home, tmp_path_factory, spark, spec):
    """A trained and scored home with the SQL layer applied, served on a free loopback port."""
    from yws.scoring.job import score
    from yws.storage.local import LocalStorage

    home = Settings(home=tmp_path_factory.mktemp("served") / "yws")
    shutil.copytree(trained_home.home, home.home)
    score(home, spec, spark, storage=LocalStorage(home), batch_id="seed")
    LocalWarehouse(home).apply(statements(home))
    store = Store(home.home.resolve() / "server.db")
    tokens = {
        "orchestrator": store.create_token("yws_orchestrator", []),
        "r_user": store.create_token("ana", ["yws_r_users"]),
        "outsider": store.create_token("mallory", ["marketing"]),
    }
    app = create_app(home)
    with serving(app) as host:
        yield {"home": home, "host": host, "tokens": tokens, "app": app}


def client(served, who: str) -> WorkspaceClient:
    return WorkspaceClient(host=served["host"], token=served["tokens"][who])


def job_id(w: WorkspaceClient, name: str) -> int:
    (job,) = [j for j in w.jobs.list(name=name)]
    return int(job.job_id)


def test_jobs_come_from_the_bundle_and_respect_permissions(served):
    w = client(served, "orchestrator")
    names = sorted(j.settings.name for j in w.jobs.list())
    assert names == ["yws_compare_models", "yws_promote_model", "yws_register_r_model",
                     "yws_score", "yws_sql_apply", "yws_train", "yws_train_and_score"]
    job = w.jobs.get(job_id(w, "yws_score"))
    assert [p.name for p in job.settings.parameters] == ["as_of_date", "batch_id", "model_alias",
                                                         "model_name"]
    r_user = client(served, "r_user")
    # R users run the scoring job and their own models' jobs (register, compare, promote)
    assert sorted(j.settings.name for j in r_user.jobs.list()) == [
        "yws_compare_models", "yws_promote_model", "yws_register_r_model", "yws_score"]
    with pytest.raises(PermissionDenied):
        client(served, "outsider").jobs.run_now(job_id(w, "yws_score"))
    with pytest.raises(NotFound):
        w.jobs.get(123)


def test_train_and_score_end_to_end_with_the_sdk_waiter(served):
    w = client(served, "orchestrator")
    jid = job_id(w, "yws_train_and_score")
    run = w.jobs.run_now(jid, job_parameters={"batch_id": "sdk-1"},
                         idempotency_token="tok-sdk-1").result(timeout=timedelta(minutes=10))
    assert run.state.life_cycle_state == RunLifeCycleState.TERMINATED
    assert run.state.result_state == RunResultState.SUCCESS, run.state.state_message
    assert run.status.termination_details.code.value == "SUCCESS"
    assert [t.task_key for t in run.tasks] == ["train", "check", "score", "serving"]
    assert [d.task_key for d in run.tasks[1].depends_on] == ["train"]
    assert [d.task_key for d in run.tasks[2].depends_on] == ["check"]
    # the endpoint follows the champion after train; the batch does not wait for it
    assert [d.task_key for d in run.tasks[3].depends_on] == ["train"]
    assert run.tasks[3].state.result_state == RunResultState.SUCCESS
    assert json.loads(w.jobs.get_run_output(run.tasks[3].run_id).logs)["endpoint"] == "yws_lr"
    # each task waited for the one it depends on
    assert run.tasks[0].end_time <= run.tasks[1].start_time <= run.tasks[1].end_time \
        <= run.tasks[2].start_time
    trained = json.loads(w.jobs.get_run_output(run.tasks[0].run_id).logs)
    checked = json.loads(w.jobs.get_run_output(run.tasks[1].run_id).logs)
    scored = json.loads(w.jobs.get_run_output(run.tasks[2].run_id).logs)
    assert checked["batch_id"] == "sdk-1"
    assert trained["version"] == "2" and scored["batch_id"] == "sdk-1"
    # the same token again: the same run, not a second one
    again = w.jobs.run_now(jid, job_parameters={"batch_id": "sdk-1"},
                           idempotency_token="tok-sdk-1")
    assert again.response.run_id == run.run_id
    assert [r.run_id for r in w.jobs.list_runs(job_id=jid)].count(run.run_id) == 1
    table = read_predictions(served["home"], batch_id="sdk-1")
    assert table.num_rows == scored["rows_scored"]
    assert set(table["as_of_date"].to_pylist()) == {SCORE_DAY}
    with pytest.raises(InvalidParameterValue, match="multiple tasks"):
        w.jobs.get_run_output(run.run_id)


def test_one_run_per_token_under_20_concurrent_requests(served):
    from concurrent.futures import ThreadPoolExecutor

    w = client(served, "orchestrator")
    jid = job_id(w, "yws_score")
    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(lambda _: w.jobs.run_now(
            jid, job_parameters={"batch_id": "conc"}, idempotency_token="tok-conc"
        ).response.run_id, range(20)))
    assert len(set(ids)) == 1
    assert [r.run_id for r in w.jobs.list_runs(job_id=jid)].count(ids[0]) == 1
    w.jobs.cancel_run(ids[0]).result(timeout=timedelta(minutes=2))


def test_an_input_error_fails_once_in_the_check_task(served):
    """Item 9: a wrong alias fails the check task (no retries) at once; the retried score task
    never starts and ends UPSTREAM_FAILED, as Databricks reports a task whose dependency failed."""
    w = client(served, "orchestrator")
    started = time.monotonic()
    run = w.jobs.run_now(job_id(w, "yws_score"),
                         job_parameters={"model_alias": "staging"}).result()
    assert time.monotonic() - started < 60  # the score task's retry interval is 60 s
    assert run.state.result_state == RunResultState.FAILED
    assert "Task check failed with message: " in run.state.state_message
    assert "no version with alias @staging" in run.state.state_message
    check, score = run.tasks
    assert (check.task_key, check.state.result_state, check.attempt_number) == (
        "check", RunResultState.FAILED, 0)
    assert (score.task_key, score.state.result_state) == ("score", RunResultState.UPSTREAM_FAILED)
    assert not score.start_time
    output = w.jobs.get_run_output(check.run_id)
    assert "no version with alias @staging" in output.error
    assert output.error_trace


def test_a_parameter_the_job_does_not_define_changes_nothing(served):
    """Item 10: Databricks accepts a job parameter a job does not define, and a task sees a job
    parameter only through {{job.parameters.<name>}} in its own parameters (docs: "Configure
    task parameters": job parameters are not pushed down to tasks that take JSON arrays, such
    as a Python wheel with positional arguments). yws_score takes catalog and schema from the
    bundle target, so a runner who passes catalog=yws_prod still writes to yws_dev."""
    w = client(served, "r_user")
    run = w.jobs.run_now(job_id(w, "yws_score"),
                         job_parameters={"catalog": "yws_prod", "schema": "evil",
                                         "batch_id": "redirect"}).result()
    assert run.state.result_state == RunResultState.SUCCESS, run.state.state_message
    assert {p.name: p.value for p in run.job_parameters}["catalog"] == "yws_prod"  # recorded
    assert read_predictions(served["home"], batch_id="redirect").num_rows > 0
    warehouse = served["home"].warehouse_dir
    assert not (warehouse / "yws_prod").exists() and not (warehouse / "yws_dev" / "evil").exists()


def test_bad_requests_get_databricks_errors(served):
    w = client(served, "orchestrator")
    with pytest.raises(InvalidParameterValue, match="idempotency_token"):
        w.jobs.run_now(job_id(w, "yws_score"), idempotency_token="x" * 65)
    with pytest.raises(Unauthenticated):
        WorkspaceClient(host=served["host"], token="dapi-wrong").jobs.list().__next__()


def test_sql_statements_follow_grants(served, monkeypatch):
    monkeypatch.setattr(sql_api, "ROWS_PER_CHUNK", 500)  # several chunks
    point_sdk_at(monkeypatch, served["host"], served["tokens"]["r_user"])
    remote = DatabricksWarehouse(Settings(target="databricks", warehouse_id="yws_local"))
    local = LocalWarehouse(served["home"])
    sql = ("SELECT entity_id, band, probability FROM yws_dev.ml.v_yws_predictions_latest "
           "WHERE band IN (:a, :b) ORDER BY entity_id")
    params = {"a": "YELLOW", "b": "RED"}
    got, want = remote.query(sql, params), local.query(sql, params)
    assert got.num_rows == want.num_rows > 500
    assert got.to_pylist() == want.to_pylist()
    w = client(served, "r_user")
    # a missing grant fails the statement (HTTP 200, state FAILED), as Unity Catalog does
    denied = w.statement_execution.execute_statement(
        "SELECT * FROM yws_dev.ml.yws_predictions", "yws_local")
    assert denied.status.state == StatementState.FAILED
    assert denied.status.sql_state == "42501" and denied.result is None
    assert "does not have SELECT on yws_dev.ml.yws_predictions" in denied.status.error.message
    dropped = w.statement_execution.execute_statement(
        "DROP TABLE yws_dev.ml.yws_predictions", "yws_local")
    assert dropped.status.error.message.startswith("[INSUFFICIENT_PERMISSIONS]")
    with pytest.raises(NotFound):
        w.statement_execution.execute_statement("SELECT 1", "another")
    assert [x.id for x in w.warehouses.list()] == ["yws_local"]


def test_tokens_are_stored_hashed_and_restarts_fail_running_runs(served, tmp_path):
    raw = (served["home"].home / "server.db").read_bytes()
    for token in served["tokens"].values():
        assert token.encode() not in raw
    store = Store(tmp_path / "server.db")
    with store.tx() as db:
        db.execute("INSERT INTO runs (run_id, job_id, job_name, params, creator, "
                   "life_cycle_state, start_time) VALUES (7, 1, 'j', '{}', 'x', 'RUNNING', 0)")
    assert Store(tmp_path / "server.db").fail_interrupted() == 1
    (row,) = store.query("SELECT * FROM runs")
    assert (row["life_cycle_state"], row["result_state"]) == ("INTERNAL_ERROR", "FAILED")
    assert "server stopped" in row["state_message"]


def test_queueing_and_cancel(served):
    w = client(served, "orchestrator")
    jid = job_id(w, "yws_train")  # max_concurrent_runs 1, queue enabled
    first = w.jobs.run_now(jid).response.run_id
    second = w.jobs.run_now(jid).response.run_id
    assert w.jobs.get_run(second).state.life_cycle_state == RunLifeCycleState.QUEUED
    w.jobs.cancel_run(second).result()
    cancelled = w.jobs.get_run(second)
    assert cancelled.state.result_state == RunResultState.CANCELED
    assert cancelled.status.termination_details.code.value == "USER_CANCELED"
    assert w.jobs.get_run(first).state.life_cycle_state == RunLifeCycleState.RUNNING
    done = w.jobs.cancel_run(first).result()
    assert done.state.result_state == RunResultState.CANCELED
    assert done.tasks[0].state.result_state == RunResultState.CANCELED


def test_statement_formats_and_async_polling(served):
    import io
    import json
    import urllib.error
    import urllib.request

    import pyarrow as pa
    import pyarrow.csv as csv
    from databricks.sdk.service.sql import Disposition, Format, StatementState

    w = client(served, "r_user")
    sql = ("SELECT entity_id, probability FROM yws_dev.ml.v_yws_predictions_latest "
           "ORDER BY entity_id LIMIT 50")
    arrow = w.statement_execution.execute_statement(
        sql, "yws_local", format=Format.ARROW_STREAM, disposition=Disposition.EXTERNAL_LINKS)
    (link,) = arrow.result.external_links
    with urllib.request.urlopen(link.external_link) as resp:  # presigned: no bearer token
        table = pa.ipc.open_stream(io.BytesIO(resp.read())).read_all()
    text = w.statement_execution.execute_statement(
        sql, "yws_local", format=Format.CSV, disposition=Disposition.EXTERNAL_LINKS)
    with urllib.request.urlopen(text.result.external_links[0].external_link) as resp:
        rows = csv.read_csv(io.BytesIO(resp.read()))
    assert table.num_rows == rows.num_rows == arrow.manifest.total_row_count == 50
    assert table.column("entity_id").to_pylist() == rows.column("entity_id").to_pylist()
    with pytest.raises(urllib.error.HTTPError):  # a link with the wrong secret is nothing
        urllib.request.urlopen(link.external_link[:-4] + "xxxx")
    with pytest.raises(urllib.error.HTTPError) as refused:  # CSV needs EXTERNAL_LINKS
        urllib.request.urlopen(urllib.request.Request(
            f"{served['host']}/api/2.0/sql/statements", method="POST",
            headers={"Authorization": f"Bearer {served['tokens']['r_user']}"},
            data=json.dumps({"warehouse_id": "yws_local", "statement": sql, "format": "CSV",
                             "disposition": "INLINE"}).encode()))
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error_code"] == "INVALID_PARAMETER_VALUE"
    pending = w.statement_execution.execute_statement(sql, "yws_local", wait_timeout="0s")
    deadline = time.monotonic() + 30
    state = pending
    while state.status.state in (StatementState.PENDING, StatementState.RUNNING):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        state = w.statement_execution.get_statement(pending.statement_id)
    assert state.status.state == StatementState.SUCCEEDED
    assert len(state.result.data_array) == table.num_rows
    with pytest.raises(NotFound):  # another principal's statement is invisible
        client(served, "orchestrator").statement_execution.get_statement(pending.statement_id)


def test_rate_limit_answers_429_with_retry_after():
    from yws.server.app import RateLimiter
    from yws.server.errors import ApiError

    limiter = RateLimiter(per_second=0.001, burst=3)
    for _ in range(3):
        limiter.check("flood")
    with pytest.raises(ApiError) as err:
        limiter.check("flood")
    assert (err.value.status, err.value.code, err.value.headers) == (
        429, "REQUEST_LIMIT_EXCEEDED", {"Retry-After": "1"})
    limiter.check("someone_else")  # buckets are per principal


def test_tokens_create_prints_the_token_alone_on_the_last_line(tmp_path, capsys):
    from yws.cli.main import main

    code = main(["tokens", "create", "--home", str(tmp_path), "--principal", "ana",
                 "--group", "yws_r_users"])
    out, err = capsys.readouterr()
    assert code == 0 and "not shown again" in err
    token = out.strip().splitlines()[-1]
    assert token.startswith("dapi") and len(token) == 36
    assert Store(tmp_path.resolve() / "server.db").principal(token).groups == ("yws_r_users",)
    assert main(["tokens", "create", "--home", str(tmp_path), "--principal", "a b"]) == 1


@pytest.mark.slow
def test_a_restart_during_a_run_ends_it_failed(trained_home, tmp_path):
    """Kill the whole server (and its task) mid-run, start it again: the run is FAILED."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    home = tmp_path / "yws"
    shutil.copytree(trained_home.home, home)
    token = Store(home.resolve() / "server.db").create_token("yws_orchestrator", [])
    yws = str(Path(sys.executable).with_name("yws"))
    env = {**os.environ, "YWS_HOME": str(home)}

    def start(port: int) -> subprocess.Popen:
        proc = subprocess.Popen([yws, "serve", "--port", str(port)], env=env,
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc
            except OSError:
                time.sleep(0.1)
        raise AssertionError("yws serve did not start")

    port = free_port()
    server = start(port)
    w = WorkspaceClient(host=f"http://127.0.0.1:{port}", token=token)
    run_id = w.jobs.run_now(job_id(w, "yws_train")).response.run_id
    deadline = time.monotonic() + 30
    # The run turns RUNNING a moment before its task does; a task that never started ends
    # SKIPPED (CANCELED), so wait for the task itself to run before the crash.
    while w.jobs.get_run(run_id).tasks[0].state.life_cycle_state != RunLifeCycleState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(server.pid, signal.SIGKILL)  # the server and its task process, as a crash would
    server.wait()
    port = free_port()
    server = start(port)
    try:
        w = WorkspaceClient(host=f"http://127.0.0.1:{port}", token=token)
        run = w.jobs.get_run(run_id)
        assert run.state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR
        assert run.state.result_state == RunResultState.FAILED
        assert "server stopped while this run was in progress" in run.state.state_message
        assert run.tasks[0].state.result_state == RunResultState.FAILED
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
