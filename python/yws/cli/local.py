"""The commands of the local target: ``yws serve`` (the Jobs and SQL Statement Execution
APIs), ``yws up`` (serve and the MLflow UI, with a token), ``yws tokens`` (serve's bearer
tokens) and ``yws demo`` (the whole flow; its steps are in :mod:`yws.cli.demo`). The server,
uvicorn and the demo are imported when a command runs, never by ``yws --help``."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from yws.cli.options import emit, key_values, parse_date, settings_options
from yws.config import Settings, SettingsError
from yws.console import stderr_progress
from yws.platform import target_for


def _embedded_only(settings: Settings, message: str) -> None:
    if not target_for(settings).embedded:
        raise SettingsError(message)


@click.command()
@settings_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes your data.")
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--bundle-target", default="dev", show_default=True,
              help="Which bundle target's variables the jobs use.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="Override a bundle variable (repeatable).")
@click.option("--bundle-root", type=click.Path(path_type=Path), default=None,
              help="The bundle folder whose jobs it runs [./jobs, else the checkout's].")
def serve(settings: Settings, host: str, port: int, bundle_target: str,
          variables: tuple[str, ...], bundle_root: Path | None) -> None:
    """Answer the Jobs API and the SQL Statement Execution API on the local target."""
    import uvicorn

    from yws.server.app import PlainHttpToolsProtocol, create_app

    _embedded_only(settings, "yws serve runs the local target only")
    app = create_app(settings, bundle_root=bundle_root, target=bundle_target,
                     variables=key_values(variables))
    if app.state.runner.interrupted:
        click.echo(f"marked {app.state.runner.interrupted} run(s) cut off by the last stop as "
                   "failed", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}, not loopback", err=True)
    click.echo(f"yws serve: http://{host}:{port} (jobs: "
               f"{', '.join(j.name for j in app.state.runner.jobs.values())}; "
               f"warehouse id yws_local)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                http=PlainHttpToolsProtocol)  # an https client is told the http:// address to use


@click.command()
@settings_options
@click.option("--port", type=int, default=8765, show_default=True, help="yws serve's port.")
@click.option("--mlflow-port", type=int, default=5000, show_default=True)
@click.option("--bundle-root", type=click.Path(path_type=Path), default=None,
              help="The bundle folder whose jobs it runs [./jobs, else the checkout's].")
def up(settings: Settings, port: int, mlflow_port: int, bundle_root: Path | None) -> None:
    """Start the local stack (yws serve and the MLflow UI) and print how to use it."""
    import subprocess

    import uvicorn

    from yws.contract.sqlfiles import statements
    from yws.model import registry
    from yws.server.app import PlainHttpToolsProtocol, create_app
    from yws.warehouse.local import LocalWarehouse

    _embedded_only(settings, "yws up runs the local target only")
    warehouse = LocalWarehouse(settings)
    if not warehouse.state_path.is_file():
        warehouse.apply(statements(settings))
    app = create_app(settings, bundle_root=bundle_root)  # a bad bundle stops here, UI unstarted
    store = _store(settings)
    token = store.create_token("yws_orchestrator",
                               [settings.analysts_group, settings.r_users_group], "yws up")
    host = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    ui = subprocess.Popen(
        [str(mlflow_bin), "ui", "--backend-store-uri", registry.tracking_uri(settings),
         "--default-artifact-root", settings.mlflow_artifacts.as_uri(),
         "--host", "127.0.0.1", "--port", str(mlflow_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)  # its own process group: the UI's workers stop with it
    click.echo(f"""
YWS local stack
  Jobs + SQL API   {host}   (warehouse id yws_local)
  MLflow UI        http://127.0.0.1:{mlflow_port}
  token            {token}   (principal yws_orchestrator; groups {settings.analysts_group},
                   {settings.r_users_group}; make more with `yws tokens create`)

Python:
  from databricks.sdk import WorkspaceClient
  w = WorkspaceClient(host="{host}", token="{token}")
  job = next(w.jobs.list(name="yws_score"))
  run = w.jobs.run_now(job.job_id, job_parameters={{"batch_id": "try-1"}}).result()
  print(run.state.result_state)

