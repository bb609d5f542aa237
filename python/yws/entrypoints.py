"""Console scripts of the wheel, run by the Databricks job tasks (and by ``yws serve`` locally).

Each reads the task's parameters (job parameters arrive as ``--name value``; an empty value means
"not given"), builds :class:`~yws.config.Settings`, and calls the same function as the ``yws``
command. The result is printed as one JSON object, which the task output shows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from yws.config import Settings


def _base(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--target", default=os.environ.get("YWS_TARGET") or "databricks",
                   choices=["local", "databricks"])
    for name in ("catalog", "schema", "home", "spec", "dfs-tmpdir", "warehouse-id", "model"):
        p.add_argument(f"--{name}", default="")
    return p


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    given = {k: v for k, v in {
        "target": args.target, "catalog": args.catalog, "schema": args.schema,
        "home": args.home, "spec": args.spec, "dfs_tmpdir": args.dfs_tmpdir,
        "warehouse_id": args.warehouse_id, "model": args.model, **extra,
    }.items() if v not in ("", None)}
    return Settings.load(**given)


def _date(text: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of-date {text!r} is not a date; use YYYY-MM-DD") from None


def train_parser() -> argparse.ArgumentParser:
    p = _base("yws-train", "Train, register and gate the YWS model (the yws_train job task).")
    p.add_argument("--as-of-date", default="", help="Train on this snapshot only [all].")
    p.add_argument("--force-promote", default="false", choices=["true", "false"])
    return p


def score_parser() -> argparse.ArgumentParser:
    p = _base("yws-score", "Score a feature snapshot (the yws_score job task).")
    p.add_argument("--as-of-date", default="", help="Snapshot to score [the latest].")
    p.add_argument("--batch-id", default="", help="Batch id [the as-of date].")
    p.add_argument("--model-alias", default="", help="Model alias [champion].")
    p.add_argument("--engine", default="auto", choices=["auto", "spark", "arrow"],
                   help="Scoring engine [auto: arrow locally when it can, Spark on Databricks].")
    return p


def sql_apply_parser() -> argparse.ArgumentParser:
    p = _base("yws-sql-apply", "Apply sql/ to the warehouse (the yws_sql_apply job task).")
    for name in ("analysts-group", "r-users-group", "jobs-principal"):
        p.add_argument(f"--{name}", default="")
    return p


def _run(fn: Callable[[], dict[str, Any]]) -> int:
    from yws.cli import _user_errors

    try:
        result = fn()
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    args = train_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        from yws.console import stderr_progress
        from yws.spark import get_spark
        from yws.spec import load_spec
        from yws.train import train

        settings = _settings(args)
        return train(settings, load_spec(settings.spec), get_spark(settings),
                     as_of=_date(args.as_of_date), force_promote=args.force_promote == "true",
                     progress=stderr_progress()).as_dict()

    return _run(go)


def score_main(argv: Sequence[str] | None = None) -> int:
    args = score_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        from yws.console import stderr_progress
        from yws.score import score
        from yws.spark import get_spark
        from yws.spec import load_spec

        settings = _settings(args)
        spark = get_spark(settings) if args.engine == "spark" else None
        return score(settings, load_spec(settings.spec), spark,
                     as_of=_date(args.as_of_date), batch_id=args.batch_id or None,
                     alias=args.model_alias or "champion", engine=args.engine,
                     progress=stderr_progress()).as_dict()

    return _run(go)


def sql_apply_main(argv: Sequence[str] | None = None) -> int:
    args = sql_apply_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        from yws.sqlfiles import statements
        from yws.warehouse import warehouse_for

        settings = _settings(args, analysts_group=args.analysts_group,
                             r_users_group=args.r_users_group,
                             jobs_principal=args.jobs_principal)
        steps = warehouse_for(settings).apply(statements(settings))
        return {"applied": len(steps), "steps": [s.__dict__ for s in steps]}

    return _run(go)


# entry point name (pyproject [project.scripts]) -> its parameter parser, for bundle checks
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "yws-train": train_parser,
    "yws-score": score_parser,
    "yws-sql-apply": sql_apply_parser,
}
