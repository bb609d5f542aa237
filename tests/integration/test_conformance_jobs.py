"""Jobs API 2.2 conformance of `yws serve`, driven with the official databricks-sdk (issue 13,
items 1-6 and 23).

A real `yws serve` (in this process, on a loopback port) serves a test bundle whose tasks are
cheap real processes: ``yws-conf-task``, a small script in a throwaway ``bin`` that passes,
fails until a gate file exists, fails on its first attempt only, sleeps until cancelled (taking
a moment to stop, as a Spark task does), or prints 6 MB. Each test cites the documented
contract it checks in its docstring; ``docs/api-conformance.md`` names each test.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, InvalidState
from databricks.sdk.service.jobs import (
    QueueDetailsCodeCode,
    QueueSettings,
    RepairHistoryItemType,
    RunLifeCycleState,
    RunResultState,
)

from conftest import serving
from yws.config import Settings
from yws.deploy.jobs_client import latest_tasks, outcome
from yws.server.app import create_app
from yws.server.jobs import deployer
from yws.server.store import Store

BUNDLE = """
bundle: {name: yws_conformance}
targets:
  dev:
    default: true
    run_as: {service_principal_name: "${var.jobs_principal}"}
variables:
  jobs_principal: {default: yws_jobs_sp}
resources:
  jobs:
    chain:
      name: chain
      max_concurrent_runs: 10
      parameters: [{name: gate, default: g}]
      tasks:
        - task_key: a
          python_wheel_task: {package_name: yws, entry_point: yws-conf-task,
                              parameters: [--mode, gate, --gate, "{{job.parameters.gate}}"]}
        - task_key: b
          depends_on: [{task_key: a}]
          python_wheel_task: {package_name: yws, entry_point: yws-conf-task,
                              parameters: [--mode, ok]}
        - task_key: c
          depends_on: [{task_key: b}]
          python_wheel_task: {package_name: yws, entry_point: yws-conf-task,
                              parameters: [--mode, ok]}
        - task_key: d
          python_wheel_task: {package_name: yws, entry_point: yws-conf-task,
                              parameters: [--mode, ok]}
      permissions: [{level: CAN_MANAGE_RUN, group_name: runners}]
    flaky:
      name: flaky
      max_concurrent_runs: 10
      parameters: [{name: key, default: k}]
      tasks:
        - task_key: t
          max_retries: 2
          min_retry_interval_millis: 200
          python_wheel_task: {package_name: yws, entry_point: yws-conf-task,
                              parameters: [--mode, flaky, --key, "{{job.parameters.key}}"]}
      permissions: [{level: CAN_MANAGE_RUN, group_name: runners}]
    slow:
      name: slow
      max_concurrent_runs: 1
      queue: {enabled: true}
      tasks:
        - task_key: sleep
          python_wheel_task: {package_name: yws, entry_point: yws-conf-task,
                              parameters: [--mode, sleep]}
      permissions: [{level: CAN_MANAGE_RUN, group_name: runners}]
    chatty:
      name: chatty
      max_concurrent_runs: 10
      parameters: [{name: lines, default: "62000"}]
      tasks:
        - task_key: talk
          python_wheel_task: {package_name: yws, entry_point: yws-conf-task,
                              parameters: [--mode, talk, --lines, "{{job.parameters.lines}}"]}
      permissions: [{level: CAN_MANAGE_RUN, group_name: runners}]
"""

TASK = """
import json, signal, sys, time
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
home, mode = Path(args["--home"]), args["--mode"]
print(json.dumps({"mode": mode, "gate": args.get("--gate")}), flush=True)
if mode == "gate" and not (home / "gates" / args["--gate"]).exists():
    print(f"error: gate {args['--gate']} is closed", file=sys.stderr)
    sys.exit(1)
if mode == "flaky":
    mark = home / "flaky" / args["--key"]
    if not mark.exists():
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
        print("error: the first attempt fails", file=sys.stderr)
        sys.exit(1)
