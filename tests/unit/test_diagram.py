from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from tools.diagram import (
    CAPTION,
    DiagramError,
    databricks_architecture,
    local_architecture,
    render,
    view_names,
)

from yws.config import Settings
from yws.deploy.bundle import load

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def main_edges(arch) -> list[tuple[str, str]]:
    return [(e.source, e.target) for e in arch.edges if e.main]


def chain(*keys: str) -> list[tuple[str, str]]:
    return list(zip(keys, keys[1:], strict=False))


# -- the Databricks picture -----------------------------------------------------------------------
def test_databricks_nodes_and_zones():
    arch = databricks_architecture()
    assert {n.key for n in arch.nodes} == {
        "ragemaker", "jobs_api", "train", "score", "mlflow", "features", "model", "predictions",
        "dbsql", "r_client", "serving_yws_lr", "r_models", "register_r"}
    assert [c.key for c in arch.clusters] == ["databricks"]
    assert arch.cluster("databricks").logo == "databricks"
    assert arch.cluster("unity_catalog").logo == "unity_catalog"
    assert arch.members("unity_catalog") == {"features", "model", "predictions", "r_models"}
    assert arch.members("databricks") == {
        "jobs_api", "train", "score", "mlflow", "dbsql", "features", "model", "predictions",
        "serving_yws_lr", "r_models", "register_r"}
    # R users' own models: uploaded to a volume, registered by a job (jobs/ names it)
    assert "yws_register_r_model" in arch.node("register_r").label
    assert arch.node("r_models").label.endswith("yws_dev.ml.r_models")
    # the orchestrator and the client are outside the platform
    assert {"ragemaker", "r_client"}.isdisjoint(arch.members("databricks"))
    assert arch.node("mlflow").kind == "mlflow"
    assert arch.node("r_client").kind == "r"
    assert arch.caption == CAPTION
    assert CAPTION.startswith("Simple migration path")


def test_databricks_flow_is_the_chain_of_the_issue():
    arch = databricks_architecture()
    expected = chain("ragemaker", "jobs_api", "train", "mlflow", "model", "score", "predictions",
                     "dbsql", "r_client")
    assert main_edges(arch) == expected
    assert arch.main_path() == [a for a, _ in expected] + ["r_client"]
    supporting = {(e.source, e.target) for e in arch.edges if not e.main}
    assert supporting == {("jobs_api", "score"), ("features", "train"), ("features", "score"),
                          # the Phase-2 path: the endpoint serves the model, scores on demand
                          ("model", "serving_yws_lr"), ("serving_yws_lr", "dbsql"),
                          ("serving_yws_lr", "r_client"), ("train", "serving_yws_lr"),
                          # R users' own models into the same registry
                          ("r_client", "r_models"), ("r_models", "register_r"),
                          ("register_r", "mlflow")}


def test_databricks_labels_come_from_settings_bundle_and_sql():
    arch = databricks_architecture()
    assert "yws_dev.ml.yws_features" in arch.node("features").label
    assert "yws_dev.ml.yws_predictions" in arch.node("predictions").label
    assert "yws_dev.ml.yws_lr\n@champion" in arch.node("model").label
    assert "/Shared/yws" in arch.node("mlflow").label  # the Databricks experiment
    assert "yws_train" in arch.node("train").label
    assert "yws_score" in arch.node("score").label
    for name in ("yws_train", "yws_score", "yws_train_and_score", "yws_sql_apply"):
        assert name in arch.node("jobs_api").label.replace("\n", " ")
    assert view_names(Settings()) == ["v_yws_predictions", "v_yws_predictions_latest",
                                      "v_yws_warnings", "v_yws_score_runs", "v_yws_quarantine",
                                      "v_yws_drift"]
    for view in view_names(Settings()):
        assert view in arch.node("dbsql").label
    assert arch.cluster("unity_catalog").label == "Unity Catalog — yws_dev.ml"
    assert "environment 4" in arch.cluster("databricks").label

    acme = databricks_architecture(Settings(catalog="acme", schema="risk", warehouse_id="abc123"))
    assert "acme.risk.yws_features" in acme.node("features").label
    assert "acme.risk.yws_predictions" in acme.node("predictions").label
    assert "acme.risk.yws_lr" in acme.node("model").label
    assert "abc123" in acme.node("dbsql").label
    assert acme.cluster("unity_catalog").label == "Unity Catalog — acme.risk"


