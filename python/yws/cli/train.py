"""``yws train`` (fit, evaluate, register, promote through the gate) and ``yws model`` (the
registered model's versions and aliases)."""

from __future__ import annotations

import click

from yws.cli.options import emit, key_values, parse_date, settings_options
from yws.config import Settings
from yws.console import stderr_progress
from yws.contract.spec import load_spec


def _spark(settings: Settings):  # -> SparkSession
    from yws.platform import get_spark

    return get_spark(settings)


@click.command()
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

    s = load_spec(settings.spec).with_params(key_values(params))
    day = parse_date(as_of)  # every option is checked before Spark starts
    result = run_train(settings, s, _spark(settings), as_of=day,
                       force_promote=force_promote, tolerance=gate_tolerance,
                       progress=stderr_progress())
    if as_json:
        emit(result.as_dict())
        return
    m = result.metrics
    click.echo(f"{result.model_name} v{result.version} aliases={','.join(result.aliases)}\n"
               f"  AUC-ROC {m['auc_roc']:.4f}  AUC-PR {m['auc_pr']:.4f}  "
               f"log loss {m['log_loss']:.4f}  Brier {m['brier']:.4f}\n"
               f"  rows: {result.rows_read} read, {result.rows_train} train, "
               f"{result.rows_test} held out, excluded {result.rows_excluded}\n"
               f"  {'promoted' if result.promoted else 'NOT promoted'}: {result.reason}")


@click.group()
def model() -> None:
    """The registered model's versions and aliases."""


@model.command("versions")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array on stdout.")
def model_versions(settings: Settings, as_json: bool) -> None:
    """Every version, newest first, with its family, aliases, training run and AUC-ROC."""
    from dataclasses import asdict

    from yws.model import registry

    registry.configure(settings)
    found = registry.versions(settings)
    if as_json:
        emit([asdict(v) for v in found])
        return
    if not found:
        click.echo(f"{settings.model_name} has no versions: run `yws train`", err=True)
    for v in found:
        auc = f"{v.auc_roc:.4f}" if v.auc_roc is not None else "-"
        click.echo(f"v{v.version:<4} {v.created}  {v.family:<8}  AUC-ROC {auc}  "
                   f"run {v.run_id or '-'}  {' '.join('@' + a for a in v.aliases)}".rstrip())


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
