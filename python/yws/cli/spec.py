"""``yws spec``: the feature contract, printed or checked."""

from __future__ import annotations

import click

from yws.cli.options import settings_options
from yws.config import Settings
from yws.contract.spec import default_spec_text, load_spec


@click.group()
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
    s = load_spec(settings.spec)
    click.echo(f"{s.source}: OK — key {s.entity_key}, as-of {s.as_of_column}, label {s.label}, "
               f"{len(s.features)} features, bands YELLOW >= {s.bands.yellow}, "
               f"RED >= {s.bands.red}")
