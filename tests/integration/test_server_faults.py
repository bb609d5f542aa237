"""Faults around `yws serve`'s task processes, with real processes (issue 13, items 19–21).

A real `yws serve` runs in a throwaway Python environment whose ``bin`` holds ``yws`` and a
test entry point, ``yws-fake-task`` (the server runs a task's entry point from its own
environment's ``bin``, as a serverless environment runs the wheel's console scripts), and in
a folder whose ``jobs/`` is a test bundle. The fake task records each attempt and the pids
of itself and of a child it starts (standing for the Spark JVM a real task starts), so the
tests can see which processes ran and whether they are gone.

The states asserted are the documented Jobs API ones (RunLifeCycleState,
https://databricks.github.io/sdk-js/api/types/_databricks_sdk-jobs.v2.RunLifeCycleState_RunLifeCycleState.html):
``WAITING_FOR_RETRY`` "the run is waiting for a retry"; ``TERMINATING`` "the task of this run
has completed, and the cluster and execution context are being cleaned up"; ``TERMINATED``
and ``INTERNAL_ERROR`` ("a failure in the Jobs service ... This state is terminal") are
terminal, with ``result_state`` ``CANCELED`` for a cancelled run and ``state_message`` saying
why (RunState: life_cycle_state, result_state, state_message, user_cancelled_or_timedout).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState

from yws.config import Settings
from yws.deploy.bundle import load
from yws.server import jobs
from yws.server.jobs import TASK_MARK, Runner, catalog
from yws.server.store import TERMINAL, Principal, Store

BUNDLE = """
bundle: {name: yws_faults}
targets:
  dev: {default: true}
resources:
  jobs:
    retry_then_write:
      name: retry_then_write
      max_concurrent_runs: 1
      parameters: [{name: batch_id, default: b1}]
      tasks:
        - task_key: write
          max_retries: 1
          min_retry_interval_millis: RETRY_MS
          python_wheel_task:
            package_name: yws
            entry_point: yws-fake-task
            parameters: [--mode, fail-then-write, --batch-id, "{{job.parameters.batch_id}}"]
      permissions: [{level: CAN_MANAGE_RUN, user_name: tester}]
    slow:
      name: slow
      max_concurrent_runs: 1
      tasks:
        - task_key: sleep
          python_wheel_task: {package_name: yws, entry_point: yws-fake-task,
                              parameters: [--mode, sleep]}
        - task_key: after
          depends_on: [{task_key: sleep}]
          python_wheel_task: {package_name: yws, entry_point: yws-fake-task,
                              parameters: [--mode, sleep]}
      permissions: [{level: CAN_MANAGE_RUN, user_name: tester}]
    published:
      name: published
      tasks:
        - task_key: score
          python_wheel_task: {package_name: yws, entry_point: yws-fake-task,
                              parameters: [--mode, published]}
      permissions: [{level: CAN_MANAGE_RUN, user_name: tester}]
"""
RETRY_MS = 8000

# Attempt 0 of fail-then-write fails; a later attempt would write the batch. sleep starts a
# child that sleeps as well and records both pids.
FAKE_TASK = """
import os, subprocess, sys, time
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
out = Path(args["--home"]) / "fake_task"
out.mkdir(exist_ok=True)
attempt = len(list(out.glob("attempt-*")))
(out / f"attempt-{attempt}").write_text(str(os.getpid()))
if args["--mode"] == "fail-then-write":
    if attempt == 0:
        print("error: attempt 0 fails on purpose", file=sys.stderr)
        sys.exit(1)
    (out / "batch").write_text(args["--batch-id"])
elif args["--mode"] == "published":  # a score task whose run has published: a cancel ends it 0
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    (out / "pids.tmp").write_text(str(os.getpid()))
    (out / "pids.tmp").rename(out / "pids")
    time.sleep(600)
else:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (out / "pids.tmp").write_text(f"{os.getpid()} {child.pid}")
    (out / "pids.tmp").rename(out / "pids")
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie nobody has reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(check: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def start_slow(world, w) -> tuple[int, list[int]]:
    """Start the "slow" job; return its run id and the pids of its task and the task's child,
    once both are alive."""
    run_id = w.jobs.run_now(job_id(w, "slow")).response.run_id
    pids_file = world["home"] / "fake_task" / "pids"
    wait_for(pids_file.exists, 30, "the task to start")
    pids = [int(p) for p in pids_file.read_text().split()]
    assert all(alive(p) for p in pids)
    return run_id, pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, object]]:
    """The environment, the bundle folder, a home with a token; started servers are killed
    at the end, and so is anything a test left behind (by its marker)."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    (env_dir / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
     / "yws_test.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    python = env_dir / "bin" / "python"
    scripts = {"yws": "import sys\nfrom yws.cli.main import main\nsys.exit(main())\n",
               "yws-fake-task": textwrap.dedent(FAKE_TASK)}
    for name, body in scripts.items():
        path = env_dir / "bin" / name
        path.write_text(f"#!{python}\n{body}")
        path.chmod(0o755)
    bundle = tmp_path / "bundle"
    (bundle / "jobs").mkdir(parents=True)
    (bundle / "jobs" / "databricks.yml").write_text(BUNDLE.replace("RETRY_MS", str(RETRY_MS)))
    home = (tmp_path / "yws").resolve()
    token = Store(home / "server.db").create_token("tester", [])
    servers: list[subprocess.Popen[bytes]] = []

    def start() -> WorkspaceClient:
        port = free_port()
        server = subprocess.Popen([str(env_dir / "bin" / "yws"), "serve", "--port", str(port)],
                                  cwd=bundle, env={**os.environ, "YWS_HOME": str(home)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(server)
        # the SDK blocks for minutes on a refused port: wait for it first
        wait_for(lambda: server.poll() is None and _listening(port), 60, "yws serve")
        return WorkspaceClient(host=f"http://127.0.0.1:{port}", token=token)

    yield {"home": home, "start": start, "servers": servers, "bundle": bundle}
    for server in servers:
        if server.poll() is None:
            server.kill()
            server.wait()
    jobs.kill_task_processes(set(range(1000, 1100)), home, wait=2)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def job_id(w: WorkspaceClient, name: str) -> int:
    (job,) = list(w.jobs.list(name=name))
    return int(job.job_id)


@pytest.mark.slow
def test_cancel_during_the_retry_back_off_starts_no_further_attempt(world):
    w = world["start"]()
    out = world["home"] / "fake_task"
    run_id = w.jobs.run_now(job_id(w, "retry_then_write")).response.run_id

    def waiting() -> bool:  # the retry is a task run of its own, waiting out the back-off
        tasks = w.jobs.get_run(run_id).tasks
        return tasks[-1].state.life_cycle_state == RunLifeCycleState.WAITING_FOR_RETRY
    wait_for(waiting, 30, "the task to wait for its retry")
    assert (out / "attempt-0").exists() and not (out / "attempt-1").exists()
    cancelled_at = time.monotonic()
    w.jobs.cancel_run(run_id)
    # The back-off (8 s) is cut short: the run is terminal well before the retry was due.
    wait_for(lambda: w.jobs.get_run(run_id).state.life_cycle_state
             == RunLifeCycleState.TERMINATED, 3, "the cancelled run to end")
    run = w.jobs.get_run(run_id)
    assert run.state.result_state == RunResultState.CANCELED
    assert run.status.termination_details.code.value == "USER_CANCELED"
    failed, retry = run.tasks  # attempt 0 failed; attempt 1 never started
    assert (failed.attempt_number, failed.state.result_state) == (0, RunResultState.FAILED)
    assert retry.attempt_number == 1
    assert retry.state.life_cycle_state == RunLifeCycleState.TERMINATED
    assert retry.state.result_state == RunResultState.CANCELED
    assert "attempt 2 was not started" in retry.state.state_message
    assert not retry.start_time
    # Past the time the retry was due, still nothing: no attempt started, no batch written.
    time.sleep(max(0.0, cancelled_at + RETRY_MS / 1000 + 1.5 - time.monotonic()))
    assert sorted(p.name for p in out.iterdir()) == ["attempt-0"]
    assert w.jobs.get_run(run_id).state.result_state == RunResultState.CANCELED


@pytest.mark.slow
def test_cancel_stops_the_task_and_what_it_started(world):
    w = world["start"]()
    run_id, pids = start_slow(world, w)
    run = w.jobs.cancel_run(run_id).result(timeout=timedelta(seconds=15))
    assert run.state.life_cycle_state == RunLifeCycleState.TERMINATED
    assert run.state.result_state == RunResultState.CANCELED
    assert run.state.user_cancelled_or_timedout
    # the task process and the child it started, both gone (SIGTERM to the process group)
    assert not any(alive(p) for p in pids)
    states = {t.task_key: (t.state.life_cycle_state, t.state.result_state) for t in run.tasks}
    assert states == {"sleep": (RunLifeCycleState.TERMINATED, RunResultState.CANCELED),
                      "after": (RunLifeCycleState.SKIPPED, RunResultState.CANCELED)}


@pytest.mark.slow
def test_a_cancel_that_comes_after_the_work_is_done_leaves_the_run_successful(world):
    """A score task that has published holds the cancel's signal and ends 0 (yws.scoring.job.
    interrupts_held): the run is SUCCESS — its rows are visible — never CANCELED."""
    w = world["start"]()
    run_id = w.jobs.run_now(job_id(w, "published")).response.run_id
    wait_for((world["home"] / "fake_task" / "pids").exists, 30, "the task to start")
    run = w.jobs.cancel_run(run_id).result(timeout=timedelta(seconds=15))
    assert run.state.life_cycle_state == RunLifeCycleState.TERMINATED
    assert run.state.result_state == RunResultState.SUCCESS
    assert run.state.state_message == "the cancel came after every task had finished"
    assert run.tasks[0].state.result_state == RunResultState.SUCCESS


@pytest.mark.slow
def test_kill_9_of_the_server_kills_its_tasks_and_a_restart_ends_the_run(world):
    w = world["start"]()
    run_id, pids = start_slow(world, w)
    server = world["servers"][-1]
    server.send_signal(signal.SIGKILL)  # only the server: its tasks run in their own groups
    server.wait()
    # The task and its child die with the server (parent-death signal, then the whole
    # process group), not when someone restarts it.
    wait_for(lambda: not any(alive(p) for p in pids), 5, "the task processes to die")
    w = world["start"]()
    run = w.jobs.get_run(run_id)
    assert run.state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR
    assert run.state.result_state == RunResultState.FAILED
    assert "the server stopped while this run was in progress" in run.state.state_message
    assert run.status.termination_details.code.value == "INTERNAL_ERROR"
    # every task row terminal: none left RUNNING or PENDING
    states = {t.task_key: (t.state.life_cycle_state, t.state.result_state) for t in run.tasks}
    assert states == {"sleep": (RunLifeCycleState.INTERNAL_ERROR, RunResultState.FAILED),
                      "after": (RunLifeCycleState.SKIPPED, RunResultState.CANCELED)}


def test_a_restart_kills_task_processes_a_dead_server_left_and_ends_their_rows(tmp_path):
    """Where no parent-death signal reached a task (another OS, a watchdog killed first), the
    restart finds the task's processes by their marker, kills them, then ends the run."""
    home = (tmp_path / "yws").resolve()
    store = Store(home / "server.db")
    with store.tx() as db:
        db.execute("INSERT INTO runs (run_id, job_id, job_name, params, creator, "
                   "life_cycle_state, start_time) VALUES (7, 1, 'j', '{}', 'x', 'RUNNING', 0)")
        for task_run_id, state in ((8, "RUNNING"), (9, "PENDING")):
            db.execute("INSERT INTO task_runs (run_id, parent_run_id, task_key, depends_on, "
                       "life_cycle_state) VALUES (?, 7, ?, '[]', ?)",
                       (task_run_id, f"t{task_run_id}", state))
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            env={**os.environ, "YWS_HOME": str(home), TASK_MARK: "8"})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env={**os.environ, "YWS_HOME": str(home), TASK_MARK: "80"})
    try:
        wait_for(lambda: f"{TASK_MARK}=8".encode() in Path(f"/proc/{left.pid}/environ")
                 .read_bytes(), 5, "the left-behind process")
        runner = Runner(Settings(home=home), Store(home / "server.db"), {})
        assert runner.interrupted == 1
        assert left.wait(5) == -signal.SIGKILL
        assert other.poll() is None  # another task run's process is not touched
        (run,) = store.query("SELECT * FROM runs")
        assert (run["life_cycle_state"], run["result_state"]) == ("INTERNAL_ERROR", "FAILED")
        states = {r["run_id"]: (r["life_cycle_state"], r["result_state"])
                  for r in store.query("SELECT * FROM task_runs")}
        assert states == {8: ("INTERNAL_ERROR", "FAILED"), 9: ("SKIPPED", "CANCELED")}
    finally:
        for proc in (left, other):
            proc.kill()
            proc.wait()


