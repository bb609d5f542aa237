"""The orchestrator's trigger: run a YWS job through the Jobs API and report how it ended.

Each task is reported by its latest task run: a retried (or repaired) task has one task run
per attempt, all under its task key.

``databricks-sdk`` carries the requests (credentials from ``DATABRICKS_HOST`` /
``DATABRICKS_TOKEN`` or a config profile; it retries 429 and 503 answers, honouring
Retry-After). Its own waiter does not look at ``result_state``; :func:`wait` does.

A job is found by name. A bundle deployed with ``mode: development`` prefixes every job name
with ``[dev <user>] `` (databricks/cli ``apply_target_mode.go``), so when no job has the exact
name, the development copies of it (tagged ``project: yws`` by the bundle) are candidates, and
among several, the caller's own (``creator_user_name``) wins; anything still ambiguous is an
error that lists the candidates. Job parameters are checked against the job's definition
before the run starts: Databricks accepts a parameter the job does not define and silently
ignores it, which would hide a typo (or an attempt to pick the catalog).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from yws.console import Progress, quiet
from yws.errors import YwsError

END_STATES = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
SUCCESS_STATE = "SUCCESS"  # the one result state of a run that succeeded
POLL_SECONDS = 5.0


class JobError(YwsError, RuntimeError):
    """The job cannot be found, started or finished as asked."""


class RunTimeout(JobError):
    """The run did not end within the timeout; it was cancelled."""


@dataclass
class TaskOutcome:
    task_key: str
    run_id: int
    result_state: str | None
    attempt_number: int = 0
    state_message: str = ""
    error: str | None = None
    error_trace: str | None = None
    logs: str | None = None


@dataclass
class RunOutcome:
    job_id: int
    run_id: int
    life_cycle_state: str
    result_state: str | None
    state_message: str
    run_page_url: str | None
    idempotency_token: str
    tasks: list[TaskOutcome] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.life_cycle_state == "TERMINATED" and self.result_state == SUCCESS_STATE

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "succeeded": self.succeeded}


def default_token(job: str, params: Mapping[str, str], day: dt.date | None = None) -> str:
    """Same job, same parameters, same day: same token, so a retried trigger starts one run."""
    day = day or dt.date.today()
    text = json.dumps({"job": job, "params": dict(sorted(params.items())),
                       "day": day.isoformat()}, sort_keys=True)
    return "yws-" + hashlib.sha256(text.encode()).hexdigest()[:48]


def _name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


DEV_PREFIX = re.compile(r"^\[dev (?P<user>[^\]]+)\] (?P<name>.+)$")
PROJECT_TAG = ("project", "yws")


def _describe(job: Any) -> str:
    who = f", created by {job.creator_user_name}" if job.creator_user_name else ""
    return f"{job.settings.name!r} (job {job.job_id}{who})"


def _ours(job: Any) -> bool:
    tags = (job.settings.tags or {}) if job.settings is not None else {}
    key, value = PROJECT_TAG
    return not tags or tags.get(key) == value


def _me(client: Any) -> str | None:
    try:
        return str(client.current_user.me().user_name)
    except Exception:  # narrowing is a convenience; without it the error lists the candidates
        return None


def latest_tasks(run: Any) -> list[Any]:
    """Each task's latest task run, in the order the tasks first appear. A retry or a repair
    is a task run of its own with the same task key (and the API does not promise an order):
    the latest is the one that started last (the higher run id among equals)."""
    latest: dict[str, Any] = {}
    for t in run.tasks or []:
        seen = latest.get(t.task_key)
        if seen is None or (t.start_time or 0, t.run_id or 0) >= (seen.start_time or 0,
                                                                   seen.run_id or 0):
            latest[t.task_key] = t
    return list(latest.values())


def resolve_job(client: Any, name: str) -> int:
    """The id of the job called ``name``, or of its development copy ``[dev <user>] name``."""
    exact = [j for j in client.jobs.list(name=name)
             if j.settings is not None and j.settings.name == name]
    if len(exact) == 1:
        return int(exact[0].job_id)
    if len(exact) > 1:
        listed = "; ".join(_describe(j) for j in exact)
        raise JobError(f"{len(exact)} jobs are named {name!r}: {listed}; rename or delete all "
                       "but one")
    candidates = []
    for job in client.jobs.list():
        m = DEV_PREFIX.match(job.settings.name if job.settings is not None else "")
        if m and m["name"] == name and _ours(job):
            candidates.append(job)
    if len(candidates) > 1:
        me = _me(client)
        mine = [j for j in candidates if me and j.creator_user_name == me]
        if len(mine) == 1:
            return int(mine[0].job_id)
        listed = "; ".join(_describe(j) for j in candidates)
        raise JobError(f"no job is named {name!r} and {len(candidates)} development copies "
                       f"are: {listed}; pass the full name of the one to run")
    if candidates:
        return int(candidates[0].job_id)
    raise JobError(f"no job named {name!r} (nor a development copy '[dev <user>] {name}') is "
                   "visible to these credentials: deploy the bundle (databricks bundle deploy) "
                   "or check the name")


def check_parameters(client: Any, job_id: int, job: str, params: Mapping[str, str]) -> None:
    """Refuse job parameters the job does not define (Databricks would ignore them)."""
    if not params:
        return
    settings = client.jobs.get(job_id).settings
    defined = [p.name for p in (settings.parameters or [])] if settings is not None else []
    unknown = sorted(set(params) - set(defined))
    if unknown:
        raise JobError(f"job {job} does not take the parameter(s) {', '.join(unknown)}; its "
                       f"parameters are {', '.join(defined) or 'none'} (catalog and schema are "
                       "fixed per bundle target, not chosen per run)")


def start(client: Any, job: str, params: Mapping[str, str], token: str | None = None
          ) -> tuple[int, int, str]:
    """(job id, run id, idempotency token) of a new run — or of the run the token already made."""
    job_id = resolve_job(client, job)
    check_parameters(client, job_id, job, params)
    token = token or default_token(job, params)
    waiter = client.jobs.run_now(job_id=job_id, job_parameters=dict(params),
                                 idempotency_token=token)
    return job_id, int(waiter.response.run_id), token


def wait(
    client: Any, run_id: int, *, timeout: float | None = None, progress: Progress = quiet,
    poll: float | None = None, sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Poll the run until it ends; cancel it and raise :class:`RunTimeout` past ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        run = client.jobs.get_run(run_id)
        state = run.state
        life = _name(state.life_cycle_state) if state else None
        tasks = ", ".join(f"{t.task_key} {_name(t.state.life_cycle_state) if t.state else '?'}"
                          for t in latest_tasks(run))
        line = f"run {run_id}: {life}" + (f" ({tasks})" if tasks else "")
        if line != last:
            progress(line)
            last = line
        if life in END_STATES:
            return run
        if deadline is not None and time.monotonic() >= deadline:
            client.jobs.cancel_run(run_id)
            raise RunTimeout(f"run {run_id} did not end within {timeout:.0f} s; it was "
                             "cancelled")
        sleep(POLL_SECONDS if poll is None else poll)


def outcome(client: Any, run: Any, job_id: int, token: str) -> RunOutcome:
    state = run.state
    tasks = []
    for t in latest_tasks(run):
        out = client.jobs.get_run_output(t.run_id)
        tasks.append(TaskOutcome(
            task_key=t.task_key, run_id=int(t.run_id),
            result_state=_name(t.state.result_state) if t.state else None,
            attempt_number=int(t.attempt_number or 0),
            state_message=(t.state.state_message or "") if t.state else "",
            error=out.error, error_trace=out.error_trace, logs=out.logs,
        ))
    return RunOutcome(
        job_id=job_id, run_id=int(run.run_id),
        life_cycle_state=_name(state.life_cycle_state) or "",
        result_state=_name(state.result_state),
        state_message=state.state_message or "",
        run_page_url=run.run_page_url,
        idempotency_token=token,
        tasks=tasks,
    )


def run_job(
    client: Any, job: str, params: Mapping[str, str], *, wait_for_end: bool = True,
    timeout: float | None = None, token: str | None = None, progress: Progress = quiet,
    poll: float | None = None,
) -> RunOutcome:
    """Trigger ``job`` and (by default) wait for it. Ctrl-C while waiting cancels the run."""
    job_id, run_id, token = start(client, job, params, token)
    progress(f"started {job} (job {job_id}) as run {run_id}")
    if not wait_for_end:
        run = client.jobs.get_run(run_id)
        return RunOutcome(job_id=job_id, run_id=run_id,
                          life_cycle_state=_name(run.state.life_cycle_state) or "",
                          result_state=None, state_message="", run_page_url=run.run_page_url,
                          idempotency_token=token)
    try:
        run = wait(client, run_id, timeout=timeout, progress=progress, poll=poll)
    except KeyboardInterrupt:
        client.jobs.cancel_run(run_id)
        progress(f"cancelled run {run_id}")
        raise
    return outcome(client, run, job_id, token)