def test_job_names_and_alias_follow_the_bundle(tmp_path):
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    path = tmp_path / "jobs" / "resources" / "yws_jobs.yml"
    data = yaml.safe_load(path.read_text())
    jobs = data["resources"]["jobs"]
    jobs["yws_score"]["name"] = "nightly_scoring"
    for p in jobs["yws_score"]["parameters"]:
        if p["name"] == "model_alias":
            p["default"] = "blessed"
    path.write_text(yaml.safe_dump(data))
    arch = databricks_architecture(bundle=load(tmp_path / "jobs"))
    assert "Scoring: nightly_scoring" in arch.node("score").label
    assert "nightly_scoring" in arch.node("jobs_api").label.replace("\n", " ")
    assert "@blessed" in arch.node("model").label
    assert any(e.label == "load @blessed" for e in arch.edges)


def test_a_bundle_without_a_scoring_job_is_an_error(tmp_path):
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    path = tmp_path / "jobs" / "resources" / "yws_jobs.yml"
    data = yaml.safe_load(path.read_text())
    del data["resources"]["jobs"]["yws_score"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DiagramError, match="single task running yws-score"):
        databricks_architecture(bundle=load(tmp_path / "jobs"))


# -- the embedded default -------------------------------------------------------------------------
def test_local_picture():
    arch = local_architecture(Settings(catalog="acme"))
    assert arch.members("machine") == {
        "jobs_api", "sql_api", "train", "score", "mlflow", "duckdb", "features", "predictions",
        "serving_yws_lr", "r_models", "register_r"}
    assert arch.members("tasks") == {"train", "score", "register_r"}
    assert arch.members("delta") == {"features", "predictions"}
    assert arch.members("home") == {"mlflow", "duckdb", "features", "predictions"}
    assert main_edges(arch) == chain("r_client", "jobs_api", "train", "mlflow", "score",
                                     "predictions", "duckdb", "sql_api", "r_client")
    assert arch.cluster("delta").label.endswith("$YWS_HOME/warehouse")
    assert "$YWS_HOME/mlflow.db" in arch.node("mlflow").label
    assert "$YWS_HOME/mlartifacts" in arch.node("mlflow").label
    assert "acme.ml.yws_predictions" in arch.node("predictions").label
    assert "yws serve" in arch.node("jobs_api").label
    assert "SQL Statement" in arch.node("sql_api").label
    assert "arrow engine" in arch.node("score").label
    assert "v_yws_warnings" in arch.node("duckdb").label
    assert "yws serve: Model Serving\nyws_lr" in arch.node("serving_yws_lr").label
    supporting = {(e.source, e.target): e.label for e in arch.edges if not e.main}
    assert supporting[("mlflow", "serving_yws_lr")] == "served version"
    assert supporting[("serving_yws_lr", "duckdb")] == "ai_query('yws_lr')"
    assert supporting[("r_client", "serving_yws_lr")] == "yws_predict()"


# -- the Phase-2 path: the bundle's Model Serving endpoint ---------------------------------------
def test_serving_endpoint_comes_from_the_bundle():
    arch = databricks_architecture()
    label = arch.node("serving_yws_lr").label
    assert label == "Model Serving endpoint\nyws_lr\nSmall, scale to zero"
    edges = {(e.source, e.target): e.label for e in arch.edges}
    assert edges[("serving_yws_lr", "dbsql")] == "ai_query('yws_lr')"
    assert edges[("serving_yws_lr", "r_client")] == "yws_predict()"
    # the train job's last task moves the served version (jobs/resources/yws_jobs.yml)
    assert edges[("train", "serving_yws_lr")] == "task serving: update_config"


