"""The Jobs API's jobs and runs on the local target.

Jobs come from the bundle in ``jobs/`` (variables resolved for one of its targets; a ``lookup``
resolves to the looked-up name, since locally a principal or a warehouse is its name). A run's
tasks execute the wheel's console scripts as local processes with ``--target local``,
honouring ``depends_on`` (a task starts when every task it depends on succeeded; when one
fails, the tasks after it end ``UPSTREAM_FAILED``), job parameters, ``max_concurrent_runs``,
queueing, timeouts and retries.

``run-now`` with a job parameter the job does not define is accepted, as Databricks accepts it:
the value is recorded with the run and reaches no task, because a task sees a job parameter
only where its own parameters reference ``{{job.parameters.<name>}}`` (wheel tasks here take
positional parameters, which job parameter pushdown does not touch).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yws.bundle import Bundle, local_variables, substitute
from yws.config import Settings
from yws.server.errors import ApiError, denied, invalid, not_found
from yws.server.store import ACTIVE, SERVER_STOPPED, TERMINAL, Principal, Store, now_ms

_JOB_PARAM = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
RUN_LEVELS = ("CAN_MANAGE_RUN", "CAN_MANAGE", "IS_OWNER")
VIEW_LEVELS = (*RUN_LEVELS, "CAN_VIEW")
# Flags of the Databricks task parameters that mean nothing on the local target.
DATABRICKS_ONLY = ("--dfs-tmpdir", "--warehouse-id")
# In every task process's environment: which task run it belongs to, so a restarted server
# can find (and kill) what a killed one left behind.
TASK_MARK = "YWS_TASK_RUN_ID"
GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when a task is stopped
POLL_SECONDS = 0.2  # how often a running task is checked for a cancel or its timeout


def resolve_variables(value: Any, variables: Mapping[str, str]) -> Any:
    return substitute(value, variables)


def job_id_for(name: str) -> int:
    """A stable id per job name, so ids survive restarts and bundle edits."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 900_000_000 + 100_000_000


@dataclass(frozen=True)
class Job:
    job_id: int
    key: str
    settings: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.settings.get("name", self.key))

    @property
    def parameters(self) -> dict[str, str]:
        return {p["name"]: str(p.get("default", "")) for p in self.settings.get("parameters", [])}

    def allowed(self, principal: Principal, levels: tuple[str, ...]) -> bool:
        for perm in self.settings.get("permissions", []):
            who = perm.get("group_name") or perm.get("service_principal_name") or \
                perm.get("user_name")
            if perm.get("level") in levels and who in principal.identities:
                return True
        return False

    def as_api(self) -> dict[str, Any]:
        settings = {k: v for k, v in self.settings.items() if k != "permissions"}
        return {"job_id": self.job_id, "creator_user_name": "yws-bundle",
                "settings": settings, "created_time": 0}


def catalog(bundle: Bundle, target: str = "dev",
            overrides: Mapping[str, str] | None = None) -> dict[int, Job]:
    if target not in bundle.targets:
        raise ValueError(f"bundle target {target!r} is unknown; use one of "
                         f"{', '.join(bundle.targets)}")
    variables = local_variables(bundle, target, overrides)
    jobs = {}
    for key, raw in bundle.jobs.items():
        settings = resolve_variables(raw, variables)
        job = Job(job_id_for(settings.get("name", key)), key, settings)
        jobs[job.job_id] = job
    return jobs


def local_task_args(parameters: list[str], values: Mapping[str, str], home: Path) -> list[str]:
    """A task's Databricks parameters for the local target: job parameters filled in,
    ``--target local --home HOME``, and the Databricks-only flags left out."""
    args: list[str] = []
    items = [_JOB_PARAM.sub(lambda m: values.get(m.group(1), ""), str(p)) for p in parameters]
    i = 0
    while i < len(items):
        flag = items[i]
        value = items[i + 1] if i + 1 < len(items) and not items[i + 1].startswith("--") \
            else None
        i += 2 if value is not None else 1
        if flag in DATABRICKS_ONLY or flag == "--target":
            continue
        args.append(f"{flag}={value}" if value is not None else flag)
    return ["--target=local", f"--home={home}", *args]


