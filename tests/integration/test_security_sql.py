"""Issue 13 item 15: no statement reads anything but the catalog objects granted to its principal.

The attack that was reproduced: a token with no grants read every Delta table, old Parquet
files and the Delta log with ``SELECT * FROM `<path>` WHERE EXISTS (WITH `<path>` AS (SELECT 1)
SELECT 1)`` — the grant check skipped the path as "a CTE name" (collected from the whole
statement, whatever its scope) and DuckDB read the quoted identifier as a file (a replacement
scan: "DuckDB reads a quoted identifier that looks like a path as a file", DESIGN.md).

Two locks are tested, each on its own:

* the resolver (``yws.server.grants``) turns every relation, in its CTE scope, into a granted
  catalog object or refuses the statement with ``PERMISSION_DENIED``; through the API the
  statement then ends ``FAILED`` (HTTP 200) with ``[INSUFFICIENT_PERMISSIONS] ... SQLSTATE:
  42501``, as Unity Catalog reports a missing privilege through the Statement Execution API;
* the engine: DuckDB's ``enable_external_access = false`` leaves readable only what
  ``allowed_directories`` / ``allowed_paths`` list ("List of files that are ALWAYS allowed to be
  queried - even when enable_external_access is false", DuckDB's setting description), and
  ``lock_configuration`` refuses any ``SET`` that would widen it. DuckDB has no setting that
  turns file replacement scans off (1.5.5's ``duckdb_settings()`` only has
  ``python_enable_replacements``, for Python variables), so the connection allows only the
  data files of each table's current version; ``sniff_csv`` once read files despite
  ``enable_external_access = false`` (a published DuckDB advisory), so it is refused by name too.

Every refused statement is sent as a family: several scopes, quotings, paths and principals.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable, write_deltalake

from test_server import served  # noqa: F401  (the module-scoped `yws serve` fixture)
from yws.config import Settings
from yws.contract.sqlfiles import statements
from yws.server.errors import ApiError
from yws.server.grants import relations
from yws.server.store import Store
from yws.warehouse import QueryError, check_query
from yws.warehouse.local import LocalWarehouse

TABLES = ("yws_features", "yws_quarantine", "yws_score_runs", "yws_predictions", "yws_drift")
VIEWS = ("v_yws_predictions", "v_yws_predictions_latest", "v_yws_warnings", "v_yws_score_runs",
         "v_yws_quarantine", "v_yws_drift")

# Statements that wrap a relation R (a quoted path, in backticks) in every place a relation can
# hide: CTE scopes that do not reach it, subqueries, set operations, lateral joins.
TEMPLATES = (
    "SELECT * FROM {R}",
    "SELECT * FROM {R} WHERE EXISTS (WITH {R} AS (SELECT 1) SELECT 1)",  # the reported attack
    "SELECT * FROM {R} WHERE 1 IN (WITH {R} AS (SELECT 1) SELECT 1)",
    "SELECT (WITH {R} AS (SELECT 1) SELECT 1) AS x, * FROM {R}",
    "WITH a AS (WITH {R} AS (SELECT 1) SELECT 1) SELECT * FROM {R}",
    "WITH a AS (SELECT * FROM {R}), {R} AS (SELECT 1) SELECT * FROM a",  # a later sibling
    "WITH a AS (SELECT 1) SELECT * FROM (SELECT * FROM {R}) s",
    "(WITH {R} AS (SELECT 1) SELECT 1 AS x) UNION ALL SELECT count(*) FROM {R}",
    "SELECT 1 AS x UNION SELECT count(*) FROM {R}",
    "SELECT 1 AS x INTERSECT SELECT count(*) FROM {R}",
    "SELECT 1 AS x EXCEPT SELECT count(*) FROM {R}",
    "SELECT * FROM yws_dev.ml.v_yws_score_runs r, LATERAL (SELECT count(*) AS n FROM {R}) l",
    "SELECT * FROM yws_dev.ml.v_yws_score_runs r JOIN {R} f ON true",
    "WITH RECURSIVE {R} AS (SELECT 1 AS x) SELECT * FROM {R}",
    "WITH RECURSIVE r AS (SELECT 1 AS x UNION ALL SELECT count(*) FROM {R}) SELECT * FROM r",
    "SELECT * FROM yws_dev.ml.v_yws_warnings WHERE entity_id IN (SELECT entity_id FROM {R})",
)


def _paths(warehouse: Any) -> list[str]:
    """Files an attacker wants, absolute and relative, with globs."""
    feats = warehouse / "yws_dev" / "ml" / "yws_features"
    current = DeltaTable(str(feats)).file_uris()[0]
    return [
        f"{feats}/*.parquet",
        current,
        f"{warehouse}/yws_dev/ml/yws_quarantine/*.parquet",
        f"{warehouse}/yws_dev/ml/yws_score_runs/*.parquet",
        f"{warehouse}/**/*.parquet",
        f"{feats}/_delta_log/00000000000000000000.json",
        f"{warehouse}/_sql_state.json",
        "yws_features/*.parquet",
        "../warehouse/yws_dev/ml/yws_features/*.parquet",
        "./x.csv",
    ]


FUNCTIONS = (
    "SELECT * FROM read_parquet('{P}')",
    "SELECT * FROM read_csv('{P}')",
    "SELECT * FROM read_csv_auto('{P}')",
    "SELECT * FROM read_json_auto('{P}')",
    "SELECT * FROM read_text('{P}')",
    "SELECT * FROM read_blob('{P}')",
    "SELECT * FROM parquet_scan('{P}')",
    "SELECT * FROM parquet_metadata('{P}')",
    "SELECT * FROM sniff_csv('{P}')",
    "SELECT * FROM glob('{P}')",
    "SELECT * FROM delta_scan('{D}')",
    "SELECT * FROM query_table('yws_dev.ml.yws_features')",
    "SELECT * FROM query('SELECT * FROM yws_dev.ml.yws_features')",
    "SELECT * FROM yws_dev.ml.v_yws_warnings, read_parquet('{P}')",
    "WITH a AS (SELECT * FROM read_parquet('{P}')) SELECT * FROM a",
    "SELECT * FROM parquet.`{P}`",
    "SELECT * FROM delta.`{D}`",
    "SELECT * FROM csv.`{P}`",
    "SELECT * FROM \"{P}\"",
    "SELECT * FROM '{P}'",
)

LEAKS = (
    "SELECT current_setting('allowed_directories')",
    "SELECT current_setting('allowed_paths')",
    "SELECT upper(current_setting('temp_directory')) AS t",
    "SELECT * FROM yws_dev.ml.v_yws_warnings WHERE current_setting('home_directory') = ''",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_views()",
    "SELECT * FROM duckdb_views",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM pragma_database_list()",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM information_schema.views",
    "SELECT * FROM system.information_schema.tables",
    "SELECT * FROM system.main.duckdb_views",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM pg_catalog.pg_views",
    "SELECT pg_get_viewdef(1)",
    "SELECT getvariable('x')",
    "WITH duckdb_views AS (SELECT 1) SELECT * FROM duckdb_views",
    "PRAGMA database_list",
    "SET allowed_directories = ['/']",
    "DESCRIBE yws_dev.ml.yws_features",
)


def _families(warehouse: Any) -> list[str]:
    paths = _paths(warehouse)
    table_dir = str(warehouse / "yws_dev" / "ml" / "yws_features")
    out = [t.format(R=f"`{p}`") for t in TEMPLATES for p in paths]
    out += [f.format(P=p, D=table_dir) for f in FUNCTIONS for p in paths[:2] + paths[-3:-1]]
    return out + list(LEAKS)


def _base_tables() -> list[tuple[str, dict[str, str]]]:
    """Base tables (granted to the jobs principal only) in every spelling."""
    out: list[tuple[str, dict[str, str]]] = []
    for t in TABLES:
        out += [(f"SELECT * FROM yws_dev.ml.{t}", {}),
                (f"SELECT * FROM `yws_dev`.`ml`.`{t}`", {}),
                (f"SELECT * FROM YWS_DEV.ML.{t.upper()}", {}),
                (f"SELECT * FROM {t}", {"catalog": "yws_dev", "schema": "ml"}),
                (f"SELECT * FROM ml.{t}", {"catalog": "yws_dev"}),
                (f"WITH v_yws_predictions AS (SELECT * FROM yws_dev.ml.{t}) "
                 "SELECT * FROM v_yws_predictions", {}),  # a CTE shadowing a granted view
                (f"SELECT count(*) FROM yws_dev.ml.v_yws_predictions WHERE EXISTS "
                 f"(SELECT 1 FROM yws_dev.ml.{t})", {}),
                (f"SELECT entity_id FROM yws_dev.ml.v_yws_predictions UNION "
                 f"SELECT entity_id FROM yws_dev.ml.{t}", {})]
    return out


# -- the resolver, without a server ----------------------------------------------------------------
def _parses(sql: str) -> bool:
    try:
        check_query(sql, {})
    except QueryError:
        return False
    return True


def _resolve(sql: str, catalog: str | None = "yws_dev", schema: str | None = "ml") -> set[str]:
    return relations(check_query(sql, {}), catalog, schema)


def test_the_resolver_refuses_every_path_table_function_and_leak():
    warehouse = Path("/srv/yws/warehouse")
    paths = [f"{warehouse}/yws_dev/ml/yws_features/*.parquet",
             f"{warehouse}/yws_dev/ml/yws_features/part-0.snappy.parquet",
             f"{warehouse}/yws_dev/ml/yws_features/_delta_log/00000000000000000000.json",
             "yws_features/*.parquet", "../warehouse/x.parquet", "x.csv", "a.b", "a b"]
    statements = [t.format(R=f"`{p}`") for t in TEMPLATES for p in paths]
    statements += [f.format(P=p, D=p) for f in FUNCTIONS for p in paths]
    statements += [s for s in LEAKS if not s.startswith(("PRAGMA", "SET", "DESCRIBE"))]
    refused = 0
    for sql in statements:
        if not _parses(sql):
            continue  # refused before any check: the statement never reaches the engine
        with pytest.raises(ApiError) as err:
            _resolve(sql)
        assert (err.value.status, err.value.code) == (403, "PERMISSION_DENIED"), sql
        refused += 1
    assert refused > 250  # all but the few the parser already rejects


@pytest.mark.parametrize(("sql", "want"), [
    # a CTE is in scope in its WITH's query and later siblings only
    ("SELECT * FROM a WHERE EXISTS (WITH a AS (SELECT 1) SELECT 1)", {"yws_dev.ml.a"}),
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", {"yws_dev.ml.b"}),
    ("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b", set()),
    ("WITH a AS (WITH b AS (SELECT 1) SELECT * FROM b) SELECT * FROM b", {"yws_dev.ml.b"}),
    ("(WITH a AS (SELECT 1) SELECT * FROM a) UNION ALL SELECT * FROM a", {"yws_dev.ml.a"}),
    ("SELECT (WITH a AS (SELECT 1) SELECT 1), * FROM a", {"yws_dev.ml.a"}),
    ("SELECT * FROM (WITH a AS (SELECT 1) SELECT * FROM a) s, a", {"yws_dev.ml.a"}),
    # itself only under RECURSIVE
    ("WITH r AS (SELECT 1 AS n UNION ALL SELECT n FROM r) SELECT * FROM r", {"yws_dev.ml.r"}),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
     "SELECT * FROM r", set()),
    # a CTE does not hide a qualified name; case and quoting do not change a name
    ("WITH yws_features AS (SELECT 1) SELECT * FROM yws_dev.ml.yws_features",
     {"yws_dev.ml.yws_features"}),
    ("WITH A AS (SELECT 1) SELECT * FROM `a`", set()),
    ("SELECT * FROM `YWS_DEV`.Ml.V_yws_warnings", {"yws_dev.ml.v_yws_warnings"}),
    ("SELECT * FROM v_yws_warnings w JOIN yws_dev.ml.v_yws_predictions p USING (entity_id)",
     {"yws_dev.ml.v_yws_warnings", "yws_dev.ml.v_yws_predictions"}),
    ("SELECT * FROM yws_dev.ml.v_yws_warnings w, LATERAL (SELECT * FROM x) l",
     {"yws_dev.ml.v_yws_warnings", "yws_dev.ml.x"}),
    ("SELECT * FROM (VALUES (1), (2)) AS t(a)", set()),
])
def test_the_resolver_scopes_ctes(sql, want):
    assert _resolve(sql) == want


def test_the_resolver_needs_catalog_and_schema_for_unqualified_names():
    with pytest.raises(ApiError) as err:
        _resolve("SELECT * FROM v_yws_warnings", None, None)
    assert err.value.code == "INVALID_PARAMETER_VALUE"


# -- a real `yws serve` ----------------------------------------------------------------------------
def _post(server: dict[str, Any], token: str, sql: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    body = {"warehouse_id": "yws_local", "statement": sql, "wait_timeout": "30s", **extra}
    req = urllib.request.Request(
        f"{server['host']}/api/2.0/sql/statements", method="POST",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    for _ in range(20):
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            if e.code != 429:  # the server's per-principal rate limit: wait as it says
                return e.code, json.loads(e.read())
            time.sleep(float(e.headers.get("Retry-After", "1")))
    raise AssertionError("still rate-limited after 20 tries")


SQL_STATES = {"INSUFFICIENT_PERMISSIONS": "42501", "PARSE_SYNTAX_ERROR": "42601"}


def _refused(status: int, body: dict[str, Any], error_class: str = "INSUFFICIENT_PERMISSIONS"
             ) -> bool:
    """A statement that ended FAILED with ``error_class`` (and its SQLSTATE), with no data."""
    error = (body.get("status") or {}).get("error") or {}
    return (status == 200 and body.get("status", {}).get("state") == "FAILED"
            and str(error.get("message", "")).startswith(f"[{error_class}] ")
            and body["status"].get("sql_state") == SQL_STATES[error_class]
            and "result" not in body and "manifest" not in body)


def _expected(sql: str) -> str:
    """A statement that does not parse (or is not a query) is refused before any grant check."""
    try:
        check_query(sql, {})
    except QueryError as e:
        return "INSUFFICIENT_PERMISSIONS" if "only queries" in str(e) else "PARSE_SYNTAX_ERROR"
    return "INSUFFICIENT_PERMISSIONS"


@pytest.fixture(scope="module")
def jobs_token(served):  # noqa: F811
    """The jobs principal, who may SELECT the base tables (sql/90_grants.sql)."""
    return Store(served["home"].home.resolve() / "server.db").create_token("yws_jobs", [])


def test_paths_table_functions_and_leaks_are_refused_to_everyone(served, jobs_token):  # noqa: F811
    statements = _families(served["home"].warehouse_dir.resolve())
    tokens = {"no grants": served["tokens"]["outsider"], "analyst": served["tokens"]["r_user"],
              "jobs principal": jobs_token}
    failures = []
    for who, token in tokens.items():
        for sql in statements:
            status, body = _post(served, token, sql)
            if not _refused(status, body, _expected(sql)):
                failures.append((who, sql, status, str(body)[:200]))
    assert not failures, failures[:5]
    assert len(statements) * len(tokens) > 600


def test_base_tables_need_their_own_grant(served):  # noqa: F811
    failures = []
    for who in ("outsider", "r_user", "orchestrator"):
        for sql, extra in _base_tables():
            if who == "r_user" and "yws_features" in sql.lower():
                continue  # granted: R users fit their own models on it (below)
            status, body = _post(served, served["tokens"][who], sql, **extra)
            if not _refused(status, body):
                failures.append((who, sql, status, str(body)[:200]))
    assert not failures, failures[:5]


def test_r_users_read_the_features_table_they_fit_their_models_on(served):  # noqa: F811
    """sql/90_grants.sql grants R users SELECT on yws_features (yws_features() in R, issue
    17): that table only, not the predictions, quarantine or audit tables."""
    status, body = _post(served, served["tokens"]["r_user"],
                         "SELECT count(*) FROM yws_dev.ml.yws_features")
    assert status == 200 and body["status"]["state"] == "SUCCEEDED", body
    for t in TABLES:
        if t != "yws_features":
            status, body = _post(served, served["tokens"]["r_user"],
                                 f"SELECT * FROM yws_dev.ml.{t}")
            assert _refused(status, body), (t, status, body)


def test_no_grants_reads_nothing_not_even_the_views(served):  # noqa: F811
    for view in VIEWS:
        status, body = _post(served, served["tokens"]["outsider"],
                             f"SELECT * FROM yws_dev.ml.{view}")
        assert _refused(status, body), (view, status, body)
        assert "does not have SELECT on yws_dev.ml." + view in json.dumps(body)


def _rows(server: dict[str, Any], token: str, sql: str, **extra: Any) -> list[list[Any]]:
    status, body = _post(server, token, sql, **extra)
    assert status == 200 and body["status"]["state"] == "SUCCEEDED", (sql, body)
    return list((body.get("result") or {}).get("data_array") or [])


def test_granted_views_still_work_for_analysts(served):  # noqa: F811
    token = served["tokens"]["r_user"]
    (count,) = _rows(served, token, "SELECT count(*) FROM yws_dev.ml.v_yws_predictions")[0]
    assert int(count) > 0
    for sql in (
        "WITH p AS (SELECT * FROM yws_dev.ml.v_yws_predictions_latest) "
        "SELECT count(*) FROM p JOIN yws_dev.ml.v_yws_predictions q USING (entity_id)",
        "SELECT count(*) FROM yws_dev.ml.v_yws_predictions p WHERE EXISTS "
        "(WITH w AS (SELECT entity_id FROM yws_dev.ml.v_yws_warnings) "
        "SELECT 1 FROM w WHERE w.entity_id = p.entity_id) OR true",
        "SELECT entity_id FROM yws_dev.ml.v_yws_predictions UNION "
        "SELECT entity_id FROM yws_dev.ml.v_yws_predictions_latest",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
        "SELECT count(*) FROM r, yws_dev.ml.v_yws_score_runs",
        "SELECT * FROM yws_dev.ml.v_yws_score_runs s, LATERAL (SELECT count(*) AS n FROM "
        "yws_dev.ml.v_yws_warnings w) l",
    ):
        assert _rows(served, token, sql), sql
    # the R package's yws_score() query (r_client/R/yws-sql.R), with its typed parameters
    latest = _rows(served, token, "SELECT max(as_of_date) FROM yws_dev.ml.v_yws_predictions")
    sql = ("SELECT * FROM yws_dev.ml.v_yws_predictions_latest WHERE as_of_date = "
           "CAST(:as_of AS DATE) AND band IN (:band1, :band2) ORDER BY entity_id, batch_id")
    params = [{"name": "as_of", "value": latest[0][0]}, {"name": "band1", "value": "YELLOW"},
              {"name": "band2", "value": "RED"}]
    assert _rows(served, token, sql, parameters=params)


def test_the_jobs_principal_reads_its_base_tables(served, jobs_token):  # noqa: F811
    for table in TABLES:
        _rows(served, jobs_token, f"SELECT count(*) FROM yws_dev.ml.{table}")


# -- the engine lock, without the resolver ---------------------------------------------------------
def test_the_engine_reads_only_the_current_files_of_the_tables(served, tmp_path):  # noqa: F811
    home = Settings(home=tmp_path / "yws")
    shutil.copytree(served["home"].home, home.home)
    LocalWarehouse(home).apply(statements(home))
    warehouse = home.warehouse_dir
    quarantine = warehouse / "yws_dev" / "ml" / "yws_score_runs"
    wh = LocalWarehouse(home)
    cur = wh.connect()
    before = cur.execute("SELECT count(*) FROM yws_dev.ml.yws_score_runs").fetchone()[0]
    for sql in (f"SELECT count(*) FROM '{warehouse}/yws_dev/ml/yws_features/*.parquet'",
                f"SELECT count(*) FROM read_parquet('{warehouse}/**/*.parquet')",
                f"SELECT * FROM read_text('{quarantine}/_delta_log/00000000000000000000.json')",
                f"SELECT * FROM read_text('{warehouse}/_sql_state.json')",
                f"SELECT * FROM glob('{warehouse}/*')",
                "SELECT * FROM read_text('/etc/hostname')"):
        with pytest.raises(duckdb.Error):
            cur.execute(sql).fetchall()
    with pytest.raises(duckdb.Error):  # lock_configuration: nothing can be widened
        cur.execute(f"SET allowed_directories = ['{warehouse}/']")
    # a new version: the view follows it, and the replaced version's files become unreadable
    old = DeltaTable(str(quarantine)).file_uris()
    table = DeltaTable(str(quarantine)).to_pyarrow_table()
    write_deltalake(str(quarantine), table.slice(0, 1), mode="overwrite")
    cur = wh.connect()
    assert cur.execute("SELECT count(*) FROM yws_dev.ml.yws_score_runs").fetchone()[0] == 1
    assert before >= 1
    for path in old:
        with pytest.raises(duckdb.Error):
            cur.execute(f"SELECT count(*) FROM '{path}'").fetchall()


@pytest.mark.parametrize("sql", [
    "SELECT * INTO yws_dev.ml.v_yws_warnings FROM yws_dev.ml.v_yws_warnings",
    "SELECT * FROM yws_dev.ml.v_yws_warnings WHERE entity_id IN "
    "(SELECT getvariable('x'))",
])
def test_the_resolver_refuses_what_is_not_a_read(sql):
    with pytest.raises(ApiError) as err:
        _resolve(sql)
    assert err.value.code == "PERMISSION_DENIED"