def _runner(tmp_path: Path, bundle: Path) -> tuple[Runner, Store]:
    home = (tmp_path / "yws").resolve()
    store = Store(home / "server.db")
    return Runner(Settings(home=home), store, catalog(load(bundle / "jobs")),
                  bin_dir=tmp_path / "env" / "bin"), store


def _finished(store: Store, run_id: int) -> bool:
    (row,) = store.query("SELECT life_cycle_state FROM runs WHERE run_id = ?", (run_id,))
    return row["life_cycle_state"] in TERMINAL


def test_a_task_that_cannot_start_ends_its_row_with_the_run(world, tmp_path, monkeypatch):
    """An argument longer than the OS allows (a 10 MB batch_id) made Popen fail after the
    task row was RUNNING, and the row stayed RUNNING after its run ended."""
    def too_long(argv: list[str], env: object) -> None:
        raise OSError(errno.E2BIG, os.strerror(errno.E2BIG))
    monkeypatch.setattr(jobs, "start_task_process", too_long)
    runner, store = _runner(tmp_path, world["bundle"])
    (job,) = [j for j in runner.jobs.values() if j.name == "retry_then_write"]
    run_id = runner.run_now(job, {}, None, Principal("tester", ()))
    wait_for(lambda: _finished(store, run_id), 10, "the run to end")
    (run,) = store.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
    assert run["result_state"] == "FAILED"
    (task,) = store.query("SELECT * FROM task_runs WHERE parent_run_id = ?", (run_id,))
    assert (task["life_cycle_state"], task["result_state"]) == ("INTERNAL_ERROR", "FAILED")
    assert "Argument list too long" in task["state_message"]