class Runner:
    """Starts, queues, runs and cancels job runs; every state change goes to the store.

    Each task attempt is a process in its own process group (session), so stopping a task
    stops everything it started (a Spark JVM included): SIGTERM to the group, then SIGKILL
    after ``GRACE_SECONDS``. On Linux the task also gets a parent-death signal, so a server
    killed with ``kill -9`` takes its tasks with it; on start, the server kills any task
    process a previous server left behind and ends the runs it was running (``INTERNAL_ERROR``).
    """

    def __init__(self, settings: Settings, store: Store, jobs: dict[int, Job],
                 bin_dir: Path | None = None) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._cancelled: set[int] = set()
        self._stops: dict[int, threading.Event] = {}  # set to stop a run (cancel, shutdown)
        self._threads: dict[int, threading.Thread] = {}
        self._stopping = False
        self.interrupted = self._reconcile()

    def _reconcile(self) -> int:
        """End the runs a previous server left active, after killing their task processes."""
        stale = self.store.query(
            f"SELECT run_id FROM task_runs WHERE life_cycle_state NOT IN "
            f"({','.join('?' * len(TERMINAL))})", TERMINAL)
        kill_task_processes({int(r["run_id"]) for r in stale}, self.settings.home.resolve())
        return self.store.fail_interrupted()

    # -- jobs ------------------------------------------------------------------------------
    def job(self, job_id: Any, principal: Principal, run: bool = False) -> Job:
        try:
            job = self.jobs[int(job_id)]
        except (KeyError, TypeError, ValueError):
            raise not_found(f"Job {job_id} does not exist.") from None
        if not job.allowed(principal, RUN_LEVELS if run else VIEW_LEVELS):
            raise denied(f"{principal.name} does not have "
                         f"{'Manage Run' if run else 'View'} permissions on Job {job_id}. "
                         "Please contact the owner or an administrator for access.")
        return job

    # -- run-now -----------------------------------------------------------------------------
    def run_now(self, job: Job, params: Mapping[str, Any] | None, token: str | None,
                principal: Principal) -> int:
        params = {str(k): str(v) for k, v in (params or {}).items()}
        if token is not None and not 1 <= len(token) <= 64:
            raise invalid("idempotency_token must be 1 to 64 characters")
        merged = {**job.parameters, **params}
        with self.store.tx() as db:
            if token:
                row = db.execute("SELECT run_id FROM runs WHERE job_id = ? AND "
                                 "idempotency_token = ?", (job.job_id, token)).fetchone()
                if row:
                    return int(row["run_id"])  # the documented guarantee: one run per token
            run_id = self.store.next_id(db, "run")
            active = db.execute(
                f"SELECT count(*) FROM runs WHERE job_id = ? AND life_cycle_state IN "
                f"({','.join('?' * len(ACTIVE))})", (job.job_id, *ACTIVE)).fetchone()[0]
            limit = int(job.settings.get("max_concurrent_runs", 1))
            queue = bool((job.settings.get("queue") or {}).get("enabled", False))
            state, result, code, message = "PENDING", None, None, ""
            if active >= limit and queue:
                state, message = "QUEUED", f"Queued: {active} run(s) active, limit {limit}"
            elif active >= limit:
                state, result, code = "SKIPPED", "SKIPPED", "MAX_CONCURRENT_RUNS_EXCEEDED"
                message = f"Skipped: the maximum of {limit} concurrent run(s) is reached"
            db.execute(
                "INSERT INTO runs (run_id, job_id, job_name, params, idempotency_token, creator, "
                "life_cycle_state, result_state, state_message, termination_code, start_time, "
                "end_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, job.job_id, job.name, json.dumps(merged), token, principal.name,
                 state, result, message, code, now_ms(), now_ms() if result else 0))
            for task in job.settings.get("tasks", []):
                db.execute(
                    "INSERT INTO task_runs (run_id, parent_run_id, task_key, depends_on, "
                    "life_cycle_state) VALUES (?,?,?,?,?)",
                    (self.store.next_id(db, "task"), run_id, task["task_key"],
                     json.dumps([d["task_key"] for d in task.get("depends_on", [])]),
                     "SKIPPED" if result else "PENDING"))
        self.schedule(job.job_id)
        return run_id

    def schedule(self, job_id: int) -> None:
        """Start pending (or queued) runs of the job while it is under its concurrency limit."""
        job = self.jobs[job_id]
        limit = int(job.settings.get("max_concurrent_runs", 1))
        with self._lock:
            if self._stopping:
                return
            running = self.store.query(
                "SELECT count(*) AS n FROM runs WHERE job_id = ? AND life_cycle_state IN "
                "('RUNNING', 'TERMINATING')", (job_id,))[0]["n"]
            waiting = self.store.query(
                "SELECT run_id FROM runs WHERE job_id = ? AND life_cycle_state IN "
                "('PENDING', 'QUEUED') ORDER BY run_id", (job_id,))
            for row in waiting[: max(0, limit - running)]:
                run_id = int(row["run_id"])
                self._set_run(run_id, "RUNNING", state_message="")
                self._stops[run_id] = threading.Event()
                thread = threading.Thread(target=self._execute, args=(job, run_id),
                                          daemon=True, name=f"run-{run_id}")
                self._threads[run_id] = thread
                thread.start()

    def cancel(self, run_id: int) -> None:
        """Cancel a run: one waiting to start ends at once; a running one passes through
        ``TERMINATING`` while its task processes stop, and no further attempt starts."""
        run = self.store.query("SELECT life_cycle_state FROM runs WHERE run_id = ?", (run_id,))
        if not run:
            raise not_found(f"Run {run_id} does not exist.")
        if run[0]["life_cycle_state"] not in ACTIVE:
            return
        with self._lock:
            self._cancelled.add(run_id)
            stop = self._stops.get(run_id)
            proc = self._procs.get(run_id)
        if stop is not None:
            with self.store.tx() as db:
                db.execute("UPDATE runs SET life_cycle_state = 'TERMINATING', state_message = ? "
                           "WHERE run_id = ? AND life_cycle_state = 'RUNNING'",
                           ("Cancelling: stopping the run's task processes", run_id))
            stop.set()  # the run's thread stops the task (or its back-off) and ends the run
        if proc is not None:
            signal_group(proc.pid, signal.SIGTERM)
        if stop is None and run[0]["life_cycle_state"] in ("PENDING", "QUEUED"):
            self._finish(run_id, "CANCELED", "USER_CANCELED", "Run cancelled before it started")

    def cancel_all(self) -> None:
        """The server is stopping: stop every task (TERM, then KILL after the grace period)
        and end its runs ``INTERNAL_ERROR``, so no run or task is left ``RUNNING``."""
        with self._lock:
            self._stopping = True
            stops = list(self._stops.values())
            procs = list(self._procs.values())
            threads = list(self._threads.values())
        for stop in stops:
            stop.set()
        for proc in procs:
            signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS + 2
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- execution ---------------------------------------------------------------------------
    def _set_run(self, run_id: int, state: str, **fields: Any) -> None:
        sets = ["life_cycle_state = ?"] + [f"{k} = ?" for k in fields]
        with self.store.tx() as db:
            db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?",
                       (state, *fields.values(), run_id))

    def _set_task(self, task_run_id: int, **fields: Any) -> None:
        sets = [f"{k} = ?" for k in fields]
        with self.store.tx() as db:
            db.execute(f"UPDATE task_runs SET {', '.join(sets)} WHERE run_id = ?",
                       (*fields.values(), task_run_id))

    def _finish(self, run_id: int, result: str, code: str, message: str,
                life: str = "TERMINATED") -> None:
        """End the run, and with it every task row that has not ended: tasks that never
        started are ``SKIPPED``; any other (a bug, a cancel race) ends as the run did."""
        never = "UPSTREAM_FAILED" if life == "TERMINATED" and result in ("FAILED", "TIMEDOUT") \
            else "CANCELED"
        marks = ",".join("?" * len(TERMINAL))
        with self.store.tx() as db:
            db.execute("UPDATE runs SET life_cycle_state = ?, result_state = ?, "
                       "termination_code = ?, state_message = ?, end_time = ? "
                       "WHERE run_id = ?", (life, result, code, message, now_ms(), run_id))
            db.execute("UPDATE task_runs SET life_cycle_state = 'SKIPPED', result_state = ?, "
                       "end_time = ? WHERE parent_run_id = ? AND "
                       "life_cycle_state IN ('PENDING', 'BLOCKED')", (never, now_ms(), run_id))
            db.execute(f"UPDATE task_runs SET life_cycle_state = ?, result_state = ?, "
                       f"state_message = ?, end_time = ? WHERE parent_run_id = ? AND "
                       f"life_cycle_state NOT IN ({marks})",
                       (life, result if result != "SUCCESS" else "FAILED", message, now_ms(),
                        run_id, *TERMINAL))

    def _execute(self, job: Job, run_id: int) -> None:
        try:
            self._execute_tasks(job, run_id)
        except Exception as e:  # a bug here must not leave the run (or a task) RUNNING
            self._finish(run_id, "FAILED", "INTERNAL_ERROR", f"internal error: {e}",
                         life="INTERNAL_ERROR")
        finally:
            with self._lock:
                self._cancelled.discard(run_id)
                self._stops.pop(run_id, None)
                self._threads.pop(run_id, None)
            self.schedule(job.job_id)

    def _execute_tasks(self, job: Job, run_id: int) -> None:
        run = self.store.query("SELECT params, start_time FROM runs WHERE run_id = ?",
                               (run_id,))[0]
        params = json.loads(run["params"])
        tasks = {t["task_key"]: t for t in job.settings.get("tasks", [])}
        rows = {r["task_key"]: r for r in self.store.query(
            "SELECT run_id, task_key, depends_on FROM task_runs WHERE parent_run_id = ?",
            (run_id,))}
        job_deadline = time.monotonic() + float(job.settings.get("timeout_seconds") or 0) \
            if job.settings.get("timeout_seconds") else None
        stop = self._stops.get(run_id) or threading.Event()
        done: dict[str, str] = {}
        while len(done) < len(tasks) and not stop.is_set():
            ready = [k for k in tasks if k not in done and
                     all(done.get(d) == "SUCCESS" for d in json.loads(rows[k]["depends_on"]))]
            if not ready:
                break  # the rest wait on a failed task
            key = ready[0]
            done[key] = self._run_task(run_id, rows[key]["run_id"], tasks[key], params,
                                       job_deadline, stop)
            if done[key] != "SUCCESS":
                break
        results = set(done.values())
        if self._stopping:
            self._finish(run_id, "FAILED", "INTERNAL_ERROR", SERVER_STOPPED,
                         life="INTERNAL_ERROR")
        elif run_id in self._cancelled:
            self._finish(run_id, "CANCELED", "USER_CANCELED", "Run cancelled by the user")
        elif results == {"SUCCESS"} and len(done) == len(tasks):
            self._finish(run_id, "SUCCESS", "SUCCESS", "")
        elif "TIMEDOUT" in results:
            self._finish(run_id, "TIMEDOUT", "RUN_EXECUTION_ERROR", "Run timed out")
        else:
            failed = [k for k, v in done.items() if v != "SUCCESS"]
            self._finish(run_id, "FAILED", "RUN_EXECUTION_ERROR",
                         f"Task {failed[0]} failed with message: "
                         f"{self._task_error(rows[failed[0]]['run_id'])}")

    def _task_error(self, task_run_id: int) -> str:
        row = self.store.query("SELECT error FROM task_runs WHERE run_id = ?", (task_run_id,))
        return (row[0]["error"] or "see the task's output") if row else ""

    def _run_task(self, run_id: int, task_run_id: int, task: dict[str, Any],
                  params: Mapping[str, str], job_deadline: float | None,
                  stop: threading.Event) -> str:
        wheel = task.get("python_wheel_task") or {}
        entry = wheel.get("entry_point")
        exe = self.bin_dir / str(entry)
        if not entry or not exe.exists():
            self._set_task(task_run_id, life_cycle_state="INTERNAL_ERROR", result_state="FAILED",
                           error=f"entry point {entry} is not installed in {self.bin_dir}",
                           end_time=now_ms())
            return "FAILED"
        argv = [str(exe), *local_task_args(list(wheel.get("parameters", [])), params,
                                           self.settings.home.resolve())]
        env = {**os.environ, "YWS_HOME": str(self.settings.home.resolve()),
               "YWS_TARGET": "local", "SPARK_LOCAL_IP": "127.0.0.1",
               "PYSPARK_PYTHON": sys.executable, TASK_MARK: str(task_run_id)}
        retries = int(task.get("max_retries", 0) or 0)
        interval = min(float(task.get("min_retry_interval_millis", 0) or 0) / 1000, 30.0)
        result = "FAILED"
        for attempt in range(retries + 1):
            # The back-off before a retry ends early on a cancel, and a cancel at any point
            # before the next process starts means it never starts: the last check is made
            # under the lock cancel() takes, so either cancel sees the process or the start
            # sees the cancel.
            if attempt:
                stop.wait(interval)
            timeout = float(task.get("timeout_seconds") or 0) or None
            if job_deadline is not None:
                left = max(1.0, job_deadline - time.monotonic())
                timeout = min(timeout, left) if timeout else left
            with self._lock:
                if stop.is_set():
                    proc = None
                else:
                    self._set_task(task_run_id, life_cycle_state="RUNNING",
                                   start_time=now_ms(), end_time=0, attempt=attempt,
                                   result_state=None, state_message="")
                    try:
                        proc = start_task_process(argv, env)
                    except OSError as e:  # e.g. an argument longer than the OS allows
                        self._set_task(task_run_id, life_cycle_state="INTERNAL_ERROR",
                                       result_state="FAILED", end_time=now_ms(),
                                       error=f"could not start {entry}: {e}",
                                       state_message=f"could not start {entry}: {e}")
                        return "FAILED"
                    self._procs[run_id] = proc
            if proc is None:
                if attempt:  # the task waited to retry; without a retry it stays PENDING
                    self._set_task(task_run_id, life_cycle_state="TERMINATED",
                                   result_state="CANCELED", end_time=now_ms(),
                                   state_message="Run cancelled while waiting to retry: "
                                                 f"attempt {attempt + 1} was not started")
                return "CANCELED"
            try:
                out, err, result = wait_task_process(proc, timeout, stop)
            finally:
                with self._lock:
                    self._procs.pop(run_id, None)
                if proc.poll() is None:  # only after an error here: nothing outlives its run
                    signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            errors = [ln[len("error: "):] for ln in err.splitlines() if ln.startswith("error: ")]
            error = None if result == "SUCCESS" else (
                errors[-1] if errors else
                "timed out" if result == "TIMEDOUT" else
                "cancelled" if result == "CANCELED" else
                (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1])
            retry = result == "FAILED" and attempt < retries and not stop.is_set()
            life = "WAITING_FOR_RETRY" if retry else "TERMINATED"
            if result == "CANCELED" and self._stopping:
                life, result, error = "INTERNAL_ERROR", "FAILED", SERVER_STOPPED
            self._set_task(task_run_id, life_cycle_state=life,
                           result_state=None if retry else result,
                           end_time=0 if retry else now_ms(), logs=out[-100_000:], error=error,
                           error_trace=None if result == "SUCCESS" else err[-20_000:],
                           state_message="" if result == "SUCCESS" else (
                               f"attempt {attempt + 1} failed, retrying in {interval:g} s: "
                               f"{error}" if retry else (error or "")))
            if not retry:
                break
        return result


