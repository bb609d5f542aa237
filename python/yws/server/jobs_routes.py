"""The Jobs API 2.2 routes of ``yws serve``: jobs, run-now, runs, repairs and their output.

Runs and their tasks live in the server's store; :class:`yws.server.jobs.Runner` starts,
repairs and stops them. Shapes follow the Databricks REST reference; every field served or
refused is listed in ``docs/api-conformance.md``. A request field this server does not act on
is refused with ``INVALID_PARAMETER_VALUE`` naming it, never silently ignored.

Also here: ``GET /.well-known/databricks-config``, the host metadata every ``databricks-sdk``
client asks for when it is made.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

from fastapi import FastAPI, Request

from yws.server.context import Api
from yws.server.errors import invalid, not_found
from yws.server.jobs import (
    TASK_RUN_FIELDS,
    Job,
    Runner,
    check_run_access,
    latest_attempts,
    own_address,
)
from yws.server.limits import (
    REPAIR_FIELDS,
    RUN_NOW_FIELDS,
    flag,
    idempotency_token,
    job_parameters,
    list_limit,
    list_offset,
    optional_id,
    page_offset,
    positive_id,
    queue_setting,
    served_fields,
    task_keys,
)
from yws.server.store import ACTIVE, Principal, Store

STATUS = {"PENDING": "PENDING", "QUEUED": "QUEUED", "RUNNING": "RUNNING",
          "TERMINATING": "TERMINATING", "TERMINATED": "TERMINATED", "SKIPPED": "TERMINATED",
          "INTERNAL_ERROR": "TERMINATED", "BLOCKED": "BLOCKED",
          "WAITING_FOR_RETRY": "WAITING"}
TERMINATION_TYPE = {"SUCCESS": "SUCCESS", "USER_CANCELED": "SUCCESS",
                    "RUN_EXECUTION_ERROR": "CLIENT_ERROR", "MAX_CONCURRENT_RUNS_EXCEEDED":
                    "CLIENT_ERROR", "INTERNAL_ERROR": "INTERNAL_ERROR"}
RUN_ACTIVE = ("PENDING", "QUEUED", "RUNNING", "TERMINATING")  # "active" of runs/list


def _state(life: str, result: str | None, message: str) -> dict[str, Any]:
    out: dict[str, Any] = {"life_cycle_state": life, "state_message": message or "",
                           "user_cancelled_or_timedout": result in ("CANCELED", "TIMEDOUT")}
    if result:
        out["result_state"] = result
    return out


def _status(life: str, result: str | None, code: str | None, message: str) -> dict[str, Any]:
    out: dict[str, Any] = {"state": STATUS.get(life, life)}
    if life == "QUEUED":
        # the only reason a run queues here: the job's max_concurrent_runs
        out["queue_details"] = {"code": "MAX_CONCURRENT_RUNS_REACHED", "message": message or ""}
    if STATUS.get(life) == "TERMINATED":
        code = code or ("SUCCESS" if result == "SUCCESS" else "RUN_EXECUTION_ERROR")
        out["termination_details"] = {"code": code, "type": TERMINATION_TYPE.get(code,
                                                                                 "CLIENT_ERROR"),
                                      "message": message or ""}
    return out


def _durations(t: Any) -> dict[str, int]:
    """A task run's setup (until its process started), execution (the process) and cleanup
    (after it, until the task run ended), in ms; run_duration is their sum."""
    start, first, last, end = t["start_time"], t["exec_start"], t["exec_end"], t["end_time"]
    setup = max(0, first - start) if start and first else 0
    execution = max(0, last - first) if first and last else 0
    cleanup = max(0, end - last) if last and end else 0
    return {"setup_duration": setup, "execution_duration": execution,
            "cleanup_duration": cleanup, "run_duration": setup + execution + cleanup}


def workspace_id(home: str) -> str:
    """A stable number for this server's workspace (its home), as a workspace id is."""
    return str(int(hashlib.sha256(home.encode()).hexdigest()[:12], 16) % 10**15 + 10**15)


T = TypeVar("T")


def paged(items: list[T], page_token: str | None, offset: Any,
          size: int) -> tuple[list[T], dict[str, Any]]:
    """One page of a list call (by ``page_token``, else the deprecated ``offset``) and its
    ``has_more`` / ``next_page_token`` fields."""
    start = page_offset(page_token) if page_token else list_offset(offset)
    page = items[start:start + size]
    more: dict[str, Any] = {"has_more": start + len(page) < len(items)}
    if more["has_more"]:
        more["next_page_token"] = str(start + len(page))
    return page, more


