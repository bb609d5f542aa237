"""Which errors are the user's to fix: shown as one ``error: …`` line, without a traceback.

Everything else (a bug, a lost connection, a platform failure) keeps its traceback. Both the
``yws`` command and the job entry points ask here, so the two agree. The classes are imported
when asked for, not at import time: the job entry points must start without the modules (and
their third-party packages) that a given task does not use.
"""

from __future__ import annotations

# The message of each of these tells the user what to do. SettingsError, SpecError and most
# of the others derive from ValueError or LookupError; the rest are listed in user_errors().
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes reported as one line: ``except user_errors() as e``."""
    from yws.jobs_client import JobError
    from yws.score import AccountingError
    from yws.storage import StorageError
    from yws.train import TrainingError

    found: list[type[BaseException]] = [StorageError, TrainingError, AccountingError, JobError]
    try:  # in every environment the jobs run in, but the error set must not need it
        from databricks.sdk.errors import DatabricksError

        found.append(DatabricksError)
    except ImportError:
        pass
    return (*USER_ERRORS, *found)
