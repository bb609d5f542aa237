"""`yws jobs run` with the official databricks-sdk against a local fake of the Jobs API.

The fake records every request (method, path, body, bearer header) so the tests check exactly
what an orchestrator's trigger sends, and answers with scripted run states.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import point_sdk_at
from yws.cli.main import main
from yws.deploy import jobs_client
from yws.deploy.jobs_client import default_token


class Fake:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.jobs = [{"job_id": 11, "creator_user_name": "deployer@corp",
                      "settings": {"name": "yws_score", "tags": {"project": "yws"}}}]
        self.parameters = [{"name": "as_of_date", "default": ""},
                           {"name": "batch_id", "default": ""},
                           {"name": "model_alias", "default": "champion"}]
        self.me = "ana@corp"
        self.final = {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS",
                      "state_message": ""}
        self.running_polls = 1  # answers RUNNING this many times first (-1: forever)
        self.throttle_run_now = 0  # answers 429 this many times first
        self.task_output = {"logs": "{\n  \"rows_scored\": 9\n}"}

    def run(self, polls: int) -> dict:
        running = self.running_polls < 0 or polls <= self.running_polls
        state = {"life_cycle_state": "RUNNING"} if running else self.final
        task_state = {"life_cycle_state": state["life_cycle_state"],
                      "result_state": state.get("result_state")}
        return {"job_id": 11, "run_id": 501, "run_page_url": "http://fake/#job/11/run/501",
                "state": state,
                "tasks": [{"task_key": "score", "run_id": 601, "state": task_state}]}


@pytest.fixture
def fake(monkeypatch):
    state = Fake()
    polls = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def record(self, body=None) -> tuple[str, dict]:
            url = urlparse(self.path)
            state.requests.append({"method": self.command, "path": url.path,
                                   "query": parse_qs(url.query), "body": body,
                                   "auth": self.headers.get("Authorization")})
            return url.path, parse_qs(url.query)

        def do_GET(self):  # noqa: N802
            path, query = self.record()
            if path == "/api/2.2/jobs/list":
                # the documented filter: the exact name, case-insensitively; no name: every job
                name = query.get("name", [None])[0]
                self.reply(200, {"jobs": [j for j in state.jobs if name is None or
                                          j["settings"]["name"].lower() == name.lower()]})
            elif path == "/api/2.2/jobs/get":
                (job,) = [j for j in state.jobs if str(j["job_id"]) == query["job_id"][0]]
                self.reply(200, {**job, "settings": {**job["settings"],
                                                     "parameters": state.parameters}})
            elif path == "/api/2.0/preview/scim/v2/Me":
                self.reply(200, {"userName": state.me, "id": "42"})
            elif path == "/api/2.2/jobs/runs/get":
                polls["n"] += 1
                self.reply(200, state.run(polls["n"]))
            elif path == "/api/2.2/jobs/runs/get-output":
                self.reply(200, {**state.task_output, "metadata": {"run_id": 601}})
            else:
                self.reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path})

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            path, _ = self.record(body)
            if path == "/api/2.2/jobs/run-now":
                if state.throttle_run_now > 0:
                    state.throttle_run_now -= 1
                    self.reply(429, {"error_code": "REQUEST_LIMIT_EXCEEDED",
                                     "message": "slow down"}, {"Retry-After": "1"})
                    return
                self.reply(200, {"run_id": 501, "number_in_job": 501})
            elif path == "/api/2.2/jobs/runs/cancel":
                self.reply(200, {})
            else:
                self.reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    point_sdk_at(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", "dapi-orchestrator")
    monkeypatch.setattr(jobs_client, "POLL_SECONDS", 0.01)
    yield state
    server.shutdown()


def api_calls(fake: Fake) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in fake.requests if r["path"].startswith("/api/")]


def test_success_sends_the_exact_requests(fake, capsys):
    code = main(["jobs", "run", "yws_score", "--param", "as_of_date=2026-11-30",
                 "--param", "batch_id=nightly", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (run_now,) = [r for r in fake.requests if r["path"] == "/api/2.2/jobs/run-now"]
    token = default_token("yws_score", {"as_of_date": "2026-11-30", "batch_id": "nightly"})
    assert run_now["body"] == {"job_id": 11, "idempotency_token": token,
                               "job_parameters": {"as_of_date": "2026-11-30",
                                                  "batch_id": "nightly"}}
    assert {r["auth"] for r in fake.requests if r["path"].startswith("/api/")} == {
        "Bearer dapi-orchestrator"}
    assert api_calls(fake)[:3] == [("GET", "/api/2.2/jobs/list"), ("GET", "/api/2.2/jobs/get"),
                                   ("POST", "/api/2.2/jobs/run-now")]
    assert next(r for r in fake.requests if r["path"] == "/api/2.2/jobs/list")["query"] == {
        "name": ["yws_score"]}
    assert ("GET", "/api/2.2/jobs/runs/get-output") in api_calls(fake)
    result = json.loads(out)
    assert result["succeeded"] is True and result["run_id"] == 501
    assert result["tasks"][0]["logs"].startswith("{") and result["idempotency_token"] == token
    assert "run 501: RUNNING (score RUNNING)" in err  # progress on stderr


def test_tokens_are_stable_per_job_parameters_and_day():
    day = dt.date(2026, 11, 30)
    a = default_token("yws_score", {"x": "1", "y": "2"}, day)
    assert a == default_token("yws_score", {"y": "2", "x": "1"}, day)
    assert a != default_token("yws_score", {"x": "1", "y": "3"}, day)
    assert a != default_token("yws_score", {"x": "1", "y": "2"}, day + dt.timedelta(days=1))
    assert len(a) <= 64


def test_explicit_token_and_failed_run(fake, capsys):
    fake.final = {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
                  "state_message": "Task score failed with message: model not found"}
    fake.task_output = {"error": "ModelNotFoundError: no version with alias @champion",
                        "error_trace": "Traceback ..."}
    code = main(["jobs", "run", "yws_score", "--idempotency-token", "rage-42"])
    out, _ = capsys.readouterr()
    assert code == 1
    run_now = next(r for r in fake.requests if r["path"] == "/api/2.2/jobs/run-now")
    assert run_now["body"]["idempotency_token"] == "rage-42"
    assert "TERMINATED FAILED" in out
    assert "error: ModelNotFoundError: no version with alias @champion" in out


def test_internal_error_is_a_failure(fake, capsys):
    fake.final = {"life_cycle_state": "INTERNAL_ERROR", "state_message": "cluster lost"}
    assert main(["jobs", "run", "yws_score"]) == 1
    assert "INTERNAL_ERROR" in capsys.readouterr().out


def test_throttled_trigger_is_retried_after_the_pause(fake, capsys):
    fake.throttle_run_now = 1
    assert main(["jobs", "run", "yws_score"]) == 0
    posts = [r for r in fake.requests if r["path"] == "/api/2.2/jobs/run-now"]
    assert len(posts) == 2 and posts[0]["body"] == posts[1]["body"]  # same token both times


def test_a_run_that_never_ends_is_cancelled_at_the_timeout(fake, capsys, monkeypatch):
    fake.running_polls = -1
    monkeypatch.setattr(jobs_client, "POLL_SECONDS", 0.2)
    code = main(["jobs", "run", "yws_score", "--timeout", "1"])
    assert code == 124
    assert "did not end within 1 s; it was cancelled" in capsys.readouterr().err
    cancel = [r for r in fake.requests if r["path"] == "/api/2.2/jobs/runs/cancel"]
    assert [c["body"] for c in cancel] == [{"run_id": 501}]


def test_unknown_job_and_no_wait(fake, capsys):
    assert main(["jobs", "run", "yws_nope"]) == 1
    assert "no job named 'yws_nope' (nor a development copy '[dev <user>] yws_nope')" in \
        capsys.readouterr().err
    assert main(["jobs", "run", "yws_score", "--no-wait", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["life_cycle_state"] == "RUNNING"


def _dev(job_id: int, user: str, creator: str, project: str = "yws") -> dict:
    return {"job_id": job_id, "creator_user_name": creator,
            "settings": {"name": f"[dev {user}] yws_score",
                         "tags": {"project": project, "component": "score", "dev": user}}}


def runs_started(fake: Fake) -> list[int]:
    return [r["body"]["job_id"] for r in fake.requests if r["path"] == "/api/2.2/jobs/run-now"]


def test_a_development_copy_is_found_by_its_bundle_name(fake, capsys):
    """`mode: development` deploys yws_score as "[dev <short name>] yws_score" (databricks/cli
    bundle/config/mutator/resourcemutator/apply_target_mode.go)."""
    fake.jobs = [_dev(21, "ana", "ana@corp"),
                 _dev(22, "bob", "bob@corp", project="marketing")]  # not the bundle's job
    assert main(["jobs", "run", "yws_score", "--param", "batch_id=b1"]) == 0, \
        capsys.readouterr().err
    assert runs_started(fake) == [21]
    lists = [r["query"] for r in fake.requests if r["path"] == "/api/2.2/jobs/list"]
    assert lists[0] == {"name": ["yws_score"]} and "name" not in lists[1]


def test_among_several_development_copies_the_callers_own_wins(fake, capsys):
    fake.jobs = [_dev(21, "bob", "bob@corp"), _dev(23, "ana", "ana@corp")]
    assert main(["jobs", "run", "yws_score"]) == 0, capsys.readouterr().err
    assert runs_started(fake) == [23]
    assert ("GET", "/api/2.0/preview/scim/v2/Me") in api_calls(fake)


def test_ambiguous_copies_are_an_error_that_lists_them(fake, capsys):
    fake.jobs = [_dev(21, "bob", "bob@corp"), _dev(24, "carl", "carl@corp")]
    assert main(["jobs", "run", "yws_score"]) == 1
    err = capsys.readouterr().err
    assert ("no job is named 'yws_score' and 2 development copies are: '[dev bob] yws_score' "
            "(job 21, created by bob@corp); '[dev carl] yws_score' (job 24, created by "
            "carl@corp); pass the full name of the one to run") in err
    assert runs_started(fake) == []
    # the full name is an exact match
    assert main(["jobs", "run", "[dev carl] yws_score"]) == 0
    assert runs_started(fake) == [24]


def test_the_exact_name_wins_over_development_copies(fake, capsys):
    fake.jobs = [*fake.jobs, _dev(21, "ana", "ana@corp")]
    assert main(["jobs", "run", "yws_score"]) == 0
    assert runs_started(fake) == [11]


def test_two_jobs_with_the_same_name_are_listed(fake, capsys):
    fake.jobs = [*fake.jobs, {"job_id": 12, "creator_user_name": "x@corp",
                              "settings": {"name": "yws_score"}}]
    assert main(["jobs", "run", "yws_score"]) == 1
    assert "2 jobs are named 'yws_score': 'yws_score' (job 11, created by deployer@corp); " \
           "'yws_score' (job 12, created by x@corp)" in capsys.readouterr().err


def test_a_parameter_the_job_does_not_define_is_refused_before_the_run(fake, capsys):
    """Databricks takes undefined job parameters and ignores them; the trigger refuses them so
    a runner learns that the catalog is not theirs to choose (and a typo is not lost)."""
    assert main(["jobs", "run", "yws_score", "--param", "catalog=yws_prod",
                 "--param", "as_of_date=2026-11-30"]) == 1
    assert ("job yws_score does not take the parameter(s) catalog; its parameters are "
            "as_of_date, batch_id, model_alias") in capsys.readouterr().err
    assert runs_started(fake) == []
