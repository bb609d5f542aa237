"""Memory of `yws serve` over many full-view statements: its RSS before, after and when idle.

    .venv/bin/python benchmarks/bench_serve_memory.py [--rows 100000] [--statements 300]
        [--concurrency 4] [--idle 30] [--fetch-all] [--json out.json]

Starts `yws serve` over a temporary YWS_HOME holding ROWS synthetic predictions (one published
run), then runs STATEMENTS `SELECT * FROM <catalog>.<schema>.v_yws_predictions` statements,
CONCURRENCY at a time (JSON_ARRAY inline; the first chunk comes with each response, the others
too with --fetch-all), and prints the server's resident memory (VmRSS) before the first
statement, after the last, and after IDLE seconds of nothing, plus the results the server
still holds on disk. A figure to watch, not a timed assertion: results are spilled to Arrow
files under $YWS_HOME/tmp and expire (YWS_SQL_RESULT_TTL / YWS_SQL_RESULT_BYTES), so memory
should stay near its starting point however many statements run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from serving import yws_serve  # noqa: E402

from yws.config import Settings  # noqa: E402
from yws.contract.sqlfiles import statements  # noqa: E402
from yws.contract.tables import PREDICTIONS, SCORE_RUNS, arrow_schema  # noqa: E402
from yws.server.store import Store  # noqa: E402
from yws.storage.local import LocalStorage  # noqa: E402
from yws.warehouse.local import LocalWarehouse  # noqa: E402


def published(rows: int) -> tuple[pa.Table, pa.Table]:
    """ROWS predictions of batch b0 and the score run that publishes them."""
    rng = np.random.default_rng(0)
    p = rng.beta(1.2, 9.0, rows)
    day = dt.date(2026, 9, 30)
    at = dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC)
    predictions = pa.table({
        "entity_id": np.char.add("C", np.char.zfill(np.arange(rows).astype(str), 8)),
        "as_of_date": pa.array([day] * rows, pa.date32()), "batch_id": ["b0"] * rows,
        "run_id": ["r0"] * rows, "probability": p,
        "prediction": (p >= 0.5).astype(np.int32),
        "band": np.where(p >= 0.4, "RED", np.where(p >= 0.15, "YELLOW", "GREEN")),
        "model_name": ["yws_dev.ml.yws_lr"] * rows, "model_version": np.full(rows, 1, np.int32),
        "scored_at": pa.array([at] * rows, pa.timestamp("us", tz="UTC")),
    }, schema=arrow_schema(PREDICTIONS))
    run = pa.Table.from_pylist([{
        "run_id": "r0", "batch_id": "b0", "as_of_date": day, "model_name": "yws_dev.ml.yws_lr",
        "model_alias": "champion", "model_version": 1, "rows_read": rows, "rows_scored": rows,
        "rows_quarantined": 0, "started_at": at, "ended_at": at, "duration_seconds": 1.0,
        "status": "SUCCEEDED", "superseded_by": None}], schema=arrow_schema(SCORE_RUNS))
    return predictions, run


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(url: str, token: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, method="POST" if body is not None else "GET",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=300) as resp:
        out: dict = json.loads(resp.read())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--statements", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--fetch-all", action="store_true", help="fetch every chunk, not only 0")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="yws-bench-serve-memory-")) / "yws"
    settings = Settings(home=home)
    predictions, run = published(args.rows)
    LocalStorage(settings).write(predictions, settings.predictions)
    LocalStorage(settings).write(run, settings.score_runs)
    LocalWarehouse(settings).apply(statements(settings))
    token = Store(home.resolve() / "server.db").create_token("yws_bench", ["yws_analysts"])
    env = {**os.environ, "YWS_HOME": str(home)}
    started: list[subprocess.Popen] = []
    sql = f"SELECT * FROM {settings.catalog}.{settings.schema}.v_yws_predictions"
    with yws_serve(env, started=started) as base:
        pid = started[0].pid

        def one(_: int) -> int:
            out = request(f"{base}/api/2.0/sql/statements", token,
                          {"warehouse_id": "yws_local", "statement": sql, "wait_timeout": "50s"})
            if out["status"]["state"] != "SUCCEEDED":
                raise SystemExit(f"statement ended {out['status']}")
            if args.fetch_all:
                nxt = out["result"].get("next_chunk_internal_link")
                while nxt:
                    nxt = request(f"{base}{nxt}", token).get("next_chunk_internal_link")
            return int(out["manifest"]["total_row_count"])

        before = rss_mb(pid)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            rows = sum(pool.map(one, range(args.statements)))
        wall = time.perf_counter() - start
        after = rss_mb(pid)
        time.sleep(args.idle)
        idle = rss_mb(pid)
        spilled = list((home / "tmp").glob("sql-results-*/*.arrow"))
        out = {"statements": args.statements, "rows_each": args.rows, "rows_total": rows,
               "concurrency": args.concurrency, "fetch_all": args.fetch_all,
               "wall_s": round(wall, 1), "rss_before_mb": round(before),
               "rss_after_mb": round(after), f"rss_idle_{args.idle:g}s_mb": round(idle),
               "results_on_disk": len(spilled),
               "results_on_disk_mb": round(sum(p.stat().st_size for p in spilled) / 2**20)}
    print(f"\nyws serve memory — {args.statements} × `{sql}` ({args.rows:,} rows), "
          f"{args.concurrency} at a time, {os.cpu_count()} cores")
    print(f"  RSS before {before:7.0f} MB   after {after:7.0f} MB   "
          f"idle {args.idle:g} s {idle:7.0f} MB   ({wall:.1f} s)")
    print(f"  results held on disk: {out['results_on_disk']} "
          f"({out['results_on_disk_mb']} MB)\n")
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
