"""Databricks SQL semantics on DuckDB: typed parameters, ANSI errors, result names and types.

A query arrives in the Databricks dialect and runs on DuckDB (transpiled by sqlglot). Where the
two engines answer differently and the difference would reach a user silently, the query is
rewritten here so DuckDB answers as Databricks does, or fails with Databricks' error:

* a typed parameter (``{"name": "n", "value": "1", "type": "INT"}``) is parsed here into a value
  of its type and bound as ``CAST($n AS <type>)``: bound by the engine, never spliced into the
  text; a value that is not of its type fails with ``CAST_INVALID_INPUT`` as a Databricks cast
  does. A STRING parameter (the default) binds uncast, so DuckDB types it from its context as
  Databricks coerces a string;
* ``/``, ``div`` and ``%`` by zero fail with ``DIVIDE_BY_ZERO`` (Databricks SQL runs with ANSI
  mode on; DuckDB answers ``inf`` or NULL);
* ``ai_query('<endpoint>', named_struct(...))`` calls the local warehouse's own function,
  answered by the scorer passed to it (:mod:`yws.warehouse.ai_query`);
* ``current_user()`` (and ``user()``, ``session_user()``) is the caller's principal,
  not DuckDB's ``duckdb``;
* a column without an alias is named as Spark names it (``count(1)`` for ``count(*)``,
  ``(a + b)``, ``upper(x)``), not as DuckDB does (``count_star()``);
* DuckDB's errors become Databricks error classes (:func:`sql_error`).

What stays different is listed on docs/api-conformance.md.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yws.warehouse.base import QueryError, SqlError

# Databricks parameter types (the names ``CAST`` takes) -> the DuckDB type they bind as.
_INTS = {"TINYINT": (8, "TINYINT"), "BYTE": (8, "TINYINT"), "SMALLINT": (16, "SMALLINT"),
         "SHORT": (16, "SMALLINT"), "INT": (32, "INTEGER"), "INTEGER": (32, "INTEGER"),
         "BIGINT": (64, "BIGINT"), "LONG": (64, "BIGINT")}
# STRING and VOID bind without a cast: the engine types them from where they stand, as
# Databricks coerces a STRING parameter (``0.5 > :p``, ``1 + :p``) under its ANSI rules.
_SIMPLE = {"STRING": "", "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "REAL": "FLOAT",
           "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "TIMESTAMPTZ",
           "TIMESTAMP_LTZ": "TIMESTAMPTZ", "TIMESTAMP_NTZ": "TIMESTAMP", "BINARY": "BLOB",
           "VOID": ""}
# ASCII digits only, and few of them: ``int()`` of a 5000-digit precision would raise, and
# ``\d`` would take other scripts' digits (``DECIMAL(١٠)``) as Databricks does not.
_DECIMAL = re.compile(r"(?:DECIMAL|DEC|NUMERIC)\s*"
                      r"(?:\(\s*([0-9]{1,9})\s*(?:,\s*([0-9]{1,9})\s*)?\))?")
_TRUE, _FALSE = {"t", "true", "y", "yes", "1"}, {"f", "false", "n", "no", "0"}


class ParameterTypeError(QueryError):
    """A parameter's ``type`` is not one a parameter can have (a request error: HTTP 400)."""


@dataclass(frozen=True)
class Typed:
    """A parameter value parsed into its declared Databricks type."""

    value: Any  # the Python value DuckDB binds (None for NULL)
    type_text: str  # the Databricks type, e.g. DECIMAL(10,2)
    duckdb: str  # the DuckDB type it is cast to, e.g. DECIMAL(10,2); "" binds it uncast


def _cast_error(value: str, type_text: str) -> SqlError:
    shown = value if len(value) <= 60 else value[:60] + "..."
    return SqlError("CAST_INVALID_INPUT",
                    f"The value '{shown}' of the type \"STRING\" cannot be cast to "
                    f"\"{type_text}\" because it is malformed. Correct the value as per the "
                    "syntax, or change its target type.", "22018")


