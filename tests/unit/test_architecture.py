"""The package's shape, checked from its source: imports point down the floors, no unit or module
imports itself back in a circle, every module sits on a floor, every error derives from YwsError.

Every module under ``python/yws`` is parsed with :mod:`ast`, never imported, so this runs in a
fraction of a second with no Spark, server or subprocess. An import counts wherever it is written:
at the top of a module, inside a function (a lazy import still ties the two modules together),
and under ``if TYPE_CHECKING:`` too — a type-only import up the floors is still a lower layer that
knows about a higher one, and the annotation is usually the first step towards the real import.
A module named only in a string (``importlib.import_module``, an MLflow ``loader_module``) is not
seen.

A *unit* is the first name under ``yws``: ``yws.scoring.job`` belongs to ``scoring``,
``yws/config.py`` to ``config``, the package's own ``yws/__init__.py`` to ``__init__``.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "python"
PACKAGE = ROOT / "yws"

# Bottom to top. A unit may import units on its own floor or below; an import between two units
# on the same floor is allowed as long as it closes no circle (test_no_cycles_between_units).
FLOORS: dict[str, int] = {
    "__init__": 0,  # the version only
    "errors": 0, "config": 0, "console": 0, "engine": 0,
    "contract": 1,
    "storage": 2,
    "warehouse": 3,
    "platform": 4,
    "model": 5, "datasets": 5,
    "training": 6,
    "monitoring": 6,  # drift: the baseline training saves, the math scoring applies
    "scoring": 7,
    "deploy": 8,
    "server": 9,
    "cli": 10,
}

# Imports allowed to point up the floors, each with its reason.
UPWARD_ALLOWED: dict[tuple[str, str], str] = {
    # yws/engine.py re-exports yws.model.evaluator: model versions registered before the split
    # name ``yws.engine`` as their pyfunc loader_module. It holds no code of its own.
    ("engine", "model"): "the old import path of yws.model.evaluator",
}

# Exception classes that need not derive from YwsError, keyed by (file, class), each with its
# reason. A subclass of one of these is exempt too.
NOT_YWS_ERRORS: dict[tuple[str, str], str] = {
    # The local server's errors are HTTP responses in the Databricks REST shape (status,
    # error_code, message), turned into JSON by the app's exception handler; they never reach
    # the `yws` command or a job entry point, which is what YwsError marks.
    ("yws/server/errors.py", "ApiError"): "an HTTP error response, not a user error",
    # The SQL API's statement runner raises it to stop writing a canceled or timed-out
    # statement's result and catches it in the same class (StatementService._run); it never leaves.
    ("yws/server/sql_api.py", "_Stopped"): "a control-flow signal caught in the same module",
}

# The guarded roots an exception may stand on in place of YwsError itself.
ERROR_ROOTS = {
    "YwsError",
    # yws/model/evaluator.py is logged with each model as its code and must load without yws:
    # it derives from ``_Root``, which is YwsError inside YWS and Exception where yws is absent.
    "_Root",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, "yws.scoring.job"
    target: str  # the imported yws module, "yws.contract.spec"
    where: str  # "yws/scoring/job.py:12"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@functools.cache
def _sources() -> dict[str, tuple[Path, ast.Module]]:
    """Every module under python/yws, by dotted name: its path and parsed tree."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[_module_name(path)] = (path, ast.parse(path.read_text(), filename=str(path)))
    return found


def _file(module: str) -> str:
    return _sources()[module][0].relative_to(ROOT).as_posix()


