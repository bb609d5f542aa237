from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest
import yaml

from yws.deploy.bundle import BundleError, check, load, local_variables, validate
from yws.deploy.tasks import PARSERS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    """A copy of jobs/, sql/ and pyproject.toml to break on purpose."""
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    shutil.copytree(ROOT / "sql", tmp_path / "sql")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path / "jobs"


def edit(root: Path, fn) -> None:
    path = root / "resources" / "yws_jobs.yml"
    data = yaml.safe_load(path.read_text())
    fn(data["resources"]["jobs"])
    path.write_text(yaml.safe_dump(data))


def edit_main(root: Path, fn) -> None:
    path = root / "databricks.yml"
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def problems_of(root: Path, **kwargs) -> list[str]:
    return validate(load(root), env={}, **kwargs)


APP_ID = "6f1e2c3d-4b5a-4978-8899-aabbccddeeff"


def test_the_bundle_is_valid():
    bundle = check(ROOT / "jobs", env={})
    assert set(bundle.jobs) == {"yws_train", "yws_score", "yws_train_and_score", "yws_sql_apply",
                                "yws_register_r_model", "yws_compare_models", "yws_promote_model"}
    assert set(bundle.targets) == {"dev", "prod"}


def test_jobs_are_serverless_and_set_up_for_the_orchestrator():
    bundle = load(ROOT / "jobs")
    for key, job in bundle.jobs.items():
        assert [e["spec"]["environment_version"] for e in job["environments"]] == ["4"], key
        assert all("../../dist/*.whl" in e["spec"]["dependencies"] for e in job["environments"])
        assert all("new_cluster" not in t and "job_cluster_key" not in t for t in job["tasks"])
        assert job["queue"] == {"enabled": True} and job["max_concurrent_runs"] >= 1
        assert {"level": "CAN_MANAGE_RUN",
                "service_principal_name": "${var.orchestrator_principal}"} in job["permissions"]
        assert job["timeout_seconds"] > 0 and job["tags"]["project"] == "yws"
        assert job["email_notifications"]["on_failure"]
        assert "catalog" not in [p["name"] for p in job.get("parameters") or []], key
    score = bundle.jobs["yws_score"]
    assert score["schedule"]["pause_status"] == "${var.score_schedule_pause}"
    assert bundle.targets["dev"]["variables"]["score_schedule_pause"] == "PAUSED"
    # Runners choose the date, the batch and the model alias; never where the job writes.
    assert [p["name"] for p in score["parameters"]] == ["as_of_date", "batch_id", "model_alias",
                                                     "model_name"]
    check_task, score_task = score["tasks"]
    assert check_task["task_key"] == "check" and "max_retries" not in check_task
    assert check_task["python_wheel_task"]["parameters"][-2:] == ["--check-only", "true"]
    assert check_task["python_wheel_task"]["parameters"][:-2] == \
        score_task["python_wheel_task"]["parameters"]
    assert score_task["depends_on"] == [{"task_key": "check"}]
    assert score_task["max_retries"] == 2
    both = bundle.jobs["yws_train_and_score"]["tasks"]
    assert [t["task_key"] for t in both] == ["train", "check", "score", "serving"]
    assert both[1]["depends_on"] == [{"task_key": "train"}]
    assert both[2]["depends_on"] == [{"task_key": "check"}]
    # the endpoint follows the new champion after train, beside check -> score, not before it
    assert both[3]["depends_on"] == [{"task_key": "train"}]
    # Item 11: both train tasks take the snapshot to train on, with the same flag and default.
    train_args = both[0]["python_wheel_task"]["parameters"]
    assert train_args[train_args.index("--as-of-date") + 1] == \
        "{{job.parameters.train_as_of_date}}"
    solo = bundle.jobs["yws_train"]["tasks"][0]["python_wheel_task"]["parameters"]
    assert solo[solo.index("--as-of-date") + 1] == "{{job.parameters.as_of_date}}"
    defaults = {p["name"]: p["default"] for p in bundle.jobs["yws_train_and_score"]["parameters"]}
    assert defaults["train_as_of_date"] == "" and bundle.jobs["yws_train"]["parameters"] == [
        {"name": "as_of_date", "default": ""}]