def typed(value: str | None, type_text: str | None) -> Typed:
    """A parameter of the Statement Execution API as a typed value.

    ``type`` defaults to STRING; complex types are not parameter types (the API reference:
    "Complex types, such as ARRAY, MAP, and STRUCT are not supported"). Raises
    :class:`ParameterTypeError` for a type that is not one, :class:`SqlError`
    ``CAST_INVALID_INPUT`` for a value that does not parse as its type.
    """
    name = re.sub(r"\s+", " ", (type_text or "STRING").strip().upper())
    # echoed in the error at most this long: the body may hold a type of megabytes
    shown = repr(type_text) if len(repr(type_text)) <= 100 else repr(type_text)[:100] + "..."
    m = _DECIMAL.fullmatch(name)
    if m:
        precision, scale = int(m.group(1) or 10), int(m.group(2) or 0)
        if not 1 <= precision <= 38 or scale > precision:
            raise ParameterTypeError(f"parameter type {shown}: DECIMAL precision must be "
                                     "1 to 38 and the scale at most the precision")
        canonical = f"DECIMAL({precision},{scale})"
        return Typed(None if value is None else _decimal(value, precision, scale, canonical),
                     canonical, canonical)
    if name in _INTS:
        bits, duck = _INTS[name]
        return Typed(None if value is None else _integer(value, bits, name), name, duck)
    if name not in _SIMPLE:
        raise ParameterTypeError(
            f"parameter type {shown} is not supported: use STRING, INT, BIGINT, SMALLINT, "
            "TINYINT, DOUBLE, FLOAT, DECIMAL(p,s), BOOLEAN, DATE, TIMESTAMP, TIMESTAMP_NTZ or "
            "BINARY (complex types such as ARRAY, MAP and STRUCT are not parameter types)")
    duck = _SIMPLE[name]
    if value is None or name == "VOID":
        return Typed(None, name, duck)
    return Typed(_parse(value, name), name, duck)


def _integer(value: str, bits: int, name: str) -> int:
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,40}", text):
        raise _cast_error(value, name)
    number = int(text)
    if not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
        raise _cast_error(value, name)
    return number


def _decimal(value: str, precision: int, scale: int, name: str) -> decimal.Decimal:
    try:
        number = decimal.Decimal(value.strip())
    except decimal.InvalidOperation:
        raise _cast_error(value, name) from None
    if not number.is_finite():
        raise _cast_error(value, name)
    out_of_range = SqlError("NUMERIC_VALUE_OUT_OF_RANGE",
                            f"The value {value.strip()[:60]} cannot be represented as {name}.",
                            "22003")
    # More integer digits than the type holds is out of range whatever the rounding; checked
    # first, so that quantize never needs more digits than the type's (1e999999999 would make
    # it raise InvalidOperation, and so would any 29 digits under the default context)
    if number != 0 and number.adjusted() >= precision - scale:
        raise out_of_range
    rounded = number.quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_UP,
                              context=decimal.Context(prec=precision + 2))
    if len(rounded.as_tuple().digits) > precision and rounded != 0:
        raise out_of_range  # 9.995 as DECIMAL(3,2): rounding carried into a new digit
    return rounded


def _parse(value: str, name: str) -> Any:
    text = value.strip()
    try:
        if name in ("DOUBLE", "FLOAT", "REAL"):
            if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|"
                                r"\.[0-9]+([eE][+-]?[0-9]+)?|"
                                r"[Ii]nf(inity)?|NaN)", text):
                raise ValueError(text)
            return float(text)
        if name == "BOOLEAN":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if name == "DATE":
            return dt.date.fromisoformat(text)
        if name.startswith("TIMESTAMP"):
            when = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
            if name == "TIMESTAMP_NTZ":
                return when.replace(tzinfo=None)
            # the session time zone of Databricks SQL is UTC unless set otherwise
            return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        if name == "BINARY":
            return value.encode()
    except ValueError:
        raise _cast_error(value, name) from None
    return value


# -- the query, rewritten for DuckDB ----------------------------------------------------------
def _spark_name(node: Any) -> str:
    """The name Spark gives an expression without an alias (``count(1)``, ``(a + b)``)."""
    from sqlglot import exp

    if isinstance(node, exp.Count) and isinstance(node.this, exp.Star):
        return "count(1)"
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    if isinstance(node, exp.Column):
        return str(node.name)

    def plain(n: Any) -> Any:
        if isinstance(n, exp.Count) and isinstance(n.this, exp.Star):
            return exp.Anonymous(this="count", expressions=[exp.Literal.number(1)])
        if isinstance(n, exp.Column):
            return exp.column(n.name)
        if isinstance(n, exp.Literal) and n.is_string:
            return exp.to_identifier(str(n.this))
        if isinstance(n, exp.Binary) and not isinstance(n.parent, exp.Paren):
            return exp.Paren(this=n)
        return n

    return str(node.copy().transform(plain).sql("databricks", normalize_functions="lower"))


