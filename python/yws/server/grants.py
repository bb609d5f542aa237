"""What a statement reads, resolved to catalog objects before it runs.

The SQL Statement Execution API lets a principal read only the objects granted to it. DuckDB
reads more than catalog objects: a quoted name that looks like a path is read as a file (a
replacement scan), table functions (``read_parquet``, ``delta_scan``, ``glob``, ``query_table``,
...) open files or other tables, and ``current_setting`` or ``duckdb_settings()`` show where
the files are. So the check is an allow-list, sound by construction:

* every relation in ``FROM``/``JOIN`` — at any depth: subqueries, set operations, lateral
  joins, ``EXISTS``/``IN``/scalar subqueries — is either a CTE name *in scope at that point*
  or a plain ``catalog.schema.table`` name whose parts are simple identifiers;
* a CTE name is in scope only inside its own ``WITH``'s query and in the later CTEs of that
  ``WITH`` (and in its own body when the ``WITH`` is ``RECURSIVE``);
* anything else in a relation position (a table function, a string, a path) is refused, and so
  are the functions that disclose the engine's settings, catalog or files.

:func:`relations` returns the three-level names to check against the grants; it raises the
Databricks ``PERMISSION_DENIED`` error for everything that can never be granted.
"""

from __future__ import annotations

import re
from typing import Any

from yws.contract.sqlfiles import Grant
from yws.server.errors import denied, invalid

# A name part that can be neither a path nor anything but an identifier: no dots, slashes,
# globs or quotes, so no DuckDB replacement scan can turn it into a file read.
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Functions that show the engine's configuration, catalog internals (view definitions hold the
# storage paths) or read files, whatever position they are written in. Table functions are
# refused anyway (only names are relations here); these are refused as scalars too.
_DENIED_FUNCTIONS = frozenset({
    "current_setting", "getvariable", "current_query", "glob", "query", "query_table",
    "get_block_size", "which_secret", "sniff_csv", "json_execute_serialized_sql",
    "get_delta_test_expression", "parse_delta_filter_logline", "checkpoint",
    "force_checkpoint", "load", "install",
})
_DENIED_PREFIXES = ("duckdb_", "pragma_", "pg_", "read_", "parquet_", "delta_", "iceberg_",
                    "sql_", "icu_", "arrow_scan", "seq_scan", "index_scan")

# DuckDB's own catalogs and views (``duckdb_views`` holds each view's SQL, with its storage
# path): never a relation or a CTE name, so no scoping mistake can reach them.
_SYSTEM_NAMES = frozenset({"system", "temp", "memory", "information_schema", "pg_catalog",
                           "sqlite_master", "sqlite_schema", "sqlite_temp_master",
                           "sqlite_temp_schema"})

NOT_GRANTABLE = ("only tables and views of the catalog that are granted to you can be read "
                 "through this endpoint: no files, paths or table functions")


def _statement_types() -> tuple[type, ...]:
    """Statements that are not reads, wherever they hide in a query (a CTE, a subquery)."""
    from sqlglot import exp

    names = ("DML", "DDL", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Command",
             "Copy", "Set", "Pragma", "Attach", "Detach", "Use", "Describe", "Alter", "LoadData",
             "Cache", "Uncache", "Refresh", "Transaction", "Commit", "Rollback", "Into", "Grant",
             "Revoke", "Show", "Analyze", "Export")
    return tuple(getattr(exp, n) for n in names if hasattr(exp, n))


def _function_name(node: Any) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return str(node.sql_name()).lower()


def _reserved(name: str) -> bool:
    name = name.lower()
    return (name in _DENIED_FUNCTIONS or name in _SYSTEM_NAMES
            or name.startswith(_DENIED_PREFIXES))


def _check_function(node: Any) -> None:
    name = _function_name(node)
    if _reserved(name):
        raise denied(f"function {name}() cannot be used through this endpoint; "
                     + NOT_GRANTABLE)


