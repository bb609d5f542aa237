"""The SQL files in ``sql/``: found, rendered with validated parameters, split into statements.

Files are Databricks SQL with ``{{name}}`` placeholders for the catalog, schema, principals, the
deployment's model (``{{model}}``: its batches are the official ones) and the Model Serving
endpoint (``{{serving_endpoint}}``, written inside a string literal: a name is
checked to hold only letters, digits, ``-`` and ``_`` before it is put there).
Each statement keeps the file and line it came from, so an error can point at it.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from yws.config import Settings, SettingsError, check_endpoint_name, check_identifier
from yws.errors import YwsError

logging.getLogger("sqlglot").setLevel(logging.ERROR)

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PRINCIPAL = re.compile(r"^[A-Za-z0-9_.@+\-]{1,255}$")


class SqlFileError(YwsError, ValueError):
    """A SQL file cannot be rendered or parsed; the message names the file and line."""


def check_principal(value: str, what: str) -> str:
    """A user, group or service principal name: it is always written inside backquotes."""
    if not isinstance(value, str) or not _PRINCIPAL.match(value):
        raise SettingsError(
            f"{what} {value!r} is not a valid principal name: use letters, digits and . _ - @ +"
        )
    return value


def sql_dir() -> Path:
    """The ``sql/`` folder: shipped inside the package, and the repository's own in a checkout."""
    return Path(str(resources.files("yws").joinpath("sql")))


def parameters(settings: Settings) -> dict[str, str]:
    return {
        "catalog": check_identifier(settings.catalog, "catalog"),
        "schema": check_identifier(settings.schema, "schema"),
        "analysts_group": check_principal(settings.analysts_group, "analysts group"),
        "r_users_group": check_principal(settings.r_users_group, "R users group"),
        "jobs_principal": check_principal(settings.jobs_principal, "jobs principal"),
        "serving_endpoint": check_endpoint_name(settings.serving_endpoint),
        "model": check_identifier(settings.model, "model"),  # the deployment's model
    }


@dataclass(frozen=True)
class Statement:
    file: str  # relative to sql/
    line: int  # first line of the statement in the file
    text: str  # rendered Databricks SQL, without the trailing semicolon

    @property
    def where(self) -> str:
        return f"sql/{self.file}:{self.line}"

    def parse(self) -> Any:
        import sqlglot

        try:
            return sqlglot.parse_one(self.text, read="databricks")
        except sqlglot.errors.ParseError as e:
            raise SqlFileError(f"{self.where}: does not parse as Databricks SQL: {e}") from None


def files(root: Path | None = None) -> list[Path]:
    """Every ``*.sql`` file under ``root``, in apply order (their numbered paths sort so)."""
    root = root or sql_dir()
    found = sorted(p for p in root.rglob("*.sql") if p.is_file())
    if not found:
        raise SqlFileError(f"no .sql files under {root}")
    return found


def render(text: str, params: dict[str, str], where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            line = text.count("\n", 0, m.start()) + 1
            raise SqlFileError(
                f"{where}:{line}: unknown parameter {{{{{name}}}}}; known: {', '.join(params)}"
            )
        return params[name]

    return _PLACEHOLDER.sub(sub, text)


def split(text: str, file: str) -> list[Statement]:
    """Statements of a rendered file, split on top-level semicolons by sqlglot's tokenizer."""
    from sqlglot.dialects import Databricks
    from sqlglot.tokens import TokenType

    try:
        tokens = Databricks().tokenize(text)
    except Exception as e:  # the tokenizer raises a plain error on an unclosed string
        raise SqlFileError(f"sql/{file}: cannot be read as SQL: {e}") from None
    out: list[Statement] = []
    start_tok = None
    for tok in [*tokens, None]:
        if tok is None or tok.token_type == TokenType.SEMICOLON:
            if start_tok is not None:
                end = tok.start if tok is not None else len(text)
                body = text[start_tok.start:end].strip()
                out.append(Statement(file=file, line=start_tok.line, text=body))
            start_tok = None
        elif start_tok is None:
            start_tok = tok
    return out


def statements(settings: Settings, root: Path | None = None) -> list[Statement]:
    """Every statement of every file, rendered for ``settings``, in apply order."""
    root = root or sql_dir()
    params = parameters(settings)
    out: list[Statement] = []
    for path in files(root):
        rel = path.relative_to(root).as_posix()
        out.extend(split(render(path.read_text(encoding="utf-8"), params, f"sql/{rel}"), rel))
    return out


# -- what a statement does -----------------------------------------------------------------------
_CREATE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:EXTERNAL|MANAGED)\s+)?"
    r"(?P<kind>CATALOG|SCHEMA|DATABASE|TABLE|MATERIALIZED\s+VIEW|VIEW|VOLUME|FUNCTION)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w.`]+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Target:
    """What a statement creates or grants on: its kind and full (unquoted) name."""

    kind: str  # SCHEMA, TABLE, VIEW, VOLUME, ..., or GRANT / REVOKE
    name: str

    @property
    def parent(self) -> tuple[str | None, str | None]:
        """(catalog, schema) the object lives in: the namespace that must exist first.

        ``CREATE SCHEMA c.s`` needs the catalog only; ``c.s.t`` needs both; a catalog needs
        neither.
        """
        parts = self.name.split(".")
        if len(parts) >= 3:
            return parts[0], parts[1]
        if len(parts) == 2:
            return parts[0], None
        return None, None


