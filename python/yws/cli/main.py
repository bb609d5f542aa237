"""The ``yws`` command: the root group, the command groups (one module each, in this
folder) and :func:`main`, the console script, which reports a user's error as one line."""

from __future__ import annotations

import sys

import click

from yws.cli.bundle import bundle, jobs
from yws.cli.data import data, tables
from yws.cli.local import demo, serve, tokens, up
from yws.cli.monitor import monitor
from yws.cli.score import score
from yws.cli.spec import spec
from yws.cli.sql import sql
from yws.cli.train import model, train
from yws.errors import user_errors  # printed as one line, no traceback


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yws")
def cli() -> None:
    """YWS: train and score the yellow-warning model on Unity Catalog or on this machine."""


for command in (spec, data, tables, sql, bundle, jobs, serve, up, tokens, model, train, score,
                monitor, demo):
    cli.add_command(command)


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
