"""The Jobs API's jobs and runs on the local target.

Jobs come from the bundle in ``jobs/`` (variables resolved for one of its targets; a ``lookup``
resolves to the looked-up name, since locally a principal or a warehouse is its name; the
target's ``run_as`` applies to every job, as ``databricks bundle deploy`` applies it). A run's
tasks execute the wheel's console scripts as local processes with ``--target local``,
honouring ``depends_on`` (a task starts when every task it depends on succeeded; when one
fails, the tasks after it end ``UPSTREAM_FAILED``), job parameters, ``max_concurrent_runs``,
queueing, timeouts and retries.

As on Databricks, every task run is one attempt: a retry is a new task run (its own run id)
with the next ``attempt_number``, and a repair (``runs/repair``) adds new task runs to the
run, recorded in its ``repair_history``. A repaired task's attempt numbers go on from its
latest attempt, so within a run a task's latest task run is both the one with the highest
run id and the one with the highest ``attempt_number``.

``run-now`` with a job parameter the job does not define is accepted, as Databricks accepts it:
the value is recorded with the run and reaches no task, because a task sees a job parameter
only where its own parameters reference ``{{job.parameters.<name>}}`` (wheel tasks here take
positional parameters, which job parameter pushdown does not touch).

An idempotency token belongs to the principal that used it: the same principal, job and token
give the same run; another principal's token of the same text starts its own run; and the
same principal reusing a token with different parameters is refused (Databricks would return
the first run and ignore the new parameters).

A task on Databricks runs with the identity of the job's ``run_as``. Here each run gets a token
of its own that acts as that principal (:meth:`yws.server.store.Store.run_token`), made when
the run starts executing and deleted when it ends; its task processes get it as
``DATABRICKS_TOKEN``, with this server's own address (the socket the run-now or repair
request came in on, never a Host header) as ``DATABRICKS_HOST``, so a task that calls the
workspace (the serving task's ``PUT /api/2.0/serving-endpoints/{name}/config``) calls this
server, and is allowed what the ``run_as`` principal is allowed. Other ``DATABRICKS_*``
variables of the server's environment never reach a task: a local task cannot reach a real
workspace by accident. The token is not logged, and is in no run output or state.
"""

from __future__ import annotations

import dataclasses
import getpass
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

from yws.config import Settings
from yws.deploy.bundle import Bundle, local_variables, substitute
from yws.errors import InvalidValueError
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
# runs/get-output: "Databricks restricts this API to return the last 5 MB of these logs".
MAX_LOG_BYTES = 5 * 1024 * 1024
# The variables databricks-sdk reads credentials and a workspace from all start so
# (DATABRICKS_HOST, _TOKEN, _CONFIG_PROFILE, _CLIENT_ID, ...): none of the server's reach a task.
CREDENTIAL_PREFIX = "DATABRICKS_"
# Task settings a task run repeats (RunTask carries the task's settings).
TASK_RUN_FIELDS = ("description", "environment_key", "python_wheel_task", "timeout_seconds",
                   "max_retries", "min_retry_interval_millis", "retry_on_timeout")


def resolve_variables(value: Any, variables: Mapping[str, str]) -> Any:
    return substitute(value, variables)