def test_identities_per_target():
    """run_as names the jobs' service principal by application id, through a documented
    lookup by display name (docs: Databricks Asset Bundles, "Substitutions and variables":
    lookup; "Specify a run identity": run_as service_principal_name = application id). The
    warehouse comes from a lookup by name too, and the grants go to the run_as principal."""
    bundle = load(ROOT / "jobs")
    for name, target in bundle.targets.items():
        assert target["run_as"] == {"service_principal_name": "${var.jobs_principal}"}, name
        assert list(target["variables"]["jobs_principal"]["lookup"]) == ["service_principal"]
        assert list(target["variables"]["orchestrator_principal"]["lookup"]) == [
            "service_principal"]
        assert list(target["variables"]["warehouse_id"]["lookup"]) == ["warehouse"]
    sql_apply = bundle.jobs["yws_sql_apply"]["tasks"][0]["python_wheel_task"]["parameters"]
    assert sql_apply[sql_apply.index("--jobs-principal") + 1] == "${var.jobs_principal}"
    # yws serve resolves a lookup to the looked-up name: locally a principal is its name.
    local = local_variables(bundle, "dev")
    assert local["jobs_principal"] == "yws_jobs" and local["catalog"] == "yws_dev"
    assert local["orchestrator_principal"] == "yws_orchestrator"


def test_library_paths_resolve_like_the_databricks_cli():
    """A local dependency is relative to the folder of the file that defines it
    (databricks/cli bundle/config/mutator/normalize_paths.go) and must match a file once the
    artifact is built (bundle/libraries/expand_glob_references.go); the wheel artifact builds
    into <artifact path>/dist (bundle/artifacts/prepare.go)."""
    bundle = load(ROOT / "jobs")
    assert bundle.sources["yws_score"] == "resources/yws_jobs.yml"
    folder = bundle.folder_of(bundle.sources["yws_score"])
    dep = bundle.jobs["yws_score"]["environments"][0]["spec"]["dependencies"][0]
    assert Path(os.path.normpath(folder / dep)) == ROOT / "dist" / "*.whl"
    spec, source = bundle.artifacts["yws_wheel"]
    assert Path(os.path.normpath(bundle.folder_of(source) / spec["path"])) == ROOT
    assert "--wheel-dir dist" in spec["build"]


def _replace_dependency(jobs, value):
    for job in jobs.values():
        job["environments"][0]["spec"]["dependencies"] = [value]


def _drop_check(jobs):
    tasks = jobs["yws_score"]["tasks"]
    jobs["yws_score"]["tasks"] = [t for t in tasks if t["task_key"] != "check"]
    jobs["yws_score"]["tasks"][0].pop("depends_on")


def _expose_catalog(jobs):
    score = jobs["yws_score"]
    score["parameters"].append({"name": "catalog", "default": "${var.catalog}"})
    for task in score["tasks"]:
        args = task["python_wheel_task"]["parameters"]
        args[args.index("--catalog") + 1] = "{{job.parameters.catalog}}"


def _set_target_var(target, name, value):
    def fn(data):
        data["targets"][target]["variables"][name] = value
    return fn


