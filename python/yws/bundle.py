"""The Asset Bundle in ``jobs/``: loaded, typed with ``databricks-bundles`` and cross-checked.

``yws bundle validate`` is what can be proved offline, per target:

- every job parses into the typed classes (an unknown or misspelt field fails), and the
  references between parts hold — task keys and ``depends_on``, environment keys,
  ``${var.…}`` and ``{{job.parameters.…}}`` references, the flags each entry point accepts,
  the entry points the wheel declares;
- every local path resolves the way the Databricks CLI resolves it (github.com/databricks/cli:
  ``bundle/config/mutator/normalize_paths.go``, ``translate_paths.go``,
  ``bundle/libraries/expand_glob_references.go``, ``local_path.go``,
  ``bundle/artifacts/prepare.go``, ``bundle/config/loader/process_root_includes.go``):
  includes relative to the bundle root; an artifact's ``path`` and ``files`` and a job's
  libraries, environment dependencies and task files relative to the folder of the file that
  defines them; a library glob must match a file once the artifacts are built (the build's
  output is predicted from the artifact, so no build is needed to check);
- identities: each target runs its jobs as a service principal (``run_as``), named by
  application id; a service principal or warehouse id is either a documented ``lookup`` by name
  or a real id — never a placeholder, an all-zero id or a display name; the grants in ``sql/``
  go to the principal the jobs run as;
- who may choose what: a job that others may run (``CAN_MANAGE_RUN``) takes catalog, schema,
  volume and principals from bundle variables, never from job parameters (a runner could point
  it elsewhere), and passes no keyword arguments a job parameter could override;
- a task that retries ``yws-score`` has a check task without retries before it, so an input
  error fails once instead of being retried;
- ``sql/`` renders and every statement and grant is one this tool understands (a privilege
  must exist and apply to what it is granted on); the MLflow temp volume the tasks name is one
  ``sql/`` creates.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from yws.entrypoints import PARSERS

_VAR = re.compile(r"\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}")
_ONLY_VAR = re.compile(r"^\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}$")
_REF = re.compile(r"\$\{[^}]+\}")
_JOB_PARAM = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
_WAREHOUSE_ID = re.compile(r"^[0-9a-fA-F]{16}$")
_PLACEHOLDER = re.compile(r"x{3,}|changeme|change-me|placeholder|todo|tbd|<|>|example",
                          re.IGNORECASE)
# A PyPI requirement (name, extras, version specifiers), which is not a local path.
_PACKAGE = re.compile(r"^[A-Za-z0-9_\-]+\s?(\[.*\])?\s?((==|!=|<=|>=|~=|>|<)\s?[\w.+!*-]+,?)*$")
_PIP_FLAG = re.compile(r"(^|\s)--?[A-Za-z0-9-]+([\s=]|$)")

# The documented lookup kinds (databricks/cli bundle/config/variable/lookup.go).
LOOKUP_KINDS = ("alert", "cluster_policy", "cluster", "dashboard", "instance_pool", "job",
                "metastore", "notification_destination", "pipeline", "query",
                "service_principal", "warehouse")
# Task flags whose value must be a service principal's application id, or a warehouse id.
APP_ID_FLAGS = ("--jobs-principal",)
WAREHOUSE_FLAGS = ("--warehouse-id",)
# Where a job reads and writes, and as whom: fixed per target, never chosen by a runner.
PINNED_FLAGS = ("--target", "--catalog", "--schema", "--home", "--spec", "--model",
                "--dfs-tmpdir", "--warehouse-id", "--analysts-group", "--r-users-group",
                "--jobs-principal")
PINNED_PARAMETERS = ("catalog", "schema")
RUN_LEVELS = ("CAN_MANAGE_RUN", "CAN_MANAGE")
# Entry points whose retried tasks need a check task without retries before them.
CHECKED_ENTRY_POINTS = ("yws-score",)
CHECK_FLAG = "--check-only"


class BundleError(ValueError):
    """The bundle is not valid; the message lists every problem found."""


@dataclass
class Bundle:
    root: Path
    config: dict[str, Any]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # job key -> file, relative to root
    artifacts: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # -> file
    problems: list[str] = field(default_factory=list)  # found while loading

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.config.get("variables") or {})

    @property
    def targets(self) -> dict[str, Any]:
        return dict(self.config.get("targets") or {})

    def folder_of(self, source: str) -> Path:
        """The folder relative paths in ``source`` (a file of the bundle) start from."""
        return (self.root / source).parent


def default_root() -> Path:
    """``jobs/`` of the checkout (the bundle is deployed from the repository, not the wheel)."""
    here = Path.cwd() / "jobs"
    if (here / "databricks.yml").is_file():
        return here
    return Path(__file__).resolve().parents[2] / "jobs"


def load(root: Path | None = None) -> Bundle:
    root = (root or default_root()).absolute()
    main = root / "databricks.yml"
    if not main.is_file():
        raise BundleError(f"{main} does not exist: run from the repository, or pass --root")
    config = _yaml(main)
    bundle = Bundle(root=root, config=config)
    files = [main, *_includes(bundle, config.get("include") or [])]
    for path in files:
        data = config if path == main else _yaml(path)
        source = path.relative_to(root).as_posix()
        for key, job in ((data.get("resources") or {}).get("jobs") or {}).items():
            if key in bundle.jobs:
                raise BundleError(f"job {key} is defined twice ({bundle.sources[key]}, {path})")
            bundle.jobs[key] = job
            bundle.sources[key] = source
        for name, spec in (data.get("artifacts") or {}).items():
            bundle.artifacts[name] = (spec or {}, source)
    return bundle


def _includes(bundle: Bundle, patterns: list[str]) -> list[Path]:
    """The included files, as the CLI finds them: each entry a glob from the bundle root, its
    matches sorted, each file once; a plain path that matches nothing is an error, and only
    YAML or JSON files may be included."""
    seen = {bundle.root / "databricks.yml"}
    out: list[Path] = []
    for i, entry in enumerate(patterns):
        where = f"databricks.yml: include[{i}]"
        if os.path.isabs(entry):
            bundle.problems.append(f"{where}: {entry} must be relative to the bundle root")
            continue
        pattern = os.path.normpath(bundle.root / entry)
        matches = sorted(Path(p) for p in glob.glob(pattern))
        if not matches and not _is_glob(entry):
            bundle.problems.append(f"{where}: {entry} resolves to {pattern}, which does not "
                                   "exist")
        for match in matches:
            if match in seen:
                continue
            seen.add(match)
            if match.suffix not in (".yml", ".yaml", ".json"):
                bundle.problems.append(f"{where}: {match} is not a YAML or JSON file; files to "
                                       "upload belong in sync.include")
                continue
            out.append(match)
    return out


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


def _flag_values(parameters: list[Any]) -> Iterator[tuple[str, str]]:
    """(flag, value) pairs of a task's ``--flag value`` parameters."""
    items = [str(p) for p in parameters]
    for i, item in enumerate(items):
        if item.startswith("--"):
            name, sep, inline = item.partition("=")
            if sep:
                yield name, inline
            elif i + 1 < len(items) and not items[i + 1].startswith("--"):
                yield name, items[i + 1]
            else:
                yield name, ""


