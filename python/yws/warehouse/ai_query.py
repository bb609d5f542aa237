"""``ai_query`` on the local warehouse: Databricks' function for a custom Model Serving endpoint.

On Databricks, ``ai_query('<endpoint>', named_struct('f1', col1, ...))`` sends each row to the
endpoint and returns the model's outputs as a STRUCT (the return type is inferred from the
served model's signature; ``returnType`` may name it), and ``failOnError => false`` turns a
failed row into ``STRUCT<result, errorMessage>`` instead of failing the query. The
same SQL runs here:

* :func:`check` refuses, before anything runs, what Databricks would refuse (an endpoint that
  is not a STRING literal, an argument that is not one of ``endpoint``, ``request``,
  ``returnType``, ``failOnError``, model parameters sent to a custom model endpoint);
* :func:`rewrite` turns each call into ``yws_ai_query(endpoint, request)`` (or
  ``yws_ai_query_or_error``), cast to ``returnType`` when one is given: a rewrite of syntax
  only, so :func:`yws.warehouse.dialect.to_duckdb` needs to know no endpoint;
* :func:`register` defines, on every DuckDB connection of the local warehouse, those two
  functions: a macro that takes the request's fields by name (in any order, extra fields
  ignored, each cast to the feature's type; a missing one is DuckDB's binder error) and a
  vectorised Arrow UDF that hands whole vectors of rows (DuckDB's 2,048) to a
  :data:`Scorer`, as flat arguments (DuckDB hands a STRUCT to Python half as fast).

The scorer is passed in from above (the warehouse is on floor 3 and never imports a model):
``yws.scoring.ai_query.Endpoints`` scores with the batch job's evaluator and quarantine
rules. Without one, a call fails with a message that says so; views and SQL functions that
call ``ai_query`` still apply, and read when the call is not reached.

Error classes: ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_ENDPOINT_TYPE`` is
Databricks' documented one; ``RESOURCE_DOES_NOT_EXIST`` is Model Serving's REST error code for
an unknown endpoint; ``AI_FUNCTION_HTTP_REQUEST_ERROR`` (no model to serve) and
``INVALID_PARAMETER_VALUE.AI_QUERY`` (a malformed call) are the closest we know, not checked
against a workspace; ``AI_FUNCTION_UNAVAILABLE`` is ours.

The result is what the served model returns per row, as its signature declares
(``yws.model.flavor``): ``probability``, ``prediction``, ``band`` and ``error``. A row the
model refuses (the batch job would quarantine it) is answered, not failed: ``error`` says why
and the other fields are NULL, never a silent probability. ``failOnError => false`` wraps the
result in ``STRUCT<result, errorMessage>``; ``errorMessage`` is for a failed call of the
endpoint, which here fails the query in both forms (an unknown endpoint, no model to serve).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from yws.warehouse.errors import SqlError

Scorer = Callable[[str, pa.Table], pa.Table]
"""``scorer(endpoint, rows)``: for each row of ``rows`` (the request's fields, typed as the
request schema says) the endpoint's ``probability``, ``prediction``, ``band`` and ``error``
(null for a row that was scored); raises :class:`EndpointNotFoundError` for an endpoint it
does not serve."""

NAME = "ai_query"
CALL = "yws_ai_query"
"""The macro a call becomes: the result STRUCT."""
CALL_OR_ERROR = "yws_ai_query_or_error"
"""The macro a call with ``failOnError => false`` becomes: ``STRUCT(result, errorMessage)``."""
_UDF = "__yws_ai_query_udf"
_UDF_OR_ERROR = "__yws_ai_query_or_error_udf"
ERROR_FIELD = "error"
_ARGUMENTS = ("endpoint", "request", "returntype", "failonerror")
_FOR_FOUNDATION_MODELS = ("modelparameters", "responseformat", "files")
_DUCKDB_TYPES = {pa.float64(): "DOUBLE", pa.float32(): "FLOAT", pa.string(): "VARCHAR",
                 pa.large_string(): "VARCHAR", pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT",
                 pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
                 pa.date32(): "DATE"}


class EndpointNotFoundError(SqlError):
    """``ai_query`` names an endpoint that is not served here."""

    def __init__(self, endpoint: str, known: list[str]) -> None:
        super().__init__("RESOURCE_DOES_NOT_EXIST",
                         f"Endpoint with name '{endpoint[:100]}' does not exist; served here: "
                         f"{', '.join(known) or 'none'}.", "42704")


def _invalid(message: str) -> SqlError:
    return SqlError("INVALID_PARAMETER_VALUE.AI_QUERY", message, "22023")


# -- the call, parsed ---------------------------------------------------------------------------
def _arguments(node: Any) -> dict[str, Any]:
    """``ai_query``'s arguments by lower-case name, positional or named (``name => value``)."""
    from sqlglot import exp

    named: dict[str, Any] = {}
    position, saw_named = 0, False
    for arg in node.expressions:
        if isinstance(arg, exp.Kwarg):
            saw_named = True
            shown = str(arg.this.name)
            key, value = shown.lower(), arg.expression
        else:
            if saw_named or position >= len(_ARGUMENTS):
                raise _invalid("ai_query takes at most endpoint, request, returnType and "
                               "failOnError; positional arguments come before named ones")
            key, value = _ARGUMENTS[position], arg
            shown = key
            position += 1
        if key in _FOR_FOUNDATION_MODELS:
            raise SqlError("AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_ENDPOINT_TYPE",
                           f"AI_QUERY function does not support the {shown} argument for "
                           "custom model endpoint.", "22023")
        if key not in _ARGUMENTS:
            raise _invalid(f"ai_query has no argument {key!r}: it takes endpoint, request, "
                           "returnType and failOnError")
        if key in named:
            raise _invalid(f"ai_query's argument {key!r} is given twice")
        named[key] = value
    return named


