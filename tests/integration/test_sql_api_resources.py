"""`yws serve`'s SQL statements hold bounded resources: cancel and a timeout stop the query in
DuckDB, results live on disk and go when closed, expired or over budget, links expire.

The documented contract each test follows (Databricks SQL Statement Execution API 2.0,
docs.databricks.com/api/workspace/statementexecution):

- Cancel: "Requests that an executing statement be canceled. Callers must poll for status to
  see the terminal state." ``CANCELED``: "user canceled; can come from explicit cancel call, or
  timeout with on_wait_timeout=CANCEL".
- ``on_wait_timeout``: "When set to CANCEL, the statement execution is canceled and the call
  returns with a CANCELED state."
- ``CLOSED``: "execution successful, and statement closed; result no longer available for
  fetch"; "After at least 12 hours in terminal state, the statement is removed from the
  warehouse and further calls will receive an HTTP 404 response."
- External links: "valid for only a short period, <= 15 minutes"; ``expiration``: "the
  date-time that the given external link will expire and becomes invalid, after which point a
  new external_link must be requested". "In EXTERNAL_LINKS mode, chunks can be resolved and
  fetched multiple times and in parallel" (so a result outlives its first fetch, and is freed
  by age, size or DELETE instead).
- Databricks SQL's own STATEMENT_TIMEOUT: "Any Databricks SQL statement with a run time
  exceeding the value is timed out" — here a server setting, YWS_SQL_STATEMENT_TIMEOUT.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest

from conftest import serving, synthetic_home
from yws.config import SettingsError
from yws.server.app import create_app
from yws.server.sql_api import ResultLimits
from yws.server.store import Store

FOREVER = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
           "SELECT max(n) AS n FROM r")
FULL_VIEW = "SELECT * FROM yws_dev.ml.v_yws_predictions"
ROWS = 50_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Synthetic predictions (no Spark), the SQL layer applied, served on a loopback port."""
    home = synthetic_home(tmp_path_factory.mktemp("resources"), ROWS)
    token = Store(home.home.resolve() / "server.db").create_token(
        "ana", ["yws_analysts", "yws_r_users"])
    app = create_app(home)
    with serving(app) as host:
        yield {"home": home, "host": host, "token": token, "app": app}


@pytest.fixture
def service(served: dict[str, Any]) -> Iterator[Any]:
    """The server's statement service, its limits restored after each test."""
    svc = served["app"].state.statements
    before = svc.limits
    yield svc
    svc.limits = before


def call(served: dict[str, Any], method: str, path: str, body: dict | None = None,
         auth: bool = True) -> tuple[int, dict[str, Any] | bytes]:
    url = path if path.startswith("http") else served["host"] + path
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {served['token']}"
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def execute(served: dict[str, Any], sql: str, **extra: Any) -> dict[str, Any]:
    status, out = call(served, "POST", "/api/2.0/sql/statements",
                       {"warehouse_id": "yws_local", "statement": sql, **extra})
    assert status == 200, out
    assert isinstance(out, dict)
    return out


def state(served: dict[str, Any], statement_id: str) -> dict[str, Any]:
    status, out = call(served, "GET", f"/api/2.0/sql/statements/{statement_id}")
    assert status == 200, out
    assert isinstance(out, dict)
    return out


def wait_for(what: Any, timeout: float) -> float:
    """Seconds until ``what()`` holds (fails the test after ``timeout``)."""
    start = time.monotonic()
    while not what():
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start


def cpu_over(seconds: float) -> float:
    """CPU seconds this process (server threads included) used over ``seconds`` of wall time."""
    before = time.process_time()
    time.sleep(seconds)
    return time.process_time() - before


def workers() -> int:
    """Statement worker threads alive (``threading.Thread`` names them after their target)."""
    return sum(1 for t in threading.enumerate() if t.name.endswith("(_run)"))


