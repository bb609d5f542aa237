"""Core pipeline benchmark: train overhead over a bare fit, model logging, scoring end to end.

    .venv/bin/python benchmarks/bench_core.py [--rows 1000000] [--json out.json]

Prints a table and one JSON object. Uses its own YWS_HOME in a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from yws.config import Settings  # noqa: E402
from yws.data import generate  # noqa: E402
from yws.ingest import write_snapshot  # noqa: E402
from yws.pipeline import build_pipeline  # noqa: E402
from yws.spark import get_spark  # noqa: E402
from yws.spec import load_spec  # noqa: E402
from yws.storage.local import LocalStorage  # noqa: E402
from yws.train import split, train  # noqa: E402

TRAIN_DAY = dt.date(2026, 8, 31)
SCORE_DAY = dt.date(2026, 11, 30)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="yws-bench-")) / "yws"
    settings = Settings(home=home)
    storage = LocalStorage(settings)
    spec = load_spec()
    out: dict[str, float | int | str] = {"rows": args.rows, "features": len(spec.features)}

    snap, t = timed(generate, args.rows, TRAIN_DAY)
    out["generate_s"] = t
    _, t = timed(write_snapshot, storage, snap, settings.features, "as_of_date", TRAIN_DAY)
    out["delta_write_s"] = t
    write_snapshot(storage, generate(args.rows, SCORE_DAY, labeled=False,
                                     anomalies=max(4, args.rows // 10_000)),
                   settings.features, "as_of_date", SCORE_DAY)
    del snap

    spark, t = timed(get_spark, settings)
    out["spark_session_s"] = t
    # Warm the JVM on a small fit so neither measured run pays for it.
    build_pipeline(spec).fit(spark.createDataFrame(generate(2000, TRAIN_DAY)))

    # The bare fit sees the raw labelled rows of the same snapshot and the same split: no
    # schema check, no quality rules, no evaluation, no MLflow.
    from pyspark.sql import functions as F

    raw = storage.read(spark, settings.features).where(
        (F.col("as_of_date") == TRAIN_DAY) & F.col("defaulted_90d").isNotNull())
    train_df, _ = split(raw, spec)
    _, t = timed(build_pipeline(spec).fit, train_df)
    out["bare_fit_s"] = t

    result, t = timed(train, settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
    out["train_s"] = t
    out["train_over_fit"] = t / out["bare_fit_s"]
    out["train_fit_s"] = result.timings["fit"]
    out["log_model_s"] = result.timings["log_model"]
    out["auc_roc"] = result.metrics["auc_roc"]

    yws_bin = str(Path(sys.executable).with_name("yws"))
    env = {**os.environ, "YWS_HOME": str(home)}
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    for engine in ("arrow", "spark"):
        start = time.perf_counter()
        done = subprocess.run([*timer, yws_bin, "score", "--json", "--engine", engine,
                               "--batch-id", f"bench-{engine}"], env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        scored = json.loads(done.stdout)
        out[f"score_{engine}_cli_s"] = wall
        out[f"score_{engine}_job_s"] = scored["duration_seconds"]
        out[f"score_{engine}_rows_per_s"] = scored["rows_read"] / wall
        out[f"score_{engine}_timings"] = scored["timings"]
        if timer:
            out[f"score_{engine}_peak_rss_mb"] = int(done.stderr.strip().splitlines()[-1]) / 1024
        out["score_rows"] = scored["rows_read"]
    # The I/O floor: read the same snapshot and write prediction-shaped columns, delta-rs only.
    import pyarrow as pa
    from deltalake import write_deltalake

    start = time.perf_counter()
    snap = storage.read_arrow(settings.features, where=("as_of_date", SCORE_DAY))
    n = snap.num_rows
    write_deltalake(str(home / "io_floor"), pa.table({
        "entity_id": snap["customer_id"], "as_of_date": snap["as_of_date"],
        "probability": snap["balance_utilization"], "band": snap["region"]}), mode="overwrite")
    out["io_floor_s"] = time.perf_counter() - start
    out["peak_rss_mb_bench_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["train_timings"] = result.timings
    del n

    print(f"\nYWS core benchmark — {args.rows:,} rows x {len(spec.features)} features, "
          f"{os.cpu_count()} cores\n")
    rows = [
        ("synthetic data, generate", out["generate_s"], ""),
        ("delta-rs write of the snapshot", out["delta_write_s"], ""),
        ("Spark session start", out["spark_session_s"], ""),
        ("bare Pipeline.fit (train split)", out["bare_fit_s"], ""),
        ("yws train, in process", out["train_s"],
         f"{out['train_over_fit']:.2f}x bare fit (goal <= 1.3x)"),
        ("  of which saving + logging the model", out["log_model_s"], "goal < 3 s"),
    ]
    for engine in ("arrow", "spark"):
        rss = out.get(f"score_{engine}_peak_rss_mb")
        rows.append((f"yws score --engine {engine} (CLI)", out[f"score_{engine}_cli_s"],
                     f"{out[f'score_{engine}_rows_per_s']:,.0f} rows/s"
                     + (f", peak RSS {rss:,.0f} MB" if rss else "")))
        rows.append(("  of which the score job itself", out[f"score_{engine}_job_s"], ""))
    rows.append(("I/O floor: delta-rs read + write", out["io_floor_s"], ""))
    for name, seconds, note in rows:
        print(f"  {name:<40} {seconds:8.2f} s   {note}")
    print(f"\n  AUC-ROC {out['auc_roc']:.4f}\n")
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
