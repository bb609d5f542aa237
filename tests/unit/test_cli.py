from __future__ import annotations

import json

import pytest
import yaml

from yws.cli.main import main
from yws.contract.spec import parse_spec


@pytest.fixture
def yws(tmp_path, monkeypatch, capsys):
    """Run the CLI in this process (sharing the session's Spark); returns (code, out, err)."""
    monkeypatch.setenv("YWS_HOME", str(tmp_path / "yws"))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_spec_default_round_trips(yws):
    code, out, _ = yws("spec", "default")
    assert code == 0
    assert parse_spec(yaml.safe_load(out)).entity_key == "customer_id"
    code, out, _ = yws("spec", "check")
    assert code == 0 and "12 features" in out


def test_bad_spec_file_is_a_clear_error(yws, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entity_key: id\n")
    code, _, err = yws("spec", "check", "--spec", str(bad))
    assert code == 1
    assert f"error: {bad}: missing required field 'as_of_column'" in err


def test_tables_generate_import_list_show(yws, tmp_path):
    code, out, _ = yws("data", "generate", "--rows", "300", "--as-of", "2026-09-30")
    assert (code, out.strip()) == (0, "wrote 300 rows as of 2026-09-30 to yws_dev.ml.yws_features")
    csv = tmp_path / "snap.csv"
    code, _, _ = yws("data", "generate", "--rows", "40", "--as-of", "2026-10-31",
                     "--output", str(csv))
    assert code == 0 and csv.read_text().startswith('"customer_id","as_of_date"')
    code, out, _ = yws("tables", "import", str(csv), "extra")
    assert (code, out.strip()) == (0, f"overwrite yws_dev.ml.extra: 40 rows from {csv}")
    code, out, _ = yws("tables", "list")
    assert out.split() == ["yws_dev.ml.extra", "yws_dev.ml.yws_features"]
    code, out, _ = yws("tables", "show", "yws_features", "--limit", "2", "--json")
    shown = json.loads(out)
    assert shown["rows"] == 300 and len(shown["head"]) == 2
    assert ["has_autopay", "bool"] in shown["columns"]


def test_errors_exit_non_zero_with_a_message(yws):
    code, _, err = yws("tables", "show", "nope")
    assert code == 1 and "error: table yws_dev.ml.nope does not exist" in err
    code, _, err = yws("data", "generate", "--as-of", "31/12/2026")
    assert code == 2 and "is not a date; use YYYY-MM-DD" in err
    code, _, err = yws("tables", "show", "a;b")
    assert code == 1 and "not a valid identifier" in err
    code, _, err = yws("score", "--catalog", "prod-1")
    assert code == 1 and "catalog 'prod-1' is not a valid identifier" in err
    code, _, err = yws("train", "--param", "regParam")
    assert code == 2 and "expected key=value" in err


def test_sql_apply_query_and_grants(yws):
    code, out, err = yws("sql", "apply")
    assert code == 0, err
    assert "sql/20_views/22_v_yws_warnings.sql:4" in out
    assert "yws_dev.ml.v_yws_warnings  replaced" in out
    assert "applied 46 statements to yws_dev.ml (local)" in err
    code, out, err = yws("sql", "apply")  # again: a no-op that succeeds
    assert code == 0 and "yws_dev.ml.yws_predictions  exists" in out
    code, out, _ = yws("sql", "grants", "--json")
    grants = json.loads(out)
    assert {"principal": "yws_r_users", "privilege": "SELECT", "securable_type": "TABLE",
            "securable": "yws_dev.ml.v_yws_warnings"} in grants
    yws("data", "generate", "--rows", "50", "--as-of", "2026-09-30")
    code, out, _ = yws("sql", "query", "SELECT count(*) AS n FROM yws_dev.ml.yws_features "
                       "WHERE as_of_date = :d", "--param", "d=2026-09-30", "--format", "csv")
    assert (code, out) == (0, '"n"\n50\n')
    code, out, _ = yws("sql", "query", "SELECT customer_id FROM yws_dev.ml.yws_features "
                       "ORDER BY customer_id LIMIT 2", "--format", "json")
    assert json.loads(out) == [{"customer_id": "C00000001"}, {"customer_id": "C00000002"}]
    code, _, err = yws("sql", "query", "SELECT :x")
    assert code == 1 and "error: parameter(s) :x are not bound" in err
    code, out, _ = yws("sql", "render", "--catalog", "yws_prod")
    assert code == 0 and "-- sql/00_schema.sql:2\nCREATE SCHEMA IF NOT EXISTS yws_prod.ml" in out


def test_tokens_list_and_revoke(yws, tmp_path):
    from yws.server.store import Store

    code, out, err = yws("tokens", "create", "--principal", "ana", "--group", "yws_r_users",
                         "--comment", "laptop")
    assert code == 0, err
    token = out.strip()
    code, out, _ = yws("tokens", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["principal"] == "ana" and listed["groups"] == ["yws_r_users"]
    assert listed["comment"] == "laptop" and listed["id"] in err  # create names the id
    assert token not in out and token[4:] not in out  # the secret is never shown again
    store = Store(tmp_path / "yws" / "server.db")
    assert store.principal(token) is not None
    code, out, err = yws("tokens", "revoke", listed["id"])
    assert code == 0, err
    assert out.strip() == f"revoked token {listed['id']} of ana"
    assert store.principal(token) is None
    code, _, err = yws("tokens", "revoke", listed["id"])
    assert code != 0 and f"no token has the id {listed['id']}" in err
    code, _, err = yws("tokens", "revoke", "x'; --")
    assert code != 0 and "is not one" in err


def _commands(group, path=("yws",)):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_choices_are_read_from_their_owners():
    """--target lists yws.config.TARGETS and --engine the scoring engines, not copies."""
    from yws.cli.main import cli
    from yws.config import TARGETS
    from yws.scoring.engines import CHOICES

    found = {}
    for where, command in _commands(cli):
        for param in command.params:
            if param.name in ("target", "engine"):
                found.setdefault(param.name, {})[where] = tuple(param.type.choices)
    assert len(found["target"]) > 10 and set(found["target"].values()) == {TARGETS}
    assert found["engine"] == {"yws score": CHOICES}


