"""The storage interface shared by the local (delta-rs) and Databricks (UC) implementations."""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from yws.config import Settings, check_table_name
from yws.errors import YwsError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

WriteMode = Literal["overwrite", "append"]
_LITERAL = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


class StorageError(YwsError, RuntimeError):
    """A table could not be read or written."""


class PublishConflictError(StorageError):
    """Another writer committed to the runs table while a run was being published."""


class TableNotFoundError(StorageError, LookupError):
    def __init__(self, name: str, hint: str = "") -> None:
        super().__init__(f"table {name} does not exist" + (f": {hint}" if hint else ""))
        self.name = name


class VersionNotFoundError(StorageError, LookupError):
    """A table version a reader asked for (Delta time travel) cannot be read any more."""

    def __init__(self, name: str, version: int, detail: str = "") -> None:
        super().__init__(
            f"version {version} of {name} cannot be read"
            + (f" ({detail.splitlines()[0][:200]})" if detail else "")
            + ": its files or log entries are gone, removed by VACUUM or log clean-up after "
            "the table's retention (delta.deletedFileRetentionDuration, "
            "delta.logRetentionDuration); see docs/operations.md, \"Prove last Tuesday's list\"")
        self.name, self.version = name, version


def check_literal(value: str | dt.date, what: str) -> str:
    """A value that may appear quoted in a Delta predicate: a date or a plain token."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not _LITERAL.fullmatch(value):
        raise StorageError(
            f"{what} {value!r} is not allowed: use 1-128 letters, digits, '_', '-', '.' or ':'"
        )
    return value


@dataclass(frozen=True)
class TableInfo:
    name: str
    location: str
    version: int | None
    rows: int | None
    columns: list[tuple[str, str]]


class Storage(ABC):
    """Tables by their UC name. Every write is one atomic commit to one table; the score job's
    all-or-nothing across tables comes from :meth:`publish_run` (see ``yws.scoring.job``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- reading ----------------------------------------------------------------------------
    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def read(self, spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
        """The table as a Spark DataFrame: its current version, or ``version`` (Delta time
        travel), so every read of one score run (and its replay) sees the same rows."""

    @abstractmethod
    def read_arrow(self, name: str, limit: int | None = None,
                   where: tuple[str, str | dt.date] | None = None,
                   columns: list[str] | None = None, version: int | None = None) -> pa.Table:
        """Rows as Arrow; ``where=(column, value)`` keeps the rows where column = value,
        ``columns`` reads only those columns and ``version`` reads that version of the table
        (default: the current one)."""

    def scan_arrow(self, name: str, where: tuple[str, str | dt.date] | None = None,
                   columns: list[str] | None = None, batch_rows: int = 262_144,
                   version: int | None = None) -> Iterator[pa.RecordBatch]:
        """The rows of :meth:`read_arrow` as record batches of at most ``batch_rows`` rows.

        This default reads the whole selection first; the local target streams it.
        """
        table = self.read_arrow(name, where=where, columns=columns, version=version)
        return iter(table.to_batches(batch_rows))

    def check_version(self, name: str, version: int) -> None:
        """Raise :class:`VersionNotFoundError` unless ``version`` of ``name`` can still be read
        (VACUUM removes the files of old versions once they are past retention)."""
        try:
            self.read_arrow(name, limit=1, version=version)
        except (TableNotFoundError, VersionNotFoundError):
            raise
        except Exception as e:
            raise VersionNotFoundError(name, version, str(e)) from e

    def table_id(self, name: str) -> str | None:
        """The table's own id where the storage keeps one MLflow cannot look up (None: Unity
        Catalog's, which MLflow asks for when it logs the table as a run's input)."""
        return None

    @abstractmethod
    def describe(self, name: str) -> TableInfo: ...

    @abstractmethod
    def list_tables(self) -> list[str]:
        """Three-level names of the tables in the configured catalog and schema."""

    # -- writing ----------------------------------------------------------------------------
    @abstractmethod
    def write(
        self,
        data: DataFrame | pa.Table | pa.RecordBatchReader,
        name: str,
        mode: WriteMode = "append",
        replace_where: tuple[str, str | dt.date] | None = None,
    ) -> int:
        """Write rows in one commit and return how many were written.

        A ``RecordBatchReader`` is consumed once; the local target writes it as it comes, so
        a stream larger than memory can be written.

        ``mode="overwrite"`` with ``replace_where=(column, value)`` atomically replaces only the
        rows where ``column = value`` (every new row must match), which makes a batch re-run
        idempotent without touching other batches.
        """

    @abstractmethod
    def version(self, name: str) -> int | None:
        """The table's current version, or None if it does not exist."""

    def ensure_table(self, name: str, schema: pa.Schema, *, not_null: Collection[str] = (),
                     comments: Mapping[str, str] | None = None) -> list[str]:
        """Create ``name`` empty with ``schema`` unless it exists (another writer may create it
        at the same moment: that is fine), and give a table an older release created the
        columns of ``schema`` it lacks; return the columns added.

        New releases add nullable columns at the end of a table (``sql/10_tables``): existing
        rows read them as NULL, so they are added here, with their ``comments``, before a
        write needs them. A missing column that is ``not_null`` (or a non-nullable field) is
        refused: old rows have no value for it, and a write must not fail half-way.
        """
        if not self.exists(name):
            try:
                self.write(schema.empty_table(), name, mode="append")
            except StorageError:
                if not self.exists(name):
                    raise
        have = set(self.read_arrow(name, limit=0).schema.names)
        missing = [f for f in schema if f.name not in have]
        if not missing:
            return []
        required = set(not_null) | {f.name for f in schema if not f.nullable}
        refused = [f.name for f in missing if f.name in required]
        if refused:
            raise StorageError(
                f"{name} lacks NOT NULL column(s) {', '.join(refused)}: it was created by an "
                "older release of yws and its rows have no value for them. Migrate it as "
                "docs/migration.md (\"Schema changes\") says, or, on the local target, move the "
                "table's folder aside, then run again"
            )
        try:
            self.add_columns(name, [f.with_nullable(True) for f in missing], comments or {})
        except StorageError:  # another writer may have added them at the same moment
            have = set(self.read_arrow(name, limit=0).schema.names)
            if any(f.name not in have for f in missing):
                raise
        return [f.name for f in missing]

    def ensure_ddl_table(self, name: str, table: str) -> list[str]:
        """:meth:`ensure_table` with the columns, NOT NULL constraints and comments of
        ``CREATE TABLE … <table>`` in ``sql/10_tables`` (``name`` is where it lives)."""
        from yws.contract.sqlfiles import table_not_null
        from yws.contract.tables import arrow_schema, table_columns

        columns = table_columns(table)
        return self.ensure_table(name, arrow_schema(columns), not_null=table_not_null(table),
                                 comments={c: comment for c, (_, comment) in columns.items()})

    @abstractmethod
    def add_columns(self, name: str, fields: Sequence[pa.Field],
                    comments: Mapping[str, str]) -> None:
        """Append the nullable ``fields`` to the table ``name`` in one commit (existing rows
        read NULL), each with its entry of ``comments`` where there is one."""

    # -- scoring runs -----------------------------------------------------------------------
    # Rows of the score job carry the run that wrote them (column ``run_id``); a run becomes
    # visible only when its one-row record lands in the runs table (:meth:`publish_run`).
    # Nothing here touches the rows of a run other than the ones named.

    @abstractmethod
    def delete_runs(self, name: str, run_ids: Sequence[str]) -> int:
        """Delete the rows whose ``run_id`` is one of ``run_ids``, in one commit; return how
        many went (0 when the table does not exist or none match)."""

    @abstractmethod
    def runs_before(self, name: str, time_column: str, before: dt.datetime) -> set[str]:
        """The run ids of the rows of ``name`` whose ``time_column`` is before ``before``."""

    @abstractmethod
    def publish_run(self, name: str, record: pa.Table) -> list[str]:
        """Commit a run: append the one-row ``record`` to the runs table ``name`` and, in the
        same commit, mark every ``SUCCEEDED`` run of the same ``batch_id`` ``SUPERSEDED``
        (``superseded_by`` = the new run). Return the run ids it superseded.

        Raises :class:`PublishConflictError` when another commit to ``name`` landed while
        this one was being made (nothing was committed; the caller may try again).
        """

    def counts(self, name: str, where: tuple[str, str | dt.date], column: str) -> dict[str, int]:
        """How many rows (where ``where``) hold each value of ``column``, by value."""
        table = self.read_arrow(name, where=where, columns=[column])
        grouped = table.group_by(column).aggregate([(column, "count")]).to_pylist()
        return {str(r[column]): int(r[f"{column}_count"])
                for r in sorted(grouped, key=lambda r: str(r[column]))}

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def split(name: str) -> tuple[str, str, str]:
        return check_table_name(name)

    def require(self, name: str, hint: str = "") -> None:
        if not self.exists(name):
            raise TableNotFoundError(name, hint)
