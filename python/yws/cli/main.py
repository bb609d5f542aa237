"""The ``yws`` command line: data, tables, train, score and the demo."""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from yws.config import Settings, SettingsError, check_identifier, check_table_name
from yws.console import stderr_progress
from yws.contract.spec import Spec, default_spec_text, load_spec
from yws.errors import user_errors  # printed as one line, no traceback


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command shares; unset ones fall back to YWS_* variables."""
    options = [
        click.option("--target", type=click.Choice(["local", "databricks"]), default=None,
                     help="Where to run [env YWS_TARGET; default local]."),
        click.option("--catalog", default=None, help="UC catalog [env YWS_CATALOG; yws_dev]."),
        click.option("--schema", default=None, help="UC schema [env YWS_SCHEMA; ml]."),
        click.option("--home", type=click.Path(path_type=Path), default=None,
                     help="Local state folder [env YWS_HOME; ./.yws]."),
        click.option("--spec", "spec_path", type=click.Path(path_type=Path), default=None,
                     help="Feature spec YAML [env YWS_SPEC; the packaged default]."),
    ]

    @functools.wraps(fn)
    def wrapper(target: str | None, catalog: str | None, schema: str | None,
                home: Path | None, spec_path: Path | None, **kwargs: Any) -> Any:
        settings = Settings.load(target=target, catalog=catalog, schema=schema, home=home,
                                 spec=spec_path)
        return fn(settings, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _spec(settings: Settings) -> Spec:
    return load_spec(settings.spec)


def _date(value: str | None, what: str = "--as-of") -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD", param_hint=what
        ) from None


def _table(settings: Settings, name: str) -> str:
    """A short name is taken in the configured catalog and schema."""
    if "." in name:
        check_table_name(name)
        return name
    return settings.table(check_identifier(name, "table"))


def _spark(settings: Settings):  # -> SparkSession
    from yws.platform.spark import get_spark

    return get_spark(settings)


def _emit(obj: dict[str, Any] | list[Any]) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yws")
def cli() -> None:
    """YWS: train and score the yellow-warning model on Unity Catalog or on this machine."""


# -- spec --------------------------------------------------------------------------------------
@cli.group()
def spec() -> None:
    """The feature contract."""


@spec.command("default")
def spec_default() -> None:
    """Print the packaged default spec (a starting point for your own)."""
    click.echo(default_spec_text(), nl=False)


@spec.command("check")
@settings_options
def spec_check(settings: Settings) -> None:
    """Load and check the spec; print a summary."""
    s = _spec(settings)
    click.echo(f"{s.source}: OK — key {s.entity_key}, as-of {s.as_of_column}, label {s.label}, "
               f"{len(s.features)} features, bands YELLOW >= {s.bands.yellow}, "
               f"RED >= {s.bands.red}")


# -- data --------------------------------------------------------------------------------------
@cli.group()
def data() -> None:
    """Synthetic demo data."""


@data.command("generate")
@settings_options
@click.option("--rows", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--as-of", "as_of", required=True, help="Snapshot date, YYYY-MM-DD.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--unlabeled", is_flag=True, help="Leave the label null (a scoring snapshot).")
@click.option("--anomalies", type=click.IntRange(min=0), default=0, show_default=True,
              help="Rows made bad on purpose (scoring quarantines them).")
@click.option("--no-missing", is_flag=True, help="No missing values at all.")
@click.option("--table", default=None, help="Target table [the features table].")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write a .parquet or .csv file instead of a table.")
def data_generate(settings: Settings, rows: int, as_of: str, seed: int, unlabeled: bool,
                  anomalies: int, no_missing: bool, table: str | None,
                  output: Path | None) -> None:
    """Generate a feature snapshot for the default spec, with labels from a known model."""
    from yws.datasets.ingest import write_snapshot
    from yws.datasets.synthetic import generate

    day = _date(as_of)
    assert day is not None
    snap = generate(rows, day, seed, missing=not no_missing, labeled=not unlabeled,
                    anomalies=anomalies)
    if output is not None:
        if output.suffix.lower() == ".csv":
            from pyarrow import csv

            csv.write_csv(snap, output)
        else:
            import pyarrow.parquet as pq

            pq.write_table(snap, output)
        click.echo(f"wrote {snap.num_rows} rows to {output}")
        return
    name = _table(settings, table) if table else settings.features
    n = write_snapshot(_storage(settings), snap, name, "as_of_date", day)
    click.echo(f"wrote {n} rows as of {day} to {name}")


def _storage(settings: Settings):  # -> Storage
    from yws.storage import storage_for

    return storage_for(settings)


# -- tables ------------------------------------------------------------------------------------
@cli.group()
def tables() -> None:
    """Tables by their Unity Catalog name."""


@tables.command("import")
@settings_options
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("table")
@click.option("--mode", type=click.Choice(["snapshot", "overwrite", "append"]), default=None,
              help="snapshot: replace the rows of the file's one as-of date (the features "
                   "table's default); overwrite: replace the table (any other table's "
                   "default); append: add the rows.")
@click.option("--replace-schema", is_flag=True,
              help="Let --mode overwrite give an existing table another schema.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default=None,
              help="File format [from the suffix].")
def tables_import(settings: Settings, file: Path, table: str, mode: str | None,
                  replace_schema: bool, fmt: str | None) -> None:
    """Load a CSV or Parquet FILE into the Delta table TABLE.

    The features table must match the spec: its columns, with values that convert to its
    types; every file is checked before anything is written.
    """
    from yws.datasets.ingest import default_mode, import_file

    name = _table(settings, table)
    # Unity Catalog names are case-insensitive: YWS_FEATURES is the features table too.
    spec = _spec(settings) if name.lower() == settings.features.lower() else None
    used = mode or default_mode(spec)
    n = import_file(_storage(settings), file, name, mode=used,  # type: ignore[arg-type]
                    fmt=fmt, spec=spec, replace_schema=replace_schema)
    click.echo(f"{used} {name}: {n} rows from {file}")


@tables.command("list")
@settings_options
def tables_list(settings: Settings) -> None:
    """The tables in the configured catalog and schema."""
    names = _storage(settings).list_tables()
    if not names:
        click.echo(f"no tables in {settings.catalog}.{settings.schema} yet", err=True)
    for name in names:
        click.echo(name)


@tables.command("show")
@settings_options
@click.argument("table")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def tables_show(settings: Settings, table: str, limit: int, as_json: bool) -> None:
    """A table's location, version, row count, columns and first rows."""
    storage = _storage(settings)
    name = _table(settings, table)
    info = storage.describe(name)
    head = storage.read_arrow(name, limit=limit)
    if as_json:
        _emit({**info.__dict__, "head": head.to_pylist()})
        return
    click.echo(f"{info.name}\n  location  {info.location}\n  version   {info.version}\n"
               f"  rows      {info.rows}")
    click.echo("  columns   " + ", ".join(f"{c} {t}" for c, t in info.columns))
    if limit and head.num_rows:
        click.echo(head.to_pandas().to_string(index=False, max_colwidth=40))


