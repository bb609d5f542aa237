"""Ctrl-C and a job cancel while a run publishes: dropped once the commit has landed, delivered
if it failed."""

from __future__ import annotations

import time

import pytest


def test_an_interrupt_while_publishing_is_dropped_once_published_and_delivered_if_not():
    """Ctrl-C or a job cancel during the commit: a published run stays a success; a commit
    that failed lets the interrupt through, so the run is cancelled as asked."""
    import os
    import signal

    from yws.scoring.job import interrupts_held

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, in the main thread
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        raise RuntimeError("the commit failed")
