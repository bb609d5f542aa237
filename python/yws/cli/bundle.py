"""``yws bundle`` (the Databricks Asset Bundle in jobs/, checked offline) and ``yws jobs``
(its jobs run through the Jobs API, on Databricks or on ``yws serve``)."""

from __future__ import annotations

from pathlib import Path

import click

from yws.cli.options import emit, key_values
from yws.console import stderr_progress


@click.group()
def bundle() -> None:
    """The Databricks Asset Bundle in jobs/."""


@bundle.command("validate")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="The bundle folder [./jobs].")
@click.option("--target", "-t", "targets", multiple=True,
              help="Check this target only (repeatable) [every target].")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A bundle variable, as `databricks bundle --var` takes it (repeatable); "
                   "BUNDLE_VAR_<name> is read too.")
def bundle_validate(root: Path | None, targets: tuple[str, ...],
                    variables: tuple[str, ...]) -> None:
    """Type every job, resolve every local path as the Databricks CLI does, check identities,
    grants and who may choose what."""
    from yws.deploy.bundle import check

    b = check(root, overrides=key_values(variables), targets=list(targets) or None)
    tasks = sum(len(j.get("tasks") or []) for j in b.jobs.values())
    click.echo(f"{b.root / 'databricks.yml'}: valid — {len(b.jobs)} jobs ({', '.join(b.jobs)}), "
               f"{tasks} tasks, targets {', '.join(b.targets)}")


@click.group()
def jobs() -> None:
    """Trigger jobs through the Databricks Jobs API (DATABRICKS_HOST / DATABRICKS_TOKEN)."""


@jobs.command("run")
@click.argument("job")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A job parameter (repeatable).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the run to end and report how it went.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds to wait before cancelling the run [no limit].")
@click.option("--idempotency-token", default=None,
              help="Retrying with the same token never starts a second run "
                   "[derived from job, parameters and date].")
@click.option("--profile", default=None, help="A ~/.databrickscfg profile.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def jobs_run(job: str, params: tuple[str, ...], wait: bool, timeout: float | None,
             idempotency_token: str | None, profile: str | None, as_json: bool) -> None:
    """Run JOB (by name) with parameters; wait, report each task, exit 1 if it failed."""
    from databricks.sdk import WorkspaceClient

    from yws.deploy.jobs_client import RunTimeout, run_job

    client = WorkspaceClient(profile=profile) if profile else WorkspaceClient()
    try:
        result = run_job(client, job, key_values(params), wait_for_end=wait, timeout=timeout,
                         token=idempotency_token, progress=stderr_progress())
    except RunTimeout as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(124) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if as_json:
        emit(result.as_dict())
    else:
        click.echo(f"run {result.run_id} of {job}: {result.life_cycle_state} "
                   f"{result.result_state or ''}  {result.run_page_url or ''}".rstrip())
        for t in result.tasks:
            click.echo(f"  task {t.task_key}: {t.result_state} {t.state_message}".rstrip())
            if t.error:
                click.echo(f"    error: {t.error}")
            if t.logs:
                click.echo("    " + t.logs.strip().replace("\n", "\n    "))
    if wait and not result.succeeded:
        raise SystemExit(1)
