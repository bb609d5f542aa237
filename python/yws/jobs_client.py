"""The orchestrator's trigger: run a YWS job through the Jobs API and report how it ended.

``databricks-sdk`` carries the requests (credentials from ``DATABRICKS_HOST`` /
``DATABRICKS_TOKEN`` or a config profile; it retries 429 and 503 answers, honouring
Retry-After). Its own waiter does not look at ``result_state``; :func:`wait` does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from yws.console import Progress, quiet

END_STATES = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
POLL_SECONDS = 5.0


class JobError(RuntimeError):
    """The job cannot be found, started or finished as asked."""


class RunTimeout(JobError):
    """The run did not end within the timeout; it was cancelled."""


@dataclass
class TaskOutcome:
    task_key: str
    run_id: int
    result_state: str | None
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
        return self.life_cycle_state == "TERMINATED" and self.result_state == "SUCCESS"

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


def resolve_job(client: Any, name: str) -> int:
    found = [j for j in client.jobs.list(name=name)
             if j.settings is not None and j.settings.name == name]
    if not found:
        raise JobError(f"no job named {name!r} is visible to these credentials: deploy the "
                       "bundle (databricks bundle deploy) or check the name")
    if len(found) > 1:
        ids = ", ".join(str(j.job_id) for j in found)
        raise JobError(f"{len(found)} jobs are named {name!r} (ids {ids}): rename one")
    return int(found[0].job_id)


def start(client: Any, job: str, params: Mapping[str, str], token: str | None = None
          ) -> tuple[int, int, str]:
    """(job id, run id, idempotency token) of a new run — or of the run the token already made."""
    job_id = resolve_job(client, job)
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
                          for t in run.tasks or [])
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
    for t in run.tasks or []:
        out = client.jobs.get_run_output(t.run_id)
        tasks.append(TaskOutcome(
            task_key=t.task_key, run_id=int(t.run_id),
            result_state=_name(t.state.result_state) if t.state else None,
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
