"""Who may call ai_query and the SQL function that wraps it, through `yws serve`'s SQL Statement
Execution API, driven with the official databricks-sdk.

On Databricks, ``ai_query``'s endpoint argument is an endpoint on which "the definer must have
CAN QUERY permission" (https://docs.databricks.com/aws/sql/language-manual/functions/ai_query;
the same sentence in https://learn.microsoft.com/zh-cn/azure/Databricks/sql/language-manual/
functions/ai_query): in a statement the definer is its caller, in a SQL function the
function's owner. Calling a Unity Catalog function needs ``EXECUTE`` on it (inherited from
its schema or catalog; https://docs.databricks.com/sql/language-manual/sql-ref-privileges.html,
https://learn.microsoft.com/en-ca/azure/Databricks/dev-tools/databricks-apps/functions). A
statement that lacks a privilege is a FAILED statement with ``INSUFFICIENT_PERMISSIONS``
(SQLSTATE 42501), HTTP 200. Model Serving's levels are CAN VIEW < CAN QUERY < CAN MANAGE
(https://learn.microsoft.com/azure/databricks/dev-tools/databricks-apps/model-serving).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.sql import StatementState

from conftest import serving
from yws.config import Settings
from yws.contract.spec import load_spec
from yws.contract.sqlfiles import statements
from yws.server.app import create_app
from yws.server.store import Store
from yws.warehouse.local import LocalWarehouse

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec()
ROW = ("40.0, 50.0, 0.3, 1.0, 0.0, 1000.0, 2.0, true, false, 'north', 'gold', 'web'")
REQUEST = "named_struct(" + ", ".join(
    f"'{f.name}', {v.strip()}" for f, v in zip(SPEC.features, ROW.split(","), strict=True)) + ")"
FUNCTION = f"yws_dev.ml.yws_score_row({ROW})"
PEOPLE = {"analyst": ("ana", ["yws_analysts"]), "r_user": ("rob", ["yws_r_users"]),
          "jobs": ("yws_jobs", []), "outsider": ("mallory", ["marketing"])}


def _bundle(root: Path, query_groups: list[str]) -> Path:
    """A copy of jobs/ whose endpoint grants CAN_QUERY to ``query_groups`` only."""
    for part in ("jobs", "sql"):
        shutil.copytree(ROOT / part, root / part)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    path = root / "jobs" / "resources" / "yws_serving.yml"
    data = yaml.safe_load(path.read_text())
    endpoint = data["resources"]["model_serving_endpoints"]["yws_lr"]
    endpoint["permissions"] = [p for p in endpoint["permissions"] if p["level"] != "CAN_QUERY"]
    endpoint["permissions"] += [{"level": "CAN_QUERY", "group_name": g} for g in query_groups]
    path.write_text(yaml.safe_dump(data))
    return root / "jobs"


@pytest.fixture(scope="module")
def home(trained_home, tmp_path_factory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("ai-query-grants") / "yws")
    shutil.copytree(trained_home.home, settings.home)
    LocalWarehouse(settings).apply(statements(settings))
    return settings


@pytest.fixture(scope="module")
def tokens(home) -> dict[str, str]:
    store = Store(home.home.resolve() / "server.db")
    return {who: store.create_token(name, groups) for who, (name, groups) in PEOPLE.items()}


@pytest.fixture(scope="module")
def host(home, tmp_path_factory) -> Iterator[str]:
    """The real bundle, except that R users lose CAN_QUERY on the endpoint (they keep EXECUTE
    on the function, granted by sql/90_grants.sql)."""
    jobs = _bundle(tmp_path_factory.mktemp("bundle"), ["yws_analysts"])
    with serving(create_app(home, bundle_root=jobs, target="dev")) as url:
        yield url


def run(host: str, token: str, sql: str, **kw: Any) -> Any:
    w = WorkspaceClient(host=host, token=token)
    return w.statement_execution.execute_statement(warehouse_id="yws_local", statement=sql,
                                                   wait_timeout="30s", **kw)


def refused(answer: Any, error_class: str, sql_state: str) -> str:
    assert answer.status.state == StatementState.FAILED, answer.status
    message = answer.status.error.message
    assert message.startswith(f"[{error_class}]") and f"SQLSTATE: {sql_state}" in message, message
    return str(message)


def test_ai_query_needs_can_query_on_its_endpoint(host, tokens):
    """A statement's ai_query runs with its caller as the definer: a principal with CAN QUERY
    (or CAN MANAGE) on the endpoint gets scores; one without it gets a FAILED statement,
    [INSUFFICIENT_PERMISSIONS] naming the endpoint (SQLSTATE 42501), before anything runs —
    in a subquery or a CTE too ("The definer must have CAN QUERY permission on the endpoint",
    https://docs.databricks.com/aws/sql/language-manual/functions/ai_query)."""
    sql = f"SELECT ai_query('yws_lr', {REQUEST}).band AS band"
    for who in ("analyst", "jobs"):
        answer = run(host, tokens[who], sql)
        assert answer.status.state == StatementState.SUCCEEDED, (who, answer.status)
        assert answer.result.data_array[0][0] in ("GREEN", "AMBER", "RED")
    for who, name in (("outsider", "mallory"), ("r_user", "rob")):
        message = refused(run(host, tokens[who], sql), "INSUFFICIENT_PERMISSIONS", "42501")
        assert f"User {name} does not have CAN QUERY on serving endpoint 'yws_lr'" in message
    hidden = (f"WITH s AS (SELECT ai_query(endpoint => 'yws_lr', request => {REQUEST}, "
              "failOnError => false) AS r) SELECT r.result.band FROM (SELECT * FROM s)")
    refused(run(host, tokens["outsider"], hidden), "INSUFFICIENT_PERMISSIONS", "42501")
    assert run(host, tokens["analyst"], hidden).status.state == StatementState.SUCCEEDED


def test_an_unknown_endpoint_is_resource_does_not_exist_for_everyone(host, tokens):
    """An endpoint that does not exist fails the call (Model Serving's 404
    RESOURCE_DOES_NOT_EXIST, https://docs.databricks.com/aws/sql/language-manual/functions/
    ai_query) whoever asks: no permission to check, nothing scored."""
    for who in ("analyst", "outsider"):
        answer = run(host, tokens[who], f"SELECT ai_query('nope', {REQUEST}) AS r")
        refused(answer, "RESOURCE_DOES_NOT_EXIST", "42704")


def test_the_sql_function_needs_execute_and_runs_with_its_definers_endpoint_access(host, tokens):
    """Calling yws_score_row needs EXECUTE on it (sql/90_grants.sql grants it to analysts and R
    users), qualified or not; without it: [INSUFFICIENT_PERMISSIONS] ... does not have EXECUTE
    on Routine or Model. Inside the function ai_query is the function's (its definer's), so an
    R user without CAN QUERY on the endpoint still scores through it; a routine sql/ does not
    create is [UNRESOLVED_ROUTINE] (SQLSTATE 42883). EXECUTE on a function:
    https://docs.databricks.com/sql/language-manual/sql-ref-privileges.html; error classes:
    https://docs.databricks.com/error-messages/error-classes.html."""
    for who in ("analyst", "r_user"):
        answer = run(host, tokens[who], f"SELECT {FUNCTION}.band AS band")
        assert answer.status.state == StatementState.SUCCEEDED, (who, answer.status)
    message = refused(run(host, tokens["outsider"], f"SELECT {FUNCTION}.band AS band"),
                      "INSUFFICIENT_PERMISSIONS", "42501")
    assert "User mallory does not have EXECUTE on Routine or Model " \
           "'yws_dev.ml.yws_score_row'" in message
    bare = f"SELECT yws_score_row({ROW}).band AS band"
    refused(run(host, tokens["outsider"], bare, catalog="yws_dev", schema="ml"),
            "INSUFFICIENT_PERMISSIONS", "42501")
    refused(run(host, tokens["outsider"], f"SELECT ml.yws_score_row({ROW}).band AS b",
                catalog="yws_dev"), "INSUFFICIENT_PERMISSIONS", "42501")
    refused(run(host, tokens["analyst"], "SELECT yws_dev.ml.nope(1) AS x"),
            "UNRESOLVED_ROUTINE", "42883")
