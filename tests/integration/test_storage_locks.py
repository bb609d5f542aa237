"""The local target's table locks across real processes (``LocalStorage._hold``): a process
holding a table alone keeps another process's append waiting, and a holder killed with SIGKILL
leaves no lock behind (the kernel drops an ``flock`` with its last open file)."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading

import pyarrow as pa

from yws.config import Settings
from yws.storage.local import LocalStorage

NAME = "yws_dev.ml.things"

HOLDER = """
import sys, time
from pathlib import Path
from yws.config import Settings
from yws.storage.local import LocalStorage
storage = LocalStorage(Settings(home=Path(sys.argv[1])))
with storage._hold(sys.argv[2], alone=True):
    print("held", flush=True)
    time.sleep(600)
"""


def rows(run: str) -> pa.Table:
    return pa.table({"run_id": [run, run],
                     "at": pa.array([dt.datetime(2026, 11, 30, tzinfo=dt.UTC)] * 2,
                                    pa.timestamp("us", tz="UTC"))})


def test_a_killed_holder_leaves_the_table_writable(tmp_path):
    settings = Settings(home=tmp_path / "yws")
    storage = LocalStorage(settings)
    storage.write(rows("first"), NAME)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(settings.home), NAME],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done = threading.Event()
        errors: list[BaseException] = []

        def append() -> None:
            try:
                storage.write(rows("second"), NAME)
            except BaseException as e:  # noqa: B036 - the test reports it
                errors.append(e)
            done.set()

        writer = threading.Thread(target=append)
        writer.start()
        assert not done.wait(1.0), "the append did not wait for the process holding the table"
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        assert done.wait(30), "the append still waits after the holder was killed"
        writer.join(5)
    finally:
        holder.kill()
        holder.wait(30)
    assert errors == []
    assert sorted(storage.read_arrow(NAME)["run_id"].to_pylist()) == [
        "first", "first", "second", "second"]