def describe(stmt: Statement) -> Target:
    """The kind and object of a statement of ``sql/`` (CREATE … or GRANT / REVOKE).

    Read from the text, so it works for statements sqlglot only keeps as a generic command
    (``CREATE VOLUME``, ``GRANT … ON VOLUME``).
    """
    head = stmt.text.lstrip()[:6].upper()
    if head in ("GRANT ", "REVOKE"):
        verb, found = parse_grant(stmt)
        return Target(verb, found[0].securable)
    m = _CREATE.match(stmt.text)
    if not m:
        raise SqlFileError(f"{stmt.where}: not a statement this tool applies: expected CREATE "
                           "[OR REPLACE] <CATALOG|SCHEMA|TABLE|VIEW|VOLUME> <name> … or "
                           "GRANT / REVOKE")
    kind = " ".join(m["kind"].upper().split())
    return Target("SCHEMA" if kind == "DATABASE" else kind, m["name"].replace("`", ""))


# -- grants --------------------------------------------------------------------------------------
# Unity Catalog privileges and the securables they apply to, from the privileges reference
# (https://docs.databricks.com/data-governance/unity-catalog/access-control/privileges-reference).
# A privilege granted on a catalog or schema is inherited by the objects inside it. Registered
# models are functions to SQL: privileges on a model are granted ON FUNCTION.
_SCHEMA_PRIVILEGES = (
    "ALL PRIVILEGES", "APPLY TAG", "CREATE FUNCTION", "CREATE MATERIALIZED VIEW", "CREATE MODEL",
    "CREATE TABLE", "CREATE VOLUME", "EXECUTE", "MANAGE", "MODIFY", "READ VOLUME", "SELECT",
    "USE SCHEMA", "WRITE VOLUME",
)
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "CATALOG": (*_SCHEMA_PRIVILEGES, "BROWSE", "CREATE SCHEMA", "USE CATALOG"),
    "SCHEMA": _SCHEMA_PRIVILEGES,
    "TABLE": ("ALL PRIVILEGES", "APPLY TAG", "MANAGE", "MODIFY", "SELECT"),
    "VOLUME": ("ALL PRIVILEGES", "APPLY TAG", "MANAGE", "READ VOLUME", "WRITE VOLUME"),
    "FUNCTION": ("ALL PRIVILEGES", "APPLY TAG", "EXECUTE", "MANAGE"),
}
APPLIES_TO["VIEW"] = APPLIES_TO["TABLE"]
PRIVILEGES = tuple(sorted({p for privs in APPLIES_TO.values() for p in privs}))
SECURABLES = tuple(APPLIES_TO)
_GRANT = re.compile(
    r"^\s*(?P<verb>GRANT|REVOKE)\s+(?P<privs>.+?)\s+ON\s+(?P<kind>[A-Z]+)\s+(?P<obj>[\w.`]+)\s+"
    r"(?:TO|FROM)\s+`(?P<principal>[^`]+)`\s*$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True, order=True)
class Grant:
    principal: str
    privilege: str
    securable_type: str
    securable: str


def parse_grant(stmt: Statement) -> tuple[str, list[Grant]]:
    """``("GRANT" | "REVOKE", grants)`` for a Unity Catalog GRANT or REVOKE statement.

    Each privilege must be one Unity Catalog has and must apply to the securable it is granted
    on (``READ VOLUME ON TABLE`` is refused here, not by the warehouse halfway through).
    """
    m = _GRANT.match(stmt.text)
    if not m:
        raise SqlFileError(
            f"{stmt.where}: not a GRANT/REVOKE this tool understands: expected "
            "GRANT <privileges> ON <CATALOG|SCHEMA|TABLE|VIEW|VOLUME|FUNCTION> <name> "
            "TO `<principal>`"
        )
    kind = m["kind"].upper()
    if kind not in SECURABLES:
        raise SqlFileError(f"{stmt.where}: unknown securable type {kind}; "
                           f"known: {', '.join(SECURABLES)}")
    obj = m["obj"].replace("`", "")
    parts = obj.split(".")
    want = {"CATALOG": 1, "SCHEMA": 2}.get(kind, 3)
    if len(parts) != want:
        raise SqlFileError(f"{stmt.where}: {kind} {obj} should have {want} name part(s)")
    for part in parts:
        check_identifier(part, f"{stmt.where}: name part")
    principal = check_principal(m["principal"], f"{stmt.where}: principal")
    grants = []
    for raw in m["privs"].split(","):
        priv = " ".join(raw.split()).upper()
        if priv not in PRIVILEGES:
            raise SqlFileError(f"{stmt.where}: unknown privilege {priv!r}; "
                               f"known: {', '.join(PRIVILEGES)}")
        if priv not in APPLIES_TO[kind]:
            raise SqlFileError(f"{stmt.where}: {priv} does not apply to a {kind.lower()}; "
                               f"on a {kind.lower()}: {', '.join(APPLIES_TO[kind])}")
        grants.append(Grant(principal, priv, "TABLE" if kind == "VIEW" else kind, obj))
    return m["verb"].upper(), grants


# -- table definitions: the DDL is the one source of truth for the jobs' output schemas --------
def table_columns(table: str) -> dict[str, tuple[str, str]]:
    """Column -> (Databricks type, comment) of ``CREATE TABLE … <table>`` in ``sql/``."""
    tables = _ddl_tables()
    if table not in tables:
        raise SqlFileError(f"no CREATE TABLE for {table} under {sql_dir()}")
    return tables[table]


def table_not_null(table: str) -> frozenset[str]:
    """The NOT NULL columns of ``CREATE TABLE … <table>`` in ``sql/``: a table an older release
    created can be given the missing nullable columns, never these (old rows have no value)."""
    table_columns(table)  # an unknown table fails the same way
    return _ddl_not_null()[table]


@functools.cache
def _ddl_tables() -> dict[str, dict[str, tuple[str, str]]]:
    return {name: columns_of(tree) for name, tree in _ddl_trees().items()}


@functools.cache
def _ddl_not_null() -> dict[str, frozenset[str]]:
    return {name: not_null_of(tree) for name, tree in _ddl_trees().items()}


@functools.cache
def _ddl_trees() -> dict[str, Any]:
    from sqlglot import exp

    out: dict[str, Any] = {}
    for stmt in statements(Settings()):
        tree = stmt.parse()
        if isinstance(tree, exp.Create) and str(tree.args.get("kind")).upper() == "TABLE":
            out[tree.this.this.name] = tree
    return out


def not_null_of(create: Any) -> frozenset[str]:
    """The columns of a parsed CREATE TABLE declared ``NOT NULL``."""
    from sqlglot import exp

    return frozenset(
        col.name for col in create.this.expressions
        if any(isinstance(c.args.get("kind"), exp.NotNullColumnConstraint)
               and not c.args["kind"].args.get("allow_null")
               for c in col.args.get("constraints", [])))


def add_columns_sql(name: str, create: Any, columns: list[str]) -> str:
    """``ALTER TABLE <name> ADD COLUMNS (…)`` giving ``columns`` their type and comment from
    the parsed CREATE TABLE ``create`` (Databricks SQL: "ADD [COLUMN | COLUMNS] ( column_identifier
    data_type [COMMENT comment] … )"; a column added to a Delta table is NULL for existing
    rows). ``name`` and each column are checked identifiers; the comment is the DDL's literal."""
    from sqlglot import exp

    defs = {col.name: col for col in create.this.expressions}
    parts = []
    for column in columns:
        col = defs[check_identifier(column, "column")]
        text = f"{column} {col.args['kind'].sql('databricks').upper()}"
        for c in col.args.get("constraints", []):
            if isinstance(c.args.get("kind"), exp.CommentColumnConstraint):
                text += f" COMMENT {c.args['kind'].this.sql('databricks')}"
        parts.append(text)
    for part in name.split("."):
        check_identifier(part, "table name part")
    return f"ALTER TABLE {name} ADD COLUMNS ({', '.join(parts)})"


def columns_of(create: Any) -> dict[str, tuple[str, str]]:
    """Column -> (type, comment) of a parsed CREATE TABLE."""
    from sqlglot import exp

    cols: dict[str, tuple[str, str]] = {}
    for col in create.this.expressions:
        comment = ""
        for c in col.args.get("constraints", []):
            if isinstance(c.args.get("kind"), exp.CommentColumnConstraint):
                comment = c.args["kind"].this.name
        cols[col.name] = (col.args["kind"].sql("databricks").upper(), comment)
    return cols
