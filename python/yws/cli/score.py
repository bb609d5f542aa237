"""``yws score``: one feature snapshot scored with the registered model into the predictions
table, with the rows the model must not score quarantined."""

from __future__ import annotations

from typing import Any

import click

from yws.cli.options import LazyChoice, emit, parse_date, settings_options
from yws.config import Settings
from yws.console import stderr_progress
from yws.contract.spec import load_spec


def _engines() -> tuple[str, ...]:
    from yws.scoring.engines import CHOICES  # the engines' modules: read when --engine is

    return CHOICES


@click.command()
@settings_options
@click.option("--as-of", "as_of", default=None, help="Snapshot to score [the latest].")
@click.option("--batch-id", default=None, help="Batch id; a re-run replaces it [the as-of date].")
@click.option("--model-alias", default="champion", show_default=True)
@click.option("--engine", type=LazyChoice(_engines), default="auto", show_default=True,
              help="arrow: NumPy, no JVM; spark: the PipelineModel's transform; auto: arrow "
                   "when it implements the model (local target), else spark.")
@click.option("--no-reasons", "no_reasons", is_flag=True,
              help="Leave the reason codes (reason_1..3 and their contributions) null: "
                   "a little faster.")
@click.option("--replay", "replay_run", default=None, metavar="RUN_ID",
              help="Score run RUN_ID again from its recorded inputs (the feature table's Delta "
                   "version, the model version, the spec, the engine; --engine another one to "
                   "compare engines) into batch replay-RUN_ID, and check every probability "
                   "matches; exit 1 if not.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def score(settings: Settings, as_of: str | None, batch_id: str | None, model_alias: str,
          engine: str, no_reasons: bool, replay_run: str | None, as_json: bool) -> None:
    """Score a feature snapshot with the registered model into the predictions table."""
    from yws.scoring.job import score as run_score

    if replay_run is not None:
        _replay(settings, replay_run, engine, as_of, batch_id, as_json)
        return
    result = run_score(settings, load_spec(settings.spec), None, as_of=parse_date(as_of),
                       batch_id=batch_id, alias=model_alias, engine=engine,
                       progress=stderr_progress(), reason_codes=not no_reasons)
    if as_json:
        emit(result.as_dict())
        return
    click.echo(f"batch {result.batch_id} (as of {result.as_of_date}) with {result.model_name} "
               f"v{result.model_version} ({result.engine} engine): {result.rows_read} read, "
               f"{result.rows_scored} scored, "
               f"{result.rows_quarantined} quarantined\n  bands {result.bands}")
    for reason, n in result.quarantine_reasons.items():
        click.echo(f"  quarantined {n}: {reason}")


def _replay(settings: Settings, run_id: str, engine: str, as_of: str | None,
            batch_id: str | None, as_json: bool) -> None:
    from yws.scoring.replay import ReplayMismatchError, replay

    if as_of is not None or batch_id is not None:
        raise click.UsageError("--replay scores the run's own as-of date into batch "
                               "replay-RUN_ID: drop --as-of and --batch-id")
    try:
        report = replay(settings, load_spec(settings.spec), run_id,
                        engine=None if engine == "auto" else engine,
                        progress=stderr_progress())
    except ReplayMismatchError as e:
        _show_replay(e.report, as_json)
        raise
    _show_replay(report, as_json)


def _show_replay(report: Any, as_json: bool) -> None:
    if as_json:
        emit(report.as_dict())
        return
    click.echo(
        f"run {report.run_id} (batch {report.batch_id}, as of {report.as_of_date}): "
        f"{report.model_name} v{report.model_version}, {report.engine} engine, features "
        f"version {report.features_version}\n"
        f"  replayed as run {report.replay_run_id} (batch {report.replay_batch_id}, "
        f"{report.replay_engine} engine)\n"
        f"  {report.rows_compared} probabilities compared: {report.bit_identical} identical "
        f"to the bit, max |Δ| {report.max_abs_diff:.3g}; missing in the replay "
        f"{report.missing_in_replay}, missing in the run {report.missing_in_original}"
        + (f"; reason codes differ on {report.reasons_differ} rows"
           if report.reasons_differ else ""))
    if report.matches:
        click.echo(f"  MATCH: {report.verdict}")
