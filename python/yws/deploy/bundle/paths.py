"""Local paths resolved the way the Databricks CLI resolves them (see the package doc)."""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from yws.deploy.bundle.model import (
    PACKAGE_SPEC,
    PIP_FLAG,
    Bundle,
    is_glob,
)


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
    if PIP_FLAG.search(dep) or PACKAGE_SPEC.match(dep):
        return False
    name, sep, url = dep.partition(" @ ")
    if sep and PACKAGE_SPEC.match(name) and _has_scheme(url):
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


def predict_artifacts(bundle: Bundle, problems: list[str]) -> _Artifacts:
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
    what = "matches no file" if is_glob(raw) else "does not exist"
    return (f"{source}: {key}: {raw} resolves to {resolved}, which {what}{after}; paths are "
            f"relative to the folder of the file that defines them ({folder})")


def path_problems(bundle: Bundle, artifacts: _Artifacts) -> list[str]:
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


