"""``yws score``: one feature snapshot scored with the registered model into the predictions
table, with the rows the model must not score quarantined."""

from __future__ import annotations

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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def score(settings: Settings, as_of: str | None, batch_id: str | None, model_alias: str,
          engine: str, no_reasons: bool, as_json: bool) -> None:
    """Score a feature snapshot with the registered model into the predictions table."""
    from yws.scoring.job import score as run_score

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
