"""Console scripts of the wheel, run by the Databricks job tasks (and by ``yws serve`` locally).

Each reads the task's parameters (job parameters arrive as ``--name value``; an empty value means
"not given"), checks them, builds :class:`~yws.config.Settings`, and calls the same function as
the ``yws`` command. The result is printed as one JSON object, which the task output shows.

A ``python_wheel_task`` calls the entry-point *function* and ignores what it returns, so a
failure must raise: a user error (a bad parameter, a missing table, no champion) prints one
``error: …`` line on stderr and raises ``SystemExit(1)`` (``2`` for a malformed parameter);
anything else propagates with its traceback. Either way the task, and the console script,
fail. Nothing here imports a package the job does not need on Databricks (see
``tests/test_serverless_env.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from yws.config import TARGETS, Settings
from yws.errors import InvalidValueError
from yws.model import registry


class TaskArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: …`` line (exit code 2), like the rest."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n")


def _base(prog: str, description: str) -> argparse.ArgumentParser:
    p = TaskArgumentParser(prog=prog, description=description)
    p.add_argument("--target", default=os.environ.get("YWS_TARGET") or "databricks",
                   choices=list(TARGETS))
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
        raise InvalidValueError(f"--as-of-date {text!r} is not a date; use YYYY-MM-DD") from None


def train_parser() -> argparse.ArgumentParser:
    p = _base("yws-train", "Train, register and gate the YWS model (the yws_train job task).")
    p.add_argument("--as-of-date", default="", help="Train on this snapshot only [all].")
    p.add_argument("--force-promote", default="false", choices=["true", "false"])
    return p


def score_parser() -> argparse.ArgumentParser:
    from yws.scoring.engines import CHOICES
    p = _base("yws-score", "Score a feature snapshot (the yws_score job task).")
    p.add_argument("--as-of-date", default="", help="Snapshot to score [the latest].")
    p.add_argument("--batch-id", default="", help="Batch id [the as-of date].")
    p.add_argument("--model-alias", default="", help="Model alias [champion].")
    p.add_argument("--model-name", default="",
                   help="catalog.schema.model to score with, in the job's catalog and schema "
                        "[the bundle's model].")
    p.add_argument("--engine", default="auto", choices=list(CHOICES),
                   help="Scoring engine [auto: arrow locally when it can, Spark on Databricks].")
    p.add_argument("--check-only", default="false", choices=["true", "false"],
                   help="Only check that the request can be scored (snapshot, batch id, model "
                        "alias) and print what was found; score nothing.")
    return p


def sql_apply_parser() -> argparse.ArgumentParser:
    p = _base("yws-sql-apply", "Apply sql/ to the warehouse (the yws_sql_apply job task).")
    for name in ("analysts-group", "r-users-group", "jobs-principal"):
        p.add_argument(f"--{name}", default="")
    p.add_argument("--serving-endpoint", default="",
                   help="The Model Serving endpoint ai_query calls in sql/ [yws_lr].")
    return p


def _run(fn: Callable[[], dict[str, Any]]) -> None:
    """Run a task body: print its result as JSON, or fail the task (see the module doc)."""
    try:
        result = fn()
    except Exception as e:
        from yws.errors import user_errors

        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print(json.dumps(result, indent=2, default=str), flush=True)


def train_main(argv: Sequence[str] | None = None) -> None:
    args = train_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        # Parameters first: a wrong one fails before a Spark session or MLflow is touched.
        settings = _settings(args)
        as_of = _date(args.as_of_date)
        registry.dfs_tmpdir(settings)

        from yws.console import stderr_progress
        from yws.contract.spec import load_spec
        from yws.platform import get_spark
        from yws.training.job import train

        spec = load_spec(settings.spec)
        return train(settings, spec, get_spark(settings), as_of=as_of,
                     force_promote=args.force_promote == "true",
                     progress=stderr_progress()).as_dict()

    _run(go)


def score_main(argv: Sequence[str] | None = None) -> None:
    args = score_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        settings = _settings(args)
        if args.model_name:
            from yws.training.registration import model_name

            settings = settings.with_(model=model_name(args.model_name, settings).split(".")[2])
        as_of = _date(args.as_of_date)
        batch_id = args.batch_id or None
        alias = args.model_alias or "champion"
        if args.engine != "arrow":
            # Spark loads the model through the volume: checked here, the check task fails on
            # a missing one at once, not the retried score task.
            registry.dfs_tmpdir(settings)

        from yws.console import stderr_progress
        from yws.contract.spec import load_spec
        from yws.scoring import job as scoring

        spec = load_spec(settings.spec)
        if args.check_only == "true":
            checked: dict[str, Any] = scoring.check_score_request(
                settings, spec, as_of=as_of, batch_id=batch_id, alias=alias)
            return checked
        result = scoring.score(settings, spec, as_of=as_of, batch_id=batch_id,
                               alias=alias, engine=args.engine, progress=stderr_progress())
        if argv is None:  # the task's own process (a job, the console script), not a caller's
            # published: a cancel from now on would only turn a finished run into a
            # "cancelled" one whose rows are visible; the task ends as it is, successful
            for sig in scoring.INTERRUPTS:
                signal.signal(sig, signal.SIG_IGN)
        return result.as_dict()

    _run(go)


def sql_apply_main(argv: Sequence[str] | None = None) -> None:
    args = sql_apply_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        settings = _settings(args, analysts_group=args.analysts_group,
                             r_users_group=args.r_users_group,
                             jobs_principal=args.jobs_principal,
                             serving_endpoint=args.serving_endpoint)

        from yws.contract.sqlfiles import statements
        from yws.platform import warehouse_for

        steps = warehouse_for(settings).apply(statements(settings))
        return {"applied": len(steps), "steps": [s.__dict__ for s in steps]}

    _run(go)


def serving_update_parser() -> argparse.ArgumentParser:
    p = _base("yws-serving-update", "Point the Model Serving endpoint at the version a model "
              "alias names, if it serves another (the last task of the yws_train job).")
    p.add_argument("--endpoint", required=True, help="The serving endpoint's name.")
    p.add_argument("--model-alias", default="", help="Model alias [champion].")
    return p


def serving_update_main(argv: Sequence[str] | None = None) -> None:
    args = serving_update_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        settings = _settings(args)
        alias = registry.check_alias(args.model_alias or registry.CHAMPION)

        from yws.deploy import serving_client
        from yws.platform import target_for

        if target_for(settings).embedded and not serving_client.credentials_given():
            # Run by hand outside `yws serve` (which gives its tasks its address and a token of
            # the job's run_as): no workspace to call.
            return {"endpoint": args.endpoint, "updated": False,
                    "reason": "no workspace to update: set DATABRICKS_HOST and "
                              "DATABRICKS_TOKEN (yws serve's address and a token of a "
                              "principal with CAN_MANAGE on the endpoint), or run the task "
                              "through yws serve, which gives them to its tasks"}
        return serving_client.follow_alias(settings, args.endpoint, alias).as_dict()

    _run(go)


def register_r_model_parser() -> argparse.ArgumentParser:
    p = _base("yws-register-r-model", "Register an R glm exported by yws_export_glm() as a new "
              "version with @challenger, and evaluate the gate (the yws_register_r_model job).")
    p.add_argument("--description", required=True,
                   help="Path of the model's JSON description, in a volume (/Volumes/...).")
    p.add_argument("--model-name", required=True, help="catalog.schema.model to register in.")
    p.add_argument("--as-of-date", default="",
                   help="Snapshot whose held-out rows the gate uses [the export's as-of].")
    return p


def compare_models_parser() -> argparse.ArgumentParser:
    p = _base("yws-compare-models", "Score registered versions of any family on the same "
              "held-out rows (the yws_compare_models job).")
    p.add_argument("--models", required=True,
                   help="Comma-separated catalog.schema.model@alias or .../version.")
    p.add_argument("--as-of-date", default="", help="Snapshot of the held-out rows [all].")
    return p


def promote_model_parser() -> argparse.ArgumentParser:
    p = _base("yws-promote-model", "Put a registered version through the validation gate and "
              "move @champion to it when it passes (the yws_promote_model job).")
    p.add_argument("--model-name", required=True, help="catalog.schema.model")
    p.add_argument("--version", required=True, help="The version to promote.")
    p.add_argument("--as-of-date", default="", help="Snapshot of the held-out rows [all].")
    p.add_argument("--force", default="false", choices=["true", "false"])
    p.add_argument("--dry-run", default="false", choices=["true", "false"],
                   help="Evaluate the gate, move nothing.")
    return p


def _spark_and_spec(settings: Settings) -> tuple[Any, Any]:
    from yws.contract.spec import load_spec
    from yws.platform import get_spark

    return get_spark(settings), load_spec(settings.spec)


def register_r_model_main(argv: Sequence[str] | None = None) -> None:
    args = register_r_model_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        from pathlib import Path

        from yws.console import stderr_progress
        from yws.platform import target_for
        from yws.training.registration import model_name, register_r_model

        settings = _settings(args)
        as_of = _date(args.as_of_date)
        name = model_name(args.model_name, settings)
        # the volume file: mounted on Databricks, under $YWS_HOME/volumes here
        description = Path(target_for(settings).volume_path(args.description))
        spark, spec = _spark_and_spec(settings)
        return register_r_model(settings, spec, spark, description, name, as_of,
                                progress=stderr_progress())

    _run(go)


def compare_models_main(argv: Sequence[str] | None = None) -> None:
    args = compare_models_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        from yws.console import stderr_progress
        from yws.training.registration import Ref, compare

        settings = _settings(args)
        as_of = _date(args.as_of_date)
        refs = [str(Ref.parse(r, settings)) for r in args.models.split(",") if r.strip()]
        spark, spec = _spark_and_spec(settings)
        return compare(settings, spec, spark, refs, as_of, progress=stderr_progress())

    _run(go)


def promote_model_main(argv: Sequence[str] | None = None) -> None:
    args = promote_model_parser().parse_args(argv)

    def go() -> dict[str, Any]:
        from yws.console import stderr_progress
        from yws.training.registration import model_name, promote

        settings = _settings(args)
        as_of = _date(args.as_of_date)
        name = model_name(args.model_name, settings)
        if not args.version.isdigit() or int(args.version) < 1:
            raise InvalidValueError(f"--version {args.version!r} must be a positive whole number")
        spark, spec = _spark_and_spec(settings)
        return promote(settings, spec, spark, name, int(args.version), as_of,
                       force=args.force == "true", dry_run=args.dry_run == "true",
                       progress=stderr_progress())

    _run(go)


# entry point name (pyproject [project.scripts]) -> its parameter parser, for bundle checks
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "yws-train": train_parser,
    "yws-score": score_parser,
    "yws-sql-apply": sql_apply_parser,
    "yws-serving-update": serving_update_parser,
    "yws-register-r-model": register_r_model_parser,
    "yws-compare-models": compare_models_parser,
    "yws-promote-model": promote_model_parser,
}
