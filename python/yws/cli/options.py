"""What every command group shares: the options that build :class:`~yws.config.Settings`,
generated from its fields, and the small parsers and printers the commands use."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from yws.config import TARGETS, Settings, check_identifier, check_table_name

_DEFAULT = {f.name: f.default for f in fields(Settings)}
_PATH = click.Path(path_type=Path)

# The Settings fields a command line sets, in --help's order: what each is, its default as
# --help shows it, its type. Unset, Settings.load falls back to YWS_<FIELD>, then the default.
SETTINGS_OPTIONS: dict[str, tuple[str, str, click.ParamType | None]] = {
    "target": ("Where to run", f"default {_DEFAULT['target']}", click.Choice(TARGETS)),
    "catalog": ("UC catalog", str(_DEFAULT["catalog"]), None),
    "schema": ("UC schema", str(_DEFAULT["schema"]), None),
    "home": ("Local state folder", f"./{_DEFAULT['home']}", _PATH),
    "spec": ("Feature spec YAML", "the packaged default", _PATH),
}


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command shares; the command gets the one ``Settings`` they make."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        settings = Settings.load(**{name: kwargs.pop(name) for name in SETTINGS_OPTIONS})
        return fn(settings, **kwargs)

    for name, (what, default, kind) in reversed(SETTINGS_OPTIONS.items()):
        wrapper = click.option(f"--{name}", type=kind, default=None,
                               help=f"{what} [env YWS_{name.upper()}; {default}].")(wrapper)
    return wrapper


class LazyChoice(click.Choice):  # not click.Choice[str]: click < 8.4 has no generic Choice
    """A :class:`click.Choice` whose choices are read from their owner when first needed: the
    owner's module (scoring, with its engines) is imported when the option is shown or used,
    not by ``yws --help``."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._loaded: tuple[str, ...] = ()
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        if not self._loaded:
            self._loaded = tuple(self._load())
        return self._loaded

    @choices.setter
    def choices(self, value: Iterable[str]) -> None:  # click's __init__ sets them
        self._loaded = tuple(value)


def parse_date(value: str | None, what: str = "--as-of") -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD", param_hint=what
        ) from None


def key_values(values: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VALUE`` items (from --param or --var) as a dict."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected key=value", param_hint="--param")
        out[key.strip()] = value.strip()
    return out


def table_name(settings: Settings, name: str) -> str:
    """A short name is taken in the configured catalog and schema."""
    if "." in name:
        check_table_name(name)
        return name
    return settings.table(check_identifier(name, "table"))


def emit(obj: dict[str, Any] | list[Any]) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))