def _relation(table: Any, ctes: frozenset[str], catalog: str | None,
              schema: str | None) -> str | None:
    """The catalog object a table reference names, or None for a CTE in scope."""
    from sqlglot import exp

    parts = [table.args.get(k) for k in ("catalog", "db", "this")]
    if isinstance(parts[2], exp.Func):
        raise denied(f"table function {_function_name(parts[2])}(): {NOT_GRANTABLE}")
    if not isinstance(parts[2], exp.Identifier) or any(
            p is not None and not isinstance(p, exp.Identifier) for p in parts[:2]):
        raise denied(f"{table.sql('databricks')[:200]}: {NOT_GRANTABLE}")
    names = [str(p.this) if p is not None else None for p in parts]
    if any(n is not None and (not _PLAIN.fullmatch(n) or _reserved(n)) for n in names):
        raise denied(f"{table.sql('databricks')[:200]} is not a table or view name; "
                     + NOT_GRANTABLE)
    # Identifiers are case-insensitive in Databricks and in DuckDB, quoted or not.
    names = [n.lower() if n is not None else None for n in names]
    if names[0] is None and names[1] is None and names[2] in ctes:
        return None
    full = [names[0] or catalog, names[1] or schema, names[2]]
    if not all(full):
        raise invalid(f"{table.sql('databricks')}: name the catalog and schema, or pass "
                      "them with the statement")
    if not all(_PLAIN.fullmatch(str(p)) for p in full):
        raise invalid("catalog and schema must be plain identifiers")
    # The statement runs with the name it was checked with: the request's catalog and schema
    # complete it here, so the engine can never resolve it to anything else.
    table.set("catalog", exp.to_identifier(str(full[0]).lower()))
    table.set("db", exp.to_identifier(str(full[1]).lower()))
    return ".".join(str(p).lower() for p in full)


def _walk(node: Any, ctes: frozenset[str], catalog: str | None, schema: str | None,
          out: set[str]) -> None:
    from sqlglot import exp

    if isinstance(node, list):
        for item in node:
            _walk(item, ctes, catalog, schema, out)
        return
    if not isinstance(node, exp.Expression):
        return
    if isinstance(node, exp.Func):
        _check_function(node)
    if isinstance(node, _statement_types()):
        raise denied(f"{type(node).__name__.upper()} cannot appear in a query here; "
                     + NOT_GRANTABLE)
    if isinstance(node, exp.Table):
        name = _relation(node, ctes, catalog, schema)
        if name is not None:
            out.add(name)
    scope = ctes
    with_ = node.args.get("with_") or node.args.get("with")
    if isinstance(with_, exp.With):
        recursive = bool(with_.args.get("recursive"))
        for cte in with_.expressions:
            name = str(cte.alias_or_name)
            if not _PLAIN.fullmatch(name) or _reserved(name):
                raise denied(f"CTE name {name!r} is not allowed here; " + NOT_GRANTABLE)
            name = name.lower()
            # A CTE sees the CTEs before it; itself only under WITH RECURSIVE.
            _walk(cte.this, scope | {name} if recursive else scope, catalog, schema, out)
            scope = scope | {name}
    elif with_ is not None:
        raise denied(f"unsupported WITH clause; {NOT_GRANTABLE}")
    for key, child in node.args.items():
        if child is with_ or (isinstance(node, exp.Table) and key in ("this", "db", "catalog")):
            continue
        _walk(child, scope, catalog, schema, out)


def relations(tree: Any, catalog: str | None = None, schema: str | None = None) -> set[str]:
    """The lower-case three-level names of the catalog objects a parsed query reads.

    ``catalog`` and ``schema`` complete unqualified names (the request's defaults), in the tree
    too: every relation of ``tree`` is fully qualified afterwards. Raises the
    API's ``PERMISSION_DENIED`` error for anything that is not a catalog object or a CTE in
    scope, and ``INVALID_PARAMETER_VALUE`` for a name that lacks its catalog or schema.
    """
    out: set[str] = set()
    _walk(tree, frozenset(), catalog, schema, out)
    return out


# -- privileges on a securable, as Unity Catalog inherits them ---------------------------------
def holds(grants: list[Grant], identities: frozenset[str] | set[str], privilege: str,
          securable: str) -> bool:
    """Whether one of ``identities`` (a principal and its groups) holds ``privilege`` on
    ``securable`` (``catalog``, ``catalog.schema`` or ``catalog.schema.object``), granted on it
    or on its schema or catalog (privileges granted there are inherited by what they hold),
    itself or as ``ALL PRIVILEGES``.

    https://docs.databricks.com/en/volumes/privileges.html: "you can set privileges such as
    READ VOLUME and WRITE VOLUME at the catalog or schema level to cascade privileges to all
    contained volumes".
    """
    parts = securable.lower().split(".")
    scopes = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    wanted = {privilege.upper(), "ALL PRIVILEGES"}
    return any(g.principal in identities and g.privilege in wanted
               and g.securable.lower() in scopes for g in grants)