def test_cancel_interrupts_a_query_that_would_run_forever(served, service):
    threads = workers()
    st = execute(served, FOREVER, wait_timeout="0s")
    sid = st["statement_id"]
    wait_for(lambda: state(served, sid)["status"]["state"] == "RUNNING", 10)
    burning = cpu_over(1.0)
    assert burning > 0.1  # the recursion burns what CPU it gets (2 shared cores here)
    assert call(served, "POST", f"/api/2.0/sql/statements/{sid}/cancel", {})[0] == 200
    # "Callers must poll for status to see the terminal state"
    assert wait_for(lambda: state(served, sid)["status"]["state"] == "CANCELED", 2) < 2
    wait_for(lambda: workers() == threads, 3)  # the worker thread returned
    assert cpu_over(1.0) < min(0.15, burning / 2)  # and nothing burns any more
    assert service._statements[sid].result is None


def test_on_wait_timeout_cancel_stops_the_query(served, service):
    threads = workers()
    start = time.monotonic()
    st = execute(served, FOREVER, wait_timeout="5s", on_wait_timeout="CANCEL")
    # "the statement execution is canceled and the call returns with a CANCELED state"
    assert st["status"]["state"] == "CANCELED"
    assert 5 <= time.monotonic() - start < 8
    wait_for(lambda: workers() == threads, 3)
    assert cpu_over(1.0) < 0.15


def test_the_statement_timeout_bounds_every_query(served, service):
    assert ResultLimits().statement_timeout == 300  # the documented default
    service.limits = replace(service.limits, statement_timeout=1.5)
    threads = workers()
    sid = execute(served, FOREVER, wait_timeout="0s")["statement_id"]
    took = wait_for(lambda: state(served, sid)["status"]["state"] == "FAILED", 6)
    assert took < 4
    error = state(served, sid)["status"]["error"]
    assert error["error_code"] == "DEADLINE_EXCEEDED"
    assert "YWS_SQL_STATEMENT_TIMEOUT" in error["message"]
    wait_for(lambda: workers() == threads, 3)
    # a quick query is untouched by the timeout
    assert execute(served, "SELECT count(*) AS n FROM yws_dev.ml.v_yws_predictions",
                   wait_timeout="10s")["status"]["state"] == "SUCCEEDED"


def test_an_expired_link_answers_403_and_a_fresh_one_works(served, service):
    service.limits = replace(service.limits, link_ttl=1.0)
    st = execute(served, "SELECT entity_id FROM yws_dev.ml.v_yws_predictions LIMIT 10",
                 wait_timeout="10s", disposition="EXTERNAL_LINKS", format="ARROW_STREAM")
    assert st["status"]["state"] == "SUCCEEDED"
    link = st["result"]["external_links"][0]
    expiration = dt.datetime.fromisoformat(link["expiration"].replace("Z", "+00:00"))
    assert expiration - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=2)
    status, data = call(served, "GET", link["external_link"], auth=False)
    assert status == 200
    assert pa.ipc.open_stream(data).read_all().num_rows == 10
    # a link changed to expire later is not a link
    stamp, _, signature = link["external_link"].rsplit("/", 1)[1].partition(".")
    forged = link["external_link"].replace(f"{stamp}.", f"{int(stamp) + 3600}.")
    assert call(served, "GET", forged, auth=False)[0] == 404
    # after its expiration "a new external_link must be requested": the storage refuses (403)
    wait_for(lambda: dt.datetime.now(dt.UTC) > expiration + dt.timedelta(seconds=1), 5)
    status, err = call(served, "GET", link["external_link"], auth=False)
    assert status == 403 and isinstance(err, dict)
    assert err["error_code"] == "PERMISSION_DENIED"
    assert f"/api/2.0/sql/statements/{st['statement_id']}/result/chunks/0" in err["message"]
    status, fresh = call(served, "GET",
                         f"/api/2.0/sql/statements/{st['statement_id']}/result/chunks/0")
    assert status == 200 and isinstance(fresh, dict)
    assert call(served, "GET", fresh["external_links"][0]["external_link"], auth=False)[0] == 200