# -- variables ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """A variable's value in one target: a literal, or a lookup the CLI resolves at deploy."""

    literal: str | None = None
    lookup: dict[str, Any] | None = None
    origin: str = ""

    @property
    def missing(self) -> bool:
        return self.literal is None and self.lookup is None

    @property
    def local(self) -> str:
        """What ``yws serve`` uses: the literal, or the looked-up name (locally a principal or
        a warehouse is its name)."""
        if self.literal is not None:
            return self.literal
        if self.lookup:
            return str(next(iter(self.lookup.values())))
        return ""

    def same_as(self, other: Value) -> bool:
        return (self.literal, self.lookup) == (other.literal, other.lookup)

    def describe(self) -> str:
        if self.lookup is not None:
            return f"lookup {self.lookup}"
        return repr(self.literal)


def target_values(bundle: Bundle, target: str, overrides: Mapping[str, str] | None = None,
                  env: Mapping[str, str] | None = None) -> dict[str, Value]:
    """Every declared variable's value in ``target``, with the CLI's precedence: ``--var``,
    then ``BUNDLE_VAR_<name>``, then a lookup, then the default (the target's value replaces
    the declared default)."""
    env = os.environ if env is None else env
    overrides = overrides or {}
    in_target = (bundle.targets.get(target) or {}).get("variables") or {}
    out: dict[str, Value] = {}
    for name, spec in bundle.variables.items():
        spec = dict(spec or {})
        default, lookup = spec.get("default"), spec.get("lookup")
        origin = "default"
        if name in in_target:
            given = in_target[name]
            origin = f"targets.{target}.variables.{name}"
            if isinstance(given, dict) and "lookup" in given:
                lookup = given["lookup"]
            elif isinstance(given, dict) and "default" in given:
                default = given["default"]
            else:
                default = given
        if name in overrides:
            out[name] = Value(literal=str(overrides[name]), origin=f"--var {name}")
        elif f"BUNDLE_VAR_{name}" in env:
            out[name] = Value(literal=env[f"BUNDLE_VAR_{name}"],
                              origin=f"BUNDLE_VAR_{name}")
        elif lookup is not None:
            out[name] = Value(lookup=dict(lookup) if isinstance(lookup, dict) else {"?": lookup},
                              origin=origin)
        elif default is not None:
            out[name] = Value(literal=str(default), origin=origin)
        else:
            out[name] = Value(origin=origin)
    return out


