"""yws.warehouse.dialect: the DuckDB SQL a Databricks query becomes, and typed parameters
(a unit test: no server, no Spark)."""

from __future__ import annotations

import datetime as dt
import decimal

import duckdb
import pytest

from yws.warehouse import QueryError, check_query
from yws.warehouse.base import SqlError
from yws.warehouse.dialect import ParameterTypeError, Typed, sql_error, to_duckdb, typed

GUARD = ("ERROR('[DIVIDE_BY_ZERO] Division by zero. Use `try_divide` to tolerate divisor being "
         "0 and return NULL instead. SQLSTATE: 22012')")


def duck(sql: str, params: dict | None = None, user: str | None = None) -> str:
    params = params or {}
    return to_duckdb(check_query(sql, params), params, user=user)[0]


def test_the_duckdb_sql_of_a_query():
    assert duck("SELECT count(*), max(band), 1 + 1, band AS b FROM t") == (
        'SELECT COUNT(*) AS "count(1)", MAX(band) AS "max(band)", 1 + 1 AS "(1 + 1)", '
        "band AS b FROM t")
    assert duck("SELECT a / b AS r FROM t") == (
        f"SELECT a / (CASE WHEN b = 0 THEN {GUARD} ELSE b END) AS r FROM t")
    assert duck("SELECT try_divide(a, b) AS r FROM t") == (
        "SELECT CASE WHEN b <> 0 THEN a / b ELSE NULL END AS r FROM t")
    assert duck("SELECT :n + 1 AS n, :s AS s", {"n": typed("1", "INT"), "s": typed("x", None)}
                ) == "SELECT CAST($n AS INT) + 1 AS n, $s AS s"
    assert to_duckdb(check_query("SELECT current_user() AS u", {}), {}, user="ana") == (
        "SELECT $__yws_current_user AS u", {"__yws_current_user": "ana"})
    # a set operation is named by its first query; SELECT * is left alone
    assert duck("SELECT 1 UNION ALL SELECT 2") == 'SELECT 1 AS "1" UNION ALL SELECT 2'
    assert duck("SELECT * FROM t") == "SELECT * FROM t"


@pytest.mark.parametrize(("value", "type_text", "want"), [
    ("42", "INT", Typed(42, "INT", "INTEGER")),
    (" -7 ", "tinyint", Typed(-7, "TINYINT", "TINYINT")),
    ("9007199254740993", "BIGINT", Typed(9007199254740993, "BIGINT", "BIGINT")),
    ("1.235", "DECIMAL(10, 2)", Typed(decimal.Decimal("1.24"), "DECIMAL(10,2)",
                                      "DECIMAL(10,2)")),
    ("12", "DECIMAL", Typed(decimal.Decimal("12"), "DECIMAL(10,0)", "DECIMAL(10,0)")),
    ("1e-3", "DOUBLE", Typed(0.001, "DOUBLE", "DOUBLE")),
    ("True", "BOOLEAN", Typed(True, "BOOLEAN", "BOOLEAN")),
    ("no", "BOOLEAN", Typed(False, "BOOLEAN", "BOOLEAN")),
    ("2026-02-28", "DATE", Typed(dt.date(2026, 2, 28), "DATE", "DATE")),
    ("2026-11-30 06:30:00", "TIMESTAMP",
     Typed(dt.datetime(2026, 11, 30, 6, 30, tzinfo=dt.UTC), "TIMESTAMP", "TIMESTAMPTZ")),
    ("2026-11-30T06:30:00+01:00", "TIMESTAMP_NTZ",
     Typed(dt.datetime(2026, 11, 30, 6, 30), "TIMESTAMP_NTZ", "TIMESTAMP")),
    ("ab", "BINARY", Typed(b"ab", "BINARY", "BLOB")),
    ("x'; DROP TABLE t; --", None, Typed("x'; DROP TABLE t; --", "STRING", "")),
    (None, "DATE", Typed(None, "DATE", "DATE")),
    (None, "VOID", Typed(None, "VOID", "")),
])
def test_typed_parameters(value, type_text, want):
    assert typed(value, type_text) == want


@pytest.mark.parametrize(("value", "type_text", "error_class"), [
    ("forty-two", "INT", "CAST_INVALID_INPUT"), ("128", "TINYINT", "CAST_INVALID_INPUT"),
    ("1.5", "INT", "CAST_INVALID_INPUT"), ("maybe", "BOOLEAN", "CAST_INVALID_INPUT"),
    ("2026-02-30", "DATE", "CAST_INVALID_INPUT"), ("NaN", "DECIMAL(5,2)", "CAST_INVALID_INPUT"),
    ("12345.6", "DECIMAL(5,2)", "NUMERIC_VALUE_OUT_OF_RANGE"),
])
def test_a_value_that_is_not_of_its_type_fails_as_a_cast(value, type_text, error_class):
    with pytest.raises(SqlError) as err:
        typed(value, type_text)
    assert err.value.error_class == error_class


@pytest.mark.parametrize("type_text", ["ARRAY<INT>", "MAP<STRING, INT>", "STRUCT<a: INT>",
                                       "DECIMAL(40,2)", "DECIMAL(2,3)", "VARIANT", "x"])
def test_types_a_parameter_cannot_have(type_text):
    with pytest.raises(ParameterTypeError, match="parameter type"):
        typed("1", type_text)


def test_engine_errors_become_databricks_error_classes():
    con = duckdb.connect()
    cases = {"SELEC 1": "PARSE_SYNTAX_ERROR", "SELECT * FROM nope": "TABLE_OR_VIEW_NOT_FOUND",
             "SELECT nope": "UNRESOLVED_COLUMN.WITH_SUGGESTION", "SELECT foo(1)":
             "UNRESOLVED_ROUTINE", "SELECT 'abc'::INT": "CAST_INVALID_INPUT",
             "SELECT 2147483647::INT + 1": "ARITHMETIC_OVERFLOW"}
    for sql, error_class in cases.items():
        with pytest.raises(duckdb.Error) as err:
            con.execute(sql)
        assert sql_error(err.value).error_class == error_class, sql
    assert sql_error(QueryError("send one statement at a time (got 2)")).sql_state == "42601"
    assert sql_error(QueryError("parameter(s) :x are not bound")).error_class == (
        "UNBOUND_SQL_PARAMETER")
