"""The bundle's Model Serving endpoints (``resources.model_serving_endpoints``), checked offline.

Each endpoint parses into ``databricks.bundles.model_serving_endpoints.ModelServingEndpoint``
(an unknown or misspelt field, a permission level that does not exist fails), and per target:

- its name is one Serving takes (letters, digits, ``-`` and ``_``, at most 63 characters) and
  no two endpoints share it;
- every served entity names a Unity Catalog model by its three-level name and a version
  *number* (Serving takes no alias), with a workload size and scale to zero set; the YWS model
  is the one the jobs of the same target register (``<catalog>.<schema>.<model>``);
- the traffic routes name served entities and add up to 100 percent;
- permissions name who they are for; tags have unique keys;
- the task that moves the served version (``yws-serving-update --endpoint``) and the one that
  applies ``sql/`` (``yws-sql-apply --serving-endpoint``, the endpoint ``ai_query`` names) name
  an endpoint of the bundle.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from yws.config import ENDPOINT_NAME
from yws.deploy.bundle.model import VAR_REF, Bundle, Value, flag_values, substitute

UC_NAME = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")
WORKLOAD_SIZES = ("Small", "Medium", "Large")
UPDATE_ENTRY_POINT = "yws-serving-update"
# The tasks that name the endpoint, and the flag they name it with: the serving task moves its
# version, and sql/ (applied by yws-sql-apply) calls it with ai_query.
ENDPOINT_FLAGS = {UPDATE_ENTRY_POINT: "--endpoint", "yws-sql-apply": "--serving-endpoint"}


def typed(raw: dict[str, Any]) -> Any:
    """The endpoint as ``databricks-bundles`` types it (raises ValueError/TypeError/KeyError)."""
    from databricks.bundles.model_serving_endpoints import ModelServingEndpoint

    return ModelServingEndpoint.from_dict(raw)  # type: ignore[arg-type]


def endpoint_problems(bundle: Bundle, declared: dict[str, Any]) -> list[str]:
    """Typed classes and the target-independent shape of each endpoint."""
    problems: list[str] = []
    for key, raw in bundle.endpoints.items():
        where = f"{bundle.endpoint_sources[key]}: model serving endpoint {key}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        for var in VAR_REF.findall(yaml.safe_dump(raw)):
            if var not in declared:
                problems.append(f"{where}: ${{var.{var}}} is not declared in databricks.yml")
        try:
            typed(raw)
        except (ValueError, TypeError, KeyError) as e:
            problems.append(f"{where}: {e}")
            continue
        config = raw.get("config") or {}
        entities = config.get("served_entities") or []
        if not entities:
            problems.append(f"{where}: config.served_entities is empty: serve the model")
        names = [str(e.get("name") or "") for e in entities]
        for i, entity in enumerate(entities):
            ew = f"{where} served_entities[{i}]"
            if not entity.get("entity_name") or not entity.get("entity_version"):
                problems.append(f"{ew}: name the model (entity_name) and its version "
                                "(entity_version)")
            if entity.get("workload_size") not in WORKLOAD_SIZES:
                problems.append(f"{ew}: workload_size {entity.get('workload_size')!r} is not "
                                f"one of {', '.join(WORKLOAD_SIZES)}")
            if not isinstance(entity.get("scale_to_zero_enabled"), bool):
                problems.append(f"{ew}: set scale_to_zero_enabled (true or false)")
        routes = (config.get("traffic_config") or {}).get("routes") or []
        for route in routes:
            served = route.get("served_model_name") or route.get("served_entity_name")
            if served not in names:
                problems.append(f"{where}: traffic route to {served!r}, which is not a served "
                                f"entity ({', '.join(names)})")
        if routes and sum(int(r.get("traffic_percentage") or 0) for r in routes) != 100:
            problems.append(f"{where}: the traffic routes add up to "
                            f"{sum(int(r.get('traffic_percentage') or 0) for r in routes)}%, "
                            "not 100%")
        for i, perm in enumerate(raw.get("permissions") or []):
            if not any(perm.get(k) for k in ("group_name", "user_name",
                                             "service_principal_name")):
                problems.append(f"{where} permissions[{i}]: {perm.get('level')} for nobody: "
                                "name a group_name, user_name or service_principal_name")
        keys = [t.get("key") for t in raw.get("tags") or []]
        for dup in sorted({str(k) for k in keys if keys.count(k) > 1}):
            problems.append(f"{where}: tag {dup} is set twice")
    return problems


def target_endpoint_problems(bundle: Bundle, target: str, values: dict[str, Value]
                             ) -> list[str]:
    """Names, served models and versions as ``target`` resolves them."""
    from yws.config import Settings, SettingsError

    local = {name: value.local for name, value in values.items()}
    try:
        model = Settings().with_(catalog=local.get("catalog") or None,
                                 schema=local.get("schema") or None).model_name
    except SettingsError as e:
        return [str(e)]
    problems: list[str] = []
    seen: dict[str, str] = {}
    for key, raw in bundle.endpoints.items():
        if not isinstance(raw, dict):
            continue
        where = f"{bundle.endpoint_sources[key]}: model serving endpoint {key} (target {target})"
        resolved = substitute(raw, local)
        name = str(resolved.get("name") or "")
        if not ENDPOINT_NAME.fullmatch(name):
            problems.append(f"{where}: name {name!r} is not an endpoint name: letters, digits, "
                            "'-' and '_', at most 63 characters")
        elif name in seen:
            problems.append(f"{where}: name {name} is also endpoint {seen[name]}'s")
        seen.setdefault(name, key)
        for i, entity in enumerate((resolved.get("config") or {}).get("served_entities") or []):
            ew = f"{where} served_entities[{i}]"
            entity_name = str(entity.get("entity_name") or "")
            version = str(entity.get("entity_version") or "")
            if not UC_NAME.fullmatch(entity_name):
                problems.append(f"{ew}: entity_name {entity_name!r} is not a Unity Catalog model "
                                "name <catalog>.<schema>.<model>")
            elif entity_name.rsplit(".", 1)[-1] == model.rsplit(".", 1)[-1] and \
                    entity_name != model:
                problems.append(f"{ew}: serves {entity_name}, but the jobs of target {target} "
                                f"register {model}")
            if not re.fullmatch(r"[1-9][0-9]{0,9}", version):
                problems.append(f"{ew}: entity_version {version!r} is not a version number: "
                                "Model Serving takes a version, not an alias (the serving task "
                                "of yws_train moves it to @champion)")
    names = set(seen)
    for job_key, job in bundle.jobs.items():
        for task in job.get("tasks") or []:
            wheel = task.get("python_wheel_task") or {}
            flag = ENDPOINT_FLAGS.get(str(wheel.get("entry_point")))
            if flag is None:
                continue
            flags = dict(flag_values(wheel.get("parameters") or []))
            endpoint = substitute(flags.get(flag, ""), local)
            if endpoint not in names:
                problems.append(f"{bundle.sources[job_key]}: job {job_key} task "
                                f"{task.get('task_key')}: {flag} {endpoint!r} (target "
                                f"{target}) is not an endpoint of the bundle "
                                f"({', '.join(sorted(names)) or 'none'})")
    return problems
