"""The pieces that give a local job run its identity (no server, no process): what a task's
environment holds, which address the tasks are given, and the run's token in the store; and
the pieces the SQL API checks calls with (the endpoints of ai_query, the SQL functions a
statement calls). The end-to-end behaviour is in tests/integration/test_conformance_run_as.py
and test_conformance_sql_ai_query.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from yws.server.jobs import own_address, task_environment
from yws.server.sql_api import routines
from yws.server.store import Store
from yws.warehouse.ai_query import endpoints
from yws.warehouse.base import SqlError


def test_a_task_never_inherits_the_servers_workspace_credentials(tmp_path):
    server_env = {"PATH": "/bin", "DATABRICKS_HOST": "https://real.cloud.databricks.com",
                  "DATABRICKS_TOKEN": "dapi-real", "DATABRICKS_CONFIG_PROFILE": "prod",
                  "DATABRICKS_CLIENT_SECRET": "s", "YWS_TARGET": "databricks"}
    env = task_environment(server_env, tmp_path)
    assert not [k for k in env if k.startswith("DATABRICKS_")]
    assert env["PATH"] == "/bin" and env["YWS_TARGET"] == "local"
    assert env["YWS_HOME"] == str(tmp_path)
    given = {"DATABRICKS_HOST": "http://127.0.0.1:8765", "DATABRICKS_TOKEN": "dapi-run"}
    env = task_environment(server_env, tmp_path, given)
    assert {k: v for k, v in env.items() if k.startswith("DATABRICKS_")} == given


@pytest.mark.parametrize(("server", "scheme", "expected"), [
    (("127.0.0.1", 8765), "http", "http://127.0.0.1:8765"),
    (("::1", 9000), "http", "http://[::1]:9000"),
    (("10.0.0.5", 443), "https", "https://10.0.0.5:443"),
    (("testserver", 80), "http", None),  # a test client's made-up host
    (("evil.example.com", 80), "http", None),
    (("0.0.0.0", 8765), "http", None),
    (("127.0.0.1", None), "http", None),
    (None, "http", None),
    (("127.0.0.1", 8765), "ftp", "http://127.0.0.1:8765"),
])
def test_the_tasks_call_back_the_socket_the_request_came_in_on(server, scheme, expected):
    assert own_address(server, scheme) == expected


def test_a_runs_token_acts_as_run_as_and_goes_with_the_run(tmp_path: Path):
    store = Store(tmp_path / "server.db")
    mine = store.create_token("yws_jobs", ["jobs_group"])
    other = store.create_token("ana", ["yws_analysts"])
    token = store.run_token("yws_jobs", 1001)
    assert store.principal(token).name == "yws_jobs"
    assert store.principal(token).groups == ("jobs_group",)
    assert store.run_token("nobody_known", 1002)  # a principal without tokens: no groups
    listed = {t["comment"] for t in store.tokens()}
    assert "job run 1001 (revoked when it ends)" in listed
    assert token not in repr(store.tokens())
    assert store.revoke_run_tokens(1001) == 1
    assert store.principal(token) is None
    assert store.principal(mine) is not None and store.principal(other) is not None
    assert store.revoke_run_tokens() == 1  # what a crashed server left
    assert [t["principal"] for t in store.tokens()] == ["yws_jobs", "ana"]


def test_a_store_from_before_run_tokens_gains_the_column(tmp_path: Path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "server.db")
    db.execute("CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, principal TEXT NOT NULL, "
               "groups TEXT NOT NULL, created_at REAL NOT NULL, comment TEXT)")
    db.commit()
    db.close()
    store = Store(tmp_path / "server.db")
    token = store.run_token("yws_jobs", 7)
    assert store.principal(token) is not None and store.revoke_run_tokens(7) == 1


def _tree(sql: str):
    return sqlglot.parse_one(sql, read="databricks")


def test_the_endpoints_a_statement_queries():
    sql = ("WITH s AS (SELECT ai_query('a', named_struct('x', 1)) AS r) "
           "SELECT ai_query(endpoint => 'b', request => named_struct('x', 2)), "
           "(SELECT AI_QUERY('a', named_struct('x', 3))) FROM s")
    assert sorted(endpoints(_tree(sql))) == ["a", "b"]
    assert endpoints(_tree("SELECT 1")) == []
    with pytest.raises(SqlError, match="STRING literal"):
        endpoints(_tree("SELECT ai_query(concat('a', 'b'), named_struct('x', 1))"))


def test_the_sql_functions_a_statement_calls():
    known = {"yws_dev.ml.yws_score_row"}
    assert routines(_tree("SELECT yws_dev.ml.yws_score_row(1).band, "
                          "YWS_DEV.ML.Yws_Score_Row(2)"), "c", "s", known) == known
    assert routines(_tree("SELECT ml.yws_score_row(1)"), "yws_dev", "s", known) == known
    tree = _tree("SELECT yws_score_row(1).band AS b")
    assert routines(tree, "yws_dev", "ml", known) == known
    # qualified in the tree: the engine runs the function it was checked as
    assert tree.sql("databricks") == "SELECT yws_dev.ml.yws_score_row(1).band AS b"
    assert routines(_tree("SELECT yws_score_row(1)"), "yws_dev", "default", known) == set()
    assert routines(_tree("SELECT upper('a'), ai_query('e', named_struct('x', 1))"),
                    "yws_dev", "ml", known) == set()
    assert routines(_tree("SELECT x.y.z.f(1)"), "c", "s", known) == set()  # not a routine
    assert routines(_tree("SELECT other.ml.f(1)"), "c", "s", known) == {"other.ml.f"}