def test_serving_endpoint_follows_the_resource(tmp_path):
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    path = tmp_path / "jobs" / "resources" / "yws_serving.yml"
    data = yaml.safe_load(path.read_text())
    endpoint = data["resources"]["model_serving_endpoints"].pop("yws_lr")
    endpoint["name"] = "churn_scorer"
    endpoint["config"]["served_entities"][0]["workload_size"] = "Medium"
    endpoint["config"]["served_entities"][0]["scale_to_zero_enabled"] = False
    data["resources"]["model_serving_endpoints"]["churn"] = endpoint
    path.write_text(yaml.safe_dump(data))
    bundle = load(tmp_path / "jobs")
    arch = databricks_architecture(bundle=bundle)
    assert arch.node("serving_churn").label == "Model Serving endpoint\nchurn_scorer\nMedium"
    assert any(e.label == "ai_query('churn_scorer')" for e in arch.edges)
    assert "churn_scorer" in local_architecture(bundle=bundle).node("serving_churn").label
    # the endpoint's name is a bundle variable: resolved as the default target resolves it
    endpoint["name"] = "${var.serving_endpoint}"
    path.write_text(yaml.safe_dump(data))
    arch = databricks_architecture(bundle=load(tmp_path / "jobs"))
    assert "\nyws_lr\n" in arch.node("serving_churn").label


def test_a_bundle_without_an_endpoint_draws_no_serving_path(tmp_path):
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    (tmp_path / "jobs" / "resources" / "yws_serving.yml").unlink()
    bundle = load(tmp_path / "jobs")
    for arch in (databricks_architecture(bundle=bundle), local_architecture(bundle=bundle)):
        assert not any(n.key.startswith("serving_") for n in arch.nodes)
        assert not any("ai_query" in e.label for e in arch.edges)


# -- drawing --------------------------------------------------------------------------------------
def test_render_without_graphviz_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DiagramError, match="make system-deps"):
        render(databricks_architecture(), tmp_path)


def test_render_writes_png_and_self_contained_svg(tmp_path):
    # No skip without Graphviz: `make test` installs it, and render() names the fix.
    for arch in (databricks_architecture(), local_architecture()):
        png, svg = render(arch, tmp_path)
        assert png == tmp_path / f"{arch.name}.png"
        data = png.read_bytes()
        assert len(data) > 10_000 and data.startswith(PNG_SIGNATURE)
        text = svg.read_text(encoding="utf-8")
        assert "<svg" in text
        # every image is inline: the SVG shows its icons anywhere and names no local path
        hrefs = re.findall(r'href="([^"]*)"', text)
        assert hrefs and all(h.startswith("data:image/png;base64,") for h in hrefs)
        assert str(tmp_path) not in text and str(ROOT) not in text
        assert not (tmp_path / arch.name).exists()  # the Graphviz source is removed
    text = (tmp_path / "architecture.svg").read_text(encoding="utf-8")
    for label in ("RageMaker", "Jobs API 2.2", "yws_dev.ml.yws_features",
                  "yws_dev.ml.yws_predictions", "yws_dev.ml.yws_lr", "Unity Catalog",
                  "Databricks", "MLflow tracking", "DBSQL serverless warehouse",
                  "R / ODBC client", "Simple migration path", "Model Serving endpoint"):
        assert label in text, label
    local = (tmp_path / "architecture-local.svg").read_text(encoding="utf-8")
    for label in ("yws serve: Jobs API 2.2", "DuckDB warehouse", "$YWS_HOME/warehouse",
                  "MLflow store (SQLite)", "R package yws", "yws serve: Model Serving"):
        assert label in local, label