# -- sql ---------------------------------------------------------------------------------------
@cli.group()
def sql() -> None:
    """Tables, views and grants as code; queries on the warehouse."""


@sql.command("render")
@settings_options
def sql_render(settings: Settings) -> None:
    """Print the files of sql/ rendered for these settings, in apply order."""
    from yws.contract.sqlfiles import statements

    for stmt in statements(settings):
        click.echo(f"-- {stmt.where}\n{stmt.text};\n")


@sql.command("apply")
@settings_options
def sql_apply(settings: Settings) -> None:
    """Create or update the schema, tables, views and grants, in file order (idempotent)."""
    from yws.contract.sqlfiles import statements
    from yws.warehouse import warehouse_for

    steps = warehouse_for(settings).apply(statements(settings))
    for step in steps:
        click.echo(f"{step.where:<44} {step.kind:<7} {step.object}  {step.action}")
    click.echo(f"applied {len(steps)} statements to {settings.catalog}.{settings.schema} "
               f"({settings.target})", err=True)


@sql.command("grants")
@settings_options
@click.option("--json", "as_json", is_flag=True)
def sql_grants(settings: Settings, as_json: bool) -> None:
    """The effective grants: principal, privilege, object."""
    from yws.warehouse import warehouse_for

    grants = warehouse_for(settings).grants()
    if as_json:
        click.echo(json.dumps([g.__dict__ for g in grants], indent=2))
        return
    for g in grants:
        click.echo(f"{g.principal:<20} {g.privilege:<14} {g.securable_type:<8} {g.securable}")