R:
  library(httr2)
  resp <- request("{host}/api/2.0/sql/statements") |>
    req_auth_bearer_token("{token}") |>
    req_body_json(list(warehouse_id = "yws_local",
      statement = "SELECT * FROM {settings.catalog}.{settings.schema}.v_yws_warnings")) |>
    req_perform() |> resp_body_json()

Ctrl-C stops both.
""")
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning",
                    access_log=False, http=PlainHttpToolsProtocol)
    finally:
        _stop_group(ui)


def _stop_group(proc: Any, grace: float = 5.0) -> None:
    """Stop a process started in its own session and everything it started: SIGTERM to the
    group, then SIGKILL to whatever of the group is left after ``grace`` seconds."""
    import signal
    import time

    from yws.server.jobs import signal_group

    if signal_group(proc.pid, signal.SIGTERM):
        deadline = time.monotonic() + grace
        while signal_group(proc.pid, 0) and time.monotonic() < deadline:
            proc.poll()  # reap the leader, so a zombie does not keep the group "alive"
            time.sleep(0.1)
        signal_group(proc.pid, signal.SIGKILL)  # whatever of the group is left
    proc.wait()


def _store(settings: Settings):  # -> Store
    """yws serve's state: its tokens, runs and task runs."""
    from yws.server.store import Store

    return Store(settings.home.resolve() / "server.db")


@click.group()
def tokens() -> None:
    """Bearer tokens for yws serve."""


@tokens.command("create")
@settings_options
@click.option("--principal", required=True, help="User or service principal name.")
@click.option("--group", "groups", multiple=True, help="A group it belongs to (repeatable).")
@click.option("--comment", default="")
def tokens_create(settings: Settings, principal: str, groups: tuple[str, ...],
                  comment: str) -> None:
    """Create a token; it is printed once, alone on the last line, and stored only hashed."""
    from yws.contract.sqlfiles import check_principal
    from yws.server.store import hash_token

    check_principal(principal, "principal")
    for g in groups:
        check_principal(g, "group")
    token = _store(settings).create_token(principal, list(groups), comment)
    click.echo(f"token {hash_token(token)[:12]} for {principal} "
               f"(groups: {', '.join(groups) or 'none'}); it is not shown again:", err=True)
    click.echo(token)


@tokens.command("list")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array on stdout.")
def tokens_list(settings: Settings, as_json: bool) -> None:
    """The tokens yws serve accepts, by id (the secret itself is never stored)."""
    found = _store(settings).tokens()
    if as_json:
        emit(found)
        return
    for t in found:
        created = dt.datetime.fromtimestamp(t["created_at"], dt.UTC).isoformat(
            timespec="seconds")
        click.echo(f"{t['id']}  {t['principal']:<24} {created}  "
                   f"groups={','.join(t['groups']) or '-'}  {t['comment']}".rstrip())
    if not found:
        click.echo("no tokens: `yws tokens create --principal NAME` makes one", err=True)


@tokens.command("revoke")
@settings_options
@click.argument("token_id")
def tokens_revoke(settings: Settings, token_id: str) -> None:
    """Revoke the token TOKEN_ID (from `yws tokens list`); it stops working at once."""
    gone = _store(settings).revoke_token(token_id)
    click.echo(f"revoked token {gone['id']} of {gone['principal']}")


@click.command()
@settings_options
@click.option("--rows", type=click.IntRange(min=1000), default=20_000, show_default=True,
              help="Rows per snapshot.")
@click.option("--today", default=None,
              help="The day the demo takes as today, YYYY-MM-DD [today]; the data is "
                   "generated from it, so a fixed day gives the same figures.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def demo(settings: Settings, rows: int, today: str | None, as_json: bool) -> None:
    """The whole flow on this machine: data, train, register, promote, score."""
    from yws.cli.demo import render, run_demo

    _embedded_only(settings, "yws demo runs on the local target only")
    summary = run_demo(settings, rows=rows, today=parse_date(today, "--today"),
                       progress=stderr_progress())
    if as_json:
        emit(summary)
    else:
        click.echo(render(summary))
