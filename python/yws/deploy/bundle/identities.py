"""Identities: service principals by application id, warehouses by id, lookups by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yws.deploy.bundle.model import (
    ANY_REF,
    APP_ID_FLAGS,
    LOOKUP_KINDS,
    ONLY_VAR_REF,
    PLACEHOLDER,
    UUID_RE,
    WAREHOUSE_FLAGS,
    WAREHOUSE_ID_RE,
    Bundle,
    Value,
    flag_values,
)


def _looks_placeholder(text: str) -> bool:
    compact = text.replace("-", "")
    return (not compact or set(compact) <= {"0"} or len(set(compact)) == 1
            or bool(PLACEHOLDER.search(text)))


def _check_app_id(value: Value, what: str) -> str | None:
    if value.lookup is not None:
        if list(value.lookup) != ["service_principal"] or not value.lookup["service_principal"]:
            return (f"{what} is {value.describe()}, which does not give an application id: "
                    "use lookup: {service_principal: <display name>}")
        return None
    text = value.literal or ""
    if ANY_REF.search(text):
        return None  # another reference, resolved by the CLI
    if not UUID_RE.fullmatch(text) or _looks_placeholder(text):
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
    if ANY_REF.search(text):
        return None
    if not WAREHOUSE_ID_RE.fullmatch(text) or _looks_placeholder(text):
        return (f"{what} is {text!r} ({value.origin}), not a SQL warehouse id: use "
                "lookup: {warehouse: <warehouse name>} or the 16-character id from the "
                "warehouse's connection details")
    return None


def _resolve(text: str, values: Mapping[str, Value]) -> Value:
    """A field's value: a lone ``${var.x}`` is that variable's value; anything else a literal."""
    m = ONLY_VAR_REF.fullmatch(text)
    if m and m.group(1) in values:
        return values[m.group(1)]
    return Value(literal=text, origin="the bundle")


def identity_problems(bundle: Bundle, target: str, values: dict[str, Value]) -> list[str]:
    """run_as, application ids and warehouse ids of one target (one problem per value, with
    every place that uses it)."""
    problems: list[str] = []
    where = f"databricks.yml: targets.{target}"
    spec = bundle.targets.get(target) or {}
    run_as = spec.get("run_as") or bundle.config.get("run_as")
    uses: dict[tuple[str, str], tuple[Value, list[str]]] = {}  # (role, value key) -> uses

    def use(role: str, text: str, place: str) -> Value:
        m = ONLY_VAR_REF.fullmatch(text)
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
            for flag, value in flag_values((task.get("python_wheel_task") or {})
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


def lookup_problems(where: str, lookup: Any) -> list[str]:
    if not isinstance(lookup, dict) or len(lookup) != 1:
        return [f"{where}: a lookup names exactly one of {', '.join(LOOKUP_KINDS)}"]
    (kind, name), = lookup.items()
    if kind not in LOOKUP_KINDS:
        return [f"{where}: unknown lookup {kind}; known: {', '.join(LOOKUP_KINDS)}"]
    if not name or _looks_placeholder(str(name)):
        return [f"{where}: {kind} {name!r} is not a name to look up"]
    return []


