"""``yws sql``: the files of sql/ rendered and applied, the grants, and queries on the
warehouse (DuckDB over the local Delta tables, or a Databricks SQL warehouse)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from yws.cli.options import key_values, settings_options
from yws.config import Settings


@click.group()
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
    from yws.platform import warehouse_for

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
    from yws.platform import warehouse_for

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
    from yws.platform import warehouse_for
    from yws.warehouse.output import write_batches

    warehouse = warehouse_for(settings).serve_endpoints(_endpoints(settings))
    batches = warehouse.batches(statement, key_values(params))
    write_batches(batches, fmt, sys.stdout)


def _endpoints(settings: Settings) -> Callable[[str, Any], Any]:
    """ai_query's scorer, loaded when a query first calls it: a query that does not score
    imports no model code (nor pyarrow's filesystem layer, which needs the ssl module)."""
    loaded: list[Callable[[str, Any], Any]] = []

    def score(endpoint: str, rows: Any) -> Any:
        if not loaded:
            from yws.scoring.ai_query import endpoints_for

            loaded.append(endpoints_for(settings))
        return loaded[0](endpoint, rows)

    return score
