"""The Jobs API 2.2 routes of ``yws serve``: jobs, run-now, runs and their output.

Runs and their tasks live in the server's store; :class:`yws.server.jobs.Runner` starts and
stops them. Shapes follow the Databricks REST reference (see ``docs/api-conformance.md``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request

from yws.server.context import Api
from yws.server.errors import invalid, not_found
from yws.server.jobs import check_run_access
from yws.server.limits import idempotency_token, job_parameters, page_offset, positive_id
from yws.server.store import Principal

STATUS = {"PENDING": "PENDING", "QUEUED": "QUEUED", "RUNNING": "RUNNING",
          "TERMINATING": "TERMINATING", "TERMINATED": "TERMINATED", "SKIPPED": "TERMINATED",
          "INTERNAL_ERROR": "TERMINATED", "BLOCKED": "BLOCKED",
          "WAITING_FOR_RETRY": "WAITING"}
TERMINATION_TYPE = {"SUCCESS": "SUCCESS", "USER_CANCELED": "SUCCESS",
                    "RUN_EXECUTION_ERROR": "CLIENT_ERROR", "MAX_CONCURRENT_RUNS_EXCEEDED":
                    "CLIENT_ERROR", "INTERNAL_ERROR": "INTERNAL_ERROR"}


def _state(life: str, result: str | None, message: str) -> dict[str, Any]:
    out: dict[str, Any] = {"life_cycle_state": life, "state_message": message or "",
                           "user_cancelled_or_timedout": result in ("CANCELED", "TIMEDOUT")}
    if result:
        out["result_state"] = result
    return out


def _status(life: str, result: str | None, code: str | None, message: str) -> dict[str, Any]:
    out: dict[str, Any] = {"state": STATUS.get(life, life)}
    if STATUS.get(life) == "TERMINATED":
        code = code or ("SUCCESS" if result == "SUCCESS" else "RUN_EXECUTION_ERROR")
        out["termination_details"] = {"code": code, "type": TERMINATION_TYPE.get(code,
                                                                                 "CLIENT_ERROR"),
                                      "message": message or ""}
    return out


def add_routes(app: FastAPI, api: Api) -> None:
    store, runner, who, body = api.store, api.runner, api.who, api.body

    def run_json(row: Any, base: str) -> dict[str, Any]:
        tasks = store.query("SELECT * FROM task_runs WHERE parent_run_id = ? ORDER BY run_id",
                            (row["run_id"],))
        job = runner.jobs.get(row["job_id"])
        defaults = job.parameters if job else {}
        values = json.loads(row["params"])
        return {
            "job_id": row["job_id"], "run_id": row["run_id"], "number_in_job": row["run_id"],
            "run_name": row["job_name"], "creator_user_name": row["creator"],
            "run_type": "JOB_RUN", "start_time": row["start_time"],
            "end_time": row["end_time"],
            "run_page_url": f"{base}#job/{row['job_id']}/run/{row['run_id']}",
            "job_parameters": [{"name": k, "value": v, "default": defaults.get(k, "")}
                               for k, v in values.items()],
            "state": _state(row["life_cycle_state"], row["result_state"],
                            row["state_message"]),
            "status": _status(row["life_cycle_state"], row["result_state"],
                              row["termination_code"], row["state_message"]),
            "tasks": [{
                "task_key": t["task_key"], "run_id": t["run_id"],
                "depends_on": [{"task_key": d} for d in json.loads(t["depends_on"])],
                "start_time": t["start_time"], "end_time": t["end_time"],
                "attempt_number": t["attempt"],
                "state": _state(t["life_cycle_state"], t["result_state"], t["state_message"]),
                "status": _status(t["life_cycle_state"], t["result_state"], None,
                                  t["state_message"]),
            } for t in tasks],
        }

    def run_row(run_id: Any, principal: Principal) -> Any:
        rows = store.query("SELECT * FROM runs WHERE run_id = ?",
                           (positive_id(run_id, "run_id"),))
        if not rows:
            raise not_found(f"Run {run_id} does not exist.")
        check_run_access(runner, rows[0], principal)
        return rows[0]

    # -- Jobs API 2.2 --------------------------------------------------------------------
    @app.get("/api/2.2/jobs/list")
    def jobs_list(request: Request, name: str | None = None, limit: int = 20,
                  page_token: str | None = None) -> dict[str, Any]:
        principal = who(request)
        visible = [j for j in sorted(runner.jobs.values(), key=lambda j: j.name)
                   if j.allowed(principal, ("CAN_VIEW", "CAN_MANAGE_RUN", "CAN_MANAGE",
                                            "IS_OWNER")) and (name is None or j.name == name)]
        start = page_offset(page_token)
        page = visible[start:start + max(1, min(limit, 100))]
        out: dict[str, Any] = {"jobs": [j.as_api() for j in page],
                               "has_more": start + len(page) < len(visible)}
        if out["has_more"]:
            out["next_page_token"] = str(start + len(page))
        return out

    @app.get("/api/2.2/jobs/get")
    def jobs_get(request: Request, job_id: int) -> dict[str, Any]:
        return runner.job(positive_id(job_id, "job_id"), who(request)).as_api()

    @app.post("/api/2.2/jobs/run-now")
    async def run_now(request: Request) -> dict[str, Any]:
        principal = who(request)
        data = await body(request)
        if "job_id" not in data:
            raise invalid("Missing required field: job_id")
        job = runner.job(positive_id(data["job_id"], "job_id"), principal, run=True)
        params = job_parameters(data.get("job_parameters"))
        token = idempotency_token(data.get("idempotency_token"))
        run_id = runner.run_now(job, params, token, principal)
        return {"run_id": run_id, "number_in_job": run_id}

    @app.get("/api/2.2/jobs/runs/get")
    def runs_get(request: Request, run_id: int) -> dict[str, Any]:
        return run_json(run_row(run_id, who(request)), str(request.base_url))

    @app.get("/api/2.2/jobs/runs/list")
    def runs_list(request: Request, job_id: int | None = None, active_only: bool = False,
                  completed_only: bool = False, limit: int = 25,
                  page_token: str | None = None) -> dict[str, Any]:
        principal = who(request)
        if active_only and completed_only:
            raise invalid("active_only and completed_only cannot both be true")
        rows = store.query("SELECT * FROM runs ORDER BY run_id DESC")
        keep = []
        for r in rows:
            job = runner.jobs.get(r["job_id"])
            if job is None or not job.allowed(principal, ("CAN_VIEW", "CAN_MANAGE_RUN",
                                                          "CAN_MANAGE", "IS_OWNER")):
                continue
            if job_id is not None and r["job_id"] != job_id:
                continue
            active = r["life_cycle_state"] in ("PENDING", "QUEUED", "RUNNING", "TERMINATING")
            if (active_only and not active) or (completed_only and active):
                continue
            keep.append(r)
        start = page_offset(page_token)
        page = keep[start:start + max(1, min(limit, 25))]
        out: dict[str, Any] = {"runs": [run_json(r, str(request.base_url)) for r in page],
                               "has_more": start + len(page) < len(keep)}
        if out["has_more"]:
            out["next_page_token"] = str(start + len(page))
        return out

    @app.get("/api/2.2/jobs/runs/get-output")
    def runs_get_output(request: Request, run_id: int) -> dict[str, Any]:
        principal = who(request)
        run_id = positive_id(run_id, "run_id")
        tasks = store.query("SELECT * FROM task_runs WHERE run_id = ?", (run_id,))
        if not tasks:
            parent = run_row(run_id, principal)
            n = store.query("SELECT count(*) AS n FROM task_runs WHERE parent_run_id = ?",
                            (parent["run_id"],))[0]["n"]
            raise invalid(f"Retrieving the output of runs with multiple tasks is not supported. "
                          f"Please retrieve the output of each individual task run instead "
                          f"({n} task(s)).")
        t = tasks[0]
        parent = run_row(t["parent_run_id"], principal)
        out: dict[str, Any] = {"metadata": {
            "job_id": parent["job_id"], "run_id": t["run_id"], "task_key": t["task_key"],
            "state": _state(t["life_cycle_state"], t["result_state"], t["state_message"]),
            "status": _status(t["life_cycle_state"], t["result_state"], None,
                              t["state_message"])}}
        if t["logs"] is not None:
            out["logs"], out["logs_truncated"] = t["logs"], len(t["logs"]) >= 100_000
        if t["error"]:
            out["error"], out["error_trace"] = t["error"], t["error_trace"]
        return out

    @app.post("/api/2.2/jobs/runs/cancel")
    async def runs_cancel(request: Request) -> dict[str, Any]:
        principal = who(request)
        data = await body(request)
        row = run_row(data.get("run_id"), principal)
        runner.job(row["job_id"], principal, run=True)
        runner.cancel(int(row["run_id"]))
        return {}