@pytest.mark.parametrize(("change", "message"), [
    (lambda jobs: jobs["yws_score"]["tasks"][1].update(max_retrys=2),
     "job yws_score: Unexpected field 'max_retrys'"),
    (lambda jobs: jobs["yws_train_and_score"]["tasks"][1].update(
        depends_on=[{"task_key": "trian"}]), "depends_on trian, which is not a task"),
    (lambda jobs: jobs["yws_train"]["tasks"][0].update(environment_key="default"),
     "environment_key default is not in the job's environments"),
    (lambda jobs: jobs["yws_train"]["tasks"][0]["python_wheel_task"].update(
        entry_point="yws-fit"), "entry point yws-fit is not a console script"),
    (lambda jobs: jobs["yws_score"]["tasks"][1]["python_wheel_task"]["parameters"].extend(
        ["--batch", "x"]), "yws-score does not accept --batch"),
    (lambda jobs: jobs["yws_train"]["tasks"][0]["python_wheel_task"]["parameters"].extend(
        ["--as-of-date", "{{job.parameters.asof}}"]),
     "{{job.parameters.asof}} is not a parameter of the job"),
    (lambda jobs: jobs["yws_train"]["environments"][0]["spec"].update(environment_version="2"),
     "needs environment_version 4 or later"),
    (lambda jobs: jobs["yws_train"].update(timeout_seconds="${var.train_timeout}"),
     "${var.train_timeout} is not declared"),
    # Item 9: an input error must fail once, not be retried.
    (_drop_check, "job yws_score task score: retries (max_retries 2) but no task without "
                  "retries runs yws-score --check-only true"),
    (lambda jobs: jobs["yws_train_and_score"]["tasks"][1].update(max_retries=1),
     "job yws_train_and_score task score: retries"),
    # Item 10: whoever may run yws_score must not choose where it writes.
    (_expose_catalog, "job yws_score: job parameter catalog lets its runners"),
    (_expose_catalog, "group ${var.r_users_group} (CAN_MANAGE_RUN)) choose the catalog the "
                      "job writes to"),
    (_expose_catalog, "task score: --catalog {{job.parameters.catalog}} comes from a job "
                      "parameter its runners"),
    (lambda jobs: jobs["yws_score"]["tasks"][1]["python_wheel_task"]["parameters"].__setitem__(
        -1, "/Volumes/${var.catalog}/${var.schema}/scratch"),
     "is in volume yws_dev.ml.scratch, which"),
])
def test_broken_bundles_fail_validation(bundle_copy, change, message):
    edit(bundle_copy, change)
    problems = problems_of(bundle_copy)
    assert any(message in p for p in problems), problems
    with pytest.raises(BundleError, match="the bundle is not valid"):
        check(bundle_copy, env={})


def test_a_wheel_path_that_matches_nothing_after_the_build(bundle_copy):
    """Item 4: ../dist/*.whl from jobs/resources/ is jobs/dist, where nothing is built."""
    edit(bundle_copy, lambda jobs: _replace_dependency(jobs, "../dist/*.whl"))
    problems = problems_of(bundle_copy)
    want = (f"resources/yws_jobs.yml: resources.jobs.yws_score.environments[0].spec."
            f"dependencies[0]: ../dist/*.whl resolves to {bundle_copy}/dist/*.whl, which matches "
            f"no file after the artifact build (yws_wheel builds "
            f"{bundle_copy.parent}/dist/yws-0.1.0-*.whl)")
    assert any(p.startswith(want) for p in problems), problems
    assert len([p for p in problems if "matches no file" in p]) == 4  # one per job
    # A wheel that is already there counts, as the CLI globs the disk after the build.
    (bundle_copy / "dist").mkdir()
    (bundle_copy / "dist" / "yws-0.1.0-py3-none-any.whl").write_bytes(b"")
    assert problems_of(bundle_copy) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda data: data["artifacts"]["yws_wheel"].update(path="../nope"),
     "databricks.yml: artifacts.yws_wheel.path: '../nope' resolves to {root}/nope, which is not "
     "a directory"),
    (lambda data: data["artifacts"]["yws_wheel"].update(
        build="python3 -m pip wheel --no-deps --wheel-dir build ."),
     "databricks.yml: artifacts.yws_wheel: the build writes {root}/build/yws-0.1.0-*.whl but "
     "the files the CLI uploads after it are {root}/dist/*.whl"),
    (lambda data: data.update(include=["resources/yws_jobs.yml", "resources/extra.yml"]),
     "databricks.yml: include[1]: resources/extra.yml resolves to {root}/jobs/resources/"
     "extra.yml, which does not exist"),
])
def test_broken_artifacts_and_includes(bundle_copy, change, message):
    edit_main(bundle_copy, change)
    problems = problems_of(bundle_copy)
    want = message.format(root=bundle_copy.parent)
    assert any(want in p for p in problems), problems