def _parts(node: Any) -> tuple[str, Any, Any, bool]:
    """(endpoint, request, return type or None, failOnError) of a checked call."""
    from sqlglot import exp

    args = _arguments(node)
    endpoint = args.get("endpoint")
    if not (isinstance(endpoint, exp.Literal) and endpoint.is_string):
        raise _invalid("ai_query's endpoint must be a STRING literal, the name of a Model "
                       "Serving endpoint")
    if "request" not in args:
        raise _invalid("ai_query needs a request: named_struct('<feature>', <value>, ...) with "
                       "the features the endpoint's model reads")
    return_type = None
    if "returntype" in args:
        given = args["returntype"]
        if not (isinstance(given, exp.Literal) and given.is_string):
            raise _invalid("returnType must be a STRING literal naming a type, e.g. "
                           "'STRUCT<probability: DOUBLE, prediction: INT, band: STRING>'")
        try:
            return_type = exp.DataType.build(str(given.this), dialect="databricks")
        except Exception:
            raise _invalid(f"returnType {str(given.this)[:100]!r} is not a type") from None
    fail = True
    if "failonerror" in args:
        flag = args["failonerror"]
        if not isinstance(flag, exp.Boolean):
            raise _invalid("failOnError must be a BOOLEAN literal (true or false)")
        fail = bool(flag.this)
    return str(endpoint.this), args["request"], return_type, fail


def _calls(tree: Any) -> list[Any]:
    from sqlglot import exp

    return [n for n in tree.find_all(exp.Anonymous) if str(n.name).lower() == NAME]


def check(tree: Any) -> None:
    """Raise :class:`SqlError` for an ``ai_query`` call Databricks would refuse."""
    for node in _calls(tree):
        _parts(node)


def endpoints(tree: Any) -> list[str]:
    """The endpoint every ``ai_query`` call in ``tree`` names, each once (a call
    Databricks would refuse raises as in :func:`check`): what a caller must be allowed to query
    (``CAN QUERY``) before the statement runs."""
    return list(dict.fromkeys(_parts(node)[0] for node in _calls(tree)))


def rewrite(tree: Any) -> Any:
    """``tree`` (a copy) with every ``ai_query`` call as the local warehouse's function."""
    from sqlglot import exp

    if not _calls(tree):
        return tree

    def swap(node: Any) -> Any:
        if not (isinstance(node, exp.Anonymous) and str(node.name).lower() == NAME):
            return node
        endpoint, request, return_type, fail = _parts(node)
        call: Any = exp.Anonymous(this=CALL if fail else CALL_OR_ERROR,
                                  expressions=[exp.Literal.string(endpoint), request])
        if return_type is not None:
            if not fail:
                return_type = exp.DataType.build(
                    f"STRUCT<result: {return_type.sql('databricks')}, errorMessage: STRING>",
                    dialect="databricks")
            call = exp.Cast(this=call, to=return_type)
        return call

    return tree.copy().transform(swap)