if mode == "sleep":
    def stop(*_):
        time.sleep(1.5)  # stopping takes a moment, as it does for a Spark task
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    time.sleep(600)
if mode == "talk":
    sys.stdout.write(("x" * 99 + "\\n") * int(args["--lines"]))
    print("END")
"""

DONE = (RunLifeCycleState.TERMINATED, RunLifeCycleState.SKIPPED,
        RunLifeCycleState.INTERNAL_ERROR)


def task_world(root: Path) -> tuple[Settings, Path, Path]:
    """A home, the test bundle (``root/jobs``) and the bin its cheap task script runs from:
    ``create_app(settings, bundle_root=..., bin_dir=...)``."""
    (root / "jobs").mkdir()
    (root / "jobs" / "databricks.yml").write_text(BUNDLE)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    script = bin_dir / "yws-conf-task"
    script.write_text(f"#!{sys.executable}\n{textwrap.dedent(TASK)}")
    script.chmod(0o755)
    return Settings(home=root / "yws"), root / "jobs", bin_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("conformance_jobs")
    settings, bundle_root, bin_dir = task_world(root)
    store = Store(settings.home.resolve() / "server.db")
    tokens = {"tester": store.create_token("tester", ["runners"]),
              "other": store.create_token("other", ["runners"])}
    app = create_app(settings, bundle_root=bundle_root, bin_dir=bin_dir)  # tasks from bin/
    with serving(app) as host:
        yield {"host": host, "tokens": tokens, "home": settings.home.resolve()}


def client(server: dict[str, Any], who: str = "tester") -> WorkspaceClient:
    return WorkspaceClient(host=server["host"], token=server["tokens"][who])


@pytest.fixture(scope="module")
def w(server: dict[str, Any]) -> WorkspaceClient:
    return client(server)


def job_id(w: WorkspaceClient, name: str) -> int:
    (job,) = list(w.jobs.list(name=name))
    return int(job.job_id)


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)
    return value


def ended(w: WorkspaceClient, run_id: int, seconds: float = 30) -> Any:
    """The run once it has ended (polling faster than the SDK's waiter)."""
    return wait_for(lambda: (r := w.jobs.get_run(run_id)).state.life_cycle_state in DONE and r,
                    seconds, f"run {run_id} to end")


def run_count(w: WorkspaceClient) -> int:
    return len(list(w.jobs.list_runs()))


# -- item 1: run-now fields ------------------------------------------------------------------
@pytest.mark.parametrize("field, value, says", [
    ("python_params", ["--batch-id", "x"], "pass job_parameters instead"),
    ("jar_params", ["x"], "pass job_parameters instead"),
    ("notebook_params", {"a": "b"}, "pass job_parameters instead"),
    ("python_named_params", {"a": "b"}, "pass job_parameters instead"),
    ("performance_target", "PERFORMANCE_OPTIMIZED", "no serverless performance mode"),
    ("duration_target", "4h", "no serverless performance mode"),
    ("not_a_field", 1, "unknown field 'not_a_field'"),
])
def test_run_now_refuses_the_fields_it_does_not_serve(server, w, field, value, says):
    """run-now fields this server does not act on fail with INVALID_PARAMETER_VALUE naming the
    field, and start nothing (python_params "would overwrite the parameters specified in job
    setting"; performance_target picks a serverless performance mode).
    https://docs.databricks.com/api/workspace/jobs/runnow"""
    before = run_count(w)
    with pytest.raises(InvalidParameterValue, match=says):
        w.api_client.do("POST", "/api/2.2/jobs/run-now",
                        body={"job_id": job_id(w, "chain"), field: value})
    assert run_count(w) == before


def test_run_now_only_runs_the_named_tasks(server, w):
    """``only``: "A list of task keys to run inside of the job ... Prefix a task key with + to
    also run its upstream tasks, or suffix it with + to also run its downstream tasks."
    https://docs.databricks.com/api/workspace/jobs/runnow"""
    (server["home"] / "gates").mkdir(exist_ok=True)
    (server["home"] / "gates" / "open").touch()
    jid = job_id(w, "chain")
    for only, keys in ((["b"], ["b"]), (["+b"], ["a", "b"]), (["b+"], ["b", "c"]),
                       (["+b+", "d"], ["a", "b", "c", "d"])):
        run = w.jobs.run_now(jid, only=only, job_parameters={"gate": "open"}).result(
            timeout=timedelta(seconds=60))
        assert [t.task_key for t in run.tasks] == keys, only
        assert run.state.result_state == RunResultState.SUCCESS, run.state.state_message
    with pytest.raises(InvalidParameterValue, match="'zz' is not a task of job chain"):
        w.jobs.run_now(jid, only=["zz"])


def test_run_now_queue_overrides_the_job_setting(server, w):
    """``queue``: "The queue settings of the run" override the job's: with queueing off, a run
    over max_concurrent_runs is skipped.
    https://docs.databricks.com/api/workspace/jobs/runnow"""
    jid = job_id(w, "slow")
    first = w.jobs.run_now(jid).response.run_id
    try:
        wait_for(lambda: w.jobs.get_run(first).state.life_cycle_state
                 == RunLifeCycleState.RUNNING, 30, "the first run to start")
        skipped = w.jobs.run_now(jid, queue=QueueSettings(enabled=False)).response.run_id
        run = w.jobs.get_run(skipped)
        assert run.state.life_cycle_state == RunLifeCycleState.SKIPPED
        assert run.status.termination_details.code.value == "MAX_CONCURRENT_RUNS_EXCEEDED"
    finally:
        w.jobs.cancel_run(first)
        ended(w, first)


# -- item 2: task runs, attempts, durations; jobs/get -----------------------------------------
def test_a_retry_is_a_new_task_run_with_the_next_attempt_number(server, w):
    """Each retry is a task run of its own: "The initial attempt of a run has an attempt_number
    of 0. If the initial run attempt fails, and the job has a retry policy (max_retries > 0),
    subsequent runs are created with ... an incrementing attempt_number"; every task run has
    its run_page_url and durations ("The duration of a task run is the sum of the
    setup_duration, execution_duration, and the cleanup_duration").
    https://docs.databricks.com/api/workspace/jobs/getrun"""
    run = w.jobs.run_now(job_id(w, "flaky"), job_parameters={"key": "retry-1"}).result(
        timeout=timedelta(seconds=60))
    assert run.state.result_state == RunResultState.SUCCESS, run.state.state_message
    first, second = run.tasks
    assert (first.task_key, second.task_key) == ("t", "t")
    assert (first.attempt_number, second.attempt_number) == (0, 1)
    assert first.run_id != second.run_id
    assert first.state.result_state == RunResultState.FAILED
    assert second.state.result_state == RunResultState.SUCCESS
    assert first.end_time <= second.start_time  # the retry started after the failure ended
    for task in (first, second):
        assert task.run_page_url.endswith(f"#job/{run.job_id}/run/{task.run_id}")
        assert task.execution_duration > 0
        assert task.setup_duration + task.execution_duration + task.cleanup_duration \
            == task.run_duration <= task.end_time - task.start_time
    assert "the first attempt fails" in w.jobs.get_run_output(first.run_id).error
    assert w.jobs.get_run_output(second.run_id).error is None
    assert run.attempt_number == 0 and run.original_attempt_run_id == run.run_id
    assert run.run_duration == run.end_time - run.start_time > 0
    assert run.execution_duration == second.execution_duration  # a single-task run
    # the project's client reports each task by its latest attempt
    assert [(t.task_key, t.attempt_number) for t in latest_tasks(run)] == [("t", 1)]
    (task,) = outcome(w, run, run.job_id, "tok").tasks
    assert (task.run_id, task.result_state, task.attempt_number) == (second.run_id,
                                                                    "SUCCESS", 1)


def test_jobs_get_has_created_time_creator_and_run_as(server, w):
    """jobs/get answers created_time ("The time at which this job was created in epoch
    milliseconds"), creator_user_name and run_as_user_name ("the run_as principal; by default
    the creator"): here the bundle target's run_as, as a deploy applies it.
    https://docs.databricks.com/api/workspace/jobs/get"""
    job = w.jobs.get(job_id(w, "chain"))
    assert 0 < job.created_time <= time.time() * 1000
    assert job.run_as_user_name == "yws_jobs_sp"
    assert job.settings.run_as.service_principal_name == "yws_jobs_sp"
    assert job.creator_user_name == deployer()
    again = w.jobs.get(job.job_id)
    assert again.created_time == job.created_time


# -- item 3: runs/repair -----------------------------------------------------------------------
def test_repair_reruns_failed_tasks_as_new_task_runs(server, w):
    """runs/repair re-runs tasks "as part of the original job run" and returns a repair_id that
    "Must be provided in subsequent repairs using the latest_repair_id field"; the run's
    repair_history lists the original run, then each repair with its task_run_ids; the SDK's
    waiter (.result()) follows the repaired run to its end.
    https://docs.databricks.com/api/workspace/jobs/repairrun"""
    gates = server["home"] / "gates"
    gates.mkdir(exist_ok=True)
    jid = job_id(w, "chain")
    run = w.jobs.run_now(jid, job_parameters={"gate": "repair-1"}).result(
        timeout=timedelta(seconds=60))
    assert run.state.result_state == RunResultState.FAILED
    states = {t.task_key: t.state.result_state for t in run.tasks}
    assert states == {"a": RunResultState.FAILED, "b": RunResultState.UPSTREAM_FAILED,
                      "c": RunResultState.UPSTREAM_FAILED, "d": RunResultState.SUCCESS}
    with pytest.raises(InvalidParameterValue, match="Only one of rerun_tasks"):
        w.jobs.repair_run(run.run_id, rerun_tasks=["a"], rerun_all_failed_tasks=True)
    with pytest.raises(InvalidParameterValue, match="depends on a, which did not succeed"):
        w.jobs.repair_run(run.run_id, rerun_tasks=["b"])
    for field, value in (("performance_target", "STANDARD"), ("python_params", ["x"])):
        with pytest.raises(InvalidParameterValue, match=f"runs/repair: {field} is not supp"):
            w.api_client.do("POST", "/api/2.2/jobs/runs/repair",
                            body={"run_id": run.run_id, "rerun_all_failed_tasks": True,
                                  field: value})
    with pytest.raises(InvalidParameterValue, match="include_resolved_values"):
        w.jobs.get_run(run.run_id, include_resolved_values=True)

    (gates / "repair-1").touch()
    waiter = w.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True)
    repair_id = waiter.response.repair_id
    repaired = waiter.result(timeout=timedelta(seconds=60))
    assert repaired.run_id == run.run_id
    assert repaired.state.result_state == RunResultState.SUCCESS, repaired.state.state_message
    assert [t.task_key for t in repaired.tasks] == ["a", "b", "c", "d", "a", "b", "c"]
    new = {t.task_key: t for t in repaired.tasks[4:]}
    assert {k: t.state.result_state for k, t in new.items()} == {
        k: RunResultState.SUCCESS for k in "abc"}
    assert not {t.run_id for t in new.values()} & {t.run_id for t in run.tasks}
    assert [t.attempt_number for t in repaired.tasks] == [0, 0, 0, 0, 1, 1, 1]

    history = w.jobs.get_run(run.run_id, include_history=True).repair_history
    assert [h.type for h in history] == [RepairHistoryItemType.ORIGINAL,
                                         RepairHistoryItemType.REPAIR]
    assert history[0].id is None and history[1].id == repair_id
    assert history[0].state.result_state == RunResultState.FAILED
    assert history[1].state.result_state == RunResultState.SUCCESS
    assert history[0].task_run_ids == [t.run_id for t in run.tasks]
    assert history[1].task_run_ids == [t.run_id for t in new.values()]
    plain = w.api_client.do("GET", "/api/2.2/jobs/runs/get", query={"run_id": run.run_id})
    assert "repair_history" not in plain  # only with include_history

    # a second repair must name the latest one; job_parameters override the run's
    with pytest.raises(InvalidParameterValue, match="latest repair ID needs to be provided"):
        w.jobs.repair_run(run.run_id, rerun_tasks=["a"])
    (gates / "repair-2").touch()
    again = w.jobs.repair_run(run.run_id, rerun_tasks=["a"], rerun_dependent_tasks=True,
                              latest_repair_id=repair_id, job_parameters={"gate": "repair-2"})
    final = again.result(timeout=timedelta(seconds=60))
    assert final.state.result_state == RunResultState.SUCCESS
    assert [t.task_key for t in final.tasks[7:]] == ["a", "b", "c"]  # b, c: dependents
    assert [t.attempt_number for t in final.tasks[7:]] == [2, 2, 2]
    assert json.loads(w.jobs.get_run_output(final.tasks[7].run_id).logs)["gate"] == "repair-2"
    assert {p.name: p.value for p in final.job_parameters}["gate"] == "repair-2"