@functools.cache
def _imports() -> tuple[Import, ...]:
    """Every import of a yws module, anywhere in a module's tree."""
    modules = _sources()
    found: list[Import] = []
    for name, (path, tree) in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the importing module's package
                    package = name.split(".")
                    if not is_package:
                        package.pop()
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join(package + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from yws.x import y` imports the module yws.x.y when there is one, else a
                # name from yws.x
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                if target == "yws" or target.startswith("yws."):
                    # `import yws.a.b.c` where c is a name, not a module: the nearest module
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    where = f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
                    found.append(Import(name, target, where))
    return tuple(dict.fromkeys(found))


def _cycles(edges: dict[str, dict[str, str]]) -> list[tuple[list[str], set[str]]]:
    """Each strongly connected group of the graph (Tarjan), with its shortest circle through
    its first member as a node path that ends where it starts. ``edges[a][b]`` is where a
    imports b."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    nodes = sorted(set(edges) | {b for targets in edges.values() for b in targets})
    for node in nodes:
        if node not in index:
            visit(node)

    circles = []
    for group in groups:
        start = min(group)
        # the shortest way from start back to start inside the group (breadth first)
        came_from: dict[str, str] = {}
        frontier = [start]
        while start not in came_from:
            following = []
            for node in frontier:
                for nxt in sorted(edges.get(node, {})):
                    if nxt in group and nxt not in came_from:
                        came_from[nxt] = node
                        following.append(nxt)
            frontier = following
        path = [start]
        node = came_from[start]
        while node != start:
            path.append(node)
            node = came_from[node]
        path.append(start)
        circles.append((path[::-1], group))
    return sorted(circles, key=lambda c: c[0])


def _describe(circle: list[str], group: set[str], edges: dict[str, dict[str, str]]) -> str:
    steps = [f"{a} -> {b} ({edges[a][b]})" for a, b in zip(circle, circle[1:], strict=False)]
    tangled = "" if len(group) == len(circle) - 1 else (
        f"\n    (one circle of several: {len(group)} are tangled: {', '.join(sorted(group))})")
    return "  " + "\n    ".join(steps) + tangled


def test_every_module_is_on_a_floor() -> None:
    homeless = sorted(f"{_file(m)} (unit {_unit(m)!r})" for m in _sources()
                      if _unit(m) not in FLOORS)
    assert not homeless, (
        "modules in a unit with no floor:\n  " + "\n  ".join(homeless) + "\nPlace each new "
        "unit on a floor in tests/test_architecture.py FLOORS, on purpose: the floor says what "
        "it may import and what may import it.")


def test_imports_point_down_the_floors() -> None:
    upward = []
    for imp in _imports():
        src, dst = _unit(imp.source), _unit(imp.target)
        if src not in FLOORS or dst not in FLOORS or (src, dst) in UPWARD_ALLOWED:
            continue  # a unit without a floor fails test_every_module_is_on_a_floor
        if FLOORS[dst] > FLOORS[src]:
            upward.append(f"{imp.where} imports {imp.target} "
                          f"(floor {FLOORS[src]} -> floor {FLOORS[dst]})")
    assert not upward, (
        "imports that point up the floors:\n  " + "\n  ".join(sorted(upward)) + "\nA lower "
        "floor must not know a higher one: move the code both need down to the lower floor, "
        "or pass it in (an argument, a callback, a registry the higher floor fills).")


def test_no_cycles_between_units() -> None:
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for imp in _imports():
        src, dst = _unit(imp.source), _unit(imp.target)
        if src != dst:
            edges[src].setdefault(dst, imp.where)
    circles = [_describe(c, g, edges) for c, g in _cycles(edges)]
    assert not circles, (
        "units that import each other in a circle:\n" + "\n".join(circles) + "\nBreak each "
        "circle where it points up or sideways: move the shared code into the lower unit, or "
        "pass it in.")


def test_no_cycles_between_modules_of_a_unit() -> None:
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for imp in _imports():
        if imp.source != imp.target and _unit(imp.source) == _unit(imp.target):
            edges[imp.source].setdefault(imp.target, imp.where)
    circles = [_describe(c, g, edges) for c, g in _cycles(edges)]
    assert not circles, (
        "modules that import each other in a circle:\n" + "\n".join(circles) + "\nMove what "
        "both need into a third module that imports neither, or pass it in.")


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Attribute):
        return base.attr
    return base.id if isinstance(base, ast.Name) else ""


def test_every_error_derives_from_yws_error() -> None:
    # class name -> where each class of that name is defined, and its bases' names
    classes: dict[str, list[tuple[str, int, list[str]]]] = defaultdict(list)
    for module, (_, tree) in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes[node.name].append((_file(module), node.lineno,
                                           [_base_name(b) for b in node.bases]))

    def is_exception(bases: list[str], seen: frozenset[str] = frozenset()) -> bool:
        return any(b in ("Exception", "BaseException") or b.endswith(("Error", "Exception"))
                   or any(is_exception(d[2], seen | {b}) for d in classes.get(b, ()))
                   for b in bases if b not in seen)

    def rooted(bases: list[str], seen: frozenset[str] = frozenset()) -> bool:
        return any(b in ERROR_ROOTS
                   or any((d[0], b) in NOT_YWS_ERRORS or rooted(d[2], seen | {b})
                          for d in classes.get(b, ()))
                   for b in bases if b not in seen)

    strays = [f"{file}:{line} class {name}({', '.join(bases)})"
              for name, definitions in classes.items() if name not in ERROR_ROOTS
              for file, line, bases in definitions
              if (file, name) not in NOT_YWS_ERRORS and is_exception(bases)
              and not rooted(bases)]
    assert not strays, (
        "exception classes outside the YwsError tree:\n  " + "\n  ".join(sorted(strays)) +
        "\nDerive each from YwsError (yws/errors.py) or one of its subclasses, beside the "
        "built-in class a caller expects (`class FeatureSchemaError(YwsError, ValueError)`), so "
        "the command and the job entry points report it as one line. If it is not an error a "
        "user can act on, add it to NOT_YWS_ERRORS with the reason.")


def test_test_modules_have_unique_names():
    """pytest imports test modules by their base name (rootdir-relative, no packages): two
    files with one name in tests/unit and tests/integration stop the whole run at collection,
    but only when both are collected together (as `make test` does)."""
    tests = Path(__file__).resolve().parents[1]
    names: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
