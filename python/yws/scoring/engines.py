"""The scoring engines by name, and how ``auto`` picks one.

``auto`` tries the engines the target lists (:attr:`yws.platform.Target.auto_engines`), in
order: on this machine the arrow engine when the model is one it implements and the snapshot
fits in memory, else Spark; on Databricks, Spark. A named engine is used or fails — it never
falls back. A new engine is a class of :class:`yws.scoring.base.Engine` and a line here.
"""

from __future__ import annotations

import datetime as dt

from yws.errors import InvalidValueError
from yws.model.evaluator import UnsupportedModelError
from yws.model.registry import Located
from yws.platform import target_for
from yws.scoring.arrow import ArrowEngine
from yws.scoring.base import Context, Engine, UnsuitableEngineError
from yws.scoring.spark import SparkEngine

ENGINES: dict[str, type[Engine]] = {cls.name: cls for cls in (SparkEngine, ArrowEngine)}
CHOICES = ("auto", *ENGINES)
"""What ``--engine`` takes."""


def candidates(requested: str, ctx: Context) -> tuple[str, ...]:
    if requested not in CHOICES:
        raise InvalidValueError(
            f"engine {requested!r} is unknown; use one of {', '.join(CHOICES)}")
    if requested == "auto":
        return target_for(ctx.settings).auto_engines
    return (requested,)


def counting_engine(ctx: Context) -> Engine:
    """The engine that counts a snapshot most cheaply here: Spark when the caller has a
    session, else the target's first choice."""
    name = "spark" if ctx.spark is not None else target_for(ctx.settings).auto_engines[0]
    return ENGINES[name](ctx)


def choose(requested: str, ctx: Context, model: Located, alias: str,
           as_of: dt.date | None) -> tuple[Engine, dt.date, int, dict[str, list[str]]]:
    """The engine that scores this run, with the snapshot's date, its row count and the
    model's categories. ``auto`` moves on to the next candidate when one is unsuitable."""
    names = candidates(requested, ctx)
    for i, name in enumerate(names):
        engine = ENGINES[name](ctx)
        try:
            found, rows = engine.count(as_of)
            if requested == "auto":
                engine.check_size(rows)
            ctx.progress(f"loading {ctx.settings.model_name}@{alias} (v{model.version}) for "
                         f"the {engine.name} engine")
            categories = engine.load(model)
        except (UnsuitableEngineError, UnsupportedModelError) as e:
            if requested != "auto" or i == len(names) - 1:
                raise
            ctx.progress(f"{e}: scoring on {ENGINES[names[i + 1]].label}")
            continue
        return engine, found, rows, categories
    raise AssertionError("unreachable: every target lists at least one engine")
