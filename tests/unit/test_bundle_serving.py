"""The bundle's Model Serving endpoint (jobs/resources/yws_serving.yml): typed with
databricks-bundles' classes and checked per target by `yws bundle validate`, and the train
job's task that moves the served version to @champion."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from yws.deploy.bundle import load, validate
from yws.deploy.bundle.endpoints import typed
from yws.deploy.tasks import PARSERS, serving_update_main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    shutil.copytree(ROOT / "sql", tmp_path / "sql")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path / "jobs"


def edit_endpoint(root: Path, fn: Callable[[dict[str, Any]], Any]) -> None:
    path = root / "resources" / "yws_serving.yml"
    data = yaml.safe_load(path.read_text())
    fn(data["resources"]["model_serving_endpoints"]["yws_lr"])
    path.write_text(yaml.safe_dump(data))


def test_the_endpoint_serves_the_uc_model_to_the_analysts_and_r_users():
    bundle = load(ROOT / "jobs")
    assert list(bundle.endpoints) == ["yws_lr"]
    raw = bundle.endpoints["yws_lr"]
    endpoint = typed(raw)  # databricks-bundles' ModelServingEndpoint
    assert str(endpoint.name) == "${var.serving_endpoint}"  # a Variable until deploy
    assert [str(t.key) for t in endpoint.tags] == ["project", "component"]
    (entity,) = raw["config"]["served_entities"]
    assert entity["entity_name"] == "${var.catalog}.${var.schema}.yws_lr"
    assert entity["entity_version"] == "${var.serving_model_version}"
    assert entity["workload_size"] == "Small" and entity["scale_to_zero_enabled"] is True
    assert {(p["level"], p.get("group_name")) for p in raw["permissions"]} >= {
        ("CAN_QUERY", "${var.analysts_group}"), ("CAN_QUERY", "${var.r_users_group}")}
    assert {"level": "CAN_MANAGE", "service_principal_name": "${var.jobs_principal}"} in \
        raw["permissions"]
    assert {t["key"]: t["value"] for t in raw["tags"]}["project"] == "yws"
    assert set(bundle.variables) >= {"serving_endpoint", "serving_model_version"}
    assert bundle.endpoint_sources["yws_lr"] == "resources/yws_serving.yml"


def test_the_train_job_moves_the_endpoint_to_the_champion_after_training():
    tasks = load(ROOT / "jobs").jobs["yws_train"]["tasks"]
    assert [t["task_key"] for t in tasks] == ["train", "serving"]
    serving = tasks[1]
    assert serving["depends_on"] == [{"task_key": "train"}]
    wheel = serving["python_wheel_task"]
    assert wheel["entry_point"] == "yws-serving-update"
    params = wheel["parameters"]
    assert params[params.index("--endpoint") + 1] == "${var.serving_endpoint}"
    assert params[params.index("--model-alias") + 1] == "champion"
    assert "yws-serving-update" in PARSERS


def test_train_and_score_moves_the_endpoint_without_holding_up_the_batch():
    """yws_train_and_score has yws_train's serving task, after train only: score does not wait
    for the endpoint, and a failed update does not stop the batch (a task runs when the tasks
    it depends_on succeeded; https://docs.databricks.com/jobs/run-if.html). It follows
    @champion whatever alias the runner scores with: the model_alias job parameter does not
    reach it. The same parameters as yws_train's, so the two cannot drift."""
    jobs = load(ROOT / "jobs").jobs
    tasks = {t["task_key"]: t for t in jobs["yws_train_and_score"]["tasks"]}
    serving = tasks["serving"]
    assert serving["depends_on"] == [{"task_key": "train"}]
    assert tasks["check"]["depends_on"] == [{"task_key": "train"}]
    assert tasks["score"]["depends_on"] == [{"task_key": "check"}]
    wheel = serving["python_wheel_task"]
    assert "{{job.parameters" not in json.dumps(wheel)
    solo = next(t for t in jobs["yws_train"]["tasks"] if t["task_key"] == "serving")
    assert serving == solo


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e.update(budget="x"), "Unexpected field 'budget'"),
    (lambda e: e["permissions"].append({"level": "CAN_FLY", "group_name": "g"}),
     "'CAN_FLY' is not a valid ServingEndpointPermissionLevel"),
    (lambda e: e["permissions"].append({"level": "CAN_QUERY"}), "CAN_QUERY for nobody"),
    (lambda e: e["config"]["served_entities"][0].update(entity_version="champion"),
     "entity_version 'champion' is not a version number"),
    (lambda e: e["config"]["served_entities"][0].update(workload_size="Tiny"),
     "workload_size 'Tiny' is not one of Small, Medium, Large"),
    (lambda e: e["config"]["served_entities"][0].pop("scale_to_zero_enabled"),
     "set scale_to_zero_enabled"),
    (lambda e: e["config"]["served_entities"][0].pop("entity_version"),
     "name the model (entity_name) and its version"),
    (lambda e: e["config"]["served_entities"][0].update(entity_name="yws_lr"),
     "is not a Unity Catalog model name"),
    (lambda e: e["config"]["served_entities"][0].update(entity_name="other.ml.yws_lr"),
     "serves other.ml.yws_lr, but the jobs of target dev register yws_dev.ml.yws_lr"),
    (lambda e: e["config"]["traffic_config"]["routes"][0].update(served_model_name="x"),
     "traffic route to 'x', which is not a served entity"),
    (lambda e: e["config"]["traffic_config"]["routes"][0].update(traffic_percentage=50),
     "add up to 50%, not 100%"),
    (lambda e: e.update(name="yws lr"), "name 'yws lr' is not an endpoint name"),
    (lambda e: e.update(name="${var.nope}"), "${var.nope} is not declared"),
    (lambda e: e["tags"].append({"key": "project", "value": "again"}),
     "tag project is set twice"),
    (lambda e: e["config"].update(served_entities=[]), "served_entities is empty"),
])
def test_broken_endpoints_fail_validation(bundle_copy, change, message):
    edit_endpoint(bundle_copy, change)
    problems = validate(load(bundle_copy), env={})
    assert any(message in p for p in problems), problems


def test_the_serving_task_names_an_endpoint_of_the_bundle(bundle_copy):
    edit_endpoint(bundle_copy, lambda e: e.update(name="elsewhere"))
    problems = validate(load(bundle_copy), env={}, targets=["dev"])
    assert any("--endpoint 'yws_lr' (target dev) is not an endpoint of the bundle "
               "(elsewhere)" in p for p in problems), problems


def test_an_endpoint_defined_twice_is_refused(bundle_copy):
    from yws.deploy.bundle import BundleError

    shutil.copy(bundle_copy / "resources" / "yws_serving.yml",
                bundle_copy / "resources" / "yws_serving_copy.yml")
    with pytest.raises(BundleError, match="model serving endpoint yws_lr is defined twice"):
        load(bundle_copy)


def test_the_task_run_locally_without_credentials_says_so(tmp_path, monkeypatch, capsys):
    for var in ("DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    serving_update_main(["--target", "local", "--home", str(tmp_path), "--endpoint", "yws_lr"])
    out = json.loads(capsys.readouterr().out)
    assert out["updated"] is False and "DATABRICKS_HOST" in out["reason"]
    with pytest.raises(SystemExit) as e:
        serving_update_main(["--target", "local", "--home", str(tmp_path),
                             "--endpoint", "yws_lr", "--model-alias", "latest"])
    assert e.value.code == 1