def test_delete_frees_the_result_and_closes_the_statement(served, service):
    st = execute(served, FULL_VIEW, wait_timeout="30s", disposition="EXTERNAL_LINKS",
                 format="ARROW_STREAM")
    sid = st["statement_id"]
    assert st["manifest"]["total_row_count"] == ROWS
    mine = service._statements[sid].result
    assert mine is not None and mine.path.is_file() and mine.nbytes > 0
    count, size = service.held()
    link = st["result"]["external_links"][0]["external_link"]
    assert call(served, "DELETE", f"/api/2.0/sql/statements/{sid}")[0] == 200
    assert not mine.path.exists()
    assert service.held() == (count - 1, size - mine.nbytes)
    # "CLOSED: execution successful, and statement closed; result no longer available"
    assert state(served, sid)["status"]["state"] == "CLOSED"
    assert "manifest" not in state(served, sid)
    assert call(served, "GET", f"/api/2.0/sql/statements/{sid}/result/chunks/0")[0] == 400
    assert call(served, "GET", link, auth=False)[0] == 404
    # DELETE on a running statement cancels it
    running = execute(served, FOREVER, wait_timeout="0s")["statement_id"]
    wait_for(lambda: state(served, running)["status"]["state"] == "RUNNING", 10)
    assert call(served, "DELETE", f"/api/2.0/sql/statements/{running}")[0] == 200
    assert state(served, running)["status"]["state"] == "CANCELED"
    wait_for(lambda: service._statements[running].done.is_set(), 3)


def test_results_are_evicted_by_size_then_by_age(served, service):
    for sid in list(service._statements):  # start from nothing held
        call(served, "DELETE", f"/api/2.0/sql/statements/{sid}")
    assert service.held() == (0, 0)
    first = execute(served, FULL_VIEW, wait_timeout="30s")["statement_id"]
    one = service.held()[1]
    service.limits = replace(service.limits, result_bytes=int(one * 2.5))
    ids = [first] + [execute(served, FULL_VIEW, wait_timeout="30s")["statement_id"]
                     for _ in range(5)]
    count, size = service.held()
    assert count == 2 and size <= service.limits.result_bytes
    assert [state(served, s)["status"]["state"] for s in ids] == ["CLOSED"] * 4 + \
        ["SUCCEEDED"] * 2
    # every chunk of a kept result can be fetched, and fetched again
    assert call(served, "GET", f"/api/2.0/sql/statements/{ids[-1]}/result/chunks/2")[0] == 200
    assert call(served, "GET", f"/api/2.0/sql/statements/{ids[-1]}/result/chunks/2")[0] == 200
    service.limits = replace(service.limits, result_ttl=0.5)
    wait_for(lambda: service.held() == (0, 0), 3)
    assert state(served, ids[-1])["status"]["state"] == "CLOSED"
    assert list(service._dir.iterdir()) == []  # nothing left on disk either


def test_finished_statements_are_forgotten_beyond_the_record_limit(served, service):
    service.limits = replace(service.limits, max_records=3)
    ids = [execute(served, "SELECT 1 AS one", wait_timeout="10s")["statement_id"]
           for _ in range(5)]
    wait_for(lambda: len(service._statements) <= 3, 3)
    assert call(served, "GET", f"/api/2.0/sql/statements/{ids[0]}")[0] == 404
    assert state(served, ids[-1])["status"]["state"] == "SUCCEEDED"


def test_limits_come_from_yws_sql_variables():
    limits = ResultLimits.from_env({"YWS_SQL_STATEMENT_TIMEOUT": "12",
                                    "YWS_SQL_RESULT_BYTES": "1000"})
    assert (limits.statement_timeout, limits.result_bytes, limits.link_ttl) == (12.0, 1000, 900)
    with pytest.raises(SettingsError, match="YWS_SQL_LINK_TTL"):
        ResultLimits.from_env({"YWS_SQL_LINK_TTL": "soon"})