def test_a_run_in_progress_cannot_be_repaired(server, w):
    """"The run must not be in progress."
    https://docs.databricks.com/api/workspace/jobs/repairrun"""
    run_id = w.jobs.run_now(job_id(w, "slow")).response.run_id
    try:
        with pytest.raises(InvalidState, match="must not be in progress"):
            w.jobs.repair_run(run_id, rerun_all_failed_tasks=True)
    finally:
        w.jobs.cancel_run(run_id)
        ended(w, run_id)


# -- item 4: list limits, filters, output size ------------------------------------------------
def test_jobs_list_limit_name_and_expand_tasks(server, w):
    """jobs/list: limit "must be greater than 0 and less or equal to 100. The default value is
    20"; name is "A filter on the list based on the exact (case insensitive) job name";
    expand_tasks: "Whether to include task and cluster details in the response".
    https://docs.databricks.com/api/workspace/jobs/list"""
    for limit in (0, 101, -1):
        with pytest.raises(InvalidParameterValue, match="limit must be greater than 0"):
            list(w.jobs.list(limit=limit))
    (job,) = list(w.jobs.list(name="CHAIN"))
    assert job.settings.name == "chain"
    assert list(w.jobs.list(name="chai")) == []
    assert not job.settings.tasks
    (raw,) = w.api_client.do("GET", "/api/2.2/jobs/list", query={"name": "chain"})["jobs"]
    assert "tasks" not in raw["settings"]
    (expanded,) = list(w.jobs.list(name="chain", expand_tasks=True))
    assert [t.task_key for t in expanded.settings.tasks] == ["a", "b", "c", "d"]
    page = w.api_client.do("GET", "/api/2.2/jobs/list", query={"limit": 1})
    assert len(page["jobs"]) == 1 and page["has_more"] and page["next_page_token"]
    assert len(w.api_client.do("GET", "/api/2.2/jobs/list")["jobs"]) == 4  # under 20
    rest = w.api_client.do("GET", "/api/2.2/jobs/list", query={"offset": 3})  # deprecated
    assert len(rest["jobs"]) == 1 and not rest["has_more"]


