"""The storage interface shared by the local (delta-rs) and Databricks (UC) implementations."""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from yws.config import Settings, check_table_name

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

WriteMode = Literal["overwrite", "append"]
_LITERAL = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


class StorageError(RuntimeError):
    """A table could not be read or written."""


class TableNotFoundError(StorageError, LookupError):
    def __init__(self, name: str, hint: str = "") -> None:
        super().__init__(f"table {name} does not exist" + (f": {hint}" if hint else ""))
        self.name = name


def check_literal(value: str | dt.date, what: str) -> str:
    """A value that may appear quoted in a Delta predicate: a date or a plain token."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not _LITERAL.match(value):
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
    """Tables by their UC name. Writes are atomic per table; :meth:`transaction` spans tables."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- reading ----------------------------------------------------------------------------
    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def read(self, spark: SparkSession, name: str) -> DataFrame:
        """The table's current snapshot as a Spark DataFrame."""

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

    @abstractmethod
    def restore(self, name: str, version: int | None) -> None:
        """Put the table back at ``version`` (None: the table did not exist; drop it)."""

    @contextmanager
    def transaction(self, names: Sequence[str]) -> Iterator[None]:
        """On an exception inside the block, put every named table back as it was."""
        before = {name: self.version(name) for name in names}
        try:
            yield
        except BaseException:
            for name, version in before.items():
                if self.version(name) != version:
                    self.restore(name, version)
            raise

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def split(name: str) -> tuple[str, str, str]:
        return check_table_name(name)

    def require(self, name: str, hint: str = "") -> None:
        if not self.exists(name):
            raise TableNotFoundError(name, hint)
