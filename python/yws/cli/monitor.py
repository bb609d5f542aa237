"""``yws monitor``: the latest batches' drift, from the view ``v_yws_drift`` on the warehouse
(DuckDB here, a Databricks SQL warehouse there: the path ``yws sql query`` takes), as a table on
the terminal and a self-contained HTML report (plots inlined as PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from yws.cli.options import settings_options
from yws.config import Settings
from yws.errors import YwsError


class NoDriftError(YwsError, LookupError):
    """No published batch has drift rows yet."""


def latest_batches(settings: Settings, batches: int) -> list[dict[str, Any]]:
    """The drift rows of the ``batches`` latest published batches (newest as-of first), from
    the view; each batch: its rows and its summary."""
    from yws.platform import warehouse_for
    from yws.warehouse import QueryError, WarehouseError

    view = settings.table("v_yws_drift")
    sql = (f"SELECT batch_id, as_of_date, model_name, model_version, feature, kind, status, "
           f"psi, null_rate, baseline_null_rate, unseen_rate, rows_counted, shares_json, "
           f"computed_at, official FROM {view} WHERE batch_id IN ("
           f"SELECT batch_id FROM {view} GROUP BY batch_id "
           f"ORDER BY MAX(as_of_date) DESC, MAX(computed_at) DESC, batch_id DESC "
           f"LIMIT {int(batches)}) ORDER BY as_of_date DESC, batch_id DESC, feature")
    try:
        rows = warehouse_for(settings).query(sql).to_pylist()
    except (QueryError, WarehouseError) as e:
        raise NoDriftError(
            f"could not read {view} ({e}): run `yws sql apply`, then score a batch "
            "(`yws score`)") from e
    if not rows:
        raise NoDriftError(f"{view} has no rows yet: score a batch first (`yws score`); "
                           "runs of earlier releases measured no drift")
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        batch = out.setdefault(r["batch_id"], {
            "batch_id": r["batch_id"], "as_of_date": str(r["as_of_date"]),
            "model": f"{r['model_name']} v{r['model_version']}",
            "official": r["official"], "rows": []})
        r["shares"] = json.loads(r.pop("shares_json"))
        batch["rows"].append(r)
    for batch in out.values():
        batch.update(summarise(batch["rows"]))
    return list(out.values())


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch's status, worst feature and its PSI (:func:`yws.monitoring.drift.headline`, as
    the audit row has them) and the score's PSI, recomputed from the rows the view shows."""
    from yws.monitoring.drift import headline  # here: `yws --help` imports no NumPy
    from yws.monitoring.profile import SCORE_FEATURE

    status, feature, value = headline([(r["feature"], r["status"], r["psi"]) for r in rows])
    score = next((r for r in rows if r["feature"] == SCORE_FEATURE), None)
    return {"status": status, "worst_feature": feature, "worst_psi": value,
            "score_psi": score["psi"] if score else None}


def _psi(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def render_table(batches: Sequence[dict[str, Any]]) -> str:
    head = ("batch", "as of", "model", "status", "worst feature", "PSI", "score PSI")
    lines = [(b["batch_id"], b["as_of_date"], b["model"], b["status"],
              b["worst_feature"] or "-", _psi(b["worst_psi"]), _psi(b["score_psi"]))
             for b in batches]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
                     for row in (head, *lines))


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(batch: dict[str, Any]) -> dict[str, str]:
    """The batch's score histogram against the baseline's and its PSI per feature, as base64
    PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from yws.monitoring.profile import SCORE_FEATURE

    out = {}
    score = next((r for r in batch["rows"] if r["feature"] == SCORE_FEATURE), None)
    if score is not None and "baseline" in score["shares"]:
        shares = score["shares"]
        fig = Figure(figsize=(7, 3.6))
        ax = fig.subplots()
        x = range(len(shares["labels"]))
        ax.bar([i - 0.2 for i in x], shares["baseline"], width=0.4, label="baseline (held out)")
        ax.bar([i + 0.2 for i in x], shares["batch"], width=0.4, label=f"batch {batch['batch_id']}")
        ax.set_xticks(list(x), shares["labels"], rotation=40, ha="right", fontsize=7)
        ax.set(ylabel="share of rows", title=f"Score distribution (PSI {_psi(score['psi'])})")
        ax.legend()
        fig.tight_layout()
        out["score"] = _png(fig)
    measured = [r for r in batch["rows"] if r["psi"] is not None]
    if measured:
        colour = {"OK": "tab:green", "WARN": "tab:orange", "ALERT": "tab:red"}
        fig = Figure(figsize=(7, max(3.0, 0.3 * len(measured))))
        ax = fig.subplots()
        ax.barh([r["feature"] for r in measured], [r["psi"] for r in measured],
                color=[colour.get(r["status"], "grey") for r in measured])
        for limit in (0.1, 0.25):
            ax.axvline(limit, linestyle="--", color="grey")
        ax.invert_yaxis()
        ax.set(xlabel="PSI against the baseline (WARN 0.1, ALERT 0.25)", title="PSI per feature")
        fig.tight_layout()
        out["psi"] = _png(fig)
    return out


def render_html(batches: Sequence[dict[str, Any]], view: str) -> str:
    e = html.escape
    latest = batches[0]
    figures = plots(latest)
    head = ("feature", "kind", "status", "PSI", "null rate", "baseline null rate",
            "unseen rate", "rows")
    cells = "".join(
        "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
            r["feature"], r["kind"], r["status"], _psi(r["psi"]), _rate(r["null_rate"]),
            _rate(r["baseline_null_rate"]), _rate(r["unseen_rate"]), r["rows_counted"]))
        + "</tr>" for r in latest["rows"])
    images = "".join(f'<p><img alt="{e(k)}" src="data:image/png;base64,{v}"></p>'
                     for k, v in figures.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>YWS drift</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style></head><body>"
        f"<h1>YWS drift</h1><p>From <code>{e(view)}</code>; thresholds: PSI WARN 0.1, "
        "ALERT 0.25; unseen rate WARN 0.1%, ALERT 1%; null rate WARN +2, ALERT +5 points "
        "(docs/operations.md, \"Investigate drift\").</p>"
        f"<h2>Latest batches</h2><pre>{e(render_table(batches))}</pre>"
        f"<h2>Batch {e(latest['batch_id'])} (as of {e(latest['as_of_date'])}, "
        f"{e(latest['model'])}): {e(latest['status'])}</h2>{images}"
        "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + f"</tr>{cells}</table>"
        "</body></html>\n")


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


@click.command()
@settings_options
@click.option("--batches", type=click.IntRange(min=1, max=1000), default=10, show_default=True,
              help="How many of the latest published batches to show.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML report [<home>/reports/drift.html].")
def monitor(settings: Settings, batches: int, report: Path | None) -> None:
    """The latest batches' drift against the training baseline (v_yws_drift), and an HTML
    report with the score histogram and the PSI per feature of the latest batch."""
    found = latest_batches(settings, batches)
    click.echo(render_table(found))
    path = report or settings.home / "reports" / "drift.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(found, settings.table("v_yws_drift")), encoding="utf-8")
    click.echo(f"report: {path}")
