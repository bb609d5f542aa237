"""`yws_score()` latency from R against a warm `yws serve` (loopback).

    .venv/bin/python benchmarks/bench_r.py [--entities 10000] [--repeat 5] [--json out.json]

Builds a temporary YWS_HOME (a trained model, a snapshot of ENTITIES entities to score),
installs the R package from `r_client/` into a temporary library, starts `yws serve`, and
times `yws_score()` in one R session: one warm-up call, then REPEAT calls, each triggering
the score job over the Jobs API, waiting for it, and reading its predictions back over the
SQL Statement Execution API. Needs R (the `make test` set-up installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serving import yws_serve  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TRAIN_DAY, SCORE_DAY = "2026-08-31", "2026-11-30"

R_CODE = r"""
suppressPackageStartupMessages(library(yws, lib.loc = Sys.getenv("YWS_BENCH_RLIB")))
options(cli.progress_show_after = Inf)
as_of <- Sys.getenv("YWS_BENCH_DAY")
n <- as.integer(Sys.getenv("YWS_BENCH_REPEAT"))
warm <- yws_score(as_of = as_of, timeout = 600)
times <- numeric(0)
rows <- integer(0)
for (i in seq_len(n)) {
  t <- system.time(p <- suppressMessages(yws_score(as_of = as_of, timeout = 600)))
  times <- c(times, t[["elapsed"]])
  rows <- c(rows, nrow(p))
}
cat(jsonlite::toJSON(list(warmup_rows = nrow(warm), seconds = times, rows = rows),
                     auto_unbox = TRUE), "\n")
"""


def sh(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    if not shutil.which("Rscript"):
        print("bench_r: Rscript is not installed; run `make test-r` (it installs R) first",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="yws-bench-r-"))
    yws = str(Path(sys.executable).with_name("yws"))
    env = {**os.environ, "YWS_HOME": str(work / "home"), "SPARK_LOCAL_IP": "127.0.0.1"}
    print(f"[bench] preparing {args.entities:,} entities and a trained model", file=sys.stderr)
    sh(yws, "data", "generate", "--rows", "20000", "--as-of", TRAIN_DAY, env=env)
    sh(yws, "data", "generate", "--rows", str(args.entities), "--as-of", SCORE_DAY,
       "--unlabeled", env=env)
    sh(yws, "sql", "apply", env=env)
    sh(yws, "train", "--as-of", TRAIN_DAY, env=env)
    token = sh(yws, "tokens", "create", "--principal", "yws_orchestrator", "--group",
               "yws_r_users", "--group", "yws_analysts", env=env).strip().splitlines()[-1]
    lib = work / "rlib"
    lib.mkdir()
    sh("R", "CMD", "INSTALL", "--no-test-load", "-l", str(lib), str(REPO / "r_client"), env=env)
    try:
        with yws_serve(env) as base:
            print(f"[bench] timing yws_score() from R, {args.repeat} calls after a warm-up",
                  file=sys.stderr)
            r_env = {**env, "DATABRICKS_HOST": base, "DATABRICKS_TOKEN": token,
                     "YWS_WAREHOUSE_ID": "yws_local", "DATABRICKS_CONFIG_FILE": "/dev/null",
                     "YWS_BENCH_RLIB": str(lib), "YWS_BENCH_DAY": SCORE_DAY,
                     "YWS_BENCH_REPEAT": str(args.repeat)}
            got = json.loads(sh("Rscript", "-e", R_CODE, env=r_env).strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    times = sorted(got["seconds"])
    out = {"entities": args.entities, "calls": len(times), "rows_returned": got["rows"],
           "min_s": times[0], "p50_s": statistics.median(times), "max_s": times[-1]}
    print(f"\nyws_score() from R against a warm yws serve — {args.entities:,} entities, "
          f"{os.cpu_count()} cores\n")
    print("| | seconds |\n|---|---:|")
    for key, name in (("min_s", "fastest"), ("p50_s", "median"), ("max_s", "slowest")):
        print(f"| {name} of {len(times)} calls (goal ≤ 5 s) | {out[key]:.2f} |")
    print("\n" + json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