@sql.command("query")
@settings_options
@click.argument("statement")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Bind :NAME to VALUE (repeatable); values are never spliced into the SQL.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
def sql_query(settings: Settings, statement: str, params: tuple[str, ...], fmt: str) -> None:
    """Run one query (Databricks SQL, named :parameters) and print the rows."""
    from yws.warehouse import warehouse_for
    from yws.warehouse.output import write_batches

    batches = warehouse_for(settings).batches(statement, _params(params))
    write_batches(batches, fmt, sys.stdout)


# -- bundle and jobs ----------------------------------------------------------------------------
@cli.group()
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

    b = check(root, overrides=_params(variables), targets=list(targets) or None)
    tasks = sum(len(j.get("tasks") or []) for j in b.jobs.values())
    click.echo(f"{b.root / 'databricks.yml'}: valid — {len(b.jobs)} jobs ({', '.join(b.jobs)}), "
               f"{tasks} tasks, targets {', '.join(b.targets)}")


@cli.group()
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
        result = run_job(client, job, _params(params), wait_for_end=wait, timeout=timeout,
                         token=idempotency_token, progress=stderr_progress())
    except RunTimeout as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(124) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if as_json:
        _emit(result.as_dict())
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


# -- the local server ---------------------------------------------------------------------------
@cli.command()
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

    from yws.server.app import create_app
    from yws.server.sessions import PlainHttpProtocol

    if settings.target != "local":
        raise SettingsError("yws serve runs the local target only")
    app = create_app(settings, bundle_root=bundle_root, target=bundle_target,
                     variables=_params(variables))
    if app.state.runner.interrupted:
        click.echo(f"marked {app.state.runner.interrupted} run(s) cut off by the last stop as "
                   "failed", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}, not loopback", err=True)
    click.echo(f"yws serve: http://{host}:{port} (jobs: "
               f"{', '.join(j.name for j in app.state.runner.jobs.values())}; "
               f"warehouse id yws_local)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                http=PlainHttpProtocol)  # an https client is told the http:// address to use


@cli.command()
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
    from yws.server.app import create_app
    from yws.server.sessions import PlainHttpProtocol
    from yws.server.store import Store
    from yws.warehouse.local import LocalWarehouse

    if settings.target != "local":
        raise SettingsError("yws up runs the local target only")
    warehouse = LocalWarehouse(settings)
    if not warehouse.state_path.is_file():
        warehouse.apply(statements(settings))
    app = create_app(settings, bundle_root=bundle_root)  # a bad bundle stops here, UI unstarted
    store = Store(settings.home.resolve() / "server.db")
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
                    access_log=False, http=PlainHttpProtocol)
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


@cli.group()
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
    from yws.server.store import Store, hash_token

    check_principal(principal, "principal")
    for g in groups:
        check_principal(g, "group")
    token = Store(settings.home.resolve() / "server.db").create_token(principal, list(groups),
                                                                      comment)
    click.echo(f"token {hash_token(token)[:12]} for {principal} "
               f"(groups: {', '.join(groups) or 'none'}); it is not shown again:", err=True)
    click.echo(token)


@tokens.command("list")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array on stdout.")
def tokens_list(settings: Settings, as_json: bool) -> None:
    """The tokens yws serve accepts, by id (the secret itself is never stored)."""
    from yws.server.store import Store

    found = Store(settings.home.resolve() / "server.db").tokens()
    if as_json:
        _emit(found)
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
    from yws.server.store import Store

    gone = Store(settings.home.resolve() / "server.db").revoke_token(token_id)
    click.echo(f"revoked token {gone['id']} of {gone['principal']}")


# -- the model registry ------------------------------------------------------------------------
@cli.group()
def model() -> None:
    """The registered model's versions and aliases."""


@model.command("versions")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array on stdout.")
def model_versions(settings: Settings, as_json: bool) -> None:
    """Every version, newest first, with its aliases, training run and AUC-ROC."""
    from dataclasses import asdict

    from yws.model import registry

    registry.configure(settings)
    found = registry.versions(settings)
    if as_json:
        _emit([asdict(v) for v in found])
        return
    if not found:
        click.echo(f"{settings.model_name} has no versions: run `yws train`", err=True)
    for v in found:
        auc = f"{v.auc_roc:.4f}" if v.auc_roc is not None else "-"
        click.echo(f"v{v.version:<4} {v.created}  AUC-ROC {auc}  run {v.run_id or '-'}  "
                   f"{' '.join('@' + a for a in v.aliases)}".rstrip())