def task_json(t: Any, job_id: int, base: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One task run, as runs/get shows it."""
    return {
        "task_key": t["task_key"], "run_id": t["run_id"],
        "depends_on": [{"task_key": d} for d in json.loads(t["depends_on"])],
        "start_time": t["start_time"], "end_time": t["end_time"],
        "attempt_number": t["attempt"], "queue_duration": 0, **_durations(t),
        "run_page_url": f"{base}#job/{job_id}/run/{t['run_id']}",
        "state": _state(t["life_cycle_state"], t["result_state"], t["state_message"]),
        "status": _status(t["life_cycle_state"], t["result_state"], None,
                          t["state_message"]),
        **{k: spec[k] for k in TASK_RUN_FIELDS if k in spec},
    }


def history_json(store: Store, row: Any, tasks: list[Any]) -> list[dict[str, Any]]:
    """repair_history: the run itself (ORIGINAL), then each repair (REPAIR, with its id);
    the last item is live (the run's current state), the others as they ended."""
    items: list[Any] = store.query("SELECT * FROM repairs WHERE run_id = ? ORDER BY seq",
                                   (row["run_id"],))
    if not items:  # never repaired: the run alone
        items = [{"repair_id": None, "start_time": row["start_time"]}]
    out = []
    for i, item in enumerate(items):
        src = row if i == len(items) - 1 else item  # the last item is live
        entry: dict[str, Any] = {
            "type": "REPAIR" if item["repair_id"] is not None else "ORIGINAL",
            "start_time": item["start_time"], "end_time": src["end_time"],
            "state": _state(src["life_cycle_state"], src["result_state"],
                            src["state_message"]),
            "status": _status(src["life_cycle_state"], src["result_state"],
                              src["termination_code"], src["state_message"]),
            "task_run_ids": [t["run_id"] for t in tasks
                             if t["repair_id"] == item["repair_id"]],
        }
        if item["repair_id"] is not None:
            entry["id"] = item["repair_id"]
        out.append(entry)
    return out

def run_json(api: Api, row: Any, base: str, expand_tasks: bool = True,
             include_history: bool = False) -> dict[str, Any]:
    """One run, as runs/get and runs/list show it."""
    store, runner = api.store, api.runner
    tasks = store.query("SELECT * FROM task_runs WHERE parent_run_id = ? ORDER BY run_id",
                        (row["run_id"],))
    job = runner.jobs.get(row["job_id"])
    defaults = job.parameters if job else {}
    specs = job.tasks if job else {}
    values = json.loads(row["params"])
    ended = row["end_time"] and row["life_cycle_state"] not in ACTIVE
    latest = latest_attempts(tasks)
    single = _durations(next(iter(latest.values()))) if len(latest) == 1 else {}
    out: dict[str, Any] = {
        "job_id": row["job_id"], "run_id": row["run_id"], "number_in_job": row["run_id"],
        "original_attempt_run_id": row["run_id"], "attempt_number": 0,
        "run_name": row["job_name"], "creator_user_name": row["creator"],
        "run_as_user_name": job.run_as if job else row["creator"],
        "run_type": "JOB_RUN", "trigger": "ONE_TIME", "start_time": row["start_time"],
        "end_time": row["end_time"], "queue_duration": row["queue_duration"],
        # "set to 0 for multitask job runs"; run_duration is the run with its repairs
        "setup_duration": single.get("setup_duration", 0),
        "execution_duration": single.get("execution_duration", 0),
        "cleanup_duration": single.get("cleanup_duration", 0),
        "run_duration": row["end_time"] - row["start_time"] if ended else 0,
        "run_page_url": f"{base}#job/{row['job_id']}/run/{row['run_id']}",
        "job_parameters": [{"name": k, "value": v, "default": defaults.get(k, "")}
                           for k, v in values.items()],
        "state": _state(row["life_cycle_state"], row["result_state"],
                        row["state_message"]),
        "status": _status(row["life_cycle_state"], row["result_state"],
                          row["termination_code"], row["state_message"]),
    }
    if expand_tasks:
        out["tasks"] = [task_json(t, row["job_id"], base, specs.get(t["task_key"], {}))
                        for t in tasks]
    if include_history:
        out["repair_history"] = history_json(store, row, tasks)
    return out

def run_row(api: Api, run_id: Any, principal: Principal) -> Any:
    """The run ``run_id``, if ``principal`` may see it."""
    store, runner = api.store, api.runner
    rows = store.query("SELECT * FROM runs WHERE run_id = ?",
                       (positive_id(run_id, "run_id"),))
    if not rows:
        raise not_found(f"Run {run_id} does not exist.")
    check_run_access(runner, rows[0], principal)
    return rows[0]


def runnable(runner: Runner, job_id: Any, principal: Principal, request: Request) -> Job:
    """The job ``principal`` may run (run-now, repair). The run's tasks will call this server
    back on the socket this request came in on, never on its Host header (which the client
    writes): see :func:`yws.server.jobs.own_address`."""
    job = runner.job(job_id, principal, run=True)
    runner.serve_at(own_address(request.scope.get("server"), request.scope.get("scheme")))
    return job


def add_routes(app: FastAPI, api: Api) -> None:
    """The Jobs API 2.2: jobs (list, get, run-now), then their runs."""
    runner, who, body = api.runner, api.who, api.body

    # -- host metadata -------------------------------------------------------------------
    @app.get("/.well-known/databricks-config")
    def host_metadata() -> dict[str, Any]:
        """What a workspace answers (databricks-sdk ``HostMetadata``), unauthenticated; no
        ``oidc_endpoint``: this server takes personal access tokens only."""
        return {"workspace_id": workspace_id(str(runner.settings.home.resolve()))}

    # -- Jobs API 2.2 --------------------------------------------------------------------
    @app.get("/api/2.2/jobs/list")
    def jobs_list(request: Request, name: str | None = None, limit: int = 20,
                  offset: int | None = None, expand_tasks: bool = False,
                  page_token: str | None = None) -> dict[str, Any]:
        principal = who(request)
        size = list_limit(limit, "limit", 20, 100)
        wanted = name.casefold() if name is not None else None
        visible = [j for j in sorted(runner.jobs.values(), key=lambda j: j.name)
                   if j.allowed(principal, ("CAN_VIEW", "CAN_MANAGE_RUN", "CAN_MANAGE",
                                            "IS_OWNER"))
                   and (wanted is None or j.name.casefold() == wanted)]
        page, more = paged(visible, page_token, offset, size)
        return {"jobs": [j.as_api(expand_tasks) for j in page], **more}

    @app.get("/api/2.2/jobs/get")
    def jobs_get(request: Request, job_id: int) -> dict[str, Any]:
        return runner.job(positive_id(job_id, "job_id"), who(request)).as_api()

    @app.post("/api/2.2/jobs/run-now")
    async def run_now(request: Request) -> dict[str, Any]:
        principal = who(request)
        data = await body(request)
        if "job_id" not in data:
            raise invalid("Missing required field: job_id")
        served_fields(data, RUN_NOW_FIELDS, "run-now")
        job = runnable(runner, positive_id(data["job_id"], "job_id"), principal, request)
        params = job_parameters(data.get("job_parameters"))
        token = idempotency_token(data.get("idempotency_token"))
        run_id = runner.run_now(job, params, token, principal,
                                only=task_keys(data.get("only"), "only", plus=True),
                                queue=queue_setting(data.get("queue")))
        return {"run_id": run_id, "number_in_job": run_id}

    _add_run_routes(app, api)


def _add_run_routes(app: FastAPI, api: Api) -> None:
    """runs/repair, get, list, get-output, cancel, ..."""
    store, runner, who, body = api.store, api.runner, api.who, api.body

    @app.post("/api/2.2/jobs/runs/repair")
    async def runs_repair(request: Request) -> dict[str, Any]:
        principal = who(request)
        data = await body(request)
        served_fields(data, REPAIR_FIELDS, "runs/repair")
        if "run_id" not in data:
            raise invalid("Missing required field: run_id")
        row = run_row(api, data["run_id"], principal)
        job = runnable(runner, row["job_id"], principal, request)
        repair_id = runner.repair(
            job, int(row["run_id"]), rerun_tasks=task_keys(data.get("rerun_tasks"),
                                                           "rerun_tasks"),
            all_failed=flag(data.get("rerun_all_failed_tasks"), "rerun_all_failed_tasks"),
            dependents=flag(data.get("rerun_dependent_tasks"), "rerun_dependent_tasks"),
            latest_repair_id=optional_id(data.get("latest_repair_id"), "latest_repair_id"),
            params=job_parameters(data.get("job_parameters")))
        return {"repair_id": repair_id}

    @app.get("/api/2.2/jobs/runs/get")
    def runs_get(request: Request, run_id: int, include_history: bool = False,
                 include_resolved_values: bool = False) -> dict[str, Any]:
        if include_resolved_values:
            raise invalid("include_resolved_values is not supported by this server")
        return run_json(api, run_row(api, run_id, who(request)), str(request.base_url),
                        include_history=include_history)

    @app.get("/api/2.2/jobs/runs/list")
    def runs_list(request: Request, job_id: int | None = None, active_only: bool = False,
                  completed_only: bool = False, limit: int = 20, offset: int | None = None,
                  expand_tasks: bool = False, run_type: str | None = None,
                  start_time_from: int | None = None, start_time_to: int | None = None,
                  page_token: str | None = None) -> dict[str, Any]:
        principal = who(request)
        if active_only and completed_only:
            raise invalid("active_only and completed_only cannot both be true")
        size = list_limit(limit, "limit", 20, 25, zero_is_maximum=True)
        if run_type not in (None, "JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN"):
            raise invalid(f"run_type must be JOB_RUN, WORKFLOW_RUN or SUBMIT_RUN, not "
                          f"{run_type[:40]!r}")
        rows = store.query("SELECT * FROM runs ORDER BY start_time DESC, run_id DESC")
        keep = []
        for r in rows:
            job = runner.jobs.get(r["job_id"])
            if job is None or not job.allowed(principal, ("CAN_VIEW", "CAN_MANAGE_RUN",
                                                          "CAN_MANAGE", "IS_OWNER")):
                continue
            if job_id is not None and r["job_id"] != job_id:
                continue
            if run_type not in (None, "JOB_RUN"):  # every run here is a job run
                continue
            if (start_time_from is not None and r["start_time"] < start_time_from) or \
                    (start_time_to is not None and r["start_time"] > start_time_to):
                continue
            active = r["life_cycle_state"] in RUN_ACTIVE
            if (active_only and not active) or (completed_only and active):
                continue
            keep.append(r)
        page, more = paged(keep, page_token, offset, size)
        base = str(request.base_url)
        return {"runs": [run_json(api, r, base, expand_tasks) for r in page], **more}

    @app.get("/api/2.2/jobs/runs/get-output")
    def runs_get_output(request: Request, run_id: int) -> dict[str, Any]:
        principal = who(request)
        run_id = positive_id(run_id, "run_id")
        tasks = store.query("SELECT * FROM task_runs WHERE run_id = ?", (run_id,))
        if not tasks:
            parent = run_row(api, run_id, principal)
            n = store.query("SELECT count(*) AS n FROM task_runs WHERE parent_run_id = ?",
                            (parent["run_id"],))[0]["n"]
            raise invalid(f"Retrieving the output of runs with multiple tasks is not supported. "
                          f"Please retrieve the output of each individual task run instead "
                          f"({n} task run(s)).")
        t = tasks[0]
        parent = run_row(api, t["parent_run_id"], principal)
        base = str(request.base_url)
        job = runner.jobs.get(parent["job_id"])
        spec = job.tasks.get(t["task_key"], {}) if job else {}
        metadata = {**task_json(t, parent["job_id"], base, spec), "job_id": parent["job_id"],
                    "run_name": parent["job_name"], "creator_user_name": parent["creator"]}
        out: dict[str, Any] = {"metadata": metadata}
        if t["logs"] is not None:
            out["logs"], out["logs_truncated"] = t["logs"], bool(t["logs_truncated"])
        if t["error"]:
            out["error"], out["error_trace"] = t["error"], t["error_trace"]
        return out

    @app.post("/api/2.2/jobs/runs/cancel")
    async def runs_cancel(request: Request) -> dict[str, Any]:
        principal = who(request)
        data = await body(request)
        served_fields(data, ("run_id",), "runs/cancel")
        row = run_row(api, data.get("run_id"), principal)
        runner.job(row["job_id"], principal, run=True)
        runner.cancel(int(row["run_id"]))
        return {}
