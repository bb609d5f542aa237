"""Progress lines on stderr, so stdout stays clean for ``--json``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Progress = Callable[[str], None]


def stderr_progress() -> Progress:
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def quiet(message: str) -> None:
    """A progress sink that says nothing."""
