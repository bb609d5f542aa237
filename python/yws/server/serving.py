"""Model Serving endpoints on the local target: the bundle's ``model_serving_endpoints``,
their served model versions, and the invocations they answer.

An endpoint is what ``jobs/resources/*.yml`` declares (variables resolved for the bundle
target, as for the jobs); who may see, query or manage it is its ``permissions`` there
(``CAN_VIEW`` < ``CAN_QUERY`` < ``CAN_MANAGE``, for a user, group or service principal).

The served version is the bundle's ``entity_version`` until ``PUT …/config`` (the SDK's
``serving_endpoints.update_config``) changes it. A changed config is kept in
``$YWS_HOME/serving/endpoints.json`` with the bundle config it replaced: when the bundle says
something else at the next start, the bundle wins, as ``databricks bundle deploy`` would
reset the endpoint.

An invocation scores its rows with :func:`yws.scoring.records.score_records` — the batch job's
evaluator, quarantine rules and bands, an error per refused row — with the served version's
model (:func:`yws.model.families.load`: a SparkML pipeline or an R glm), loaded once per
(model, version) and kept. No
invocation writes anything.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from yws.config import Settings
from yws.contract.spec import Spec, load_spec
from yws.deploy.bundle import Bundle, local_variables, substitute
from yws.model import families
from yws.model.families import FamilyModel
from yws.server.errors import ApiError, denied, not_found
from yws.server.store import Principal, now_ms

LEVELS = ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE")  # each includes the ones before it
STATE_FILE = Path("serving") / "endpoints.json"
MAX_KNOWN_PRINCIPALS = 1024  # levels kept per endpoint (see Endpoint.level)


def bad_request(message: str) -> ApiError:
    """How Model Serving (MLflow's scoring server) refuses an input it cannot read."""
    return ApiError(400, "BAD_REQUEST", message[:2000])


@dataclass
class Endpoint:
    key: str  # the resource key in the bundle
    name: str
    settings: dict[str, Any]  # the resource, variables resolved
    config: dict[str, Any]  # the config in effect: the bundle's, or the last PUT …/config
    config_version: int
    created: int  # epoch ms: when this server started serving it
    updated: int
    # each principal's level, worked out once: the bundle's permissions do not change while
    # the server runs (a config update changes the served entities only)
    _levels: dict[Principal, int] = dataclass_field(default_factory=dict, repr=False,
                                                    compare=False)

    def level(self, principal: Principal) -> int:
        """The principal's highest permission level (index into LEVELS), -1 for none."""
        best = self._levels.get(principal)
        if best is not None:
            return best
        best = -1
        for perm in self.settings.get("permissions") or []:
            who = perm.get("group_name") or perm.get("service_principal_name") or \
                perm.get("user_name")
            if who in principal.identities and perm.get("level") in LEVELS:
                best = max(best, LEVELS.index(perm["level"]))
        if len(self._levels) >= MAX_KNOWN_PRINCIPALS:
            self._levels.clear()
        self._levels[principal] = best
        return best

    @property
    def entities(self) -> list[dict[str, Any]]:
        return list(self.config.get("served_entities") or [])


class ServingService:
    """The endpoints of one bundle target and their models."""

    def __init__(self, settings: Settings, bundle: Bundle, target: str = "dev",
                 overrides: Mapping[str, str] | None = None, creator: str = "yws-bundle"
                 ) -> None:
        self.settings = settings
        self.creator = creator
        self.state_path = settings.home.resolve() / STATE_FILE
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], FamilyModel] = {}
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._spec: Spec | None = None
        variables = local_variables(bundle, target, overrides) if target in bundle.targets \
            else {}
        saved = self._read_state()
        started = now_ms()
        self.endpoints: dict[str, Endpoint] = {}
        for key, raw in bundle.endpoints.items():
            resolved = substitute(copy.deepcopy(raw), variables)
            name = str(resolved.get("name") or key)
            config = dict(resolved.get("config") or {})
            endpoint = Endpoint(key, name, resolved, config, 1, started, started)
            kept = saved.get(name)
            if isinstance(kept, dict) and kept.get("bundle_config") == config:
                endpoint.config = kept["config"]
                endpoint.config_version = int(kept.get("config_version", 1))
                endpoint.updated = int(kept.get("updated", started))
            self.endpoints[name] = endpoint

    # -- state ----------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, bundle_configs: dict[str, dict[str, Any]]) -> None:
        content = {name: {"bundle_config": bundle_configs[name], "config": e.config,
                          "config_version": e.config_version, "updated": e.updated}
                   for name, e in self.endpoints.items() if e.config_version > 1}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".endpoints.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(content, f, indent=1)
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- access ---------------------------------------------------------------------------
    def endpoint(self, name: str, principal: Principal, level: str) -> Endpoint:
        """The endpoint ``name`` if ``principal`` holds ``level`` on it (404 / 403)."""
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise not_found(f"Endpoint with name '{name[:200]}' does not exist.")
        if endpoint.level(principal) < LEVELS.index(level):
            raise denied(f"User {principal.name} does not have permission '{level}' on "
                         f"serving endpoint {name}: the bundle's permissions for it grant "
                         f"{', '.join(self._holders(endpoint, level)) or 'nobody'}")
        return endpoint

    @staticmethod
    def _holders(endpoint: Endpoint, level: str) -> list[str]:
        return [str(p.get("group_name") or p.get("service_principal_name") or p.get("user_name"))
                for p in endpoint.settings.get("permissions") or []
                if p.get("level") in LEVELS[LEVELS.index(level):]]

    def visible(self, principal: Principal) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.level(principal) >= 0]

    # -- the API's shapes -----------------------------------------------------------------
    def ready(self, endpoint: Endpoint) -> tuple[bool, str]:
        """Whether every served entity's version exists, and why not."""
        for entity in endpoint.entities:
            try:
                self.version_folder(str(entity.get("entity_name")),
                                    str(entity.get("entity_version")))
            except ApiError as e:
                return False, e.message
        return True, ""

    def as_api(self, endpoint: Endpoint, principal: Principal, detailed: bool,
               base_url: str = "") -> dict[str, Any]:
        ready, why = self.ready(endpoint)
        entities = []
        for entity in endpoint.entities:
            out = {k: v for k, v in entity.items() if k != "environment_vars"}
            out.setdefault("name", f"{str(entity.get('entity_name', '')).split('.')[-1]}-"
                                   f"{entity.get('entity_version')}")
            out["entity_version"] = str(entity.get("entity_version"))
            out.update({"creator": self.creator, "creation_timestamp": endpoint.updated})
            if detailed:
                out["state"] = {
                    "deployment": "DEPLOYMENT_READY" if ready else "DEPLOYMENT_FAILED",
                    "deployment_state_message": "" if ready else why}
            entities.append(out)
        config: dict[str, Any] = {"served_entities": entities,
                                  "config_version": endpoint.config_version}
        if detailed:
            config["traffic_config"] = endpoint.config.get("traffic_config") or {
                "routes": [{"served_model_name": entities[0]["name"],
                            "traffic_percentage": 100}] if entities else []}
        level = endpoint.level(principal)
        answer: dict[str, Any] = {
            "name": endpoint.name, "id": endpoint.key, "creator": self.creator,
            "creation_timestamp": endpoint.created,
            "last_updated_timestamp": endpoint.updated,
            "state": {"ready": "READY" if ready else "NOT_READY",
                      "config_update": "NOT_UPDATING"},
            "config": config,
            "tags": list(endpoint.settings.get("tags") or []),
            "task": None,
        }
        if endpoint.settings.get("description"):
            answer["description"] = endpoint.settings["description"]
        if detailed:
            answer["permission_level"] = LEVELS[level] if level >= 0 else None
            if base_url:
                answer["endpoint_url"] = (f"{base_url.rstrip('/')}/serving-endpoints/"
                                          f"{endpoint.name}/invocations")
        return {k: v for k, v in answer.items() if v is not None}

    # -- config updates -------------------------------------------------------------------
    def update_config(self, endpoint: Endpoint, payload: dict[str, Any]) -> None:
        """``PUT …/config``: new served entities (and traffic routes) for the endpoint."""
        from yws.deploy.bundle.endpoints import UC_NAME, WORKLOAD_SIZES, typed

        allowed = {"served_entities", "traffic_config", "served_models", "auto_capture_config"}
        unknown = sorted(set(payload) - allowed)
        if unknown:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"unknown field {unknown[0][:100]!r}; this server accepts "
                           "served_entities and traffic_config")
        for field in ("served_models", "auto_capture_config"):
            if payload.get(field):
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               f"{field} is not supported here: send served_entities")
        entities = payload.get("served_entities")
        if not isinstance(entities, list) or not entities or \
                not all(isinstance(e, dict) for e in entities):
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           "served_entities must be a non-empty list of objects")
        config: dict[str, Any] = {"served_entities": entities}
        if payload.get("traffic_config") is not None:
            config["traffic_config"] = payload["traffic_config"]
        try:
            typed({"name": endpoint.name, "config": config})
        except (ValueError, TypeError, KeyError) as e:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"config: {e}"[:1000]) from None

        def refuse(message: str) -> ApiError:
            return ApiError(400, "INVALID_PARAMETER_VALUE", message)

        names: list[str] = []
        for i, entity in enumerate(entities):
            version = entity.get("entity_version")
            if not isinstance(entity.get("entity_name"), str) or \
                    not UC_NAME.fullmatch(entity["entity_name"]) or \
                    not isinstance(version, str | int) or isinstance(version, bool) or \
                    not str(version).isdigit():
                raise refuse(f"served_entities[{i}]: name a Unity Catalog model "
                             "(entity_name <catalog>.<schema>.<model>) and a version number "
                             "(entity_version)")
            if entity.get("workload_size") not in (None, *WORKLOAD_SIZES):
                raise refuse(f"served_entities[{i}].workload_size must be one of "
                             f"{', '.join(WORKLOAD_SIZES)}")
            if not isinstance(entity.get("scale_to_zero_enabled", False), bool):
                raise refuse(f"served_entities[{i}].scale_to_zero_enabled must be true or "
                             "false")
            if not isinstance(entity.get("name", ""), str):
                raise refuse(f"served_entities[{i}].name must be a string")
            names.append(self._served_name(entity))
        try:
            routes = (config.get("traffic_config") or {}).get("routes") or []
            bad = routes and (
                any(r.get("served_model_name", r.get("served_entity_name")) not in names
                    for r in routes)
                or sum(int(r.get("traffic_percentage") or 0) for r in routes) != 100)
        except (AttributeError, TypeError, ValueError):
            bad = True
        if bad:
            raise refuse("traffic_config.routes must name served entities and add up to 100 "
                         "percent")
        for entity in entities:
            self.version_folder(entity["entity_name"], str(entity["entity_version"]))  # 404
        with self._lock:
            bundle = {name: self._bundle_config(e) for name, e in self.endpoints.items()}
            endpoint.config = config
            endpoint.config_version += 1
            endpoint.updated = now_ms()
            self._write_state(bundle)
            served = {(str(x.get("entity_name")), str(x.get("entity_version")))
                      for e in self.endpoints.values() for x in e.entities}
            for key in [k for k in self._models if k not in served]:
                del self._models[key]  # a version no endpoint serves any more

    def _bundle_config(self, endpoint: Endpoint) -> dict[str, Any]:
        return dict(endpoint.settings.get("config") or {})

    # -- models ---------------------------------------------------------------------------
    def spec(self) -> Spec:
        if self._spec is None:
            self._spec = load_spec(self.settings.spec)
        return self._spec

    def version_folder(self, model: str, version: str) -> Path:
        """The local folder of a registered model version (404 when there is none)."""
        from yws.model import registry

        registry.configure(self.settings)
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            uri = mlflow.MlflowClient().get_model_version_download_uri(model, version)
        except MlflowException:
            raise not_found(f"model {model} has no version {version} in the local registry: "
                            "train one (yws train), or point the endpoint at an existing "
                            "version (`yws model versions` lists them)") from None
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            return Path(unquote(parsed.path))
        return Path(mlflow.artifacts.download_artifacts(f"models:/{model}/{version}"))

    def cached_model(self, endpoint: Endpoint) -> tuple[str, FamilyModel] | None:
        """The served entity's name and its loaded model, if loaded already (no I/O)."""
        entity = endpoint.entities[0] if endpoint.entities else None
        if entity is None:
            return None
        key = (str(entity.get("entity_name")), str(entity.get("entity_version")))
        model = self._models.get(key)
        return (self._served_name(entity), model) if model is not None else None

    def model(self, endpoint: Endpoint) -> tuple[str, FamilyModel]:
        """The served entity's name and its model, loaded once per (model, version)."""
        if not endpoint.entities:
            raise not_found(f"serving endpoint {endpoint.name} serves nothing")
        entity = endpoint.entities[0]  # one served entity with all the traffic (see docs)
        key = (str(entity.get("entity_name")), str(entity.get("entity_version")))
        model = self._models.get(key)
        if model is None:
            with self._lock:
                loading = self._loading.setdefault(key, threading.Lock())
            with loading:  # one load per version, however many requests wait for it
                model = self._models.get(key)
                if model is None:
                    model = families.load(self.version_folder(*key))
                    self._models[key] = model
                    # What is alive now (the server, the model, MLflow and every module they
                    # imported) lives as long as the process: out of the cyclic collector's
                    # sight, whose full passes over it stalled every request in flight for
                    # 200-300 ms. The garbage there is now is collected first; later garbage
                    # is collected as before (and a frozen object whose last reference goes
                    # is freed).
                    gc.collect()
                    gc.freeze()
        return self._served_name(entity), model

    @staticmethod
    def _served_name(entity: Mapping[str, Any]) -> str:
        return str(entity.get("name") or f"{str(entity.get('entity_name', '')).split('.')[-1]}"
                                          f"-{entity.get('entity_version')}")
