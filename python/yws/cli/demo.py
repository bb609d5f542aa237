"""``yws demo``: the main job on the embedded default, from nothing to banded predictions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from yws.config import Settings
from yws.console import Progress, quiet
from yws.contract.spec import Bands, load_spec
from yws.datasets.ingest import write_snapshot
from yws.datasets.synthetic import generate
from yws.model import registry
from yws.platform import storage_for

LABEL_LAG_DAYS = 91  # a snapshot's 90-day outcome is known about three months later


def run_demo(settings: Settings, rows: int = 20_000, today: dt.date | None = None,
             progress: Progress = quiet) -> dict[str, Any]:
    from yws.platform import get_spark
    from yws.scoring.job import score
    from yws.training.job import train

    spec = load_spec(settings.spec)
    storage = storage_for(settings)
    today = today or dt.date.today()
    train_day = today - dt.timedelta(days=LABEL_LAG_DAYS)

    progress(f"generating {rows} labelled rows as of {train_day} and {rows} new rows as of "
             f"{today} into {settings.features}")
    write_snapshot(storage, generate(rows, train_day), settings.features, spec.as_of_column,
                   train_day)
    anomalies = max(4, rows // 2000)
    write_snapshot(storage, generate(rows, today, labeled=False, anomalies=anomalies),
                   settings.features, spec.as_of_column, today)

    progress("starting Spark")
    spark = get_spark(settings)
    trained = train(settings, spec, spark, as_of=train_day, storage=storage, progress=progress)
    scored = score(settings, spec, spark, as_of=today, storage=storage, progress=progress)
    return {
        "train": trained.as_dict(),
        "score": scored.as_dict(),
        "why_red": why_red(storage, settings, scored.run_id),
        "warehouse": str(settings.warehouse_dir),
        "tables": {name: str(storage.path(name)) if hasattr(storage, "path") else name
                   for name in (settings.features, settings.predictions, settings.quarantine,
                                settings.score_runs, settings.drift)},
        "mlflow_tracking_uri": registry.tracking_uri(settings),
        "mlflow_ui": (f"mlflow ui --backend-store-uri {registry.tracking_uri(settings)} "
                      f"--default-artifact-root {settings.mlflow_artifacts.as_uri()} "
                      "--host 127.0.0.1 --port 5000"),
    }


def why_red(storage: Any, settings: Settings, run_id: str) -> dict[str, Any] | None:
    """The run's RED entity with the highest probability and its reason codes, or None."""
    import pyarrow.compute as pc

    rows = storage.read_arrow(settings.predictions, where=("run_id", run_id))
    red = rows.filter(pc.equal(rows["band"], "RED"))
    if not red.num_rows:
        return None
    top: dict[str, Any] = red.take([int(pc.index(red["probability"],
                                                  pc.max(red["probability"])).as_py())]
                                   ).to_pylist()[0]
    return {"entity_id": top["entity_id"], "probability": top["probability"],
            "reasons": [(top[f"reason_{k}"], top[f"reason_{k}_contribution"])
                        for k in (1, 2, 3) if top.get(f"reason_{k}") is not None]}


def drift_line(drift: dict[str, Any], version: int) -> str:
    """The batch's drift against the version's training baseline, in one line."""
    if drift["status"] == "NO_BASELINE":
        return f"  drift       no baseline in v{version}: null and unseen rates only"
    psi = f" PSI {drift['worst_psi']:.3f}" if drift.get("worst_psi") is not None else ""
    score = (f", score PSI {drift['score_psi']:.3f}" if drift.get("score_psi") is not None
             else "")
    return (f"  drift       {drift['status']} against v{version}'s held-out baseline: worst "
            f"{drift['worst_feature']}{psi}{score}  (yws monitor)")


def render(summary: dict[str, Any]) -> str:
    t, s = summary["train"], summary["score"]
    m = t["metrics"]
    bands = s["bands"]
    lines = [
        "",
        "YWS demo — the embedded default (local Spark, Delta tables, MLflow registry)",
        "",
        f"  model       {t['model_name']} v{t['version']}  aliases: {', '.join(t['aliases'])}",
        f"              {'promoted to @champion' if t['promoted'] else 'not promoted'}: "
        f"{t['reason']}",
        f"  held out    AUC-ROC {m['auc_roc']:.3f}   AUC-PR {m['auc_pr']:.3f}   "
        f"log loss {m['log_loss']:.3f}   Brier {m['brier']:.4f}   ({t['rows_test']} rows)",
        f"  trained on  {t['rows_train']} of {t['rows_read']} rows",
        "",
        f"  scored      batch {s['batch_id']}: {s['rows_read']} read = {s['rows_scored']} scored "
        f"+ {s['rows_quarantined']} quarantined",
        "  bands       " + "   ".join(f"{b} {bands.get(b, 0)}" for b in Bands.NAMES),
    ]
    drift = s.get("drift") or {}
    if drift:
        lines.append(drift_line(drift, s["model_version"]))
    for reason, n in s["quarantine_reasons"].items():
        lines.append(f"  quarantine  {n:>5}  {reason}")
    red = summary.get("why_red")
    if red:
        lines.append(f"  why RED     {red['entity_id']} (p {red['probability']:.2f}): " + (
            ", ".join(f"{name} {value:+.2f}" for name, value in red["reasons"])
            or "no reason codes (the model gives none)"))
    lines += ["", "  tables"]
    lines += [f"    {name:<28} {where}" for name, where in summary["tables"].items()]
    lines += [
        "",
        f"  MLflow      {summary['mlflow_tracking_uri']}",
        f"  MLflow UI   .venv/bin/{summary['mlflow_ui']}",
        "",
        "  next        .venv/bin/yws tables show yws_predictions",
        "",
    ]
    return "\n".join(lines)