@pytest.mark.parametrize(("change", "message"), [
    (_set_target_var("prod", "warehouse_id", "0000000000000000"),
     "targets.prod: variable warehouse_id is '0000000000000000' "
     "(targets.prod.variables.warehouse_id), not a SQL warehouse id"),
    (_set_target_var("prod", "orchestrator_principal", "00000000-0000-0000-0000-000000000000"),
     "targets.prod: variable orchestrator_principal is '00000000-0000-0000-0000-000000000000' "
     "(targets.prod.variables.orchestrator_principal), a placeholder"),
    (_set_target_var("dev", "orchestrator_principal", "yws_orchestrator"),
     "targets.dev: variable orchestrator_principal is 'yws_orchestrator' "
     "(targets.dev.variables.orchestrator_principal), not an application id"),
    (_set_target_var("dev", "jobs_principal", {"lookup": {"warehouse": "yws_dev_warehouse"}}),
     "targets.dev: variable jobs_principal is lookup {'warehouse': 'yws_dev_warehouse'}, which "
     "does not give an application id"),
    (_set_target_var("dev", "warehouse_id", {"lookup": {"warehose": "yws_dev_warehouse"}}),
     "targets.dev.variables.warehouse_id.lookup: unknown lookup warehose"),
    (lambda data: data["targets"]["dev"].pop("run_as"),
     "databricks.yml: targets.dev: no run_as: the jobs would run as whoever deploys them"),
    (lambda data: data["targets"]["prod"].update(run_as={"user_name": "someone@example.com"}),
     "databricks.yml: targets.prod.run_as: name the jobs' service principal"),
    (lambda data: data["targets"]["dev"]["variables"].pop("catalog"),
     "targets.dev: variable catalog has no value"),
])
def test_identity_and_variable_problems(bundle_copy, change, message):
    edit_main(bundle_copy, change)
    problems = problems_of(bundle_copy)
    assert any(message in p for p in problems), problems


def test_the_grants_go_to_the_principal_the_jobs_run_as(bundle_copy):
    def change(jobs):
        args = jobs["yws_sql_apply"]["tasks"][0]["python_wheel_task"]["parameters"]
        args[args.index("--jobs-principal") + 1] = "${var.orchestrator_principal}"
    edit(bundle_copy, change)
    problems = problems_of(bundle_copy)
    assert any("--jobs-principal grants to lookup {'service_principal': 'yws_orchestrator'} in "
               "target dev but the jobs run as lookup {'service_principal': 'yws_jobs'}" in p
               for p in problems), problems


def test_ids_given_like_the_cli_takes_them(bundle_copy):
    """--var and BUNDLE_VAR_<name> take precedence over a lookup, as in the Databricks CLI
    (bundle/config/mutator/set_variables.go): a real application id passes, a display name
    does not."""
    edit_main(bundle_copy, _set_target_var("prod", "jobs_principal", "yws_jobs_prod"))
    assert any("variable jobs_principal is 'yws_jobs_prod'" in p
               for p in problems_of(bundle_copy))
    assert problems_of(bundle_copy, overrides={"jobs_principal": APP_ID}) == []
    assert validate(load(bundle_copy), env={"BUNDLE_VAR_jobs_principal": APP_ID}) == []
    assert any("variable jobs_principal is 'svc-yws'" in p for p in validate(
        load(bundle_copy), env={"BUNDLE_VAR_jobs_principal": "svc-yws"}))
    assert problems_of(bundle_copy, targets=["dev"]) == []  # the broken prod is not checked