def job_id_for(name: str) -> int:
    """A stable id per job name, so ids survive restarts and bundle edits."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 900_000_000 + 100_000_000


def deployer() -> str:
    """Who deployed the bundle to ``yws serve``: whoever started it (the OS user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "yws-bundle"


@dataclass(frozen=True)
class Job:
    job_id: int
    key: str
    settings: dict[str, Any]
    creator: str = "yws-bundle"
    created_time: int = 0  # when this server first saw the job (epoch ms), from the store

    @property
    def name(self) -> str:
        return str(self.settings.get("name", self.key))

    @property
    def parameters(self) -> dict[str, str]:
        return {p["name"]: str(p.get("default", "")) for p in self.settings.get("parameters", [])}

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return {t["task_key"]: t for t in self.settings.get("tasks", [])}

    @property
    def depends_on(self) -> dict[str, list[str]]:
        return {k: [d["task_key"] for d in t.get("depends_on", [])]
                for k, t in self.tasks.items()}

    @property
    def run_as(self) -> str:
        """``run_as_user_name``: the ``run_as`` principal; else the owner; else the creator."""
        run_as = self.settings.get("run_as") or {}
        named = run_as.get("service_principal_name") or run_as.get("user_name")
        if named:
            return str(named)
        for perm in self.settings.get("permissions", []):
            if perm.get("level") == "IS_OWNER":
                return str(perm.get("user_name") or perm.get("service_principal_name"))
        return self.creator

    def allowed(self, principal: Principal, levels: tuple[str, ...]) -> bool:
        for perm in self.settings.get("permissions", []):
            who = perm.get("group_name") or perm.get("service_principal_name") or \
                perm.get("user_name")
            if perm.get("level") in levels and who in principal.identities:
                return True
        return False

    def as_api(self, expand_tasks: bool = True) -> dict[str, Any]:
        """The job as jobs/get answers; jobs/list leaves the tasks out unless asked."""
        settings = {k: v for k, v in self.settings.items() if k != "permissions" and
                    (expand_tasks or k not in ("tasks", "job_clusters"))}
        return {"job_id": self.job_id, "creator_user_name": self.creator,
                "run_as_user_name": self.run_as, "settings": settings,
                "created_time": self.created_time}


def catalog(bundle: Bundle, target: str = "dev",
            overrides: Mapping[str, str] | None = None) -> dict[int, Job]:
    if target not in bundle.targets:
        raise InvalidValueError(f"bundle target {target!r} is unknown; use one of "
                         f"{', '.join(bundle.targets)}")
    variables = local_variables(bundle, target, overrides)
    run_as = (bundle.targets[target] or {}).get("run_as") or bundle.config.get("run_as")
    creator = deployer()
    jobs = {}
    for key, raw in bundle.jobs.items():
        settings = resolve_variables(raw, variables)
        if run_as and not settings.get("run_as"):
            settings["run_as"] = resolve_variables(run_as, variables)
        job = Job(job_id_for(settings.get("name", key)), key, settings, creator)
        jobs[job.job_id] = job
    return jobs


def select_tasks(job: Job, only: list[str]) -> list[str]:
    """The task keys ``only`` names, in the job's order: ``+key`` adds everything upstream of
    the task, ``key+`` everything downstream, ``+key+`` both (run-now ``only``)."""
    deps = job.depends_on
    downstream: dict[str, list[str]] = {k: [] for k in deps}
    for key, ups in deps.items():
        for upstream in ups:
            downstream.setdefault(upstream, []).append(key)
    chosen: set[str] = set()
    for item in only:
        up, down = item.startswith("+"), len(item) > 1 and item.endswith("+")
        key = item[1 if up else 0: -1 if down else None]
        if key not in deps:
            raise invalid(f"only: {key!r} is not a task of job {job.name} (its tasks: "
                          f"{', '.join(deps)})")
        chosen.add(key)
        for edges, wanted in ((deps, up), (downstream, down)):
            stack = [key] if wanted else []
            while stack:
                for nxt in edges.get(stack.pop(), []):
                    if nxt not in chosen:
                        chosen.add(nxt)
                        stack.append(nxt)
    return [k for k in deps if k in chosen]


def local_task_args(parameters: list[str], values: Mapping[str, str], home: Path) -> list[str]:
    """A task's Databricks parameters for the local target: job parameters filled in,
    ``--target local --home HOME``, and the Databricks-only flags left out."""
    args: list[str] = []
    # Which item is a flag and which its value is read from the bundle's text, before the job
    # parameters are filled in: a value a runner sends (batch_id "--home=/elsewhere") stays the
    # value of its flag (``--batch-id=--home=/elsewhere``), never a flag of its own.
    written = [str(p) for p in parameters]
    items = [_JOB_PARAM.sub(lambda m: values.get(m.group(1), ""), p) for p in written]
    i = 0
    while i < len(items):
        flag = items[i]
        value = items[i + 1] if i + 1 < len(items) and not written[i + 1].startswith("--") \
            else None
        i += 2 if value is not None else 1
        if flag in DATABRICKS_ONLY or flag == "--target":
            continue
        args.append(f"{flag}={value}" if value is not None else flag)
    return ["--target=local", f"--home={home}", *args]


def task_environment(environ: Mapping[str, str], home: Path,
                     credentials: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a task process: the server's, without any workspace credentials of
    its own, with the local target's settings and the run's ``credentials``
    (``DATABRICKS_HOST``/``DATABRICKS_TOKEN``) when it has some."""
    env = {k: v for k, v in environ.items() if not k.startswith(CREDENTIAL_PREFIX)}
    env.update({"YWS_HOME": str(home), "YWS_TARGET": "local", "SPARK_LOCAL_IP": "127.0.0.1",
                "PYSPARK_PYTHON": sys.executable})
    env.update(credentials or {})
    return env


def own_address(server: Any, scheme: Any = "http") -> str | None:
    """``http://HOST:PORT`` of the socket a request came in on (an ASGI scope's ``server``), or
    None unless it is an IP address (a test client's made-up host is not one to give tasks)."""
    import ipaddress

    try:
        host, port = str(server[0]), int(server[1])
        ip = ipaddress.ip_address(host)
    except (TypeError, ValueError, IndexError):
        return None
    if ip.is_unspecified or not 0 < port < 65536:
        return None
    shown = f"[{host}]" if ip.version == 6 else host
    return f"{'https' if scheme == 'https' else 'http'}://{shown}:{port}"


def log_tail(text: str, limit: int = MAX_LOG_BYTES) -> tuple[str, bool]:
    """The last ``limit`` bytes of a task's output (whole characters), and whether any were
    cut."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[-limit:].decode("utf-8", "ignore"), True


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {_shown(before.get(k))} then, {_shown(now.get(k))} now"
            for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]


def latest_attempts(rows: list[Any]) -> dict[str, Any]:
    """Each task's latest task run (the highest run id), keyed by task key."""
    latest: dict[str, Any] = {}
    for row in sorted(rows, key=lambda r: int(r["run_id"])):
        latest[row["task_key"]] = row
    return latest


class Runner:
    """Starts, queues, runs, repairs and cancels job runs; every state change goes to the store.

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
        created = store.job_created({j.job_id: j.name for j in jobs.values()})
        self.jobs = {i: dataclasses.replace(j, created_time=created[i]) for i, j in jobs.items()}
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._cancelled: set[int] = set()
        self._stops: dict[int, threading.Event] = {}  # set to stop a run (cancel, shutdown)
        self._threads: dict[int, threading.Thread] = {}
        self._credentials: dict[int, dict[str, str]] = {}  # run id -> its tasks' credentials
        self._stopping = False
        self.address: str | None = None  # this server's own URL, for the tasks (serve_at)
        self.interrupted = self._reconcile()

    def _reconcile(self) -> int:
        """End the runs a previous server left active, after killing their task processes;
        the tokens of those runs go with them."""
        stale = self.store.query(
            f"SELECT run_id FROM task_runs WHERE life_cycle_state NOT IN "
            f"({','.join('?' * len(TERMINAL))})", TERMINAL)
        kill_task_processes({int(r["run_id"]) for r in stale}, self.settings.home.resolve())
        self.store.revoke_run_tokens()
        return self.store.fail_interrupted()

    def serve_at(self, address: str | None) -> None:
        """This server's own URL (see :func:`own_address`): runs started from now on give it to
        their tasks as ``DATABRICKS_HOST``, with a token of the job's ``run_as``."""
        if address:
            self.address = address

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
                principal: Principal, *, only: list[str] | None = None,
                queue: bool | None = None) -> int:
        """Start a run (or queue or skip it); ``only`` runs a subset of the tasks (see
        :func:`select_tasks`), ``queue`` overrides the job's queue setting for this run."""
        params = {str(k): str(v) for k, v in (params or {}).items()}
        if token is not None and not 1 <= len(token) <= 64:
            raise invalid("idempotency_token must be 1 to 64 characters")
        merged = {**job.parameters, **params}
        keys = select_tasks(job, only) if only is not None else list(job.tasks)
        only_json = json.dumps(keys) if only is not None else None
        with self.store.tx() as db:
            if token:
                row = db.execute("SELECT run_id, params, only_tasks FROM runs WHERE job_id = ? "
                                 "AND creator = ? AND idempotency_token = ?",
                                 (job.job_id, principal.name, token)).fetchone()
                if row:
                    self._same_request(token, row, merged, only_json)
                    return int(row["run_id"])  # the documented guarantee: one run per token
            run_id = self.store.next_id(db, "run")
            active = db.execute(
                f"SELECT count(*) FROM runs WHERE job_id = ? AND life_cycle_state IN "
                f"({','.join('?' * len(ACTIVE))})", (job.job_id, *ACTIVE)).fetchone()[0]
            limit = int(job.settings.get("max_concurrent_runs", 1))
            queued = bool((job.settings.get("queue") or {}).get("enabled", False)) \
                if queue is None else queue
            state, result, code, message = "PENDING", None, None, ""
            if active >= limit and queued:
                state, message = "QUEUED", f"Queued: {active} run(s) active, limit {limit}"
            elif active >= limit:
                state, result, code = "SKIPPED", "SKIPPED", "MAX_CONCURRENT_RUNS_EXCEEDED"
                message = f"Skipped: the maximum of {limit} concurrent run(s) is reached"
            db.execute(
                "INSERT INTO runs (run_id, job_id, job_name, params, idempotency_token, creator, "
                "life_cycle_state, result_state, state_message, termination_code, start_time, "
                "end_time, only_tasks) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, job.job_id, job.name, json.dumps(merged), token, principal.name,
                 state, result, message, code, now_ms(), now_ms() if result else 0, only_json))
            deps = job.depends_on
            for key in keys:
                db.execute(
                    "INSERT INTO task_runs (run_id, parent_run_id, task_key, depends_on, "
                    "life_cycle_state) VALUES (?,?,?,?,?)",
                    (self.store.next_id(db, "task"), run_id, key, json.dumps(deps[key]),
                     "SKIPPED" if result else "PENDING"))
        self.schedule(job.job_id)
        return run_id

    @staticmethod
    def _same_request(token: str, row: Any, params: Mapping[str, str],
                      only_json: str | None) -> None:
        """A token reused by its principal must come with the same request."""
        problems = differences(json.loads(row["params"]), params)
        if row["only_tasks"] != only_json:
            problems.append(f"only: {_shown(row['only_tasks'] and json.loads(row['only_tasks']))}"
                            f" then, {_shown(only_json and json.loads(only_json))} now")
        if problems:
            raise invalid(f"idempotency_token {token!r} already started run {row['run_id']} with "
                          f"different parameters ({'; '.join(problems)}): use a new token for a "
                          f"different run, or the same parameters to get run {row['run_id']}")

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
                "SELECT run_id, life_cycle_state, start_time, queue_duration FROM runs "
                "WHERE job_id = ? AND life_cycle_state IN ('PENDING', 'QUEUED') "
                "ORDER BY run_id", (job_id,))
            for row in waiting[: max(0, limit - running)]:
                run_id = int(row["run_id"])
                queued = row["queue_duration"] or (
                    now_ms() - row["start_time"] if row["life_cycle_state"] == "QUEUED" else 0)
                self._set_run(run_id, "RUNNING", state_message="", queue_duration=queued)
                self._stops[run_id] = threading.Event()
                thread = threading.Thread(target=self._execute, args=(job, run_id),
                                          daemon=True, name=f"run-{run_id}")
                self._threads[run_id] = thread
                thread.start()

    # -- repair --------------------------------------------------------------------------
    def repair(self, job: Job, run_id: int, *, rerun_tasks: list[str] | None,
               all_failed: bool, dependents: bool, latest_repair_id: int | None,
               params: Mapping[str, str] | None) -> int:
        """Re-run tasks of an ended run as new task runs of the same run (runs/repair); the
        repair's id. ``rerun_tasks`` or every task that did not succeed
        (``rerun_all_failed_tasks``); tasks downstream of them that did not succeed re-run too,
        and with ``rerun_dependent_tasks`` every task downstream of them."""
        if rerun_tasks and all_failed:
            raise invalid("Only one of rerun_tasks or rerun_all_failed_tasks can be used")
        if not rerun_tasks and not all_failed:
            raise invalid("name the tasks to repair: rerun_tasks, or rerun_all_failed_tasks: "
                          "true")
        with self.store.tx() as db:
            run = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if run["life_cycle_state"] not in TERMINAL:
                raise ApiError(400, "INVALID_STATE",
                               f"Run {run_id} is {run['life_cycle_state']}: the run to repair "
                               "must not be in progress")
            history = list(db.execute("SELECT seq, repair_id FROM repairs WHERE run_id = ? "
                                      "ORDER BY seq", (run_id,)))
            repairs = [int(r["repair_id"]) for r in history if r["repair_id"] is not None]
            if repairs and latest_repair_id != repairs[-1]:
                raise invalid(f"The latest repair ID needs to be provided in order to create a "
                              f"new repair: run {run_id} was last repaired by repair "
                              f"{repairs[-1]}, so latest_repair_id must be {repairs[-1]}")
            if not repairs and latest_repair_id is not None:
                raise invalid(f"latest_repair_id {latest_repair_id}: run {run_id} has not been "
                              "repaired yet; leave latest_repair_id out")
            latest = latest_attempts(list(db.execute(
                "SELECT run_id, task_key, result_state, attempt FROM task_runs "
                "WHERE parent_run_id = ?", (run_id,))))
            chosen = self._repair_tasks(job, run_id, latest, rerun_tasks, dependents)
            if not history:  # the run itself becomes the first item of its repair history
                db.execute("INSERT INTO repairs (run_id, repair_id, start_time) VALUES (?,?,?)",
                           (run_id, None, run["start_time"]))
            db.execute("UPDATE repairs SET end_time = ?, life_cycle_state = ?, result_state = ?, "
                       "termination_code = ?, state_message = ? WHERE seq = (SELECT max(seq) "
                       "FROM repairs WHERE run_id = ?)",
                       (run["end_time"], run["life_cycle_state"], run["result_state"],
                        run["termination_code"], run["state_message"], run_id))
            repair_id = self.store.next_id(db, "repair")
            db.execute("INSERT INTO repairs (run_id, repair_id, start_time) VALUES (?,?,?)",
                       (run_id, repair_id, now_ms()))
            merged = {**json.loads(run["params"]), **(params or {})}
            db.execute("UPDATE runs SET life_cycle_state = 'PENDING', result_state = NULL, "
                       "termination_code = NULL, state_message = ?, end_time = 0, params = ? "
                       "WHERE run_id = ?",
                       (f"Repair {repair_id}: re-running {', '.join(chosen)}", json.dumps(merged),
                        run_id))
            deps = job.depends_on
            for key in chosen:  # attempt numbers go on from the task's latest attempt
                db.execute("INSERT INTO task_runs (run_id, parent_run_id, task_key, depends_on, "
                           "life_cycle_state, repair_id, attempt) VALUES (?,?,?,?,?,?,?)",
                           (self.store.next_id(db, "task"), run_id, key, json.dumps(deps[key]),
                            "PENDING", repair_id, int(latest[key]["attempt"]) + 1))
        self.schedule(job.job_id)
        return repair_id

    @staticmethod
    def _repair_tasks(job: Job, run_id: int, latest: Mapping[str, Any],
                      rerun_tasks: list[str] | None, dependents: bool) -> list[str]:
        deps = {k: [d for d in v if d in latest] for k, v in job.depends_on.items()
                if k in latest}
        if rerun_tasks:
            # each once, and a few: 1000 keys of 100 characters would make a 100 kB message
            unknown = list(dict.fromkeys(k for k in rerun_tasks if k not in latest))
            if unknown:
                more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
                raise invalid(f"rerun_tasks: {', '.join(map(repr, unknown[:3]))}{more} "
                              f"{'is' if len(unknown) == 1 else 'are'} not a task of run "
                              f"{run_id} (its tasks: {', '.join(latest)})")
            chosen = set(rerun_tasks)
        else:
            chosen = {k for k, r in latest.items() if r["result_state"] != "SUCCESS"}
            if not chosen:
                raise invalid(f"Run {run_id} has no failed task to repair: every task succeeded")
        # downstream of a re-run task: what did not succeed re-runs (it must, for the run to
        # succeed); what succeeded only with rerun_dependent_tasks
        grew = True
        while grew:
            grew = False
            for key, ups in deps.items():
                if key not in chosen and any(u in chosen for u in ups) and (
                        dependents or latest[key]["result_state"] != "SUCCESS"):
                    chosen.add(key)
                    grew = True
        for key in chosen:
            for up in deps.get(key, []):
                if up not in chosen and latest[up]["result_state"] != "SUCCESS":
                    raise invalid(f"task {key} depends on {up}, which did not succeed in run "
                                  f"{run_id} ({latest[up]['result_state']}): repair {up} too "
                                  "(or use rerun_all_failed_tasks)")
        return [k for k in job.tasks if k in chosen]

    # -- cancel --------------------------------------------------------------------------
    def cancel(self, run_id: int) -> None:
        """Cancel a run: one waiting to start ends at once; a running one passes through
        ``TERMINATING`` (the run and its running task) while its task processes stop, and no
        further attempt starts."""
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
            message = "Cancelling: stopping the run's task processes"
            with self.store.tx() as db:
                db.execute("UPDATE runs SET life_cycle_state = 'TERMINATING', state_message = ? "
                           "WHERE run_id = ? AND life_cycle_state = 'RUNNING'", (message, run_id))
                db.execute("UPDATE task_runs SET life_cycle_state = 'TERMINATING', "
                           "state_message = ? WHERE parent_run_id = ? AND "
                           "life_cycle_state = 'RUNNING'", (message, run_id))
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
            # the run's token goes in the same transaction: no one sees the run ended while
            # its token still works
            db.execute("DELETE FROM tokens WHERE run_id = ?", (run_id,))
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
            if self.address:  # the run's identity: run_as, for as long as the run executes
                self._credentials[run_id] = {
                    "DATABRICKS_HOST": self.address, "DATABRICKS_AUTH_TYPE": "pat",
                    "DATABRICKS_TOKEN": self.store.run_token(job.run_as, run_id)}
            self._execute_tasks(job, run_id)
        except Exception as e:  # a bug here must not leave the run (or a task) RUNNING
            self._finish(run_id, "FAILED", "INTERNAL_ERROR", f"internal error: {e}",
                         life="INTERNAL_ERROR")
        finally:
            self._credentials.pop(run_id, None)
            self.store.revoke_run_tokens(run_id)  # it stops working with the run's end
            with self._lock:
                self._cancelled.discard(run_id)
                self._stops.pop(run_id, None)
                self._threads.pop(run_id, None)
            self.schedule(job.job_id)

    def _latest(self, run_id: int) -> dict[str, Any]:
        return latest_attempts(self.store.query(
            "SELECT run_id, task_key, depends_on, life_cycle_state, result_state, repair_id, "
            "attempt FROM task_runs WHERE parent_run_id = ?", (run_id,)))

    def _execute_tasks(self, job: Job, run_id: int) -> None:
        """Run the run's pending task runs (all of them, or a repair's) in dependency order:
        a task starts once the latest task run of each task it depends on in this run
        succeeded; a task that cannot start ends ``UPSTREAM_FAILED``."""
        run = self.store.query("SELECT params FROM runs WHERE run_id = ?", (run_id,))[0]
        params = json.loads(run["params"])
        tasks = job.tasks
        job_deadline = time.monotonic() + float(job.settings.get("timeout_seconds") or 0) \
            if job.settings.get("timeout_seconds") else None
        stop = self._stops.get(run_id) or threading.Event()
        while not stop.is_set():
            latest = self._latest(run_id)
            ready = [r for r in latest.values() if r["life_cycle_state"] == "PENDING" and all(
                latest[d]["result_state"] == "SUCCESS"
                for d in json.loads(r["depends_on"]) if d in latest)]
            if not ready:
                break  # done, or the rest wait on a task that did not succeed
            row = ready[0]
            task = tasks.get(row["task_key"])
            if task is None:
                self._set_task(row["run_id"], life_cycle_state="INTERNAL_ERROR",
                               result_state="FAILED", end_time=now_ms(),
                               error=f"task {row['task_key']} is no longer in job {job.name}")
                continue
            self._run_task(run_id, int(row["run_id"]), task, params, job_deadline, stop,
                           row["repair_id"], int(row["attempt"]))
        latest = self._latest(run_id)
        results = {k: r["result_state"] for k, r in latest.items()}
        failed = [k for k in tasks if k in latest and latest[k]["result_state"] not in
                  ("SUCCESS", None) and latest[k]["life_cycle_state"] != "PENDING"]
        if self._stopping:
            self._finish(run_id, "FAILED", "INTERNAL_ERROR", SERVER_STOPPED,
                         life="INTERNAL_ERROR")
        elif set(results.values()) == {"SUCCESS"}:  # a cancel that came too late changes nothing
            self._finish(run_id, "SUCCESS", "SUCCESS",
                         "the cancel came after every task had finished"
                         if run_id in self._cancelled else "")
        elif run_id in self._cancelled:
            self._finish(run_id, "CANCELED", "USER_CANCELED", "Run cancelled by the user")
        elif "TIMEDOUT" in results.values():
            self._finish(run_id, "TIMEDOUT", "RUN_EXECUTION_ERROR", "Run timed out")
        else:
            first = failed[0] if failed else next(iter(latest), "?")
            error = self._task_error(int(latest[first]["run_id"])) if first in latest else ""
            self._finish(run_id, "FAILED", "RUN_EXECUTION_ERROR",
                         f"Task {first} failed with message: {error}")

    def _task_error(self, task_run_id: int) -> str:
        row = self.store.query("SELECT error FROM task_runs WHERE run_id = ?", (task_run_id,))
        return (row[0]["error"] or "see the task's output") if row else ""

    def _run_task(self, run_id: int, task_run_id: int, task: dict[str, Any],
                  params: Mapping[str, str], job_deadline: float | None,
                  stop: threading.Event, repair_id: int | None = None,
                  first_attempt: int = 0) -> str:
        """Run one task: its first attempt in ``task_run_id`` (``attempt_number``
        ``first_attempt``: 0, or after a repair the task's next), each retry in a new task run
        with the next ``attempt_number`` that waits ``WAITING_FOR_RETRY`` through the
        back-off."""
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
        base_env = task_environment(os.environ, self.settings.home.resolve(),
                                    self._credentials.get(run_id))
        retries = int(task.get("max_retries", 0) or 0)
        interval = min(float(task.get("min_retry_interval_millis", 0) or 0) / 1000, 30.0)
        result = "FAILED"
        current = task_run_id
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
                    started = now_ms()
                    self._set_task(current, life_cycle_state="RUNNING", start_time=started,
                                   exec_start=started, end_time=0,
                                   attempt=first_attempt + attempt,
                                   result_state=None, state_message="")
                    try:
                        proc = start_task_process(argv, {**base_env, TASK_MARK: str(current)})
                    except OSError as e:  # e.g. an argument longer than the OS allows
                        self._set_task(current, life_cycle_state="INTERNAL_ERROR",
                                       result_state="FAILED", end_time=now_ms(),
                                       error=f"could not start {entry}: {e}",
                                       state_message=f"could not start {entry}: {e}")
                        return "FAILED"
                    self._procs[run_id] = proc
            if proc is None:
                if attempt:  # the retry's task run waited; without a retry it stays PENDING
                    self._set_task(current, life_cycle_state="TERMINATED",
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
            ended = now_ms()
            errors = [ln[len("error: "):] for ln in err.splitlines() if ln.startswith("error: ")]
            error = None if result == "SUCCESS" else (
                errors[-1] if errors else
                "timed out" if result == "TIMEDOUT" else
                "cancelled" if result == "CANCELED" else
                (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1])
            retry = result == "FAILED" and attempt < retries and not stop.is_set()
            life = "TERMINATED"
            if result == "CANCELED" and self._stopping:
                life, result, error = "INTERNAL_ERROR", "FAILED", SERVER_STOPPED
            logs, truncated = log_tail(out)
            self._set_task(current, life_cycle_state=life, result_state=result,
                           exec_end=ended, end_time=now_ms(), logs=logs,
                           logs_truncated=int(truncated), error=error,
                           error_trace=None if result == "SUCCESS" else err[-20_000:],
                           state_message="" if result == "SUCCESS" else (error or ""))
            if not retry:
                break
            with self.store.tx() as db:  # the retry is a task run of its own
                nxt = self.store.next_id(db, "task")
                db.execute(
                    "INSERT INTO task_runs (run_id, parent_run_id, task_key, depends_on, "
                    "life_cycle_state, attempt, repair_id, state_message) "
                    "SELECT ?, parent_run_id, task_key, depends_on, 'WAITING_FOR_RETRY', ?, ?, ? "
                    "FROM task_runs WHERE run_id = ?",
                    (nxt, first_attempt + attempt + 1, repair_id,
                     f"attempt {attempt} failed, retrying in {interval:g} s: {error}", current))
            current = nxt
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
    elif proc.returncode == 0:
        # it finished its work before the stop took effect (a score task that had published
        # holds the signal, then ends 0): reporting it cancelled would hide that it did
        outcome = "SUCCESS"
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
