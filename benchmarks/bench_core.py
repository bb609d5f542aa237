"""Core pipeline benchmark: train overhead over a bare fit, model logging, scoring end to end.

    .venv/bin/python benchmarks/bench_core.py [--rows 1000000 10000000] [--json out.json]
                                              [--train-only] [--repeats 3]

For each size: train end to end vs a bare fit (``train_over_fit``, with where the train time
goes; up to 2M rows, the median of ``--repeats`` pairs, each in a new home), `yws score` (a
process of its own, start included) on each engine with its peak RSS, and the I/O floor.
Prints a table and the JSON. ``--train-only`` stops after training. Each size has its own
YWS_HOME in a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from yws.config import Settings  # noqa: E402
from yws.contract.spec import load_spec  # noqa: E402
from yws.datasets.ingest import write_snapshot  # noqa: E402
from yws.datasets.synthetic import generate  # noqa: E402
from yws.model.pipeline import build_pipeline  # noqa: E402
from yws.platform import get_spark  # noqa: E402
from yws.scoring.arrow import available_memory  # noqa: E402
from yws.storage.local import LocalStorage  # noqa: E402
from yws.training.job import train  # noqa: E402
from yws.training.rows import split  # noqa: E402

TRAIN_DAY = dt.date(2026, 8, 31)
SCORE_DAY = dt.date(2026, 11, 30)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


FLOOR = """
import datetime as dt
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
snap = DeltaTable("{src}").to_pyarrow_dataset().to_table(
    filter=pc.field("as_of_date") == dt.date.fromisoformat("{day}"))
write_deltalake("{dst}", pa.table({{
    "entity_id": snap["customer_id"], "as_of_date": snap["as_of_date"],
    "probability": snap["balance_utilization"], "band": snap["region"]}}), mode="overwrite")
