"""SQL layer benchmark: `yws sql query` returning the latest prediction of 1M entities as CSV.

    .venv/bin/python benchmarks/bench_sql.py [--entities 1000000] [--batches 2]

Builds a predictions table of ENTITIES x BATCHES rows in a temporary YWS_HOME, applies sql/,
then times the CLI (process start included): time to the first data row and to the last.
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
from pathlib import Path

import numpy as np
import pyarrow as pa

from yws.config import Settings
from yws.contract.sqlfiles import statements
from yws.contract.tables import PREDICTIONS, arrow_schema
from yws.storage.local import LocalStorage
from yws.warehouse.local import LocalWarehouse


def predictions(entities: int, batch: int) -> pa.Table:
    rng = np.random.default_rng(batch)
    p = rng.beta(1.2, 9.0, entities)
    band = np.where(p >= 0.4, "RED", np.where(p >= 0.15, "YELLOW", "GREEN"))
    ids = np.char.add("C", np.char.zfill(np.arange(entities).astype(str), 8))
    day = dt.date(2026, 9, 30) + dt.timedelta(days=30 * batch)
    at = dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC)
    return pa.table({
        "entity_id": ids, "as_of_date": pa.array([day] * entities, pa.date32()),
        "batch_id": [f"b{batch}"] * entities, "probability": p,
        "prediction": (p >= 0.5).astype(np.int32), "band": band,
        "model_name": ["yws_dev.ml.yws_lr"] * entities,
        "model_version": np.full(entities, 1, np.int32),
        "scored_at": pa.array([at] * entities, pa.timestamp("us", tz="UTC")),
    }, schema=arrow_schema(PREDICTIONS))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=2)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="yws-bench-sql-")) / "yws"
    settings = Settings(home=home)
    storage = LocalStorage(settings)
    for b in range(args.batches):
        storage.write(predictions(args.entities, b), settings.predictions, mode="append")
    LocalWarehouse(settings).apply(statements(settings))

    yws_bin = str(Path(sys.executable).with_name("yws"))
    env = {**os.environ, "YWS_HOME": str(home)}
    cmd = [yws_bin, "sql", "query", "SELECT * FROM yws_dev.ml.v_yws_predictions_latest",
           "--format", "csv"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # header
    proc.stdout.readline()
    first = time.perf_counter() - start
    rows = 1 + sum(1 for _ in proc.stdout)
    proc.wait()
    total = time.perf_counter() - start
    if proc.returncode != 0 or rows != args.entities:
        print(f"failed: exit {proc.returncode}, {rows} rows", file=sys.stderr)
        return 1
    out = {"entities": args.entities, "rows_in_table": args.entities * args.batches,
           "first_row_s": round(first, 3), "total_s": round(total, 3),
           "rows_per_s": round(rows / total)}
    print(f"\nyws sql query — latest prediction per entity as CSV, {args.entities:,} entities "
          f"({args.entities * args.batches:,} predictions), process start included\n"
          f"  time to first row  {first:6.2f} s\n  total              {total:6.2f} s   "
          f"({rows / total:,.0f} rows/s)\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