# -- the functions on a DuckDB connection -------------------------------------------------------
def _duckdb_type(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {_duckdb_type(f.type)}' for f in t) + ")"
    if t not in _DUCKDB_TYPES:
        raise TypeError(f"no DuckDB type for {t} in ai_query's request or result")
    return _DUCKDB_TYPES[t]


def _combine(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _scored(scorer: Scorer | None, endpoints: pa.Array, columns: tuple[Any, ...],
            request: pa.Schema) -> pa.Table:
    """The scorer's answer for every row of a vector, in order."""
    if scorer is None:
        raise SqlError(
            "AI_FUNCTION_UNAVAILABLE",
            "ai_query cannot reach a Model Serving endpoint from this process: the local "
            "warehouse answers ai_query only where a scorer is passed in (yws serve's SQL API, "
            "`yws sql query`).", "0A000")
    names = pc.unique(endpoints).to_pylist()
    if len(names) != 1 or names[0] is None:  # only a direct call of the macro can do this
        raise _invalid("ai_query's endpoint must be a STRING literal, the name of a Model "
                       "Serving endpoint")
    rows = pa.Table.from_arrays([_combine(c) for c in columns], schema=request)
    answer = scorer(str(names[0]), rows)
    if answer.num_rows != rows.num_rows:  # pragma: no cover - a scorer's bug, not a user's
        raise RuntimeError(f"the ai_query scorer answered {answer.num_rows} rows for "
                           f"{rows.num_rows}")
    return answer


def _result(answer: pa.Table, result: pa.StructType) -> pa.StructArray:
    """The result STRUCT per row: the model's outputs, ``error`` set and the rest NULL for a
    row it refuses (the served model answers such a row; it does not fail the request)."""
    fields = [_combine(answer[f.name]).cast(f.type) for f in result]
    return pa.StructArray.from_arrays(fields, fields=list(result))


def register(con: Any, request: pa.Schema, result: pa.StructType,
             scorer: Callable[[], Scorer | None]) -> None:
    """Define ``yws_ai_query`` and ``yws_ai_query_or_error`` on a DuckDB connection.

    ``request``: the endpoint's input features and their types; ``result``: the STRUCT a
    scored row returns; ``scorer``: returns the scorer to call (or None) when a query runs.
    """
    import duckdb

    in_duck = [duckdb.sqltype("VARCHAR")] + [duckdb.sqltype(_duckdb_type(f.type))
                                             for f in request]
    out_duck = duckdb.sqltype(_duckdb_type(result))
    or_error = pa.struct([pa.field("result", result), pa.field("errorMessage", pa.string())])

    def fail_on_error(endpoints: Any, *columns: Any) -> pa.Array:
        return _result(_scored(scorer(), _combine(endpoints), columns, request), result)

    def or_error_message(endpoints: Any, *columns: Any) -> pa.Array:
        values = fail_on_error(endpoints, *columns)
        return pa.StructArray.from_arrays([values, pa.nulls(len(values), pa.string())],
                                          fields=list(or_error))

    # DuckDB checks a UDF's arity against its Python signature: one parameter per feature.
    signature = inspect.Signature([
        inspect.Parameter(p, inspect.Parameter.POSITIONAL_ONLY)
        for p in ["endpoints", *(f"f{i}" for i in range(len(request)))]])
    for name, fn, out in ((_UDF, fail_on_error, out_duck),
                          (_UDF_OR_ERROR, or_error_message,
                           duckdb.sqltype(_duckdb_type(or_error)))):
        fn.__signature__ = signature  # type: ignore[attr-defined]
        con.create_function(name, fn, in_duck, out, type="arrow",
                            null_handling="special", exception_handling="default")
    # Flat arguments, not one STRUCT: DuckDB hands a STRUCT to Python twice as slowly.
    fields = ", ".join(f'CAST(request."{f.name}" AS {_duckdb_type(f.type)})' for f in request)
    for macro, udf in ((CALL, _UDF), (CALL_OR_ERROR, _UDF_OR_ERROR)):
        con.execute(f"CREATE OR REPLACE MACRO {macro}(endpoint, request) AS "
                    f"{udf}(endpoint, {fields})")