@model.command("alias")
@settings_options
@click.argument("alias")
@click.argument("version", type=int)
def model_alias(settings: Settings, alias: str, version: int) -> None:
    """Point ALIAS at VERSION: `yws model alias champion 3` rolls the champion back to v3."""
    from yws.model import registry

    registry.configure(settings)
    before = registry.set_alias(settings, alias, version)
    was = f"v{before}" if before is not None else "unset"
    click.echo(f"{settings.model_name}@{alias}: {was} -> v{version}")


# -- jobs --------------------------------------------------------------------------------------
def _params(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected key=value", param_hint="--param")
        out[key.strip()] = value.strip()
    return out


@cli.command()
@settings_options
@click.option("--as-of", "as_of", default=None, help="Train on this snapshot only [all].")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter of the spec (repeatable).")
@click.option("--force-promote", is_flag=True, help="Make this version @champion whatever.")
@click.option("--gate-tolerance", type=float, default=None,
              help="AUC-ROC a challenger may lose and still promote [spec].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def train(settings: Settings, as_of: str | None, params: tuple[str, ...], force_promote: bool,
          gate_tolerance: float | None, as_json: bool) -> None:
    """Fit, evaluate, log and register the model; promote it through the validation gate."""
    from yws.training.job import train as run_train

    s = _spec(settings).with_params(_params(params))
    day = _date(as_of)  # every option is checked before Spark starts
    result = run_train(settings, s, _spark(settings), as_of=day,
                       force_promote=force_promote, tolerance=gate_tolerance,
                       progress=stderr_progress())
    if as_json:
        _emit(result.as_dict())
        return
    m = result.metrics
    click.echo(f"{result.model_name} v{result.version} aliases={','.join(result.aliases)}\n"
               f"  AUC-ROC {m['auc_roc']:.4f}  AUC-PR {m['auc_pr']:.4f}  "
               f"log loss {m['log_loss']:.4f}  Brier {m['brier']:.4f}\n"
               f"  rows: {result.rows_read} read, {result.rows_train} train, "
               f"{result.rows_test} held out, excluded {result.rows_excluded}\n"
               f"  {'promoted' if result.promoted else 'NOT promoted'}: {result.reason}")


@cli.command()
@settings_options
@click.option("--as-of", "as_of", default=None, help="Snapshot to score [the latest].")
@click.option("--batch-id", default=None, help="Batch id; a re-run replaces it [the as-of date].")
@click.option("--model-alias", default="champion", show_default=True)
@click.option("--engine", type=click.Choice(["auto", "spark", "arrow"]), default="auto",
              show_default=True,
              help="arrow: NumPy, no JVM; spark: the PipelineModel's transform; auto: arrow "
                   "when it implements the model (local target), else spark.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def score(settings: Settings, as_of: str | None, batch_id: str | None, model_alias: str,
          engine: str, as_json: bool) -> None:
    """Score a feature snapshot with the registered model into the predictions table."""
    from yws.scoring.job import score as run_score

    result = run_score(settings, _spec(settings), None, as_of=_date(as_of),
                       batch_id=batch_id, alias=model_alias, engine=engine,
                       progress=stderr_progress())
    if as_json:
        _emit(result.as_dict())
        return
    click.echo(f"batch {result.batch_id} (as of {result.as_of_date}) with {result.model_name} "
               f"v{result.model_version} ({result.engine} engine): {result.rows_read} read, "
               f"{result.rows_scored} scored, "
               f"{result.rows_quarantined} quarantined\n  bands {result.bands}")
    for reason, n in result.quarantine_reasons.items():
        click.echo(f"  quarantined {n}: {reason}")


@cli.command()
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

    if settings.target != "local":
        raise SettingsError("yws demo runs on the local target only")
    summary = run_demo(settings, rows=rows, today=_date(today, "--today"),
                       progress=stderr_progress())
    if as_json:
        _emit(summary)
    else:
        click.echo(render(summary))


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="yws", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except SystemExit as e:
        return int(e.code or 0)
    except user_errors() as e:
        click.echo(f"error: {e}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