@pytest.mark.parametrize(("grant", "message"), [
    ("GRANT FLY ON SCHEMA {{catalog}}.{{schema}} TO `{{jobs_principal}}`;",
     "sql/90_grants.sql:{line}: unknown privilege 'FLY'"),
    ("GRANT READ VOLUME ON TABLE {{catalog}}.{{schema}}.yws_features TO `{{jobs_principal}}`;",
     "sql/90_grants.sql:{line}: READ VOLUME does not apply to a table"),
])
def test_an_unknown_grant_privilege_fails_validation(bundle_copy, grant, message):
    grants = bundle_copy.parent / "sql" / "90_grants.sql"
    lines = grants.read_text().splitlines()
    grants.write_text("\n".join([*lines, "", grant]) + "\n")
    problems = problems_of(bundle_copy)
    assert any(message.format(line=len(lines) + 2) in p for p in problems), problems


def test_entry_points_in_the_wheel_have_parsers():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(PARSERS) <= set(scripts)
    for name, parser in PARSERS.items():
        assert scripts[name].startswith("yws.deploy.tasks:")
        assert "--catalog" in parser().format_help()


# Attributes serverless (Spark Connect) refuses: the job code must not touch them.
FORBIDDEN = {"sparkContext", "rdd", "_jvm", "_jdf", "_jsc", "cache", "persist"}
# The local target's session is the one place allowed to use the classic session.
ALLOWED = {("platform/__init__.py", "LocalTarget")}


def test_job_code_uses_nothing_serverless_refuses():
    offenders = []
    package = ROOT / "python" / "yws"
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        tree = ast.parse(path.read_text())
        allowed = {id(n) for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
                   and (name, cls.name) in ALLOWED for n in ast.walk(cls)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in FORBIDDEN
                    and id(node) not in allowed
                    and not (isinstance(node.value, ast.Name) and node.value.id == "functools")):
                offenders.append(f"{name}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_the_first_deploy_checklist_matches_jobs_and_sql():
    """docs/migration.md names what jobs/ looks up and what sql/ creates and grants."""
    from yws.config import Settings
    from yws.contract.sqlfiles import describe, parse_grant, statements

    text = (ROOT / "docs" / "migration.md").read_text()
    checklist = text[text.index("## What the first deploy needs"):]
    bundle = load(ROOT / "jobs")
    for name, target in bundle.targets.items():
        assert f"`{target['variables']['catalog']}`" in checklist, name
        for var, value in target["variables"].items():
            if isinstance(value, dict) and "lookup" in value:
                (looked_up,) = value["lookup"].values()
                assert f"`{looked_up}`" in checklist, (name, var, looked_up)
    for path in sorted((ROOT / "sql").glob("*.sql")):
        assert f"`{path.name}`" in checklist, path.name
    settings = Settings(jobs_principal="yws_jobs")
    privileges = set()
    for stmt in statements(settings, ROOT / "sql"):
        what = describe(stmt)
        if what.kind == "VOLUME":
            assert f"`<catalog>.ml.{what.name.split('.')[-1]}`" in checklist
        if what.kind == "GRANT":
            privileges.update(g.privilege for g in parse_grant(stmt)[1]
                              if g.principal == "yws_jobs")
    for privilege in privileges:
        assert privilege in checklist, privilege
    assert "run_as" in checklist and "application id" in checklist


def test_the_readme_lists_each_jobs_parameters():
    readme = (ROOT / "README.md").read_text()
    for key, job in load(ROOT / "jobs").jobs.items():
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{key}` |")]
        names = [p["name"] for p in job.get("parameters") or []]
        cell = row.split("|")[3]
        assert [n for n in names if f"`{n}`" in cell] == names, (key, cell)
        assert "catalog" not in cell


def test_the_default_bundle_is_the_checkouts_from_any_folder(tmp_path, monkeypatch):
    """`yws serve` started outside the repository still finds jobs/ of the checkout."""
    from yws.deploy.bundle.model import default_root

    monkeypatch.chdir(tmp_path)
    assert default_root() == Path(__file__).resolve().parents[2] / "jobs"
    assert (default_root() / "databricks.yml").is_file()
