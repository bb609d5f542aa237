"""The wheel in a replica of Databricks serverless environment version 4.

Environment 4 is Python 3.12.3 with Databricks Connect 17.2.3 (which supplies pyspark 4.0.0),
mlflow-skinny 2.22.0 and a fixed set of libraries (the "System environment" and "Installed Python
libraries" sections of the release notes:
https://docs.databricks.com/aws/en/release-notes/serverless/environment-version/four, and the
list of versions: https://docs.databricks.com/aws/en/release-notes/serverless/environment-version/).
A job task installs our wheel into it (``environments[].spec.dependencies``). The replica is a
Python 3.12 virtualenv with those packages at those versions, built once and cached under
``.venv-serverless/`` keyed on its requirement list; each test run installs the wheel into a
throw-away hard-link copy, so the cache stays as the environment ships.

What is proved here: installing the wheel replaces no package and adds no pyspark; the job
modules import with environment-4 packages only; each entry point, called as a
``python_wheel_task`` calls it, fails with a non-zero ``SystemExit`` and one line; and the train
task, the score task's check and the Spark scoring path run on Databricks Connect's pyspark and
MLflow 2.22 against a local Spark Connect server (``tests/env4_jobs.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".venv-serverless"

# Environment 4's versions of what the wheel's requirements and the job code touch. sqlglot is
# not part of the environment: the wheel brings it.
ENV4 = [
    "databricks-connect==17.2.3",
    "mlflow-skinny==2.22.0",
    "numpy==2.1.3",
    "pandas==2.2.3",
    "pyarrow==19.0.1",
    "scikit-learn==1.6.1",
    "scipy==1.15.1",
    "matplotlib==3.10.0",
    "databricks-sdk==0.49.0",
    "PyYAML==6.0.2",
    "click==8.1.7",
    "protobuf==5.29.4",
    "grpcio==1.67.0",
    "grpcio-status==1.67.0",
    "python-dateutil==2.9.0.post0",
]

# What no job task may import on Databricks: the local stack and the server.
LOCAL_ONLY = ["deltalake", "duckdb", "duckdb_extension_delta", "uvicorn", "databricks.sql",
              "databricks.bundles", "yws.server", "yws.storage.local", "yws.warehouse.local",
              "yws.cli.demo"]


def find_python312() -> str | None:
    """A Python 3.12 interpreter: $YWS_PYTHON312, python3.12 on PATH, or pyenv's."""
    candidates = [os.environ.get("YWS_PYTHON312"), shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")),
                          reverse=True),
                  "/usr/local/bin/python3.12", "/usr/bin/python3.12"]
    for exe in filter(None, candidates):
        try:
            done = subprocess.run([exe, "-c", "import sys, venv; print(sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == "(3, 12)":
            return exe
    return None


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would point the replica elsewhere."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SPARK_REMOTE", "SPARK_HOME",
            "PYSPARK_PYTHON", "MLFLOW_", "YWS_", "DATABRICKS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(SPARK_LOCAL_IP="127.0.0.1", **extra)
    return env


def run(argv: list[str | Path], timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def pip(python: Path, *args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess:
    done = run([python, "-m", "pip", "--disable-pip-version-check", *args], timeout=timeout,
               env=clean_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="session")
def replica() -> Path:
    """The cached environment-4 replica's Python (built on first use, ~40-75 s)."""
    base = find_python312()
    if base is None:
        pytest.skip("no Python 3.12 interpreter (serverless environment 4 runs 3.12): set "
                    "YWS_PYTHON312 or install one, e.g. with pyenv")
    version = run([base, "-c", "import sys; print(sys.version)"]).stdout.strip()
    key = hashlib.sha256(json.dumps([version, ENV4]).encode()).hexdigest()[:12]
    home = CACHE / f"env4-{key}"
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # one builder at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".complete").exists():
            building = CACHE / f"building-{key}"
            shutil.rmtree(building, ignore_errors=True)
            started = time.monotonic()
            done = run([base, "-m", "venv", building])
            assert done.returncode == 0, done.stderr
            (building / "requirements.txt").write_text("\n".join(ENV4) + "\n")
            pip(building / "bin" / "python", "install", "-q", "-r",
                building / "requirements.txt")
            (building / ".complete").write_text(f"built in {time.monotonic() - started:.0f} s "
                                                f"from {base} ({version})\n")
            shutil.rmtree(home, ignore_errors=True)
            building.rename(home)  # its python runs from anywhere; pip is run as -m pip
    return home / "bin" / "python"


@pytest.fixture(scope="session")
def installed(replica: Path, wheel: Path) -> Iterator[Path]:
    """A hard-link copy of the replica with the wheel installed, as a job task installs it."""
    for stale in CACHE.glob("run-*"):  # left by a run that was killed
        with contextlib.suppress(ValueError):
            pid = int(stale.name.removeprefix("run-"))
            if not Path(f"/proc/{pid}").exists():
                shutil.rmtree(stale, ignore_errors=True)
    clone = CACHE / f"run-{os.getpid()}"
    shutil.rmtree(clone, ignore_errors=True)
    done = run(["cp", "-al", replica.parents[1], clone])
    if done.returncode != 0:  # another file system: a real copy
        shutil.copytree(replica.parents[1], clone, symlinks=True)
    python = clone / "bin" / "python"
    pip(python, "install", "-q", wheel)
    try:
        yield python
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def test_installing_the_wheel_replaces_nothing_and_adds_no_pyspark(replica, wheel, tmp_path):
    before = {p["name"].lower(): p["version"] for p in json.loads(
        pip(replica, "list", "--format", "json").stdout)}
    assert before["databricks-connect"] == "17.2.3" and before["mlflow-skinny"] == "2.22.0"
    assert "pyspark" not in before  # Databricks Connect's wheel carries the pyspark module

    report = tmp_path / "report.json"
    pip(replica, "install", "-q", "--dry-run", "--report", report, wheel)
    added = {i["metadata"]["name"].lower(): i["metadata"]["version"]
             for i in json.loads(report.read_text())["install"]}
    replaced = {name: (before[name], new) for name, new in added.items() if name in before}
    assert replaced == {}, f"installing the wheel would replace {replaced}"
    assert set(added) == {"yws", "sqlglot"}, added
    requires = next(i["metadata"].get("requires_dist", []) for i in
                    json.loads(report.read_text())["install"]
                    if i["metadata"]["name"] == "yws")
    assert not [r for r in requires if r.lower().startswith("pyspark")
                and "extra ==" not in r], requires


def test_job_modules_import_with_environment_4_packages_only(installed, tmp_path):
    script = """
import importlib, json, sys
from importlib.metadata import PackageNotFoundError, version
import pathlib, yws
LOCAL_ONLY = ("yws.server", "yws.storage.local", "yws.warehouse.local", "yws.cli.demo")
root = pathlib.Path(yws.__file__).parent
for path in sorted(root.rglob("*.py")):  # every module, found without importing any
    name = ".".join(("yws", *path.relative_to(root).with_suffix("").parts))
    name = name.removesuffix(".__init__")
    if name.startswith(LOCAL_ONLY):
        continue
    importlib.import_module(name)
from yws.errors import user_errors
user_errors()
import mlflow, mlflow.spark, pyspark, pyspark.ml, yws
try:
    version("pyspark")
    oss_pyspark = True
except PackageNotFoundError:
    oss_pyspark = False
print(json.dumps({"modules": sorted(sys.modules), "pyspark": pyspark.__version__,
                  "mlflow": mlflow.__version__, "oss_pyspark": oss_pyspark,
                  "yws": yws.__file__, "python": list(sys.version_info[:2])}))
"""
    done = run([installed, "-c", script], cwd=tmp_path, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["python"] == [3, 12]
    assert (got["pyspark"], got["mlflow"], got["oss_pyspark"]) == ("4.0.0", "2.22.0", False)
    assert got["yws"].startswith(str(installed.parents[1]))  # the wheel, not the work tree
    loaded = set(got["modules"])
    assert not [m for m in LOCAL_ONLY if m in loaded], [m for m in LOCAL_ONLY if m in loaded]
    assert pip(installed, "check").returncode == 0


# (entry point, parameters, exit code, the one line on stderr)
FAILURES = [
    ("yws-train", ["--as-of-date", "30/11/2026"], 1,
     "error: --as-of-date '30/11/2026' is not a date; use YYYY-MM-DD"),
    ("yws-train", ["--as-of-date", "2026-08-31"], 1,
     "error: the Databricks target needs --dfs-tmpdir (or MLFLOW_DFS_TMP) set to a Unity "
     "Catalog volume path, /Volumes/<catalog>/<schema>/<volume>/..., for MLflow's SparkML "
     "files; got None"),
    ("yws-score", ["--check-only", "true", "--as-of-date", "2026-13-01"], 1,
     "error: --as-of-date '2026-13-01' is not a date; use YYYY-MM-DD"),
    ("yws-score", ["--check-only", "true", "--dfs-tmpdir", "/tmp/mlflow"], 1,
     "error: the Databricks target needs --dfs-tmpdir (or MLFLOW_DFS_TMP) set to a Unity "
     "Catalog volume path, /Volumes/<catalog>/<schema>/<volume>/..., for MLflow's SparkML "
     "files; got '/tmp/mlflow'"),
    ("yws-score", ["--engine", "gpu"], 2, None),
    ("yws-sql-apply", ["--catalog", "prod-main"], 1, None),
]


@pytest.mark.parametrize(("name", "argv", "code", "line"), FAILURES,
                         ids=[f"{f[0]} {' '.join(f[1])}" for f in FAILURES])
def test_entry_points_fail_the_task(installed, tmp_path, name, argv, code, line):
    """A python_wheel_task sets sys.argv to the parameters and calls the entry point's
    function, ignoring what it returns: a failure must raise, so the process exits non-zero."""
    script = f"""
import sys
from importlib.metadata import entry_points
(entry,) = entry_points(group="console_scripts", name={name!r})
sys.argv = [{name!r}, *{argv!r}]
entry.load()()
print("returned: the task would have succeeded")
"""
    done = run([installed, "-c", script], cwd=tmp_path, env=clean_env(), timeout=300)
    assert (done.returncode, done.stdout) == (code, ""), done.stderr[-3000:]
    err = done.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {name if code == 2 else ''}"), \
        done.stderr[-3000:]
    if line is not None:
        assert err == [line]


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def connect_server(tmp_path: Path) -> Iterator[str]:
    """A Spark Connect server from this environment's open-source pyspark (the replica has no
    JVM side); the replica's Databricks Connect client talks to it over sc://."""
    import pyspark

    home = Path(pyspark.__file__).parent
    port = _free_port()
    log = (tmp_path / "connect-server.log").open("w")
    server = subprocess.Popen(
        [home / "bin" / "spark-submit", "--class",
         "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
         "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4",
         "--conf", "spark.sql.catalogImplementation=in-memory",
         "--conf", f"spark.sql.warehouse.dir={tmp_path / 'warehouse'}",
         "--conf", "spark.sql.session.timeZone=UTC", "--conf", "spark.sql.ansi.enabled=true",
         "spark-internal"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=clean_env(SPARK_HOME=str(home)))
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert server.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "connect-server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
        log.close()


def test_train_and_score_through_databricks_connect(installed, connect_server, tmp_path):
    """The train task and the score task's check, through their entry points, and the Spark
    scoring path, on Databricks Connect's pyspark and MLflow 2.22 (see tests/env4_jobs.py for
    the three stand-ins for a workspace)."""
    work = tmp_path / "work"
    work.mkdir()
    done = run([installed, Path(__file__).with_name("env4_jobs.py"), work], cwd=tmp_path,
               env=clean_env(SPARK_REMOTE=connect_server), timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-5000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["session"] == "pyspark.sql.connect.session"
    assert (got["pyspark"], got["mlflow"]) == ("4.0.0", "2.22.0")
    assert got["trained"]["version"] == "1" and got["trained"]["promoted"]
    assert got["trained"]["aliases"] == ["challenger", "champion"]
    assert got["auc_roc"] > 0.55
    assert got["checked"]["model_version"] == 1 and got["checked"]["rows"] == 1000
    assert got["checked"]["as_of_date"] == got["as_of"] == "2026-11-30"
    # 6 anomalies quarantined out of 1000 rows; the rest scored by Spark as by the arrow engine
    assert 990 <= got["scored"] < 1000 and got["same_ids"] and got["finite"]
    assert got["max_abs_diff"] < 1e-9
    names = [r.split("==")[0] for r in got["requirements"]]
    assert "pyspark" not in names and names[0] == "mlflow-skinny"
    assert "mlflow-skinny==2.22.0" in got["requirements"]