def _name_outputs(tree: Any) -> None:
    from sqlglot import exp

    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this  # a set operation's columns are named by its first query
    if isinstance(select, exp.Subquery):
        select = select.unnest()
    if not isinstance(select, exp.Select):
        return
    select.set("expressions", [
        e if isinstance(e, exp.Alias | exp.Column | exp.Star) or
        (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
        else exp.alias_(e, _spark_name(e), quoted=True)
        for e in select.expressions])


_DIVIDE_BY_ZERO = ("[DIVIDE_BY_ZERO] Division by zero. Use `try_divide` to tolerate divisor being "
                   "0 and return NULL instead. SQLSTATE: 22012")


def _guard_divisions(tree: Any) -> None:
    """Every ``/``, ``div`` and ``%`` of ``tree`` fails on a zero divisor, in place.

    ``a / d`` becomes ``a / (CASE WHEN d0 = 0 THEN error(...) ELSE d END)``, where ``d0`` is the
    divisor as written (its own divisions unguarded) and ``d`` the guarded one. Testing the
    guarded divisor instead would copy it twice at every level, so ``1/(1/(1/...))`` would grow
    as 2^depth (a 100-byte statement kept a core busy for minutes); with the divisor as
    written the growth is quadratic at worst. The answer is the same: where ``d0`` differs
    from ``d``, an inner division is by zero, and evaluating ``d`` raises that error.
    try_divide is a SafeDivide, not a Div: NULL stays NULL.
    """
    from sqlglot import exp

    divisions = list(tree.find_all(exp.Div, exp.IntDiv, exp.Mod))
    written = [node.expression.copy() for node in divisions]  # before any is guarded
    for node, divisor in zip(divisions, written, strict=True):
        raise_ = exp.Anonymous(this="error", expressions=[exp.Literal.string(_DIVIDE_BY_ZERO)])
        guarded = exp.Case(ifs=[exp.If(this=exp.EQ(this=divisor,
                                                  expression=exp.Literal.number(0)),
                                       true=raise_)], default=node.expression)
        node.set("expression", exp.Paren(this=guarded))


def to_duckdb(tree: Any, params: Mapping[str, Any], *, user: str | None = None
              ) -> tuple[str, dict[str, Any]]:
    """A checked Databricks query as DuckDB SQL and the values to bind to it.

    ``params`` maps names to plain Python values (bound as they are) or :class:`Typed` values
    (bound as ``CAST($name AS type)``). ``user`` is what ``current_user()`` returns.
    """
    from sqlglot import exp

    from yws.warehouse import ai_query

    tree = ai_query.rewrite(tree.copy())
    _name_outputs(tree)
    values = {k: (v.value if isinstance(v, Typed) else v) for k, v in params.items()}

    def rewrite(node: Any) -> Any:
        typed_param = params.get(node.name) if isinstance(node, exp.Placeholder) else None
        if isinstance(typed_param, Typed) and typed_param.duckdb:
            return exp.Cast(this=node.copy(),
                            to=exp.DataType.build(params[node.name].duckdb, dialect="duckdb"))
        if user is not None and (
                isinstance(node, exp.CurrentUser | exp.SessionUser)
                or (isinstance(node, exp.Anonymous) and str(node.name).lower() == "user"
                    and not node.expressions)):
            # user() is an alias of current_user(), session_user() the user connected: all
            # three the caller here, never DuckDB's own user name
            values["__yws_current_user"] = user
            return exp.Placeholder(this="__yws_current_user")
        return node

    tree = tree.transform(rewrite)
    _guard_divisions(tree)
    return tree.sql("duckdb"), values


# -- errors ----------------------------------------------------------------------------------
_BRACKETED = re.compile(r"\[([A-Z_]+(?:\.[A-Z_]+)?)\] (.*?) SQLSTATE: ([0-9A-Z]{5})", re.S)


def sql_error(error: Exception) -> SqlError:
    """A DuckDB error (or a query check's) as the Databricks error class it corresponds to."""
    if isinstance(error, SqlError):
        return error
    text = str(error).strip()
    m = _BRACKETED.search(text)
    if m:  # raised by a guard in the rewritten query, already in Databricks' words
        return SqlError(m.group(1), m.group(2), m.group(3))
    first = text.splitlines()[0] if text else type(error).__name__
    kind = type(error).__name__
    if isinstance(error, QueryError):
        if "does not parse" in text or "one statement at a time" in text:
            return SqlError("PARSE_SYNTAX_ERROR", first, "42601")
        if "not bound" in text or "positional" in text or "unknown parameter" in text:
            return SqlError("UNBOUND_SQL_PARAMETER", first, "42P02")
        return SqlError("INVALID_QUERY", first, "42000")
    if kind == "ParserException":
        return SqlError("PARSE_SYNTAX_ERROR", first, "42601")
    if kind == "CatalogException" and "Table with name" in first:
        return SqlError("TABLE_OR_VIEW_NOT_FOUND", first, "42P01")
    if kind == "CatalogException" and "Function with name" in first:
        return SqlError("UNRESOLVED_ROUTINE", first, "42883")
    if kind == "BinderException" and "column" in first.lower() and "not found" in first:
        return SqlError("UNRESOLVED_COLUMN.WITH_SUGGESTION", first, "42703")
    if kind == "BinderException":
        return SqlError("DATATYPE_MISMATCH", first, "42K09")
    if kind == "ConversionException":
        return SqlError("CAST_INVALID_INPUT", first, "22018")
    if kind == "PermissionException":
        return SqlError("INSUFFICIENT_PERMISSIONS", first, "42501")
    if kind == "OutOfRangeException":
        return SqlError("ARITHMETIC_OVERFLOW", first, "22003")
    return SqlError("INTERNAL_ERROR", first, "XX000")
