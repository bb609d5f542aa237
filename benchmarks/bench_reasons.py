"""What the reason codes cost: scoring with them against scoring without (`--no-reasons`).

    .venv/bin/python benchmarks/bench_reasons.py [--rows 1000000] [--repeats 2]
                                                 [--engines arrow spark] [--json out.json]

One home in a temporary folder: a small labelled snapshot to train on (its cost is not
measured) and a ``--rows`` snapshot to score. For each engine (arrow, spark) the score job runs
with and without reasons, alternately, ``--repeats`` times; the fastest of each is compared
(issue 18: with reasons within 1.5x of without). Then the evaluator alone (the arrow engine's
NumPy pipeline, record batch by record batch, no I/O): ``predict`` against ``explain``. The
load average is printed beside the figures: on a shared machine it explains their spread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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
from yws.model import registry  # noqa: E402
from yws.model.evaluator import ArrowModel  # noqa: E402
from yws.platform import get_spark  # noqa: E402
from yws.scoring.arrow import BATCH_ROWS  # noqa: E402
from yws.scoring.job import score  # noqa: E402
from yws.storage.local import LocalStorage  # noqa: E402
from yws.training.job import train  # noqa: E402

TRAIN_DAY = dt.date(2026, 8, 31)
SCORE_DAY = dt.date(2026, 11, 30)
TRAIN_ROWS = 20_000


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def best(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(rows: int, repeats: int, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows, "repeats": repeats, "load_before": load()}
    with tempfile.TemporaryDirectory(prefix="yws-bench-reasons-") as tmp:
        settings = Settings(home=Path(tmp) / "yws")
        storage = LocalStorage(settings)
        spec = load_spec()
        say(f"writing {TRAIN_ROWS:,} labelled rows and {rows:,} rows to score")
        write_snapshot(storage, generate(TRAIN_ROWS, TRAIN_DAY), settings.features,
                       spec.as_of_column, TRAIN_DAY)
        write_snapshot(storage, generate(rows, SCORE_DAY, labeled=False), settings.features,
                       spec.as_of_column, SCORE_DAY)
        spark = get_spark(settings)
        train(settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
        engines: dict[str, dict[str, float]] = {}
        for engine in names:
            times: dict[str, list[float]] = {"without": [], "with": []}
            for i in range(repeats):
                for reasons in (False, True):
                    key = "with" if reasons else "without"
                    say(f"{engine}: scoring {rows:,} rows {key} reasons ({i + 1}/{repeats})")
                    start = time.perf_counter()
                    score(settings, spec, spark if engine == "spark" else None,
                          as_of=SCORE_DAY, batch_id=f"{engine}-{key}-{i}", engine=engine,
                          storage=storage, reason_codes=reasons)
                    times[key].append(time.perf_counter() - start)
            engines[engine] = {"without_s": round(min(times["without"]), 3),
                               "with_s": round(min(times["with"]), 3),
                               "ratio": round(min(times["with"]) / min(times["without"]), 3)}
        out["score_job"] = engines
        located = registry.find(settings, registry.CHAMPION)
        assert located.path is not None
        model = ArrowModel.load(located.path)
        table = storage.read_arrow(settings.features, where=(spec.as_of_column, SCORE_DAY))
        batches = table.to_batches(max_chunksize=BATCH_ROWS)
        say("the evaluator alone: predict against explain")
        plain = best(lambda: [model.predict(b) for b in batches], repeats + 1)
        explained = best(lambda: [model.explain(b) for b in batches], repeats + 1)
        out["evaluator"] = {"predict_s": round(plain, 3), "explain_s": round(explained, 3),
                            "ratio": round(explained / plain, 3)}
        spark.stop()
    out["load_after"] = load()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engines", nargs="+", choices=["arrow", "spark"],
                        default=["arrow", "spark"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = run(args.rows, args.repeats, args.engines)
    print(f"reason codes on {result['rows']:,} rows (best of {result['repeats']}; load "
          f"average {result['load_before']} before, {result['load_after']} after)")
    print(f"  {'':<22} {'without':>9} {'with':>9} {'ratio':>7}")
    for engine, t in result["score_job"].items():
        print(f"  score job, {engine:<11} {t['without_s']:>8.2f}s {t['with_s']:>8.2f}s "
              f"{t['ratio']:>6.2f}x")
    e = result["evaluator"]
    print(f"  {'evaluator alone':<22} {e['predict_s']:>8.2f}s {e['explain_s']:>8.2f}s "
          f"{e['ratio']:>6.2f}x")
    print("  (issue 18: scoring with reasons within 1.5x of without)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