"""


def cpu_clock(spark: Any) -> Any:
    """CPU seconds used so far by this process and its Spark driver JVM (Linux): the work done,
    which a busy machine stretches much less than the wall time."""
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    stat = Path(f"/proc/{pid}/stat")
    tick = os.sysconf("SC_CLK_TCK")

    def seconds() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return time.process_time() + (int(fields[11]) + int(fields[12])) / tick

    return seconds if stat.exists() else None


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def fresh_home(rows: int) -> tuple[Settings, LocalStorage, dict[str, float]]:
    """A new home in a temporary folder with the training snapshot written."""
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="yws-bench-")) / "yws")
    storage = LocalStorage(settings)
    snap, generate_s = timed(generate, rows, TRAIN_DAY)
    _, write_s = timed(write_snapshot, storage, snap, settings.features, "as_of_date",
                       TRAIN_DAY)
    return settings, storage, {"generate_s": generate_s, "delta_write_s": write_s}


def train_once(spark: Any, settings: Settings, storage: LocalStorage, spec: Any) -> dict:
    """A bare fit, then `yws train` on the same snapshot, in a home of their own."""
    from pyspark.sql import functions as F

    from yws.model import registry

    out: dict[str, Any] = {}
    # A home's MLflow store (SQLite, its schema migrations) is created once, by the first
    # command that needs it (`yws up`, a first train): reported here, not counted as training.
    _, out["mlflow_store_create_s"] = timed(registry.configure, settings)
    # The bare fit sees the raw labelled rows of the same snapshot and the same split: no
    # schema check, no quality rules, no evaluation, no MLflow.
    raw = storage.read(spark, settings.features).where(
        (F.col("as_of_date") == TRAIN_DAY) & F.col("defaulted_90d").isNotNull())
    train_df, _ = split(raw, spec)
    cpu = cpu_clock(spark)
    load = [os.getloadavg()[0]]
    cpu_start = cpu() if cpu else 0.0
    _, t = timed(build_pipeline(spec).fit, train_df)
    out["bare_fit_s"] = t
    cpu_fit = cpu() if cpu else 0.0

    result, t = timed(train, settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
    out["train_s"] = t
    out["train_over_fit"] = t / out["bare_fit_s"]
    if cpu:
        out["bare_fit_cpu_s"] = cpu_fit - cpu_start
        out["train_cpu_s"] = cpu() - cpu_fit
        out["train_over_fit_cpu"] = out["train_cpu_s"] / out["bare_fit_cpu_s"]
    out["load_average"] = [*load, os.getloadavg()[0]]  # 1-minute, before the fit, after train
    out["train_fit_s"] = result.timings["fit"]
    # Saving runs beside the evaluation; log_model is what is left of it, and the logging.
    out["log_model_s"] = (result.timings.get("save_model_in_background", 0.0)
                          + result.timings["log_model"])
    out["auc_roc"] = result.metrics["auc_roc"]
    out["train_timings"] = result.timings
    return out


def run(rows: int, train_only: bool = False, repeats: int = 1) -> dict[str, Any] | None:
    spec = load_spec()
    out: dict[str, Any] = {"rows": rows, "features": len(spec.features)}

    say(f"{rows:,} rows: generating the training and scoring snapshots")
    settings, storage, written = fresh_home(rows)
    out.update(written)
    home = settings.home
    write_snapshot(storage, generate(rows, SCORE_DAY, labeled=False,
                                     anomalies=max(4, rows // 10_000)),
                   settings.features, "as_of_date", SCORE_DAY)

    spark, t = timed(get_spark, settings)
    out["spark_session_s"] = t
    # Warm the JVM on a small fit so neither measured run pays for it.
    build_pipeline(spec).fit(spark.createDataFrame(generate(2000, TRAIN_DAY)))

    # Each repeat is a bare fit and a first `yws train` in a home of its own; the reported run
    # is the one with the median ratio (the bare fit alone moves by a third between runs).
    say(f"{rows:,} rows: bare fit, then yws train (1 of {repeats})")
    runs = [train_once(spark, settings, storage, spec)]
    for k in range(2, repeats + 1):
        say(f"{rows:,} rows: bare fit, then yws train ({k} of {repeats}), in a new home")
        other, other_storage, _ = fresh_home(rows)
        runs.append(train_once(spark, other, other_storage, spec))
        shutil.rmtree(other.home.parent, ignore_errors=True)
    median = sorted(runs, key=lambda r: r["train_over_fit"])[len(runs) // 2]
    out.update(median)
    if repeats > 1:
        out["train_over_fit_runs"] = [round(r["train_over_fit"], 3) for r in runs]
    if train_only:
        shutil.rmtree(home.parent, ignore_errors=True)
        return out

    yws_bin = str(Path(sys.executable).with_name("yws"))
    env = {**os.environ, "YWS_HOME": str(home)}
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    # arrow twice: its first run after training resolves the alias through MLflow (~2 s of
    # imports); later runs find it in the local registry cache while the registry is unchanged.
    for engine in ("arrow_first", "arrow", "spark"):
        say(f"{rows:,} rows: yws score --engine {engine}")
        start = time.perf_counter()
        done = subprocess.run([*timer, yws_bin, "score", "--json", "--engine",
                               engine.removesuffix("_first"),
                               "--batch-id", f"bench-{engine}"], env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return None
        scored = json.loads(done.stdout)
        out[f"score_{engine}_cli_s"] = wall
        out[f"score_{engine}_job_s"] = scored["duration_seconds"]
        out[f"score_{engine}_rows_per_s"] = scored["rows_read"] / wall
        out[f"score_{engine}_timings"] = scored["timings"]
        if timer:
            out[f"score_{engine}_peak_rss_mb"] = int(done.stderr.strip().splitlines()[-1]) / 1024
        out["score_rows"] = scored["rows_read"]
    # The I/O floor: read the same snapshot and write prediction-shaped columns, delta-rs only,
    # in a process of its own (start and imports included, as for `yws score`) and in this one.
    floor = FLOOR.format(src=storage.path(settings.features), day=SCORE_DAY.isoformat(),
                         dst=home / "io_floor")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", floor], check=True)
    out["io_floor_process_s"] = time.perf_counter() - start
    start = time.perf_counter()
    exec(floor, {})
    out["io_floor_s"] = time.perf_counter() - start
    out["arrow_over_io_floor"] = out["score_arrow_cli_s"] / out["io_floor_process_s"]
    out["spark_over_arrow"] = out["score_spark_cli_s"] / out["score_arrow_cli_s"]
    shutil.rmtree(home.parent, ignore_errors=True)
    return out


def table(results: list[dict[str, Any]]) -> str:
    """A Markdown table, one column per size."""
    def fmt(key: str, unit: str = "s", digits: int = 2) -> list[str]:
        return [f"{r[key]:,.{digits}f} {unit}".strip() if key in r else "—" for r in results]

    lines = [
        ("synthetic data, generate", fmt("generate_s")),
        ("delta-rs write of the snapshot", fmt("delta_write_s")),
        ("bare `Pipeline.fit` (train split)", fmt("bare_fit_s")),
        ("a new home's MLflow store, created once before (not in train)",
         fmt("mlflow_store_create_s")),
        ("`yws train`, in process", fmt("train_s")),
        ("train / bare fit (goal ≤ 1.3×), the median run", fmt("train_over_fit", "×")),
        ("train / bare fit, each run",
         [", ".join(f"{x:.2f}" for x in r.get("train_over_fit_runs", [r["train_over_fit"]]))
          + " ×" if "train_over_fit" in r else "—" for r in results]),
        ("train / bare fit in CPU seconds, JVM + Python", fmt("train_over_fit_cpu", "×")),
        ("load average (1 min) before the fit / after train",
         [" / ".join(f"{x:.1f}" for x in r["load_average"]) if "load_average" in r else "—"
          for r in results]),
        ("of which saving + logging the model (goal < 3 s)", fmt("log_model_s")),
    ]
    steps = list(dict.fromkeys(k for r in results for k in r.get("train_timings", {})))
    lines += [(f"`yws train` step: {step}",
               [f"{r['train_timings'][step]:,.2f} s" if step in r.get("train_timings", {})
                else "—" for r in results]) for step in steps]
    lines.append(("`yws score --engine arrow`, first run after training",
                  fmt("score_arrow_first_cli_s")))
    for engine in ("arrow", "spark"):
        lines += [
            (f"`yws score --engine {engine}` (CLI, process start included)",
             fmt(f"score_{engine}_cli_s")),
            (f"{engine}: rows/s", fmt(f"score_{engine}_rows_per_s", "", 0)),
            (f"{engine}: peak RSS", fmt(f"score_{engine}_peak_rss_mb", "MB", 0)),
        ]
    lines += [
        ("I/O floor: delta-rs read + write, a process of its own", fmt("io_floor_process_s")),
        ("I/O floor: the same, in a warm process", fmt("io_floor_s")),
        ("arrow CLI / I/O floor process (goal ≤ 3×)", fmt("arrow_over_io_floor", "×")),
        ("spark / arrow (goal ≥ 5×)", fmt("spark_over_arrow", "×")),
    ]
    if len(results) > 1 and all("score_arrow_cli_s" in r for r in results):
        base = results[0]["score_arrow_cli_s"]
        lines.append((f"arrow time / {results[0]['rows']:,}-row time",
                      [f"{r['score_arrow_cli_s'] / base:.2f} ×" for r in results]))
    head = "| | " + " | ".join(f"{r['rows']:,} rows" for r in results) + " |"
    rule = "|---|" + "---:|" * len(results)
    return "\n".join([head, rule, *(f"| {name} | " + " | ".join(cells) + " |"
                                   for name, cells in lines)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--repeats", type=int, default=3,
                    help="bare fit + train pairs per size up to 2M rows, each in a new home; "
                         "the median ratio is reported (larger sizes: one pair)")
    ap.add_argument("--train-only", action="store_true",
                    help="stop after training (bare fit vs yws train): no scoring runs")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats must be 1 or more, not {args.repeats}")
    results = []
    for rows in args.rows:
        out = run(rows, args.train_only, args.repeats if rows <= 2_000_000 else 1)
        if out is None:
            return 1
        results.append(out)
    print(f"\nYWS core benchmark — {len(load_spec().features)} features, "
          f"{os.cpu_count()} cores, {available_memory() / 2**30:.0f} GiB free\n")
    print(table(results))
    text = json.dumps(results, indent=2, default=float)
    print("\n" + text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