def test_an_internal_error_mid_task_ends_every_task_row(world, tmp_path, monkeypatch):
    def broken(*_: object) -> None:
        raise RuntimeError("a bug while the task runs")
    monkeypatch.setattr(jobs, "wait_task_process", broken)
    runner, store = _runner(tmp_path, world["bundle"])
    (job,) = [j for j in runner.jobs.values() if j.name == "slow"]
    run_id = runner.run_now(job, {}, None, Principal("tester", ()))
    wait_for(lambda: _finished(store, run_id), 10, "the run to end")
    (run,) = store.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
    assert (run["life_cycle_state"], run["result_state"]) == ("INTERNAL_ERROR", "FAILED")
    assert "a bug while the task runs" in run["state_message"]
    states = {t["task_key"]: (t["life_cycle_state"], t["result_state"])
              for t in store.query("SELECT * FROM task_runs WHERE parent_run_id = ?",
                                   (run_id,))}
    assert states == {"sleep": ("INTERNAL_ERROR", "FAILED"), "after": ("SKIPPED", "CANCELED")}
    # and the task process it started does not outlive the run
    (task_run_id,) = [t["run_id"] for t in store.query(
        "SELECT run_id FROM task_runs WHERE parent_run_id = ? AND task_key = 'sleep'",
        (run_id,))]
    assert jobs.kill_task_processes({task_run_id}, world["home"], wait=0) == 0


@pytest.mark.slow
def test_a_stopped_server_stops_its_tasks_and_ends_their_runs(world):
    """SIGTERM (Ctrl-C, a service stop): the server stops its tasks and records why itself."""
    w = world["start"]()
    run_id, pids = start_slow(world, w)
    server = world["servers"][-1]
    server.terminate()
    assert server.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert not any(alive(p) for p in pids)
    store = Store(world["home"] / "server.db")
    (run,) = store.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
    assert (run["life_cycle_state"], run["result_state"]) == ("INTERNAL_ERROR", "FAILED")
    assert "the server stopped" in run["state_message"]
    states = {t["task_key"]: (t["life_cycle_state"], t["result_state"])
              for t in store.query("SELECT * FROM task_runs WHERE parent_run_id = ?",
                                   (run_id,))}
    assert states == {"sleep": ("INTERNAL_ERROR", "FAILED"), "after": ("SKIPPED", "CANCELED")}
