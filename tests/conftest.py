"""Shared fixtures: one local SparkSession for the whole run, a fresh YWS_HOME per test."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from yws.config import Settings
from yws.contract.spec import Spec, load_spec
from yws.datasets.ingest import write_snapshot
from yws.datasets.synthetic import generate
from yws.storage.local import LocalStorage

TRAIN_DAY = dt.date(2026, 8, 31)
SCORE_DAY = dt.date(2026, 11, 30)

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("YWS_SPARK_MASTER", "local[2]")


@pytest.fixture(scope="session")
def spark():  # -> SparkSession
    from yws.platform import get_spark

    session = get_spark(Settings())
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "yws")


@pytest.fixture(scope="session")
def spec() -> Spec:
    # The default contract with fewer iterations: same stages, quicker fits on test data.
    return load_spec().with_params({"maxIter": "30", "tol": "1e-4"})


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings)


def load_demo_data(storage: LocalStorage, settings: Settings, rows: int = 3000,
                   anomalies: int = 0) -> None:
    write_snapshot(storage, generate(rows, TRAIN_DAY), settings.features, "as_of_date",
                   TRAIN_DAY)
    write_snapshot(storage, generate(rows, SCORE_DAY, labeled=False, anomalies=anomalies),
                   settings.features, "as_of_date", SCORE_DAY)


@pytest.fixture(scope="session")
def trained_once(tmp_path_factory: pytest.TempPathFactory, spark, spec) -> Settings:
    """The one training of the run (of each xdist worker): demo data and a registered champion.
    Tests never use this home itself; ``trained_home`` hands each module a copy."""
    from yws.training.job import train

    settings = Settings(home=tmp_path_factory.mktemp("trained-once") / "yws")
    storage = LocalStorage(settings)
    load_demo_data(storage, settings, rows=3000, anomalies=8)
    train(settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
    return settings


@pytest.fixture(scope="module")
def trained_home(trained_once: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with demo data and a registered champion, the module's own: its tests may score,
    train and register in it. A copy of the run's one training (a fit costs 20-40 s; a copy of
    the ~2 MB home, milliseconds), made as if the training had run at the copy's path."""
    return copy_home(trained_once, tmp_path_factory.mktemp("trained") / "yws")


def copy_home(source: Settings, to: Path) -> Settings:
    """A copy of ``source``'s home at ``to`` that refers only to itself (and ``source``'s
    settings, with the new home).

    The local MLflow store records absolute places (the experiment's artifact location, each
    run's artifact URI, each model version's source and storage location), and so do the
    registry cache and the warehouse's applied state (``delta_scan('<home>/warehouse/…')``).
    A plain copy would still read, and write new runs' artifacts, under ``source``; here every
    such place is moved to ``to``, as a training at ``to`` would have recorded it."""
    import shutil
    import sqlite3

    old, new = str(source.home.resolve()), str(to.resolve())
    shutil.copytree(source.home, to)
    copied = source.with_(home=to)
    with contextlib.closing(sqlite3.connect(copied.mlflow_db)) as db, db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            for column in [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                           (old, new, old))
    for path in to.rglob("*"):
        if path.is_file() and path != copied.mlflow_db and path.stat().st_size < 1 << 20:
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            if old in text:
                path.write_text(text.replace(old, new))
    return copied


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once a run by pip as the bundle's environments get it.

    pip builds in the work tree (setuptools' ``build/``), so builds take turns under a lock
    (xdist workers, or another run in the same tree, would otherwise trample each other)."""
    import fcntl
    import hashlib
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("dist")
    key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"yws-wheel-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                               "--disable-pip-version-check", "-q", "-w", str(out), str(root)],
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    (found,) = out.glob("yws-*.whl")
    return found


def point_sdk_at(monkeypatch: pytest.MonkeyPatch, host: str, token: str) -> None:
    """Make databricks-sdk clients built from the environment talk to a local stand-in."""
    for var in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", host)
    monkeypatch.setenv("DATABRICKS_TOKEN", token)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app (``yws.server.app.create_app(...)``) with uvicorn on a free loopback
    port in a thread; yields ``http://127.0.0.1:PORT`` once the port accepts connections
    (the SDK blocks for minutes on a refused port), stops the server on exit."""
    import socket
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``tests/unit/`` holds the inner loop (``make test-fast``): no Spark session, no server,
    no subprocess. ``tests/integration/`` holds the rest. Each test is marked by its folder;
    a test in ``unit/`` that asks for Spark, or is marked ``slow`` or ``integration``, is an
    error that says where it belongs.

    Files holding a ``slow`` test run first (each file's tests together, in their order):
    ``make test`` hands whole files to two workers as they free up, and a long file handed
    out last would leave one worker running it alone."""
    integration, unit = pytest.mark.integration, pytest.mark.unit
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: files stay whole
    for item in items:
        folder = item.path.parent.name
        heavy = ("spark" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slow")
                 or item.get_closest_marker("integration"))
        if folder == "unit":
            if heavy:
                raise pytest.UsageError(
                    f"{item.nodeid} needs Spark, a server or a subprocess: move it to "
                    "tests/integration/ (tests/unit/ is the inner loop)")
            item.add_marker(unit)
        else:
            item.add_marker(integration)


def synthetic_home(root: Path, rows: int, seed: int = 0) -> Settings:
    """A home whose SQL layer shows ``rows`` synthetic predictions of one published batch
    (``b0``, run ``r0``, as-of 2026-09-30; entity ids ``C00000000``…), built without Spark."""
    import numpy as np
    import pyarrow as pa

    from yws.contract.sqlfiles import statements
    from yws.contract.tables import PREDICTIONS, SCORE_RUNS, arrow_schema
    from yws.warehouse.local import LocalWarehouse

    home = Settings(home=root / "yws")
    p = np.random.default_rng(seed).random(rows)
    day, at = dt.date(2026, 9, 30), dt.datetime(2026, 9, 30, 6, tzinfo=dt.UTC)
    storage = LocalStorage(home)
    columns = {
        "entity_id": [f"C{i:08d}" for i in range(rows)],
        "as_of_date": pa.array([day] * rows, pa.date32()), "batch_id": ["b0"] * rows,
        "run_id": ["r0"] * rows, "probability": p, "prediction": (p >= 0.5).astype(np.int32),
        "band": np.where(p >= 0.4, "RED", "GREEN"), "model_name": ["yws_dev.ml.yws_lr"] * rows,
        "model_version": np.full(rows, 1, np.int32),
        "scored_at": pa.array([at] * rows, pa.timestamp("us", tz="UTC")),
    }
    schema = arrow_schema(PREDICTIONS)
    for f in schema:  # the nullable columns (reason codes) stay null
        columns.setdefault(f.name, pa.nulls(rows, f.type))
    storage.write(pa.table(columns, schema=schema), home.predictions)
    storage.write(pa.Table.from_pylist([{
        "run_id": "r0", "batch_id": "b0", "as_of_date": day, "model_name": "yws_dev.ml.yws_lr",
        "model_alias": "champion", "model_version": 1, "rows_read": rows, "rows_scored": rows,
        "rows_quarantined": 0, "started_at": at, "ended_at": at, "duration_seconds": 1.0,
        "status": "SUCCEEDED", "superseded_by": None}], schema=arrow_schema(SCORE_RUNS)),
        home.score_runs)
    LocalWarehouse(home).apply(statements(home))
    return home