def test_runs_list_limit_and_defaults(server, w):
    """runs/list: limit "must be greater than 0 and less than 25. The default value is 20. If a
    request specifies a limit of 0, the service instead uses the maximum limit"; runs come "in
    descending order by start time"; tasks only with expand_tasks.
    https://docs.databricks.com/api/workspace/jobs/listruns"""
    jid = job_id(w, "slow")
    first = w.jobs.run_now(jid).response.run_id
    try:
        wait_for(lambda: w.jobs.get_run(first).state.life_cycle_state
                 == RunLifeCycleState.RUNNING, 30, "the first run to start")
        for _ in range(26):  # over the limit with queueing off: skipped at once
            w.jobs.run_now(jid, queue=QueueSettings(enabled=False))
        default = w.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"job_id": jid})
        assert len(default["runs"]) == 20 and default["has_more"]
        assert "tasks" not in default["runs"][0]
        starts = [r["start_time"] for r in default["runs"]]
        assert starts == sorted(starts, reverse=True)
        most = w.api_client.do("GET", "/api/2.2/jobs/runs/list",
                               query={"job_id": jid, "limit": 0, "expand_tasks": "true"})
        assert len(most["runs"]) == 25 and most["runs"][0]["tasks"]
        for limit in (26, -1):
            with pytest.raises(InvalidParameterValue, match="limit must be greater than 0"):
                w.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"limit": limit})
        assert len(list(w.jobs.list_runs(job_id=jid))) >= 27  # the SDK pages through all
        query: dict[str, Any] = {"job_id": jid, "offset": 20, "limit": 25}
        assert len(w.api_client.do("GET", "/api/2.2/jobs/runs/list", query=query)["runs"]) \
            == len(list(w.jobs.list_runs(job_id=jid))) - 20
        for narrow in ({"run_type": "SUBMIT_RUN"}, {"start_time_from": starts[0] + 1},
                       {"start_time_to": 1}):
            assert w.api_client.do("GET", "/api/2.2/jobs/runs/list",
                                   query={"job_id": jid, **narrow})["runs"] == []
    finally:
        w.jobs.cancel_run(first)
        ended(w, first)


