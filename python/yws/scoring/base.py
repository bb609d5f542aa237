"""What a scoring engine is: the protocol the scoring job drives, whatever computes the rows.

An engine reads one snapshot of the features table, holds back the rows the quarantine rules
(:mod:`yws.contract.rules`) refuse and scores the rest with a registered model version. The
job (:mod:`yws.scoring.job`) does the rest the same way for every engine: the accounting, the
writes, the publish. Engines are registered by name in :mod:`yws.scoring.engines`.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.spec import Spec
from yws.errors import YwsError
from yws.monitoring.profile import Plan, Profile
from yws.storage import Storage

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from yws.model.registry import Located


class UnsuitableEngineError(YwsError):
    """This engine cannot take this run (the model, the size); ``auto`` tries the next one."""


@dataclass
class Context:
    """What every engine of one run works with."""

    settings: Settings
    spec: Spec
    storage: Storage
    progress: Progress = quiet
    spark: SparkSession | None = None  # the caller's session, or one made when first needed
    reasons: bool = True  # the predictions carry reason codes (False: null, --no-reasons)
    features_version: int | None = None
    """The features table's Delta version every read of the run sees: given (a replay), or
    taken once by the first :meth:`Engine.count` and recorded with the run."""

    def pin_features(self) -> int | None:
        """:attr:`features_version`, taken from the table now if it was not given."""
        if self.features_version is None:
            self.features_version = self.storage.version(self.settings.features)
        return self.features_version

    def session(self) -> SparkSession:
        if self.spark is None:
            from yws.platform import get_spark

            self.spark = get_spark(self.settings)
        return self.spark


@dataclass(frozen=True)
class RunIds:
    """What stamps every row of one run."""

    batch_id: str
    run_id: str
    model_name: str
    model_version: int
    at: dt.datetime


@dataclass(frozen=True)
class Pinned:
    """The exact inputs of a run scored again (``yws score --replay``): the features table's
    Delta version and the model version the original run recorded."""

    features_version: int
    model_version: int


class Scoring(ABC):
    """One run's rows going through an engine: :meth:`predictions` first, then
    :meth:`quarantined` (which some engines know only once the predictions have been
    written), then :meth:`close`."""

    @abstractmethod
    def predictions(self) -> Any:
        """The predictions table rows: anything :meth:`yws.storage.Storage.write` takes."""

    @abstractmethod
    def quarantined(self) -> Any:
        """The quarantine table rows."""

    def rows_through(self) -> int | None:
        """Rows that went through the checks and the model, when the engine counts them as
        they stream (``None`` otherwise); the job compares it with the rows it counted."""
        return None

    def profile(self) -> Profile | None:
        """The run's drift counts on the plan :meth:`Engine.score` was given (every row read
        per feature, the rows scored for the score), once predictions and quarantined rows have
        been written; None when the engine was given no plan."""
        return None

    def close(self) -> None:  # noqa: B027 - optional for engines with nothing to release
        """Release what the run held (temporary files); called whatever happened."""


class Engine(ABC):
    """A way to score: reads the snapshot, loads a model version, scores a run."""

    name: ClassVar[str]
    label: ClassVar[str]  # how messages name it

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    def count(self, as_of: dt.date | None) -> tuple[dt.date, int]:
        """The snapshot's date (``as_of``, or the latest in the table) and its row count,
        checking the table's schema on the way. Every later read sees these rows."""

    def check_size(self, rows: int) -> None:  # noqa: B027 - most engines take any size
        """Raise :class:`UnsuitableEngineError` if ``rows`` is more than this engine should
        take here (asked by ``auto`` only)."""

    @abstractmethod
    def load(self, model: Located) -> dict[str, list[str]]:
        """Load the model version; return the categories each categorical feature was fitted
        on. Raise :class:`UnsuitableEngineError` for a model this engine does not implement."""

    @abstractmethod
    def score(self, ids: RunIds, rows: int, plan: Plan | None = None) -> Scoring:
        """Score the snapshot counted by :meth:`count` (``rows`` rows), counting it on
        ``plan`` for drift (:mod:`yws.monitoring`) when one is given."""
