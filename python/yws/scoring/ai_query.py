"""What ``ai_query`` reaches on this machine: the Model Serving endpoints, each a registered
model version scored exactly as the batch job scores it.

The local warehouse answers ``ai_query('<endpoint>', named_struct(...))`` by handing vectors
of rows to a scorer (:data:`yws.warehouse.ai_query.Scorer`); :class:`Endpoints` is that scorer.
An endpoint name maps to a model and a version or alias (``@champion`` unless told otherwise);
rows are scored by :func:`yws.scoring.records.score_table` — the arrow engine's evaluator,
quarantine rules and bands — so a row the batch job scores gets its probability bit for bit,
and a row it would quarantine gets an error instead of a probability.

The mapping is passed in: ``yws serve`` passes the endpoints the bundle declares
(``model_serving_endpoints`` in ``jobs/resources/``) with the version each serves now
(:func:`served_routes`); without one, a single endpoint, :func:`endpoint_name`, serves the
settings' model ``@champion`` (where the bundle's serving task moves the endpoint).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from yws.config import Settings, check_table_name
from yws.contract.spec import Spec, load_spec
from yws.errors import YwsError
from yws.model import families, registry
from yws.model.families import FamilyModel
from yws.scoring.records import score_table
from yws.warehouse.ai_query import EndpointNotFoundError
from yws.warehouse.errors import SqlError

DEFAULT_ALIAS = "champion"
RESOLVE_SECONDS = 1.0
"""How long an alias stays resolved: ``ai_query`` calls the scorer once per vector of rows
(2,048), and a registry lookup per vector would cost more than the scoring; the alias moving
is seen within this time, as an endpoint's update is seen after it rolls out."""


@dataclass(frozen=True)
class Route:
    """What an endpoint serves: a registered model (three-level name) and a version number or
    an alias."""

    model: str
    version: str = DEFAULT_ALIAS

    def __post_init__(self) -> None:
        check_table_name(self.model)
        object.__setattr__(self, "version", str(self.version))
        if not self.version.isdigit():
            registry.check_alias(self.version)


Routes = Mapping[str, "Route | tuple[str, str | int]"]


def endpoint_name(settings: Settings) -> str:
    """The endpoint serving the settings' model when no mapping is given: the settings'
    ``serving_endpoint``, as the bundle names it (``${var.serving_endpoint}``, default
    ``yws_lr``, in ``jobs/databricks.yml``; ``YWS_SERVING_ENDPOINT`` locally), the name
    ``sql/30_functions/30_yws_score_row.sql`` is rendered with."""
    return settings.serving_endpoint


def served_routes(endpoints: Mapping[str, Any]) -> dict[str, Route]:
    """Routes from endpoints as ``yws serve`` holds them (name -> an object whose ``entities``
    are the bundle's ``served_entities``: ``entity_name``, ``entity_version``), so ``ai_query``
    scores with the version each endpoint serves now, as its invocations do."""
    routes = {}
    for name, endpoint in endpoints.items():
        entities = list(getattr(endpoint, "entities", None) or [])
        if entities:
            routes[name] = Route(str(entities[0]["entity_name"]),
                                 str(entities[0]["entity_version"]))
    return routes


class Endpoints:
    """The endpoints ``ai_query`` reaches: call it with an endpoint name and the rows (the
    spec's feature columns); answers ``probability``, ``prediction``, ``band``, ``error``."""

    def __init__(self, settings: Settings, spec: Spec | None = None,
                 routes: Routes | Callable[[], Routes] | None = None) -> None:
        """``routes``: endpoint name -> :class:`Route` or ``(model, version or alias)``, or a
        function returning them when a query runs (the endpoints ``yws serve`` serves, whose
        versions move); default: :func:`endpoint_name` serving the settings' model
        ``@champion``."""
        self.settings = settings
        self.spec = spec if spec is not None else load_spec(settings.spec)
        if routes is None:
            routes = {endpoint_name(settings): Route(settings.model_name)}
        self._routes = routes
        self._static = None if callable(routes) else self._typed(routes)
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int], FamilyModel] = {}
        self._resolved: dict[str, tuple[float, tuple[str, int], Path | None]] = {}

    def __call__(self, endpoint: str, rows: pa.Table) -> pa.Table:
        return score_table(self.model(endpoint), self.spec, rows)

    @property
    def routes(self) -> dict[str, Route]:
        if self._static is not None:
            return self._static
        assert callable(self._routes)
        return self._typed(self._routes())

    @staticmethod
    def _typed(routes: Routes) -> dict[str, Route]:
        return {name: r if isinstance(r, Route) else Route(r[0], str(r[1]))
                for name, r in routes.items()}

    def model(self, endpoint: str) -> FamilyModel:
        """The evaluator of the version ``endpoint`` serves now."""
        routes = self.routes
        route = routes.get(endpoint)
        if route is None:
            raise EndpointNotFoundError(endpoint, sorted(routes))
        with self._lock:
            key, path = self._resolve(route)
            if key not in self._models:
                self._models[key] = self._load(route, key, path)
            return self._models[key]

    def _settings_for(self, route: Route) -> Settings:
        catalog, schema, model = check_table_name(route.model)
        return self.settings.with_(catalog=catalog, schema=schema, model=model)

    def _resolve(self, route: Route) -> tuple[tuple[str, int], Path | None]:
        if route.version.isdigit():
            return (route.model, int(route.version)), None
        now = time.monotonic()
        hit = self._resolved.get(f"{route.model}@{route.version}")
        if hit is not None and now - hit[0] < RESOLVE_SECONDS:
            return hit[1], hit[2]
        try:
            found = registry.find(self._settings_for(route), route.version)
        except YwsError as e:
            raise SqlError("AI_FUNCTION_HTTP_REQUEST_ERROR",
                           f"the endpoint serving {route.model}@{route.version} has no model "
                           f"to serve: {e}", "08000") from None
        key = (route.model, found.version)
        self._resolved[f"{route.model}@{route.version}"] = (now, key, found.path)
        return key, found.path

    def _load(self, route: Route, key: tuple[str, int], path: Path | None) -> FamilyModel:
        if path is not None:
            return families.load(path)
        registry.configure(self._settings_for(route))
        return families.from_registry(f"models:/{route.model}/{key[1]}")


def endpoints_for(settings: Settings, spec: Spec | None = None) -> Endpoints:
    """The endpoints of ``settings`` (the bundle's, once it declares them; today the one
    :func:`endpoint_name` serving ``@champion``)."""
    return Endpoints(settings, spec)
