"""The Asset Bundle in ``jobs/``: loaded, typed with ``databricks-bundles`` and cross-checked.

``yws bundle validate`` is what can be proved offline: every job parses into the typed classes
(an unknown or misspelt field fails), and the references between parts hold — task keys and
``depends_on``, environment keys, ``${var.…}`` and ``{{job.parameters.…}}`` references, the
flags each entry point accepts, and the entry points the wheel declares.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yws.entrypoints import PARSERS

_VAR = re.compile(r"\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}")
_JOB_PARAM = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class BundleError(ValueError):
    """The bundle is not valid; the message lists every problem found."""


@dataclass
class Bundle:
    root: Path
    config: dict[str, Any]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # job key -> file

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.config.get("variables") or {})

    @property
    def targets(self) -> dict[str, Any]:
        return dict(self.config.get("targets") or {})


def default_root() -> Path:
    """``jobs/`` of the checkout (the bundle is deployed from the repository, not the wheel)."""
    here = Path.cwd() / "jobs"
    if (here / "databricks.yml").is_file():
        return here
    return Path(__file__).resolve().parents[2] / "jobs"


def load(root: Path | None = None) -> Bundle:
    root = root or default_root()
    main = root / "databricks.yml"
    if not main.is_file():
        raise BundleError(f"{main} does not exist: run from the repository, or pass --root")
    config = _yaml(main)
    bundle = Bundle(root=root, config=config)
    files = [main] + [p for pattern in config.get("include") or []
                      for p in sorted(root.glob(pattern))]
    for path in files:
        data = config if path == main else _yaml(path)
        for key, job in ((data.get("resources") or {}).get("jobs") or {}).items():
            if key in bundle.jobs:
                raise BundleError(f"job {key} is defined twice ({bundle.sources[key]}, {path})")
            bundle.jobs[key] = job
            bundle.sources[key] = str(path.relative_to(root))
    return bundle


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BundleError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a mapping")
    return data


def wheel_entry_points(pyproject: Path) -> dict[str, str]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    scripts: dict[str, str] = data["project"].get("scripts", {})
    return scripts


def _flags(parameters: list[str]) -> list[str]:
    return [p for p in parameters if isinstance(p, str) and p.startswith("--")]


def validate(bundle: Bundle) -> list[str]:
    """Every problem found, as ``where: what`` lines; an empty list means valid."""
    from databricks.bundles.jobs import Job

    problems: list[str] = []
    declared = bundle.variables
    for name, target in bundle.targets.items():
        for var in (target or {}).get("variables") or {}:
            if var not in declared:
                problems.append(f"targets.{name}.variables.{var}: not declared in variables")
        for var, spec in declared.items():
            if "default" not in (spec or {}) and var not in ((target or {}).get("variables")
                                                              or {}):
                problems.append(f"targets.{name}: variable {var} has no default and no value")
    for var in _VAR.findall(yaml.safe_dump(bundle.config)):
        if var not in declared:
            problems.append(f"databricks.yml: ${{var.{var}}} is not declared")

    pyproject = bundle.root.parent / "pyproject.toml"
    scripts = wheel_entry_points(pyproject) if pyproject.is_file() else {}
    if not pyproject.is_file():
        problems.append(f"{pyproject}: missing, so the wheel artifact cannot be built")

    for key, raw in bundle.jobs.items():
        where = f"{bundle.sources[key]}: job {key}"
        for var in _VAR.findall(yaml.safe_dump(raw)):
            if var not in declared:
                problems.append(f"{where}: ${{var.{var}}} is not declared in databricks.yml")
        try:
            Job.from_dict(raw)  # type: ignore[arg-type]
        except (ValueError, TypeError, KeyError) as e:
            problems.append(f"{where}: {e}")
            continue
        params = [p["name"] for p in raw.get("parameters") or []]
        envs = {e.get("environment_key"): e for e in raw.get("environments") or []}
        for env_key, env in envs.items():
            version = str((env.get("spec") or {}).get("environment_version", ""))
            if not version.isdigit() or int(version) < 4:
                problems.append(f"{where}: environment {env_key} needs environment_version "
                                f"4 or later for pyspark.ml and mlflow.spark (got {version!r})")
        tasks = raw.get("tasks") or []
        keys = [t.get("task_key") for t in tasks]
        for dup in sorted({k for k in keys if keys.count(k) > 1}):
            problems.append(f"{where}: task_key {dup} is used twice")
        for task in tasks:
            tw = f"{where} task {task.get('task_key')}"
            for dep in task.get("depends_on") or []:
                if dep.get("task_key") not in keys:
                    problems.append(f"{tw}: depends_on {dep.get('task_key')}, which is not a "
                                    "task of this job")
            if task.get("environment_key") not in envs:
                problems.append(f"{tw}: environment_key {task.get('environment_key')} is not "
                                "in the job's environments (serverless tasks need one)")
            wheel = task.get("python_wheel_task")
            if not wheel:
                continue
            if wheel.get("package_name") != "yws":
                problems.append(f"{tw}: package_name {wheel.get('package_name')} is not yws")
            entry = wheel.get("entry_point")
            if entry not in scripts:
                problems.append(f"{tw}: entry point {entry} is not a console script of the "
                                f"wheel (pyproject.toml has {', '.join(sorted(scripts))})")
                continue
            if entry not in PARSERS:
                problems.append(f"{tw}: no parameter parser is registered for {entry}")
                continue
            parser = PARSERS[entry]()
            known = {opt for action in parser._actions for opt in action.option_strings}
            args = [str(a) for a in wheel.get("parameters") or []]
            for flag in _flags(args):
                if flag not in known:
                    problems.append(f"{tw}: {entry} does not accept {flag}")
            for ref in _JOB_PARAM.findall(" ".join(args)):
                if ref not in params:
                    problems.append(f"{tw}: {{{{job.parameters.{ref}}}}} is not a parameter "
                                    f"of the job ({', '.join(params)})")
    return problems


def check(root: Path | None = None) -> Bundle:
    bundle = load(root)
    problems = validate(bundle)
    if problems:
        raise BundleError("the bundle is not valid:\n  " + "\n  ".join(problems))
    return bundle
