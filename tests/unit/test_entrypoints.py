"""The wheel's console scripts (what the job tasks run), on the local target.

A Databricks ``python_wheel_task`` calls the entry-point function and ignores its return value,
so a failing task must raise: these tests call the functions the way the task does and check
that every failure is a non-zero ``SystemExit`` with one ``error: …`` line on stderr.
"""

from __future__ import annotations

import json

import pytest

from yws.deploy.tasks import score_main, sql_apply_main, train_main


def test_check_only_calls_the_check_with_the_parsed_request(settings, capsys, monkeypatch):
    import datetime as dt

    from yws.scoring import job as score

    calls = []

    def check(settings_, spec, *, as_of, batch_id, alias):
        calls.append((settings_.target, as_of, batch_id, alias))
        return {"ok": True, "as_of_date": str(as_of)}

    def refuse(*args, **kwargs):
        raise AssertionError("--check-only must not score")

    monkeypatch.setattr(score, "check_score_request", check)
    monkeypatch.setattr(score, "score", refuse)
    assert score_main(["--target", "local", "--home", str(settings.home), "--check-only",
                       "true", "--as-of-date", "2026-11-30", "--batch-id", "b1",
                       "--model-alias", "challenger"]) is None
    assert calls == [("local", dt.date(2026, 11, 30), "b1", "challenger")]
    assert json.loads(capsys.readouterr().out) == {"ok": True, "as_of_date": "2026-11-30"}
    score_main(["--target", "local", "--home", str(settings.home), "--check-only", "true"])
    assert calls[-1] == ("local", None, None, "champion")


def _fails(fn, argv, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as raised:
        fn(argv)
    return raised.value.code, capsys.readouterr().err.splitlines()


def test_user_errors_raise_system_exit_with_one_line(settings, capsys):
    home = ["--target", "local", "--home", str(settings.home)]
    code, err = _fails(score_main, [*home, "--model-alias", "champion"], capsys)
    assert code == 1
    assert err == ["error: model yws_dev.ml.yws_lr has no version with alias @champion: "
                   "run `yws train` first, or name another alias with --model-alias"]
    code, err = _fails(train_main, [*home, "--as-of-date", "30/11/2026"], capsys)
    assert (code, err) == (1, ["error: --as-of-date '30/11/2026' is not a date; use YYYY-MM-DD"])
    code, err = _fails(score_main, [*home, "--check-only", "true", "--as-of-date", "tomorrow"],
                       capsys)
    assert (code, err) == (1, ["error: --as-of-date 'tomorrow' is not a date; use YYYY-MM-DD"])
    code, err = _fails(sql_apply_main, [*home, "--catalog", "prod-main"], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("error: catalog 'prod-main'")


def test_malformed_parameters_exit_2_with_one_line(settings, capsys):
    code, err = _fails(train_main, ["--target", "local", "--force-promote", "yes"], capsys)
    assert code == 2 and len(err) == 1  # the choices are quoted differently across Pythons
    assert err[0].startswith("error: yws-train: argument --force-promote: invalid choice: 'yes'")
    code, err = _fails(score_main, ["--check-only", "maybe"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: yws-score: argument")
    code, err = _fails(score_main, ["--no-such-flag", "1"], capsys)
    assert code == 2 and err == ["error: yws-score: unrecognized arguments: --no-such-flag 1"]


def test_an_unexpected_failure_keeps_its_traceback(settings, monkeypatch, capsys):
    from yws.scoring import job as score

    def boom(*args, **kwargs):
        raise RuntimeError("the platform fell over")

    monkeypatch.setattr(score, "check_score_request", boom)
    with pytest.raises(RuntimeError, match="the platform fell over"):
        score_main(["--target", "local", "--home", str(settings.home), "--check-only", "true"])
    assert capsys.readouterr().err == ""