def test_get_run_output_returns_the_last_5_mb_and_flags_truncation(server, w):
    """get-output logs: "Databricks restricts this API to return the last 5 MB of these logs";
    logs_truncated: "Whether the logs are truncated."
    https://docs.databricks.com/api/workspace/jobs/getrunoutput"""
    jid = job_id(w, "chatty")
    big = w.jobs.run_now(jid).result(timeout=timedelta(seconds=60))
    out = w.jobs.get_run_output(big.tasks[0].run_id)
    assert out.logs_truncated is True
    assert len(out.logs.encode()) == 5 * 1024 * 1024
    assert out.logs.endswith("END\n")
    small = w.jobs.run_now(jid, job_parameters={"lines": "3"}).result(
        timeout=timedelta(seconds=60))
    out = w.jobs.get_run_output(small.tasks[0].run_id)
    assert out.logs_truncated is False and out.logs.endswith(("x" * 99 + "\n") + "END\n")
    assert out.metadata.run_id == small.tasks[0].run_id and out.metadata.attempt_number == 0


# -- item 5: queue details, TERMINATING --------------------------------------------------------
def test_a_queued_run_carries_queue_details(server, w):
    """A queued run's status: "queue_details: If the run was queued, details about the reason
    for queuing the run" (code MAX_CONCURRENT_RUNS_REACHED: "The run was queued due to
    reaching the per-job limit of concurrent job runs").
    https://docs.databricks.com/api/workspace/jobs/getrun"""
    jid = job_id(w, "slow")
    first = w.jobs.run_now(jid).response.run_id
    second = w.jobs.run_now(jid).response.run_id
    try:
        run = w.jobs.get_run(second)
        assert run.state.life_cycle_state == RunLifeCycleState.QUEUED
        assert run.status.state.value == "QUEUED"
        assert run.status.queue_details.code == QueueDetailsCodeCode.MAX_CONCURRENT_RUNS_REACHED
        assert "limit 1" in run.status.queue_details.message
        assert w.jobs.get_run(first).status.queue_details is None
    finally:
        w.jobs.cancel_run(second)
        w.jobs.cancel_run(first)
        ended(w, first)
    assert ended(w, second).state.result_state == RunResultState.CANCELED


