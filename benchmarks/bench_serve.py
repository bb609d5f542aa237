"""Load on `yws serve` (loopback only, bounded): concurrent statements and run-now requests.

    .venv/bin/python benchmarks/bench_serve.py [--statements 200] [--runs 20]

Starts `yws serve` on a free loopback port over a temporary YWS_HOME holding 100k synthetic
predictions, fires STATEMENTS concurrent statement requests and RUNS concurrent run-now
requests (each with its own idempotency token; the runs are cancelled at once), and prints
errors and p50 / p99 latency. Every request has a 120 s timeout; the whole run stops itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_sql import predictions  # noqa: E402
from serving import yws_serve  # noqa: E402

from yws.config import Settings  # noqa: E402
from yws.contract.sqlfiles import statements  # noqa: E402
from yws.server.store import Store  # noqa: E402
from yws.storage.local import LocalStorage  # noqa: E402
from yws.warehouse.local import LocalWarehouse  # noqa: E402


def call(url: str, token: str, body: dict | None = None) -> tuple[float, int]:
    req = urllib.request.Request(url, method="POST" if body is not None else "GET",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"},
                                 data=json.dumps(body).encode() if body is not None else None)
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return time.perf_counter() - start, status


def summary(name: str, results: list[tuple[float, int]], wall: float) -> dict:
    times = sorted(t for t, _ in results)
    errors = sum(1 for _, s in results if s != 200)
    q = statistics.quantiles(times, n=100)
    out = {"requests": len(results), "errors": errors, "p50_ms": round(q[49] * 1000, 1),
           "p99_ms": round(q[98] * 1000, 1), "wall_s": round(wall, 2)}
    print(f"  {name:<28} {out['requests']:>4} requests  {errors} errors  "
          f"p50 {out['p50_ms']:8.1f} ms  p99 {out['p99_ms']:8.1f} ms  wall {wall:6.2f} s")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--statements", type=int, default=200)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="yws-bench-serve-")) / "yws"
    settings = Settings(home=home)
    LocalStorage(settings).write(predictions(100_000, 0), settings.predictions)
    LocalWarehouse(settings).apply(statements(settings))
    token = Store(home.resolve() / "server.db").create_token(
        "yws_orchestrator", ["yws_analysts", "yws_r_users"])
    env = {**os.environ, "YWS_HOME": str(home)}
    with yws_serve(env) as base:
        body = {"warehouse_id": "yws_local", "wait_timeout": "50s",
                "statement": "SELECT band, count(*) AS n FROM yws_dev.ml.v_yws_predictions "
                             "WHERE probability >= :p GROUP BY band",
                "parameters": [{"name": "p", "value": "0.1"}]}
        print(f"\nyws serve load — loopback, {os.cpu_count()} cores\n")
        out = {}
        with ThreadPoolExecutor(args.statements) as pool:
            start = time.perf_counter()
            results = list(pool.map(lambda _: call(f"{base}/api/2.0/sql/statements", token,
                                                   body), range(args.statements)))
            out["statements"] = summary("statements (concurrent)", results,
                                        time.perf_counter() - start)
        jobs = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/2.2/jobs/list?name=yws_score",
            headers={"Authorization": f"Bearer {token}"})).read())["jobs"]
        job_id = jobs[0]["job_id"]
        with ThreadPoolExecutor(args.runs) as pool:
            start = time.perf_counter()
            results = list(pool.map(lambda i: call(
                f"{base}/api/2.2/jobs/run-now", token,
                {"job_id": job_id, "idempotency_token": f"bench-{i}"}), range(args.runs)))
            out["run_now"] = summary("run-now (concurrent)", results,
                                     time.perf_counter() - start)
        runs = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/2.2/jobs/runs/list?job_id={job_id}&limit=25",
            headers={"Authorization": f"Bearer {token}"})).read())["runs"]
        for run in runs:
            call(f"{base}/api/2.2/jobs/runs/cancel", token, {"run_id": run["run_id"]})
        out["runs_started"] = len(runs)
        print()
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
