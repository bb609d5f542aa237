"""The command line against hostile input: broken CSV files, imports that would replace the
governed features table, malformed specs and bad dates.

Each refusal is one ``error: …`` line (no traceback), exits non-zero, changes no table and,
where the input can be checked without data, starts no Spark session.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from tests.support import DAY, FEATURES, one_error, seed_features, spec_with

from yws.cli.main import main
from yws.config import Settings
from yws.datasets.synthetic import generate
from yws.storage.local import LocalStorage


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "yws"
    monkeypatch.setenv("YWS_HOME", str(path))
    return path


@pytest.fixture
def storage(home: Path) -> LocalStorage:
    return LocalStorage(Settings(home=home))


NEXT = dt.date(2026, 10, 31)


@pytest.fixture
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command would start Spark."""
    def refuse(settings: Settings) -> None:
        raise AssertionError("the command started Spark before checking its input")

    monkeypatch.setattr("yws.cli.train._spark", refuse)


@pytest.fixture
def yws(home: Path, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in this process; returns (code, out, err)."""
    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def snapshot_csv(path: Path, day: dt.date = NEXT, rows: int = 40, **changes: object) -> Path:
    """A snapshot of the default spec as CSV; ``changes`` replace (None: drop) columns."""
    table = generate(rows, day)
    for name, value in changes.items():
        if name in table.schema.names:
            table = table.drop([name])
        if value is not None:
            table = table.append_column(name, pa.array(value))  # type: ignore[arg-type]
    pacsv.write_csv(table, path)
    return path


# -- broken files ------------------------------------------------------------------------------
BROKEN = {
    "semicolons": (b"a;b;c\n1;2;3\n", "separated by semicolons"),
    "tabs": (b"a\tb\tc\n1\t2\t3\n", "separated by tabs"),
    "header only": (b"customer_id,as_of_date,region\n", "no rows"),
    "empty file": (b"", "Empty CSV file"),
    "latin-1 value": ("name,v\ncaf\u00e9,1\n".encode("latin-1"), "not UTF-8"),
    "latin-1 header": ("caf\u00e9,v\nx,1\n".encode("latin-1"), "header is not UTF-8"),
    "NUL in a value": (b"a,b\nx\x00y,1\n", "column 'a' holds NUL bytes"),
    "NUL in the header": (b"a\x00,b\nx,1\n", "control character"),
    "empty column name": (b"a,,c\n1,2,3\n", "column(s) 2 have no name"),
    "blank column name": (b"a, ,c\n1,2,3\n", "column(s) 2 have no name"),
    "duplicate name": (b"a,a\n1,2\n", "column 'a' appears twice"),
    "duplicate name, other case": (b"a,A\n1,2\n", "column 'A' appears twice (as 'a')"),
    "null-typed column": (b"a,b\n,1\n,2\n", "column 'a' is empty in every row"),
    "ragged row": (b"a,b\n1,2\n3\n", "Expected 2 columns, got 1"),
}


@pytest.mark.parametrize("table", ["yws_features", "other"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_files_are_refused_and_change_nothing(yws, storage, tmp_path, case, table):
    content, why = BROKEN[case]
    seed_features(storage)
    code, _, _ = yws("tables", "import", str(snapshot_csv(tmp_path / "ok.csv")), "other")
    assert code == 0
    name = f"yws_dev.ml.{table}"
    before = storage.version(name)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    code, out, err = yws("tables", "import", str(bad), table)
    line = one_error(err)
    assert code == 1 and out == ""
    assert str(bad) in line and why in line
    assert storage.version(name) == before


def test_broken_file_into_a_new_table_creates_nothing(yws, storage, tmp_path):
    bad = tmp_path / "semi.csv"
    bad.write_bytes(b"a;b\n1;2\n")
    code, _, err = yws("tables", "import", str(bad), "fresh")
    assert code == 1 and "semicolons" in one_error(err)
    assert not storage.exists("yws_dev.ml.fresh")


# -- the features table follows the spec -----------------------------------------------------
SPEC_REFUSALS = {
    "extra column": ({"notes": ["x"] * 40}, "column(s) notes are not in the spec"),
    "missing column": ({"region": None}, "missing column(s) the spec"),
    "value that does not convert": ({"tenure_months": ["abc"] * 40},
                                    "column 'tenure_months' (string) does not convert to double"),
    "label that is not 0/1": ({"defaulted_90d": [0.5] * 40},
                              "column 'defaulted_90d' (double) does not convert to int32"),
    "boolean that is a word": ({"has_autopay": ["maybe"] * 40},
                               "column 'has_autopay' (string) does not convert to bool"),
    "empty key": ({"customer_id": [None] * 39 + ["c1"]},
                  "column 'customer_id' is empty in 39 row(s)"),
    "two dates": ({"as_of_date": [NEXT] * 39 + [DAY]},
                  "holds 2 as_of_date values (2026-09-30, 2026-10-31)"),
}


@pytest.mark.parametrize("case", list(SPEC_REFUSALS))
def test_features_import_must_follow_the_spec(yws, storage, tmp_path, case):
    changes, why = SPEC_REFUSALS[case]
    before = seed_features(storage)
    csv = snapshot_csv(tmp_path / "snap.csv", **changes)
    code, _, err = yws("tables", "import", str(csv), "yws_features")
    line = one_error(err)
    assert code == 1 and why in line and str(csv) in line
    assert storage.version(FEATURES) == before


@pytest.mark.parametrize("table", ["yws_features", "YWS_DEV.ML.YWS_FEATURES"])
def test_any_spelling_of_the_features_table_is_governed(yws, storage, tmp_path, table):
    before = seed_features(storage)
    bad = tmp_path / "two.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = yws("tables", "import", str(bad), table)
    assert code == 1 and "missing column(s) the spec" in one_error(err)
    assert storage.version(FEATURES) == before


def test_features_import_replaces_one_date_by_default(yws, storage, tmp_path):
    seed_features(storage)
    csv = snapshot_csv(tmp_path / "snap.csv", day=NEXT, rows=40)
    code, out, _ = yws("tables", "import", str(csv), "yws_features")
    assert (code, out.strip()) == (0, f"snapshot {FEATURES}: 40 rows from {csv}")
    code, out, _ = yws("tables", "import", str(csv), "yws_features")  # idempotent
    assert code == 0
    rows = storage.read_arrow(FEATURES)
    assert rows.num_rows == 100 and set(rows["as_of_date"].to_pylist()) == {DAY, NEXT}
    assert storage.arrow_schema(FEATURES) == generate(1, DAY).schema


def test_features_import_casts_reorders_and_takes_an_unlabelled_snapshot(yws, storage,
                                                                         tmp_path):
    seed_features(storage)
    table = generate(30, NEXT, labeled=False)
    order = list(reversed(table.schema.names))
    csv = tmp_path / "unlabelled.csv"
    pacsv.write_csv(table.select(order), csv)  # the empty label reads as a null column
    code, _, err = yws("tables", "import", str(csv), "yws_features")
    assert code == 0, err
    assert storage.arrow_schema(FEATURES) == generate(1, DAY).schema
    assert storage.read_arrow(FEATURES, where=("as_of_date", NEXT)).num_rows == 30


def test_overwrite_of_the_features_table_is_explicit(yws, storage, tmp_path):
    seed_features(storage)
    csv = snapshot_csv(tmp_path / "two.csv", as_of_date=[NEXT] * 20 + [DAY] * 20)
    code, out, _ = yws("tables", "import", str(csv), "yws_features", "--mode", "overwrite")
    assert (code, out.strip()) == (0, f"overwrite {FEATURES}: 40 rows from {csv}")
    assert storage.read_arrow(FEATURES).num_rows == 40


def test_schema_change_of_the_features_table_needs_the_flag(yws, storage, tmp_path):
    old = generate(20, DAY)
    old = old.append_column("legacy", pa.array(["x"] * 20))
    storage.write(old, FEATURES, mode="overwrite")
    before = storage.version(FEATURES)
    csv = snapshot_csv(tmp_path / "snap.csv")
    for extra in ([], ["--mode", "append"], ["--mode", "overwrite"]):
        code, _, err = yws("tables", "import", str(csv), "yws_features", *extra)
        line = one_error(err)
        assert code == 1 and "it drops legacy" in line and "--replace-schema" in line
    assert storage.version(FEATURES) == before
    code, _, err = yws("tables", "import", str(csv), "yws_features", "--mode", "overwrite",
                       "--replace-schema")
    assert code == 0, err
    assert "legacy" not in storage.arrow_schema(FEATURES).names


def test_schema_change_of_another_table_needs_the_flag(yws, storage, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text("id,score\n1,0.5\n2,0.7\n")
    code, out, _ = yws("tables", "import", str(first), "other")
    assert (code, out.strip()) == (0, f"overwrite yws_dev.ml.other: 2 rows from {first}")
    same = tmp_path / "same.csv"
    same.write_text("id,score\n3,1\n")  # int64 where the table holds double: cast
    code, _, err = yws("tables", "import", str(same), "other", "--mode", "append")
    assert code == 0, err
    before = storage.version("yws_dev.ml.other")
    other = tmp_path / "other.csv"
    other.write_text("key,score\nk,1.5\n")
    code, _, err = yws("tables", "import", str(other), "other")
    line = one_error(err)
    assert code == 1 and "(it drops id; adds key)" in line and "--replace-schema" in line
    code, _, err = yws("tables", "import", str(other), "other", "--mode", "append")
    assert code == 1 and "--mode append keeps the schema" in one_error(err)
    code, _, err = yws("tables", "import", str(other), "other", "--mode", "snapshot")
    assert code == 1 and "is not it" in one_error(err)
    assert storage.version("yws_dev.ml.other") == before
    code, _, err = yws("tables", "import", str(other), "other", "--replace-schema")
    assert code == 0, err
    assert storage.arrow_schema("yws_dev.ml.other").names == ["key", "score"]


BAD_SPECS = {
    "bands is a number": (spec_with(bands=5), "bands: expected a mapping with yellow and red"),
    "bands is a list": (spec_with(bands=[0.1, 0.2]), "bands: expected a mapping"),
    "split is a word": (spec_with(split="half"), "split: expected a mapping with test_fraction"),
    "split has an unknown field": (spec_with(split={"fraction": 0.3}),
                                   "split: unknown field(s) fraction"),
    "validation is a list": (spec_with(validation=[1, 2]), "validation: expected a mapping"),
    "maxIter is a fraction": (spec_with(model__maxIter=1.5),
                              "model.maxIter: expected a whole number, got 1.5"),
    "maxIter is huge": (spec_with(model__maxIter=10**12),
                        "model: maxIter must be between 1 and 1,000,000"),
    "maxIter is a boolean": (spec_with(model__maxIter=True),
                             "model.maxIter: expected a whole number"),
    "maxIter is a list": (spec_with(model__maxIter=[[[1]]]),
                          "model.maxIter: expected a whole number"),
    "regParam is a mapping": (spec_with(model__regParam={"a": 1}),
                              "model.regParam: expected a number"),
    "regParam beyond a double": (spec_with(model__regParam=10**400),
                                 "model.regParam: expected a number"),
    "regParam is a boolean": (spec_with(model__regParam=True), "model.regParam: expected a number"),
    "seed beyond 64 bits": (spec_with(split__seed=2**70), "split.seed must fit in 64 bits"),
    "deep nesting": ("bands: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    "deep nesting in a value": (
        spec_with().replace("maxIter: 100", "maxIter: " + "[" * 3000 + "1" + "]" * 3000),
        "nested too deeply"),
    "not YAML": ("bands: [\n", "not valid YAML"),
    "not UTF-8": (None, "not UTF-8 text"),
}


@pytest.mark.parametrize("command", [["spec", "check"], ["train"], ["train", "--as-of",
                                                                     "2026-09-30"]])
@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_specs_are_one_line_before_spark(yws, no_spark, tmp_path, case, command):
    text, why = BAD_SPECS[case]
    path = tmp_path / "spec.yaml"
    if text is None:
        path.write_bytes(spec_with().encode() + "# caf\u00e9\n".encode("latin-1"))
    else:
        path.write_text(text)
    code, _, err = yws(*command, "--spec", str(path))
    line = one_error(err)
    assert code == 1 and why in line and str(path) in line


BAD_PARAMS = {
    "maxIter=1.5": "--param maxIter: expected a whole number, got '1.5'",
    "maxIter=many": "--param maxIter: expected a whole number, got 'many'",
    "maxIter=1000000000000": "--param: maxIter must be between 1 and 1,000,000",
    "maxIter=0": "--param: maxIter must be between 1 and 1,000,000",
    "regParam=nan": "--param regParam: must be a finite number",
    "elasticNetParam=2": "--param: elasticNetParam must be between 0.0 and 1.0",
    "nope=1": "--param nope: unknown hyperparameter",
}


@pytest.mark.parametrize("param", list(BAD_PARAMS))
def test_bad_params_are_one_line_before_spark(yws, no_spark, param):
    code, _, err = yws("train", "--param", param)
    assert code == 1 and BAD_PARAMS[param] in one_error(err)


def test_spec_and_param_agree_on_whole_numbers(yws, no_spark, tmp_path):
    from yws.contract.spec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(spec_with(model__maxIter=20.0))  # a whole float is a whole number
    assert yws("spec", "check", "--spec", str(path))[0] == 0
    spec = load_spec(path)
    assert spec.model["maxIter"] == 20 and type(spec.model["maxIter"]) is int
    assert spec.with_params({"maxIter": "2.0"}).model["maxIter"] == 2
    assert spec.with_params({"maxIter": "1e3"}).model["maxIter"] == 1000


# -- dates ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2026-02-30", "2026-13-01", "31/12/2026", "yesterday", ""])
@pytest.mark.parametrize("command", ["train", "score"])
def test_bad_dates_are_refused_before_spark(yws, no_spark, command, value):
    code, _, err = yws(command, "--as-of", value)
    assert code == 2 and "is not a date; use YYYY-MM-DD" in err
    assert "Traceback" not in err


# -- end to end, as a user runs it ----------------------------------------------------------------
def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YWS_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "yws.cli.main", *args], capture_output=True,
                          text=True, env=env, timeout=120)


