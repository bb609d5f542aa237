"""Model Serving on `yws serve` (loopback): single-record invocations under concurrency, and
many rows in one request.

    .venv/bin/python benchmarks/bench_serving.py [--clients 20] [--requests 2000]
                                                 [--rows 10000] [--json benchmarks/out/serving.json]

Trains the model once (local Spark, a few thousand synthetic rows) into a temporary YWS_HOME,
starts `yws serve` (uvicorn, as the command runs it) on a free loopback port, and warms the
endpoint up with one invocation (the first one loads the served version). Then:

- CLIENTS concurrent clients, each on its own keep-alive connection, send REQUESTS
  single-record ``dataframe_records`` invocations in all: p50 / p99 latency and throughput
  (issue 16's targets: p50 <= 10 ms, p99 <= 50 ms with 20 clients);
- ROWS rows in one ``dataframe_split`` request, five times: the median and best latency
  (target <= 200 ms for 10k rows).

The clients run in this process, on the same cores as the server, so the latencies include
their cost and whatever else the machine runs; the server's own CPU time per request (read from
/proc) does not. The client process's objects are frozen out of its garbage collector before
the timed parts (``gc.freeze``): a full collection of this process would otherwise stop every
client for tens of milliseconds and count against the server. The 1-minute load average is
recorded at the start and the end of each measure (other processes share the cores). Prints a
table and writes the JSON.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from serving import yws_serve  # noqa: E402

from yws.config import Settings  # noqa: E402
from yws.contract.spec import load_spec  # noqa: E402
from yws.datasets.ingest import write_snapshot  # noqa: E402
from yws.datasets.synthetic import generate  # noqa: E402
from yws.server.store import Store  # noqa: E402
from yws.storage.local import LocalStorage  # noqa: E402

ENDPOINT = "yws_lr"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def trained_home() -> Settings:
    """A temporary home with a registered version 1 of the model (the bundle's default)."""
    import datetime as dt

    from yws.platform import get_spark
    from yws.training.job import train

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="yws-bench-serving-")) / "yws")
    day = dt.date(2026, 8, 31)
    storage = LocalStorage(settings)
    write_snapshot(storage, generate(5000, day), settings.features, "as_of_date", day)
    spark = get_spark(settings)
    train(settings, load_spec(), spark, as_of=day, storage=storage)
    spark.stop()
    return settings


