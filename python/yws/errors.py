"""The root of every error YWS raises on purpose, and the set reported as one line.

Each :class:`YwsError`'s message names what is wrong and what to do, so the ``yws`` command and
the job entry points print it as one ``error: …`` line, without a traceback. Anything else —
a bug, a ``ValueError`` from a library, a lost connection — keeps its traceback. The classes
below also derive from the built-in class a caller would expect (``ValueError`` for a bad
value, ``LookupError`` for something missing), so ``except ValueError`` keeps working; but only
the root decides what is the user's to fix.

This module imports nothing of YWS: it is the floor every other module stands on.
"""

from __future__ import annotations


class YwsError(Exception):
    """An error YWS raises on purpose; its message says what to do."""


class InvalidValueError(YwsError, ValueError):
    """A value given to YWS (a flag, a parameter, an argument) cannot be used."""


class NotFoundError(YwsError, LookupError):
    """Something YWS was asked for (a token, a table, a model version) does not exist."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes reported as one line: ``except user_errors() as e``.

    :class:`YwsError`, plus the Databricks SDK's own errors (a missing permission, an unknown
    job), whose messages come from the workspace and name the object. The SDK is in every
    environment the jobs run in, but the error set must not need it.
    """
    found: list[type[BaseException]] = [YwsError]
    try:
        from databricks.sdk.errors import DatabricksError

        found.append(DatabricksError)
    except ImportError:
        pass
    return tuple(found)
