"""The checks of `yws bundle validate`: jobs, runners, retries, sql/, and the whole."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from yws.deploy.bundle.endpoints import endpoint_problems, target_endpoint_problems
from yws.deploy.bundle.identities import (
    identity_problems,
    lookup_problems,
)
from yws.deploy.bundle.model import (
    CHECK_FLAG,
    CHECKED_ENTRY_POINTS,
    JOB_PARAM_REF,
    PINNED_FLAGS,
    PINNED_PARAMETERS,
    RUN_LEVELS,
    VAR_REF,
    Bundle,
    BundleError,
    Value,
    flag_names,
    flag_values,
    load,
    substitute,
    target_values,
    wheel_entry_points,
)
from yws.deploy.bundle.paths import (
    path_problems,
    predict_artifacts,
)
from yws.deploy.tasks import PARSERS


def _job_problems(bundle: Bundle, declared: dict[str, Any], scripts: dict[str, str]
                  ) -> list[str]:
    """Typed classes and references between the parts of each job (target-independent)."""
    from databricks.bundles.jobs import Job

    problems: list[str] = []
    for key, raw in bundle.jobs.items():
        where = f"{bundle.sources[key]}: job {key}"
        for var in VAR_REF.findall(yaml.safe_dump(raw)):
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
            for flag in flag_names(args):
                if flag.partition("=")[0] not in known:
                    problems.append(f"{tw}: {entry} does not accept {flag}")
            for ref in JOB_PARAM_REF.findall(" ".join(args)):
                if ref not in params:
                    problems.append(f"{tw}: {{{{job.parameters.{ref}}}}} is not a parameter "
                                    f"of the job ({', '.join(params)})")
        problems.extend(_runner_problems(bundle, key, raw))
        problems.extend(_retry_problems(bundle, key, raw))
    return problems


def _runners(raw: dict[str, Any]) -> list[str]:
    return [f"{kind.removesuffix('_name').replace('_', ' ')} {perm[kind]} ({perm['level']})"
            for perm in raw.get("permissions") or [] if perm.get("level") in RUN_LEVELS
            for kind in ("group_name", "user_name", "service_principal_name") if perm.get(kind)]


def _runner_problems(bundle: Bundle, key: str, raw: dict[str, Any]) -> list[str]:
    """Whoever may run a job may set its job parameters: nothing that says where the job
    reads and writes may come from them."""
    runners = _runners(raw)
    if not runners:
        return []
    where = f"{bundle.sources[key]}: job {key}"
    who = ", ".join(runners)
    problems = []
    for p in raw.get("parameters") or []:
        if p.get("name") in PINNED_PARAMETERS:
            problems.append(f"{where}: job parameter {p['name']} lets its runners ({who}) "
                            f"choose the {p['name']} the job writes to: take it from "
                            f"${{var.{p['name']}}} in the task parameters instead")
    for task in raw.get("tasks") or []:
        wheel = task.get("python_wheel_task") or {}
        tw = f"{where} task {task.get('task_key')}"
        for flag, value in flag_values(wheel.get("parameters") or []):
            if flag in PINNED_FLAGS and JOB_PARAM_REF.search(value):
                problems.append(f"{tw}: {flag} {value} comes from a job parameter its runners "
                                f"({who}) may set: fix it per target with a bundle variable")
        if wheel.get("named_parameters"):
            problems.append(f"{tw}: named_parameters are overridden by job parameters of the "
                            f"same name (job parameter pushdown), which its runners ({who}) "
                            "choose: pass the flags in parameters")
    return problems


def _retry_problems(bundle: Bundle, key: str, raw: dict[str, Any]) -> list[str]:
    """A retried task must not be where input errors surface: a check task without retries,
    with the same parameters plus ``--check-only true``, runs before it."""
    tasks = {t.get("task_key"): t for t in raw.get("tasks") or []}

    def upstream(task_key: str) -> set[str]:
        seen: set[str] = set()
        todo = [d.get("task_key") for d in tasks.get(task_key, {}).get("depends_on") or []]
        while todo:
            k = todo.pop()
            if k in seen or k not in tasks:
                continue
            seen.add(k)
            todo.extend(d.get("task_key") for d in tasks[k].get("depends_on") or [])
        return seen

    problems = []
    for task_key, task in tasks.items():
        wheel = task.get("python_wheel_task") or {}
        if wheel.get("entry_point") not in CHECKED_ENTRY_POINTS or \
                not int(task.get("max_retries") or 0):
            continue
        want = [str(p) for p in wheel.get("parameters") or []]
        ok = False
        for up in upstream(task_key):
            check = tasks[up]
            cw = check.get("python_wheel_task") or {}
            params = [str(p) for p in cw.get("parameters") or []]
            flags = dict(flag_values(params))
            if (cw.get("entry_point") == wheel.get("entry_point")
                    and flags.get(CHECK_FLAG) == "true"
                    and not int(check.get("max_retries") or 0)
                    and _without_check(params) == want):
                ok = True
        if not ok:
            problems.append(
                f"{bundle.sources[key]}: job {key} task {task_key}: retries "
                f"(max_retries {task.get('max_retries')}) but no task without retries runs "
                f"{wheel.get('entry_point')} {CHECK_FLAG} true with the same parameters before "
                "it: an input error would be retried instead of failing once")
    return problems


def _without_check(params: list[str]) -> list[str]:
    out, skip = [], False
    for p in params:
        if skip:
            skip = False
            continue
        if p == CHECK_FLAG:
            skip = True
            continue
        if p.startswith(CHECK_FLAG + "="):
            continue
        out.append(p)
    return out


def _sql_problems(bundle: Bundle, target: str, values: dict[str, Value]) -> list[str]:
    """``sql/`` as the yws_sql_apply job of ``target`` would render it, and the MLflow temp
    volume the tasks name."""
    from yws.config import Settings, SettingsError
    from yws.contract.sqlfiles import SqlFileError, describe, sql_dir, statements

    root = bundle.root.parent / "sql"
    root = root if root.is_dir() else sql_dir()
    local = {name: value.local for name, value in values.items()}
    given = {k: local.get(k) or None
             for k in ("catalog", "schema", "analysts_group", "r_users_group", "jobs_principal",
                       "serving_endpoint")}
    try:
        settings = Settings().with_(**given)
        stmts = statements(settings, root)
        volumes = set()
        for stmt in stmts:
            target_of = describe(stmt)
            stmt.parse()
            if target_of.kind == "VOLUME":
                volumes.add(target_of.name)
    except (SqlFileError, SettingsError) as e:
        return [str(e)]
    problems = []
    for key, raw in bundle.jobs.items():
        for task in raw.get("tasks") or []:
            for flag, value in flag_values((task.get("python_wheel_task") or {})
                                            .get("parameters") or []):
                if flag != "--dfs-tmpdir":
                    continue
                path = substitute(value, local)
                parts = path.strip("/").split("/")
                if len(parts) < 4 or parts[0] != "Volumes":
                    problems.append(f"{bundle.sources[key]}: job {key} task "
                                    f"{task.get('task_key')}: --dfs-tmpdir {value} is not a UC "
                                    "Volume path /Volumes/<catalog>/<schema>/<volume>")
                elif ".".join(parts[1:4]) not in volumes:
                    problems.append(f"{bundle.sources[key]}: job {key} task "
                                    f"{task.get('task_key')}: --dfs-tmpdir {path} (target "
                                    f"{target}) is in volume {'.'.join(parts[1:4])}, which "
                                    f"{root} does not create")
    return problems


def validate(bundle: Bundle, overrides: Mapping[str, str] | None = None,
             env: Mapping[str, str] | None = None,
             targets: list[str] | None = None) -> list[str]:
    """Every problem found, as ``where: what`` lines; an empty list means valid.

    ``overrides`` are ``--var name=value`` values and ``env`` the environment
    (``BUNDLE_VAR_<name>``), as the Databricks CLI takes them; ``targets`` limits the checks
    to some targets (all by default).
    """
    problems: list[str] = list(bundle.problems)
    declared = bundle.variables
    for name, target in bundle.targets.items():
        for var in (target or {}).get("variables") or {}:
            if var not in declared:
                problems.append(f"targets.{name}.variables.{var}: not declared in variables")
    for var in VAR_REF.findall(yaml.safe_dump(bundle.config)):
        if var not in declared:
            problems.append(f"databricks.yml: ${{var.{var}}} is not declared")
    for name, spec in declared.items():
        lookup = (spec or {}).get("lookup")
        if lookup is not None:
            problems.extend(lookup_problems(f"databricks.yml: variables.{name}.lookup", lookup))
    for tname, target in bundle.targets.items():
        for var, given in ((target or {}).get("variables") or {}).items():
            if isinstance(given, dict) and "lookup" in given:
                problems.extend(lookup_problems(
                    f"databricks.yml: targets.{tname}.variables.{var}.lookup", given["lookup"]))

    pyproject = bundle.root.parent / "pyproject.toml"
    scripts = wheel_entry_points(pyproject) if pyproject.is_file() else {}
    if not pyproject.is_file():
        problems.append(f"{pyproject}: missing, so the wheel artifact cannot be built")

    problems.extend(_job_problems(bundle, declared, scripts))
    problems.extend(endpoint_problems(bundle, declared))
    artifacts = predict_artifacts(bundle, problems)
    problems.extend(path_problems(bundle, artifacts))

    for tname in targets or list(bundle.targets):
        if tname not in bundle.targets:
            problems.append(f"target {tname} is not in databricks.yml "
                            f"({', '.join(bundle.targets)})")
            continue
        values = target_values(bundle, tname, overrides, env)
        for var, value in values.items():
            if value.missing:
                problems.append(f"targets.{tname}: variable {var} has no value: set it in "
                                f"databricks.yml, with --var {var}=… or BUNDLE_VAR_{var}")
        problems.extend(identity_problems(bundle, tname, values))
        problems.extend(target_endpoint_problems(bundle, tname, values))
        for problem in _sql_problems(bundle, tname, values):
            if problem not in problems:
                problems.append(problem)
    return _unique(problems)


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in items if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


def check(root: Path | None = None, overrides: Mapping[str, str] | None = None,
          env: Mapping[str, str] | None = None, targets: list[str] | None = None) -> Bundle:
    bundle = load(root)
    problems = validate(bundle, overrides, env, targets)
    if problems:
        raise BundleError("the bundle is not valid:\n  " + "\n  ".join(problems))
    return bundle