def json_ready(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"
        out[k] = v
    return out


class Client:
    """One keep-alive connection, as an SDK session holds one."""

    def __init__(self, base: str, token: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Authorization": f"Bearer {token}",
                        "Content-Type": "application/json"}

    def invoke(self, body: bytes) -> tuple[float, int, bytes]:
        start = time.perf_counter()
        self.conn.request("POST", f"/serving-endpoints/{ENDPOINT}/invocations", body,
                          self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return time.perf_counter() - start, resp.status, data


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def single_records(base: str, token: str, rows: list[dict[str, Any]], clients: int,
                   requests: int, pid: int) -> dict[str, Any]:
    bodies = [json.dumps({"dataframe_records": [r]}).encode() for r in rows]
    per_client = max(1, requests // clients)
    times: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def work(i: int) -> None:
        nonlocal errors
        client = Client(base, token)
        client.invoke(bodies[i % len(bodies)])  # connect outside the timed loop
        mine, bad = [], 0
        barrier.wait()
        for j in range(per_client):
            t, status, _ = client.invoke(bodies[(i * per_client + j) % len(bodies)])
            mine.append(t)
            bad += status != 200
        with lock:
            times.extend(mine)
            errors += bad

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    load = os.getloadavg()[0]
    cpu = cpu_seconds(pid)
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu
    q = statistics.quantiles(times, n=100)
    return {"clients": clients, "requests": len(times), "errors": errors,
            "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "mean_ms": round(statistics.fmean(times) * 1000, 2),
            "requests_per_s": round(len(times) / wall, 1), "wall_s": round(wall, 2),
            "server_cpu_ms_per_request": round(cpu * 1000 / (len(times) + clients), 3),
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}


def one_request(base: str, token: str, rows: list[dict[str, Any]], spec_names: list[str],
                pid: int, repeats: int = 5) -> dict[str, Any]:
    body = json.dumps({"dataframe_split": {
        "columns": spec_names, "data": [[r[n] for n in spec_names] for r in rows]}}).encode()
    client = Client(base, token)
    times, refused = [], 0
    load = os.getloadavg()[0]
    cpu = cpu_seconds(pid)
    for _ in range(repeats):
        t, status, data = client.invoke(body)
        if status != 200:
            raise SystemExit(f"{len(rows)} rows: HTTP {status}: {data[:300]!r}")
        times.append(t)
        refused = sum(p["error"] is not None for p in json.loads(data)["predictions"])
    cpu = cpu_seconds(pid) - cpu
    return {"rows": len(rows), "body_mb": round(len(body) / 2**20, 2),
            "server_cpu_ms": round(cpu * 1000 / repeats, 1),
            "median_ms": round(statistics.median(times) * 1000, 1),
            "best_ms": round(min(times) * 1000, 1), "repeats": repeats,
            "rows_refused": refused,
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}


def table(out: dict[str, Any]) -> str:
    s, b = out["single_record"], out["one_request"]
    lines = [
        f"Model Serving on yws serve — loopback, {out['cores']} cores",
        "",
        f"{'measure':<44} {'value':>10}  target",
        f"{'-' * 44} {'-' * 10}  ------",
        f"{'single record, ' + str(s['clients']) + ' clients: p50':<44} "
        f"{s['p50_ms']:>7.2f} ms  <= 10 ms",
        f"{'single record, ' + str(s['clients']) + ' clients: p99':<44} "
        f"{s['p99_ms']:>7.2f} ms  <= 50 ms",
        f"{'single record: throughput':<44} {s['requests_per_s']:>6.0f} /s",
        f"{'single record: requests (errors)':<44} {s['requests']:>6} ({s['errors']})",
        f"{'single record: server CPU per request':<44} "
        f"{s['server_cpu_ms_per_request']:>7.3f} ms",
        f"{'single record: load average, start / end':<44} "
        f"{s['load_average'][0]:>5.2f} / {s['load_average'][1]:.2f}",
        f"{str(b['rows']) + ' rows in one request: median':<44} {b['median_ms']:>7.1f} ms"
        f"  <= 200 ms (10k)",
        f"{str(b['rows']) + ' rows in one request: best':<44} {b['best_ms']:>7.1f} ms",
        f"{str(b['rows']) + ' rows in one request: server CPU':<44} {b['server_cpu_ms']:>7.1f} ms",
        f"{'  request body':<44} {b['body_mb']:>7.2f} MB",
        f"{str(b['rows']) + ' rows: load average, start / end':<44} "
        f"{b['load_average'][0]:>5.2f} / {b['load_average'][1]:.2f}",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/out/serving.json"))
    ap.add_argument("--home", type=Path, default=None,
                    help="A YWS_HOME with a registered version 1 (skips the training).")
    args = ap.parse_args()
    if args.home is not None:
        settings = Settings(home=args.home)
    else:
        say("training the model (local Spark)")
        settings = trained_home()
    spec = load_spec()
    names = list(spec.feature_names)
    import datetime as dt

    rows = [json_ready({n: r[n] for n in names})
            for r in generate(args.rows, dt.date(2026, 11, 30), labeled=False).to_pylist()]
    token = Store(settings.home.resolve() / "server.db").create_token(
        "bench_analyst", ["yws_analysts"])
    env = {**os.environ, "YWS_HOME": str(settings.home.resolve())}
    say("starting yws serve")
    started: list[Any] = []
    with yws_serve(env, started=started) as base:
        pid = started[0].pid
        warm = Client(base, token)
        t, status, data = warm.invoke(json.dumps({"dataframe_records": rows[:1]}).encode())
        if status != 200:
            raise SystemExit(f"warm-up: HTTP {status}: {data[:300]!r}")
        say(f"first invocation (loads the served version): {t * 1000:.0f} ms")
        for _ in range(200):  # the interpreter's and the connection's first costs
            warm.invoke(json.dumps({"dataframe_records": rows[:1]}).encode())
        gc.freeze()  # the clients' own full collections are not the server's latency
        say(f"{args.clients} clients, {args.requests} single-record invocations")
        single = single_records(base, token, rows[:1000], args.clients, args.requests,
                                pid)
        say(f"{args.rows} rows in one request")
        many = one_request(base, token, rows, names, pid)
    out = {"cores": os.cpu_count(), "first_invocation_ms": round(t * 1000, 1),
           "single_record": single, "one_request": many}
    print(table(out))
    print()
    print(json.dumps(out, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