def test_cancel_passes_through_terminating(server, w):
    """Cancel: "The run is canceled asynchronously"; while its task processes stop the run
    and its task are TERMINATING, then TERMINATED with result CANCELED.
    https://docs.databricks.com/api/workspace/jobs/cancelrun"""
    run_id = w.jobs.run_now(job_id(w, "slow")).response.run_id
    wait_for(lambda: w.jobs.get_run(run_id).state.life_cycle_state
             == RunLifeCycleState.RUNNING, 30, "the run to start")
    time.sleep(0.5)  # the task has installed its SIGTERM handler
    with pytest.raises(InvalidParameterValue, match="unknown field 'all_queued_runs'"):
        w.api_client.do("POST", "/api/2.2/jobs/runs/cancel",
                        body={"run_id": run_id, "all_queued_runs": True})
    waiter = w.jobs.cancel_run(run_id)
    stopping = w.jobs.get_run(run_id)
    assert stopping.state.life_cycle_state == RunLifeCycleState.TERMINATING
    assert stopping.status.state.value == "TERMINATING"
    assert stopping.tasks[0].state.life_cycle_state == RunLifeCycleState.TERMINATING
    done = waiter.result(timeout=timedelta(seconds=30))
    assert done.state.life_cycle_state == RunLifeCycleState.TERMINATED
    assert done.state.result_state == RunResultState.CANCELED
    assert done.status.termination_details.code.value == "USER_CANCELED"
    assert done.tasks[0].state.result_state == RunResultState.CANCELED