def local_variables(bundle: Bundle, target: str,
                    overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables for ``yws serve``: literals, and lookups resolved to the looked-up name."""
    values = target_values(bundle, target, overrides, env={})
    return {name: value.local for name, value in values.items()}


def substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """``${var.name}`` replaced in every string of ``value``; unknown references are kept."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: str(variables.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


# -- identities -----------------------------------------------------------------------------------
def _looks_placeholder(text: str) -> bool:
    compact = text.replace("-", "")
    return (not compact or set(compact) <= {"0"} or len(set(compact)) == 1
            or bool(_PLACEHOLDER.search(text)))


def _check_app_id(value: Value, what: str) -> str | None:
    if value.lookup is not None:
        if list(value.lookup) != ["service_principal"] or not value.lookup["service_principal"]:
            return (f"{what} is {value.describe()}, which does not give an application id: "
                    "use lookup: {service_principal: <display name>}")
        return None
    text = value.literal or ""
    if _REF.search(text):
        return None  # another reference, resolved by the CLI
    if not _UUID.match(text) or _looks_placeholder(text):
        kind = "a placeholder" if _looks_placeholder(text) else "not an application id"
        return (f"{what} is {text!r} ({value.origin}), {kind}: run_as and Unity Catalog grants "
                "name a service principal by its application id (a UUID); use "
                "lookup: {service_principal: <display name>} or pass the id with "
                "--var / BUNDLE_VAR_")
    return None


def _check_warehouse_id(value: Value, what: str) -> str | None:
    if value.lookup is not None:
        if list(value.lookup) != ["warehouse"] or not value.lookup["warehouse"]:
            return (f"{what} is {value.describe()}, which does not give a warehouse id: use "
                    "lookup: {warehouse: <warehouse name>}")
        return None
    text = value.literal or ""
    if _REF.search(text):
        return None
    if not _WAREHOUSE_ID.match(text) or _looks_placeholder(text):
        return (f"{what} is {text!r} ({value.origin}), not a SQL warehouse id: use "
                "lookup: {warehouse: <warehouse name>} or the 16-character id from the "
                "warehouse's connection details")
    return None


def _resolve(text: str, values: Mapping[str, Value]) -> Value:
    """A field's value: a lone ``${var.x}`` is that variable's value; anything else a literal."""
    m = _ONLY_VAR.match(text)
    if m and m.group(1) in values:
        return values[m.group(1)]
    return Value(literal=text, origin="the bundle")


# -- paths ----------------------------------------------------------------------------------------
def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _has_scheme(path: str) -> bool:
    parsed = urlparse(path)
    return bool(parsed.scheme) and len(parsed.scheme) > 1


def _is_local_path(path: str) -> bool:
    """A path on the deployer's disk: relative, no URL scheme (``dbfs:/``, ``s3://``,
    ``file://`` and absolute workspace paths are remote)."""
    path = path.strip("\"'")
    return not _has_scheme(path) and not path.startswith("/")


def _is_local_library(dep: str) -> bool:
    """An environment dependency or library that is a local file, not a PyPI requirement."""
    if not dep:
        return False
    if dep.startswith("."):
        return True
    if _PIP_FLAG.search(dep) or _PACKAGE.match(dep):
        return False
    name, sep, url = dep.partition(" @ ")
    if sep and _PACKAGE.match(name) and _has_scheme(url):
        return False
    return _is_local_path(dep)


def _wheel_name(project: Path) -> str:
    """The file name pattern of the wheel built from ``project`` (its pyproject.toml)."""
    pyproject = project / "pyproject.toml"
    name, version = "*", "*"
    if pyproject.is_file():
        meta = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        name = re.sub(r"[-_.]+", "_", str(meta.get("name", "*")))
        if "version" in meta and "version" not in meta.get("dynamic", []):
            version = str(meta["version"])
    return f"{name}-{version}-*.whl"


def _build_out_dir(command: str) -> str:
    """Where a wheel build command writes, relative to the artifact path."""
    try:
        words = shlex.split(command)
    except ValueError:
        return "dist"
    for i, word in enumerate(words):
        for flag in ("--wheel-dir", "-w", "--outdir", "--out-dir", "-o"):
            if word == flag and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(flag + "=") and flag.startswith("--"):
                return word.split("=", 1)[1]
    if "wheel" in words and "pip" in " ".join(words):
        return "."  # pip wheel without --wheel-dir writes to the working directory
    return "dist"


@dataclass
class _Artifacts:
    outputs: list[Path] = field(default_factory=list)  # files the builds will produce
    built_by: dict[Path, str] = field(default_factory=dict)


def _artifacts(bundle: Bundle, problems: list[str]) -> _Artifacts:
    """Each artifact's path and the files its build will produce (predicted, not built)."""
    found = _Artifacts()
    for name, (spec, source) in bundle.artifacts.items():
        where = f"{source}: artifacts.{name}"
        folder = bundle.folder_of(source)
        raw = spec.get("path")
        path = Path(os.path.normpath(folder / raw)) if raw else bundle.root
        if not path.is_dir():
            problems.append(f"{where}.path: {raw!r} resolves to {path}, which is not a "
                            f"directory (relative to {folder})")
            continue
        if spec.get("type") == "whl" and not ((path / "pyproject.toml").is_file()
                                              or (path / "setup.py").is_file()):
            problems.append(f"{where}.path: {path} has no pyproject.toml or setup.py to build "
                            "a wheel from")
        files = [os.path.normpath(folder / f["source"]) for f in spec.get("files") or []
                 if isinstance(f, dict) and f.get("source")]
        if not files and spec.get("type") == "whl":
            files = [str(path / "dist" / "*.whl")]  # the CLI's default for a wheel
        if spec.get("build") and spec.get("type") == "whl":
            out_dir = Path(os.path.normpath(path / _build_out_dir(str(spec["build"]))))
            wheel = out_dir / _wheel_name(path)
            if not any(_pattern_matches(f, wheel) for f in files):
                problems.append(f"{where}: the build writes {wheel} but the files the CLI "
                                f"uploads after it are {', '.join(files)}: no match")
            found.outputs.append(wheel)
            found.built_by[wheel] = name
        elif not spec.get("build"):
            for pattern in files:
                if not glob.glob(pattern):
                    problems.append(f"{where}.files: {pattern} matches no file")
    return found


def _pattern_matches(pattern: str, candidate: Path) -> bool:
    """Does glob ``pattern`` (absolute) match ``candidate`` (which may hold ``*`` itself, for
    a version not known before the build)? Both sides are compared folder by folder."""
    p, c = Path(pattern), candidate
    if p.parent != c.parent and not fnmatch.fnmatchcase(str(c.parent), str(p.parent)):
        return False
    probe = c.name.replace("*", "0")
    return fnmatch.fnmatchcase(probe, p.name)


def _local_file_problem(bundle: Bundle, source: str, key: str, raw: str,
                        artifacts: _Artifacts, glob_ok: bool = True) -> str | None:
    """None if ``raw`` (a local path in ``source``) resolves to a file now or after the build."""
    folder = bundle.folder_of(source)
    resolved = os.path.normpath(folder / raw)
    if (glob.glob(resolved) if glob_ok else os.path.exists(resolved)):
        return None
    built = [w for w in artifacts.outputs if _pattern_matches(resolved, w)]
    if built:
        return None
    after = ""
    if artifacts.outputs:
        after = " after the artifact build (" + ", ".join(
            f"{artifacts.built_by[w]} builds {w}" for w in artifacts.outputs) + ")"
    what = "matches no file" if _is_glob(raw) else "does not exist"
    return (f"{source}: {key}: {raw} resolves to {resolved}, which {what}{after}; paths are "
            f"relative to the folder of the file that defines them ({folder})")


def _path_problems(bundle: Bundle, artifacts: _Artifacts) -> list[str]:
    problems: list[str] = []
    sync_root = bundle.root
    for p in ((bundle.config.get("sync") or {}).get("paths") or []):
        sync_root = Path(os.path.commonpath([sync_root, os.path.normpath(bundle.root / p)]))
    for key, raw in bundle.jobs.items():
        source = bundle.sources[key]
        base = f"resources.jobs.{key}"
        for i, env in enumerate(raw.get("environments") or []):
            for j, dep in enumerate((env.get("spec") or {}).get("dependencies") or []):
                dep = str(dep)
                where = f"{base}.environments[{i}].spec.dependencies[{j}]"
                flag, _, rest = dep.partition(" ")
                if flag in ("-r", "-e") and _is_local_path(rest.strip()):
                    problem = _local_file_problem(bundle, source, where, rest.strip(),
                                                  artifacts, glob_ok=False)
                elif _is_local_library(dep) and "${" not in dep:
                    path = re.sub(r"\[[^\]]*\]$", "", dep)  # extras are not part of the path
                    problem = _local_file_problem(bundle, source, where, path, artifacts)
                else:
                    problem = None
                if problem:
                    problems.append(problem)
        for t, task in enumerate(raw.get("tasks") or []):
            tw = f"{base}.tasks[{t}]"
            for k, lib in enumerate(task.get("libraries") or []):
                for kind in ("whl", "jar", "requirements"):
                    value = str((lib or {}).get(kind, ""))
                    if value and _is_local_path(value) and "${" not in value:
                        problem = _local_file_problem(bundle, source,
                                                      f"{tw}.libraries[{k}].{kind}", value,
                                                      artifacts, glob_ok=kind != "requirements")
                        if problem:
                            problems.append(problem)
            for path_key in (("notebook_task", "notebook_path"),
                             ("spark_python_task", "python_file"),
                             ("sql_task", "file", "path"), ("dbt_task", "project_directory")):
                node: Any = task
                for part in path_key:
                    node = node.get(part) if isinstance(node, dict) else None
                if not isinstance(node, str) or not _is_local_path(node) or "${" in node:
                    continue
                if (task.get(path_key[0]) or {}).get("source") == "GIT":
                    continue
                where = f"{tw}.{'.'.join(path_key)}"
                resolved = Path(os.path.normpath(bundle.folder_of(source) / node))
                exists = resolved.exists() or any(
                    resolved.with_name(resolved.name + ext).exists()
                    for ext in (".py", ".ipynb", ".sql", ".scala", ".r", ".R"))
                if not exists:
                    problems.append(f"{source}: {where}: {node} resolves to {resolved}, which "
                                    "does not exist")
                elif not resolved.is_relative_to(sync_root):
                    problems.append(f"{source}: {where}: {node} resolves to {resolved}, outside "
                                    f"the sync root {sync_root}: it would not be uploaded")
    return problems


# -- the checks -----------------------------------------------------------------------------------
def _job_problems(bundle: Bundle, declared: dict[str, Any], scripts: dict[str, str]
                  ) -> list[str]:
    """Typed classes and references between the parts of each job (target-independent)."""
    from databricks.bundles.jobs import Job

    problems: list[str] = []
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
                if flag.partition("=")[0] not in known:
                    problems.append(f"{tw}: {entry} does not accept {flag}")
            for ref in _JOB_PARAM.findall(" ".join(args)):
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
        for flag, value in _flag_values(wheel.get("parameters") or []):
            if flag in PINNED_FLAGS and _JOB_PARAM.search(value):
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
            flags = dict(_flag_values(params))
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


def _identity_problems(bundle: Bundle, target: str, values: dict[str, Value]) -> list[str]:
    """run_as, application ids and warehouse ids of one target (one problem per value, with
    every place that uses it)."""
    problems: list[str] = []
    where = f"databricks.yml: targets.{target}"
    spec = bundle.targets.get(target) or {}
    run_as = spec.get("run_as") or bundle.config.get("run_as")
    uses: dict[tuple[str, str], tuple[Value, list[str]]] = {}  # (role, value key) -> uses

    def use(role: str, text: str, place: str) -> Value:
        m = _ONLY_VAR.match(text)
        value = _resolve(text, values)
        key = (role, f"var.{m.group(1)}" if m and m.group(1) in values else text)
        uses.setdefault(key, (value, []))[1].append(place)
        return value

    run_as_sp: Value | None = None
    if not run_as:
        problems.append(f"{where}: no run_as: the jobs would run as whoever deploys them, and "
                        "the grants in sql/ to the jobs' principal would not apply; add "
                        "run_as: {service_principal_name: ${var.jobs_principal}}")
    elif run_as.get("user_name") or not run_as.get("service_principal_name"):
        problems.append(f"{where}.run_as: name the jobs' service principal "
                        "(service_principal_name: <application id>), not a user")
    else:
        run_as_sp = use("app", str(run_as["service_principal_name"]),
                        f"targets.{target}.run_as.service_principal_name")
    for key, raw in bundle.jobs.items():
        jw = f"{bundle.sources[key]}: job {key}"
        if raw.get("run_as") and raw.get("run_as") != run_as:
            problems.append(f"{jw}: run_as differs from targets.{target}.run_as")
        for i, perm in enumerate(raw.get("permissions") or []):
            if perm.get("service_principal_name"):
                use("app", str(perm["service_principal_name"]),
                    f"{jw} permissions[{i}].service_principal_name")
        for task in raw.get("tasks") or []:
            tw = f"{jw} task {task.get('task_key')}"
            for flag, value in _flag_values((task.get("python_wheel_task") or {})
                                            .get("parameters") or []):
                if flag in APP_ID_FLAGS:
                    resolved = use("app", value, f"{tw} {flag}")
                    if run_as_sp is not None and not resolved.same_as(run_as_sp):
                        problems.append(f"{tw}: {flag} grants to {resolved.describe()} in "
                                        f"target {target} but the jobs run as "
                                        f"{run_as_sp.describe()}: use the same variable")
                if flag in WAREHOUSE_FLAGS:
                    use("warehouse", value, f"{tw} {flag}")
    for (role, name), (used, places) in uses.items():
        what = f"{where}: {name.replace('var.', 'variable ')}" if name.startswith("var.") \
            else f"{where}: {name!r}"
        checker = _check_app_id if role == "app" else _check_warehouse_id
        problem = checker(used, what)
        if problem:
            kind = "an application id" if role == "app" else "a warehouse id"
            problems.append(f"{problem} (used as {kind} by {'; '.join(places)})")
    return problems


def _sql_problems(bundle: Bundle, target: str, values: dict[str, Value]) -> list[str]:
    """``sql/`` as the yws_sql_apply job of ``target`` would render it, and the MLflow temp
    volume the tasks name."""
    from yws.config import Settings, SettingsError
    from yws.sqlfiles import SqlFileError, describe, sql_dir, statements

    root = bundle.root.parent / "sql"
    root = root if root.is_dir() else sql_dir()
    local = {name: value.local for name, value in values.items()}
    given = {k: local.get(k) or None
             for k in ("catalog", "schema", "analysts_group", "r_users_group", "jobs_principal")}
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
            for flag, value in _flag_values((task.get("python_wheel_task") or {})
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
    for var in _VAR.findall(yaml.safe_dump(bundle.config)):
        if var not in declared:
            problems.append(f"databricks.yml: ${{var.{var}}} is not declared")
    for name, spec in declared.items():
        lookup = (spec or {}).get("lookup")
        if lookup is not None:
            problems.extend(_lookup_problems(f"databricks.yml: variables.{name}.lookup", lookup))
    for tname, target in bundle.targets.items():
        for var, given in ((target or {}).get("variables") or {}).items():
            if isinstance(given, dict) and "lookup" in given:
                problems.extend(_lookup_problems(
                    f"databricks.yml: targets.{tname}.variables.{var}.lookup", given["lookup"]))

    pyproject = bundle.root.parent / "pyproject.toml"
    scripts = wheel_entry_points(pyproject) if pyproject.is_file() else {}
    if not pyproject.is_file():
        problems.append(f"{pyproject}: missing, so the wheel artifact cannot be built")

    problems.extend(_job_problems(bundle, declared, scripts))
    artifacts = _artifacts(bundle, problems)
    problems.extend(_path_problems(bundle, artifacts))

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
        problems.extend(_identity_problems(bundle, tname, values))
        for problem in _sql_problems(bundle, tname, values):
            if problem not in problems:
                problems.append(problem)
    return _unique(problems)


def _lookup_problems(where: str, lookup: Any) -> list[str]:
    if not isinstance(lookup, dict) or len(lookup) != 1:
        return [f"{where}: a lookup names exactly one of {', '.join(LOOKUP_KINDS)}"]
    (kind, name), = lookup.items()
    if kind not in LOOKUP_KINDS:
        return [f"{where}: unknown lookup {kind}; known: {', '.join(LOOKUP_KINDS)}"]
    if not name or _looks_placeholder(str(name)):
        return [f"{where}: {kind} {name!r} is not a name to look up"]
    return []


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
