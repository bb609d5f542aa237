"""The bundle as loaded: its files, includes, entry points and the variables per target."""

from __future__ import annotations

import glob
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yws.errors import YwsError

VAR_REF = re.compile(r"\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}")
ONLY_VAR_REF = re.compile(r"^\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}$")
ANY_REF = re.compile(r"\$\{[^}]+\}")
JOB_PARAM_REF = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
WAREHOUSE_ID_RE = re.compile(r"^[0-9a-fA-F]{16}$")
PLACEHOLDER = re.compile(r"x{3,}|changeme|change-me|placeholder|todo|tbd|<|>|example",
                          re.IGNORECASE)
# A PyPI requirement (name, extras, version specifiers), which is not a local path.
PACKAGE_SPEC = re.compile(r"^[A-Za-z0-9_\-]+\s?(\[.*\])?\s?((==|!=|<=|>=|~=|>|<)\s?[\w.+!*-]+,?)*$")
PIP_FLAG = re.compile(r"(^|\s)--?[A-Za-z0-9-]+([\s=]|$)")

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


class BundleError(YwsError, ValueError):
    """The bundle is not valid; the message lists every problem found."""


@dataclass
class Bundle:
    root: Path
    config: dict[str, Any]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # job key -> file, relative to root
    artifacts: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # -> file
    # resources.model_serving_endpoints: key -> the endpoint as written, and its file
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoint_sources: dict[str, str] = field(default_factory=dict)
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
    return Path(__file__).resolve().parents[4] / "jobs"  # python/yws/deploy/bundle/model.py


def load(root: Path | None = None) -> Bundle:
    root = (root or default_root()).absolute()
    main = root / "databricks.yml"
    if not main.is_file():
        raise BundleError(f"{main} does not exist: run from the repository, or pass the "
                          "bundle folder (--root, or --bundle-root for yws serve and yws up)")
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
        endpoints = (data.get("resources") or {}).get("model_serving_endpoints") or {}
        for key, endpoint in endpoints.items():
            if key in bundle.endpoints:
                raise BundleError(f"model serving endpoint {key} is defined twice "
                                  f"({bundle.endpoint_sources[key]}, {path})")
            bundle.endpoints[key] = endpoint
            bundle.endpoint_sources[key] = source
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
        if not matches and not is_glob(entry):
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


def flag_names(parameters: list[str]) -> list[str]:
    return [p for p in parameters if isinstance(p, str) and p.startswith("--")]


def flag_values(parameters: list[Any]) -> Iterator[tuple[str, str]]:
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
        return VAR_REF.sub(lambda m: str(variables.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")