# -- item 6: host metadata ---------------------------------------------------------------------
def test_a_client_resolves_host_metadata_without_a_warning(server, caplog):
    """databricks-sdk asks the host for /.well-known/databricks-config when a client is made
    and warns "Failed to automatically resolve config from host metadata" when that fails; a
    workspace answers it (HostMetadata: workspace_id, oidc_endpoint, ...).
    https://docs.databricks.com/aws/en/dev-tools/auth/unified-auth"""
    with caplog.at_level(logging.DEBUG, logger="databricks.sdk"):
        w = client(server)
        assert list(w.jobs.list(name="chain"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in warnings if "host metadata" in m], warnings
    assert w.config.workspace_id and w.get_workspace_id() == int(w.config.workspace_id)


# -- item 23: idempotency tokens ---------------------------------------------------------------
def test_idempotency_tokens_are_per_principal_and_refuse_other_parameters(server, w):
    """"If a run with the provided token already exists, the request does not create a new run
    but returns the ID of the existing run instead": so for the same principal and the same
    parameters. A token is its principal's (another principal's same token starts its own
    run); the same principal's token with different parameters is refused, naming the token
    and the parameters (Databricks would return the first run).
    https://docs.databricks.com/api/workspace/jobs/runnow"""
    (server["home"] / "gates").mkdir(exist_ok=True)
    (server["home"] / "gates" / "tok").touch()
    jid = job_id(w, "chain")
    first = w.jobs.run_now(jid, job_parameters={"gate": "tok"}, only=["d"],
                           idempotency_token="shared-token").response.run_id
    same = w.jobs.run_now(jid, job_parameters={"gate": "tok"}, only=["d"],
                          idempotency_token="shared-token").response.run_id
    assert same == first
    theirs = client(server, "other").jobs.run_now(
        jid, job_parameters={"gate": "tok"}, only=["d"],
        idempotency_token="shared-token").response.run_id
    assert theirs != first
    assert w.jobs.get_run(theirs).creator_user_name == "other"
    with pytest.raises(InvalidParameterValue) as err:
        w.jobs.run_now(jid, job_parameters={"gate": "other"}, only=["d"],
                       idempotency_token="shared-token")
    message = str(err.value)
    assert "'shared-token'" in message and f"run {first}" in message
    assert "gate: 'tok' then, 'other' now" in message
    with pytest.raises(InvalidParameterValue, match="only: "):
        w.jobs.run_now(jid, job_parameters={"gate": "tok"}, idempotency_token="shared-token")
    for run_id in (first, theirs):
        assert ended(w, run_id).state.result_state == RunResultState.SUCCESS


def test_a_server_db_from_before_keeps_its_runs_and_scopes_tokens_per_principal(tmp_path):
    """A server.db made before tokens were scoped per principal (``UNIQUE (job_id,
    idempotency_token)``, no attempt columns) opens with its runs intact, and then one token
    serves each principal: "If a run with the provided token already exists, the request does
    not create a new run but returns the ID of the existing run instead."
    https://docs.databricks.com/api/workspace/jobs/runnow"""
    import sqlite3

    path = tmp_path / "server.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE runs (
          run_id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, job_name TEXT NOT NULL,
          params TEXT NOT NULL, idempotency_token TEXT, creator TEXT NOT NULL,
          life_cycle_state TEXT NOT NULL, result_state TEXT,
          state_message TEXT NOT NULL DEFAULT '', termination_code TEXT,
          start_time INTEGER NOT NULL, end_time INTEGER NOT NULL DEFAULT 0,
          UNIQUE (job_id, idempotency_token));
        CREATE TABLE task_runs (
          run_id INTEGER PRIMARY KEY, parent_run_id INTEGER NOT NULL, task_key TEXT NOT NULL,
          depends_on TEXT NOT NULL, life_cycle_state TEXT NOT NULL, result_state TEXT,
          state_message TEXT NOT NULL DEFAULT '', start_time INTEGER NOT NULL DEFAULT 0,
          end_time INTEGER NOT NULL DEFAULT 0, logs TEXT, error TEXT, error_trace TEXT,
          attempt INTEGER NOT NULL DEFAULT 0);
        INSERT INTO runs (run_id, job_id, job_name, params, idempotency_token, creator,
                          life_cycle_state, result_state, start_time, end_time)
          VALUES (7, 1, 'j', '{}', 'tok', 'ana', 'TERMINATED', 'SUCCESS', 1, 2);
        INSERT INTO task_runs (run_id, parent_run_id, task_key, depends_on, life_cycle_state,
                               result_state, logs)
          VALUES (8, 7, 't', '[]', 'TERMINATED', 'SUCCESS', 'done');
    """)
    old.commit()
    old.close()
    store = Store(path)
    (run,) = store.query("SELECT * FROM runs")
    assert (run["run_id"], run["idempotency_token"], run["creator"], run["queue_duration"]) == (
        7, "tok", "ana", 0)
    (task,) = store.query("SELECT * FROM task_runs")
    assert (task["logs"], task["logs_truncated"], task["repair_id"]) == ("done", 0, None)
    with store.tx() as db:  # the same token, another principal: a run of its own
        db.execute("INSERT INTO runs (run_id, job_id, job_name, params, idempotency_token, "
                   "creator, life_cycle_state, start_time) "
                   "VALUES (9, 1, 'j', '{}', 'tok', 'bob', 'PENDING', 3)")
    with pytest.raises(sqlite3.IntegrityError), store.tx() as db:  # the same principal: not
        db.execute("INSERT INTO runs (run_id, job_id, job_name, params, idempotency_token, "
                   "creator, life_cycle_state, start_time) "
                   "VALUES (10, 1, 'j', '{}', 'tok', 'ana', 'PENDING', 3)")
    assert Store(path).query("SELECT count(*) AS n FROM runs")[0]["n"] == 2  # reopens as is
