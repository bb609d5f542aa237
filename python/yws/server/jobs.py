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
from yws.server.store import ACTIVE, Principal, Store, now_ms

_JOB_PARAM = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
RUN_LEVELS = ("CAN_MANAGE_RUN", "CAN_MANAGE", "IS_OWNER")
VIEW_LEVELS = (*RUN_LEVELS, "CAN_VIEW")
# Flags of the Databricks task parameters that mean nothing on the local target.
DATABRICKS_ONLY = ("--dfs-tmpdir", "--warehouse-id")


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
    """Starts, queues, runs and cancels job runs; every state change goes to the store."""

    def __init__(self, settings: Settings, store: Store, jobs: dict[int, Job],
                 bin_dir: Path | None = None) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._cancelled: set[int] = set()
        self.interrupted = store.fail_interrupted()

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
            running = self.store.query(
                "SELECT count(*) AS n FROM runs WHERE job_id = ? AND life_cycle_state = "
                "'RUNNING'", (job_id,))[0]["n"]
            waiting = self.store.query(
                "SELECT run_id FROM runs WHERE job_id = ? AND life_cycle_state IN "
                "('PENDING', 'QUEUED') ORDER BY run_id", (job_id,))
            for row in waiting[: max(0, limit - running)]:
                self._set_run(row["run_id"], "RUNNING", state_message="")
                threading.Thread(target=self._execute, args=(job, row["run_id"]),
                                 daemon=True, name=f"run-{row['run_id']}").start()

    def cancel(self, run_id: int) -> None:
        run = self.store.query("SELECT life_cycle_state FROM runs WHERE run_id = ?", (run_id,))
        if not run:
            raise not_found(f"Run {run_id} does not exist.")
        if run[0]["life_cycle_state"] not in ACTIVE:
            return
        with self._lock:
            self._cancelled.add(run_id)
            proc = self._procs.get(run_id)
        if proc is not None:
            proc.terminate()
        if run[0]["life_cycle_state"] in ("PENDING", "QUEUED"):
            self._finish(run_id, "CANCELED", "USER_CANCELED", "Run cancelled before it started")

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

    def _finish(self, run_id: int, result: str, code: str, message: str) -> None:
        life = "TERMINATED"
        with self.store.tx() as db:
            db.execute("UPDATE runs SET life_cycle_state = ?, result_state = ?, "
                       "termination_code = ?, state_message = ?, end_time = ? "
                       "WHERE run_id = ?", (life, result, code, message, now_ms(), run_id))
            db.execute("UPDATE task_runs SET life_cycle_state = 'SKIPPED', result_state = ? "
                       "WHERE parent_run_id = ? AND life_cycle_state IN ('PENDING', 'BLOCKED')",
                       ("CANCELED" if result == "CANCELED" else "UPSTREAM_FAILED", run_id))

    def _execute(self, job: Job, run_id: int) -> None:
        try:
            self._execute_tasks(job, run_id)
        except Exception as e:  # a bug here must not leave the run RUNNING
            self._finish(run_id, "FAILED", "INTERNAL_ERROR", f"internal error: {e}")
        finally:
            with self._lock:
                self._cancelled.discard(run_id)
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
        done: dict[str, str] = {}
        while len(done) < len(tasks):
            ready = [k for k in tasks if k not in done and
                     all(done.get(d) == "SUCCESS" for d in json.loads(rows[k]["depends_on"]))]
            if not ready:
                break  # the rest wait on a failed task
            key = ready[0]
            done[key] = self._run_task(run_id, rows[key]["run_id"], tasks[key], params,
                                       job_deadline)
            if done[key] != "SUCCESS":
                break
        results = set(done.values())
        if run_id in self._cancelled:
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
                  params: Mapping[str, str], job_deadline: float | None) -> str:
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
               "PYSPARK_PYTHON": sys.executable}
        retries = int(task.get("max_retries", 0) or 0)
        interval = min(float(task.get("min_retry_interval_millis", 0) or 0) / 1000, 30.0)
        result = "FAILED"
        for attempt in range(retries + 1):
            timeout = float(task.get("timeout_seconds") or 0) or None
            if job_deadline is not None:
                left = max(1.0, job_deadline - time.monotonic())
                timeout = min(timeout, left) if timeout else left
            self._set_task(task_run_id, life_cycle_state="RUNNING", start_time=now_ms(),
                           attempt=attempt, state_message="")
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            with self._lock:
                self._procs[run_id] = proc
            try:
                out, err = proc.communicate(timeout=timeout)
                result = "SUCCESS" if proc.returncode == 0 else "FAILED"
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                result = "TIMEDOUT"
            finally:
                with self._lock:
                    self._procs.pop(run_id, None)
            if run_id in self._cancelled:
                result = "CANCELED"
            errors = [ln[len("error: "):] for ln in err.splitlines() if ln.startswith("error: ")]
            error = None if result == "SUCCESS" else (
                errors[-1] if errors else
                "timed out" if result == "TIMEDOUT" else
                (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1])
            self._set_task(task_run_id, life_cycle_state="TERMINATED", result_state=result,
                           end_time=now_ms(), logs=out[-100_000:], error=error,
                           error_trace=None if result == "SUCCESS" else err[-20_000:],
                           state_message="" if result == "SUCCESS" else (error or ""))
            if result in ("SUCCESS", "CANCELED") or attempt == retries:
                break
            time.sleep(interval)
        return result

    def cancel_all(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            proc.terminate()


def check_run_access(runner: Runner, run_row: Any, principal: Principal) -> Job:
    job = runner.jobs.get(int(run_row["job_id"]))
    if job is None:
        raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "the run's job is no longer in the bundle")
    if not job.allowed(principal, VIEW_LEVELS):
        raise denied(f"{principal.name} cannot view runs of job {job.job_id}")
    return job
