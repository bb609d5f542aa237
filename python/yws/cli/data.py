"""``yws data`` (synthetic snapshots) and ``yws tables`` (tables by their Unity Catalog
name): what goes into the features table, and a look at any table."""

from __future__ import annotations

from pathlib import Path

import click

from yws.cli.options import emit, parse_date, settings_options, table_name
from yws.config import Settings
from yws.contract.spec import load_spec


def _storage(settings: Settings):  # -> Storage
    from yws.platform import storage_for

    return storage_for(settings)


@click.group()
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
@click.option("--drift", default=None, metavar="FEATURE[=HOW],...",
              help="Shift features on purpose (drift monitoring demos and tests): NUMERIC=+X "
                   "adds X (alone: one standard deviation); CATEGORY=LEVEL gives half the rows "
                   "LEVEL (alone: the least common level). E.g. balance_utilization=+0.3,region")
@click.option("--table", default=None, help="Target table [the features table].")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write a .parquet or .csv file instead of a table.")
def data_generate(settings: Settings, rows: int, as_of: str, seed: int, unlabeled: bool,
                  anomalies: int, no_missing: bool, drift: str | None, table: str | None,
                  output: Path | None) -> None:
    """Generate a feature snapshot for the default spec, with labels from a known model."""
    from yws.datasets.ingest import write_snapshot
    from yws.datasets.synthetic import generate, parse_drift

    day = parse_date(as_of)
    assert day is not None
    snap = generate(rows, day, seed, missing=not no_missing, labeled=not unlabeled,
                    anomalies=anomalies, drift=parse_drift(drift) if drift else None)
    if output is not None:
        if output.suffix.lower() == ".csv":
            from pyarrow import csv

            csv.write_csv(snap, output)
        else:
            import pyarrow.parquet as pq

            pq.write_table(snap, output)
        click.echo(f"wrote {snap.num_rows} rows to {output}")
        return
    name = table_name(settings, table) if table else settings.features
    n = write_snapshot(_storage(settings), snap, name, "as_of_date", day)
    click.echo(f"wrote {n} rows as of {day} to {name}")


@click.group()
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

    name = table_name(settings, table)
    # Unity Catalog names are case-insensitive: YWS_FEATURES is the features table too.
    spec = load_spec(settings.spec) if name.lower() == settings.features.lower() else None
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
    name = table_name(settings, table)
    info = storage.describe(name)
    head = storage.read_arrow(name, limit=limit)
    if as_json:
        emit({**info.__dict__, "head": head.to_pylist()})
        return
    click.echo(f"{info.name}\n  location  {info.location}\n  version   {info.version}\n"
               f"  rows      {info.rows}")
    click.echo("  columns   " + ", ".join(f"{c} {t}" for c, t in info.columns))
    if limit and head.num_rows:
        click.echo(head.to_pandas().to_string(index=False, max_colwidth=40))
