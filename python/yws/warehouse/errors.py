"""What the warehouse raises: a statement that failed, a query that is not acceptable, and a
failure in Databricks' own words (error class, message, SQLSTATE)."""

from __future__ import annotations

from yws.errors import YwsError


class WarehouseError(YwsError, RuntimeError):
    """A statement failed in the warehouse; the message names the file, line and object."""


class QueryError(YwsError, ValueError):
    """A query or its parameters are not acceptable: the message says what to change."""


class SqlError(QueryError):
    """A statement failed as Databricks reports it: an error class, a message and a SQLSTATE.

    The text is Databricks' own form, ``[TABLE_OR_VIEW_NOT_FOUND] The table or view ... cannot
    be found. SQLSTATE: 42P01`` (the error classes of the Databricks SQL error reference).
    """

    def __init__(self, error_class: str, message: str, sql_state: str) -> None:
        super().__init__(f"[{error_class}] {message} SQLSTATE: {sql_state}")
        self.error_class = error_class
        self.message = message
        self.sql_state = sql_state
