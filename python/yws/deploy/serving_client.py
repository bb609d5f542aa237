"""Point a Model Serving endpoint at the version a registry alias names (``@champion``).

Model Serving serves a model *version*; the champion is an *alias*. After the train job
promotes a version, its last task (``yws-serving-update``) calls this: if the endpoint serves
another version of the model, its served entities are updated to the champion's version
through the Serving endpoints API (``PUT /api/2.0/serving-endpoints/{name}/config``, the SDK's
``serving_endpoints.update_config``), each served entity's other settings and the traffic
routes kept as they are. Nothing is sent when the endpoint already serves that version.

The update is not waited for: Serving keeps answering with the old version until the new one
is ready, and a failed update leaves the old one serving (the endpoint's
``state.config_update`` shows ``UPDATE_FAILED``).

``databricks-sdk`` carries the request, with the credentials of its environment: the job's own
(its ``run_as``) on Databricks, ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN`` (or a profile)
elsewhere. ``yws serve`` answers the same call, and gives the tasks it runs its own address
and a token of the job's ``run_as`` for the length of the run (``yws.server.jobs``), so
``CAN_MANAGE`` on the endpoint is checked against the same principal on both targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yws.config import Settings
from yws.errors import InvalidValueError, NotFoundError
from yws.model import registry

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient


@dataclass(frozen=True)
class ServingUpdate:
    endpoint: str
    model: str
    alias: str
    version: int
    before: list[str]  # the versions of the model the endpoint served
    updated: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def credentials_given(env: dict[str, str] | None = None) -> bool:
    """Whether the environment names a workspace for databricks-sdk (host or profile)."""
    env = dict(os.environ) if env is None else env
    return bool(env.get("DATABRICKS_HOST") or env.get("DATABRICKS_CONFIG_PROFILE"))


def served_versions(endpoint: Any, model: str) -> list[str]:
    """The versions of ``model`` that ``endpoint`` (a ServingEndpointDetailed) serves."""
    entities = (endpoint.config.served_entities if endpoint.config else None) or []
    return [str(e.entity_version) for e in entities if e.entity_name == model]


def follow_alias(settings: Settings, endpoint: str, alias: str = registry.CHAMPION,
                 client: WorkspaceClient | None = None) -> ServingUpdate:
    """Make ``endpoint`` serve the version ``alias`` names, if it serves another one."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.serving import ServedEntityInput

    version = registry.find(settings, alias).version
    w = client or WorkspaceClient()
    try:
        current = w.serving_endpoints.get(endpoint)
    except NotFound:
        raise NotFoundError(f"serving endpoint {endpoint} does not exist: deploy the bundle "
                            "(jobs/resources/yws_serving.yml) first") from None
    model = settings.model_name
    before = served_versions(current, model)
    if not before:
        raise InvalidValueError(f"serving endpoint {endpoint} serves no version of {model}: "
                                "it is not this model's endpoint")
    if set(before) == {str(version)}:
        return ServingUpdate(endpoint, model, alias, version, before, False,
                             f"already serves version {version}")
    entities = []
    for e in current.config.served_entities or []:  # type: ignore[union-attr]
        given = ServedEntityInput.from_dict({
            k: v for k, v in e.as_dict().items()
            if k in ServedEntityInput.__dataclass_fields__ and k not in ("state",)})
        if e.entity_name == model:
            given.entity_version = str(version)
        entities.append(given)
    w.serving_endpoints.update_config(endpoint, served_entities=entities,
                                      traffic_config=current.config.traffic_config)  # type: ignore[union-attr]
    return ServingUpdate(endpoint, model, alias, version, before, True,
                         f"version {', '.join(before)} -> {version}")