def signal_group(pid: int, sig: int) -> bool:
    """Signal the process group a task process leads; False when it is gone."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# The first process of a task's session on Linux: it asks the kernel for SIGUSR1 when the
# server thread that started it dies (prctl PR_SET_PDEATHSIG), checks the server did not die
# first, starts the task and waits for it. On that signal it SIGKILLs its whole process group:
# the task and anything the task started (a Spark JVM), so nothing of a run survives a
# ``kill -9`` of the server. A cancel's SIGTERM to the group is for the task, so it ignores
# that and ends with the task. A separate small interpreter rather than a ``preexec_fn``,
# which Python documents as unsafe in a threaded program like the server.
_WATCHDOG = (
    "import ctypes, os, signal, subprocess, sys\n"
    "def stop(*_):\n"
    "    os.killpg(0, signal.SIGKILL)\n"
    "signal.signal(signal.SIGUSR1, stop)\n"
    "if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGUSR1), 0, 0, 0) != 0:\n"
    "    sys.exit('prctl(PR_SET_PDEATHSIG) failed: ' + os.strerror(ctypes.get_errno()))\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    stop()\n"
    "signal.signal(signal.SIGTERM, lambda *_: None)\n"
    "task = subprocess.Popen(sys.argv[2:])\n"
    "code = task.wait()\n"
    "sys.exit(code if code >= 0 else 128 - code)\n")


def start_task_process(argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """A task process in its own session (so its process group holds everything it starts),
    on Linux under a watchdog that kills that group when the server dies."""
    if sys.platform.startswith("linux"):
        argv = [sys.executable, "-S", "-c", _WATCHDOG, str(os.getpid()), *argv]
    return subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_task_process(proc: subprocess.Popen[str], timeout: float | None,
                      stop: threading.Event) -> tuple[str, str, str]:
    """Wait for a task process, reading its output; on a stop or the timeout, SIGTERM its
    group and SIGKILL it after the grace period. Returns (stdout, stderr, result)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome: str | None = None
    kill_at = float("inf")
    while True:
        try:
            out, err = proc.communicate(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if outcome is None and (stop.is_set() or (deadline is not None and now > deadline)):
            outcome = "CANCELED" if stop.is_set() else "TIMEDOUT"
            signal_group(proc.pid, signal.SIGTERM)
            kill_at = now + GRACE_SECONDS
        elif now > kill_at or proc.poll() is not None:
            # past the grace period, or the task ended while something it started still
            # holds its output open: nothing of the task outlives it
            signal_group(proc.pid, signal.SIGKILL)
            kill_at = float("inf")
    signal_group(proc.pid, signal.SIGKILL)  # leftovers of a task that ended on its own
    if outcome is None:  # a task that fails once stopped (cancel signals it at once) was stopped
        outcome = "SUCCESS" if proc.returncode == 0 else "CANCELED" if stop.is_set() \
            else "FAILED"
    return out or "", err or "", outcome


def _environ(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def kill_task_processes(task_run_ids: set[int], home: Path, wait: float = 5.0) -> int:
    """SIGKILL every process (on Linux, found through /proc) started for one of these task
    runs of this home, and wait for them to go; the number found."""
    proc_dir = Path("/proc")
    if not task_run_ids or not proc_dir.is_dir():
        return 0
    marks = {f"{TASK_MARK}={i}".encode() for i in task_run_ids}
    home_mark = f"YWS_HOME={home}".encode()
    found = []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        env = set(_environ(entry.name).split(b"\0"))
        if home_mark in env and env & marks:
            found.append(int(entry.name))
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in found):
        time.sleep(0.05)
    return len(found)


def check_run_access(runner: Runner, run_row: Any, principal: Principal) -> Job:
    job = runner.jobs.get(int(run_row["job_id"]))
    if job is None:
        raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "the run's job is no longer in the bundle")
    if not job.allowed(principal, VIEW_LEVELS):
        raise denied(f"{principal.name} cannot view runs of job {job.job_id}")
    return job
