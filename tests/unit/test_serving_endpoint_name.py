"""The Model Serving endpoint that ``ai_query`` in ``sql/`` names is a parameter, not a literal:
bundle variable ``serving_endpoint`` -> the yws_sql_apply task's ``--serving-endpoint`` ->
``Settings.serving_endpoint`` -> ``{{serving_endpoint}}`` in
``sql/30_functions/30_yws_score_row.sql``, on both targets.

The name is checked before it goes into SQL (inside a string literal): a Model Serving endpoint
name "can consist of alphanumeric characters, dashes, and underscores"
(https://docs.databricks.com/gcp/dev-tools/cli/reference/serving-endpoints-commands, ``create
NAME``); anything else is refused with a message saying what is allowed. A bundle variable is
set per target or with ``--var`` (https://docs.databricks.com/dev-tools/bundles/variables.html).
``ai_query``'s first argument is "the name of ... a custom model endpoint ... as a STRING
literal" (https://docs.databricks.com/aws/sql/language-manual/functions/ai_query).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlglot
import yaml
from tests.unit.test_warehouse_ai_query import REQUEST, ROW, SPEC, FakeEndpoints

from yws.config import Settings, SettingsError
from yws.contract.sqlfiles import parameters, statements
from yws.deploy.bundle import load, validate
from yws.deploy.tasks import _settings, sql_apply_parser
from yws.scoring.ai_query import endpoint_name
from yws.server.jobs import catalog, local_task_args
from yws.warehouse.local import LocalWarehouse

ROOT = Path(__file__).resolve().parents[2]


def _function(settings: Settings) -> str:
    return next(s.text for s in statements(settings)
                if s.text.startswith("CREATE") and "yws_score_row(" in s.text)


def test_the_function_calls_the_endpoint_the_settings_name():
    default = _function(Settings())
    assert "ai_query(\n  'yws_lr',\n" in default
    other = _function(Settings(serving_endpoint="churn-v2_eu"))
    assert "ai_query(\n  'churn-v2_eu',\n" in other
    assert "'yws_lr'" not in other
    # still one Databricks SQL function whose endpoint is a STRING literal
    tree = sqlglot.parse_one(other, read="databricks")
    call = next(n for n in tree.find_all(sqlglot.exp.Anonymous) if n.name.lower() == "ai_query")
    assert call.expressions[0].is_string and call.expressions[0].this == "churn-v2_eu"
    assert endpoint_name(Settings(serving_endpoint="churn-v2_eu")) == "churn-v2_eu"


@pytest.mark.parametrize("bad", ["yws lr", "yws_lr'; DROP TABLE x; --", "a" * 64, "", "ep\n",
                                 "ép", "a.b", "{{catalog}}"])
def test_a_name_that_is_not_an_endpoint_name_never_reaches_sql(bad):
    with pytest.raises(SettingsError, match="is not a Model Serving endpoint name: use letters, "
                                            "digits, '-' and '_'"):
        Settings(serving_endpoint=bad)
    if bad:  # an empty variable means "not set" (Settings.load)
        with pytest.raises(SettingsError, match="not a Model Serving endpoint name"):
            Settings.load(env={"YWS_SERVING_ENDPOINT": bad})


def test_settings_take_the_name_from_the_environment_and_sql_parameters_carry_it():
    settings = Settings.load(env={"YWS_SERVING_ENDPOINT": "ep-7"})
    assert settings.serving_endpoint == "ep-7"
    assert parameters(settings)["serving_endpoint"] == "ep-7"


def test_the_sql_apply_task_takes_the_endpoint_from_its_parameter():
    args = sql_apply_parser().parse_args(["--target", "local", "--serving-endpoint", "ep-7"])
    assert _settings(args, serving_endpoint=args.serving_endpoint).serving_endpoint == "ep-7"
    args = sql_apply_parser().parse_args(["--target", "local", "--serving-endpoint", ""])
    assert _settings(args, serving_endpoint=args.serving_endpoint).serving_endpoint == "yws_lr"


def test_the_bundle_variable_reaches_the_local_sql_apply_task(tmp_path):
    """yws serve resolves ${var.serving_endpoint} (default, target, or --var) into the
    yws_sql_apply task's arguments; the task's parser accepts them."""
    bundle = load(ROOT / "jobs")
    for overrides, expected in (({}, "yws_lr"), ({"serving_endpoint": "churn-v2"}, "churn-v2")):
        jobs = {j.key: j for j in catalog(bundle, "dev", overrides).values()}
        (task,) = jobs["yws_sql_apply"].tasks.values()
        argv = local_task_args(task["python_wheel_task"]["parameters"], {}, tmp_path)
        assert f"--serving-endpoint={expected}" in argv
        args = sql_apply_parser().parse_args(argv)
        assert args.serving_endpoint == expected
        # and the serving tasks update the same endpoint
        for key in ("yws_train", "yws_train_and_score"):
            wheel = jobs[key].tasks["serving"]["python_wheel_task"]
            assert f"--endpoint={expected}" in local_task_args(wheel["parameters"], {}, tmp_path)


def test_validate_refuses_sql_that_would_call_another_endpoint(tmp_path):
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    shutil.copytree(ROOT / "sql", tmp_path / "sql")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "jobs" / "resources" / "yws_jobs.yml"
    data = yaml.safe_load(path.read_text())
    params = data["resources"]["jobs"]["yws_sql_apply"]["tasks"][0]["python_wheel_task"][
        "parameters"]
    params[params.index("--serving-endpoint") + 1] = "yws-old"
    path.write_text(yaml.safe_dump(data))
    problems = validate(load(tmp_path / "jobs"), env={}, targets=["dev"])
    assert any("job yws_sql_apply task sql_apply: --serving-endpoint 'yws-old' (target dev) "
               "is not an endpoint of the bundle (yws_lr)" in p for p in problems), problems
    assert validate(load(ROOT / "jobs"), env={}, overrides={"serving_endpoint": "bad name"})


def test_the_local_warehouse_answers_the_function_with_a_non_default_endpoint(tmp_path):
    """The rendered function becomes a DuckDB macro that calls the scorer with the endpoint
    the settings name (the local warehouse's ai_query rewrite keeps the literal)."""
    settings = Settings(home=tmp_path, serving_endpoint="churn-v2")
    scorer = FakeEndpoints(("churn-v2",))
    wh = LocalWarehouse(settings, scorer)
    wh.apply(statements(settings))
    args = ", ".join(f.name for f in SPEC.features)
    got = wh.query(f"SELECT yws_dev.ml.yws_score_row({args}).band AS b FROM (SELECT {ROW})")
    assert got.to_pylist() == [{"b": "GREEN"}]
    assert [c[0] for c in scorer.calls] == ["churn-v2"]
    # the old name is no longer what the function calls: a direct call of it is refused
    from yws.warehouse.base import SqlError

    with pytest.raises(SqlError, match="Endpoint with name 'yws_lr' does not exist"):
        wh.query(f"SELECT ai_query('yws_lr', {REQUEST}) AS r FROM (SELECT {ROW})")
    wh.close()
