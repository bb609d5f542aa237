from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import yaml

from yws.bundle import BundleError, check, load, validate
from yws.entrypoints import PARSERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    """A copy of jobs/ and pyproject.toml to break on purpose."""
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path / "jobs"


def edit(root: Path, fn) -> None:
    path = root / "resources" / "yws_jobs.yml"
    data = yaml.safe_load(path.read_text())
    fn(data["resources"]["jobs"])
    path.write_text(yaml.safe_dump(data))


def test_the_bundle_is_valid():
    bundle = check(ROOT / "jobs")
    assert set(bundle.jobs) == {"yws_train", "yws_score", "yws_train_and_score", "yws_sql_apply"}
    assert set(bundle.targets) == {"dev", "prod"}


def test_jobs_are_serverless_and_set_up_for_the_orchestrator():
    bundle = load(ROOT / "jobs")
    for key, job in bundle.jobs.items():
        assert [e["spec"]["environment_version"] for e in job["environments"]] == ["4"], key
        assert all("../dist/*.whl" in e["spec"]["dependencies"] for e in job["environments"])
        assert all("new_cluster" not in t and "job_cluster_key" not in t for t in job["tasks"])
        assert job["queue"] == {"enabled": True} and job["max_concurrent_runs"] >= 1
        assert {"level": "CAN_MANAGE_RUN",
                "service_principal_name": "${var.orchestrator_principal}"} in job["permissions"]
        assert job["timeout_seconds"] > 0 and job["tags"]["project"] == "yws"
        assert job["email_notifications"]["on_failure"]
    score = bundle.jobs["yws_score"]
    assert score["schedule"]["pause_status"] == "${var.score_schedule_pause}"
    assert bundle.targets["dev"]["variables"]["score_schedule_pause"] == "PAUSED"
    assert score["tasks"][0]["max_retries"] == 2
    assert [p["name"] for p in score["parameters"]] == [
        "catalog", "schema", "as_of_date", "batch_id", "model_alias"]
    both = bundle.jobs["yws_train_and_score"]["tasks"]
    assert both[1]["depends_on"] == [{"task_key": "train"}]


@pytest.mark.parametrize(("change", "message"), [
    (lambda jobs: jobs["yws_score"]["tasks"][0].update(max_retrys=2),
     "job yws_score: Unexpected field 'max_retrys'"),
    (lambda jobs: jobs["yws_train_and_score"]["tasks"][1].update(
        depends_on=[{"task_key": "trian"}]), "depends_on trian, which is not a task"),
    (lambda jobs: jobs["yws_train"]["tasks"][0].update(environment_key="default"),
     "environment_key default is not in the job's environments"),
    (lambda jobs: jobs["yws_train"]["tasks"][0]["python_wheel_task"].update(
        entry_point="yws-fit"), "entry point yws-fit is not a console script"),
    (lambda jobs: jobs["yws_score"]["tasks"][0]["python_wheel_task"]["parameters"].extend(
        ["--batch", "x"]), "yws-score does not accept --batch"),
    (lambda jobs: jobs["yws_train"]["tasks"][0]["python_wheel_task"]["parameters"].extend(
        ["--as-of-date", "{{job.parameters.asof}}"]),
     "{{job.parameters.asof}} is not a parameter of the job"),
    (lambda jobs: jobs["yws_train"]["environments"][0]["spec"].update(environment_version="2"),
     "needs environment_version 4 or later"),
    (lambda jobs: jobs["yws_train"].update(timeout_seconds="${var.train_timeout}"),
     "${var.train_timeout} is not declared"),
])
def test_broken_bundles_fail_validation(bundle_copy, change, message):
    edit(bundle_copy, change)
    problems = validate(load(bundle_copy))
    assert any(message in p for p in problems), problems
    with pytest.raises(BundleError, match="the bundle is not valid"):
        check(bundle_copy)


def test_entry_points_in_the_wheel_have_parsers():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(PARSERS) <= set(scripts)
    for name, parser in PARSERS.items():
        assert scripts[name].startswith("yws.entrypoints:")
        assert "--catalog" in parser().format_help()


# Attributes serverless (Spark Connect) refuses: the job code must not touch them.
FORBIDDEN = {"sparkContext", "rdd", "_jvm", "_jdf", "_jsc", "cache", "persist"}
# spark.py's local branch is the one place allowed to use the classic session.
ALLOWED = {"spark.py"}


def test_job_code_uses_nothing_serverless_refuses():
    offenders = []
    for path in sorted((ROOT / "python" / "yws").rglob("*.py")):
        if path.name in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in FORBIDDEN
                    and not (isinstance(node.value, ast.Name) and node.value.id == "functools")):
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offenders == []


@pytest.mark.slow
def test_the_wheel_carries_the_entry_points_and_sql(tmp_path):
    """What the bundle's environments install: the console scripts and sql/ ship inside."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True,
                   timeout=600)
    (wheel,) = tmp_path.glob("yws-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    entry = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for script in PARSERS:
        assert f"{script} = yws.entrypoints:" in entry
    shipped = sorted(n.removeprefix("yws/sql/") for n in names if n.startswith("yws/sql/"))
    on_disk = sorted(p.relative_to(ROOT / "sql").as_posix() for p in (ROOT / "sql").rglob("*.sql"))
    assert shipped == on_disk
    assert "yws/specs/default.yaml" in names
