"""The architecture pictures in ``docs/``, drawn from the code they describe.

Two steps with a seam between them: :func:`databricks_architecture` and
:func:`local_architecture` build a plain description (nodes, clusters, edges, caption) whose
labels come from the bundle in ``jobs/`` (its jobs, and its ``model_serving_endpoints``: the
Phase-2 path, on-demand scoring through ``ai_query`` and ``yws_predict``),
:class:`~yws.config.Settings` and the views in ``sql/20_views/``; :func:`render` draws a
description with the ``diagrams`` package and Graphviz. Tests check the description without
drawing it.

``python tools/diagram.py`` (``make diagram``) writes ``docs/architecture.{png,svg}`` and
``docs/architecture-local.{png,svg}`` for the default settings, so the committed pictures do
not depend on the ``YWS_*`` variables of whoever ran it. Nothing is downloaded: the icons come
with ``diagrams`` and the Unity Catalog logo is ``docs/assets/unity-catalog.png``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import re
import shutil
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yws.config import Settings
from yws.contract import sqlfiles
from yws.deploy.bundle import Bundle, load, local_variables, substitute
from yws.errors import YwsError

REPO = Path(__file__).resolve().parents[1]
UC_LOGO = REPO / "docs" / "assets" / "unity-catalog.png"
TRAIN_ENTRY_POINT = "yws-train"
SCORE_ENTRY_POINT = "yws-score"
REGISTER_R_ENTRY_POINT = "yws-register-r-model"  # R users' own models (docs/r-models.md)
CAPTION = ("Simple migration path — reuse the existing SparkML code, gain Unity Catalog "
           "governance, MLflow tracking and serverless efficiency")
LOCAL_CAPTION = ("The same bundle, job code, SQL files and R client on one machine — yws serve "
                 "stands in for the Databricks APIs; no workspace, no cloud account")
_CREATE_VIEW = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+([\w.`]+)", re.IGNORECASE)


class DiagramError(YwsError, RuntimeError):
    """The picture cannot be built or drawn; the message says what to install or fix."""


# -- the description ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    key: str  # stable id: edges and tests refer to it, and it is the Graphviz node id
    label: str
    kind: str  # which icon draws it: a key of _icons()


@dataclass(frozen=True)
class Cluster:
    key: str
    label: str
    nodes: tuple[str, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    logo: str | None = None  # an icon kind drawn beside the label


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    main: bool = True  # the main flow is solid; supporting reads and calls are dashed
    ranked: bool = True  # False: drawn, but leaves the left-to-right order to the other edges


@dataclass(frozen=True)
class Architecture:
    name: str  # file stem in the output folder
    title: str
    caption: str
    nodes: tuple[Node, ...]
    clusters: tuple[Cluster, ...]
    edges: tuple[Edge, ...]

    def node(self, key: str) -> Node:
        for n in self.nodes:
            if n.key == key:
                return n
        raise KeyError(key)

    def all_clusters(self) -> Iterator[Cluster]:
        stack = list(self.clusters)
        while stack:
            c = stack.pop(0)
            yield c
            stack.extend(c.clusters)

    def cluster(self, key: str) -> Cluster:
        for c in self.all_clusters():
            if c.key == key:
                return c
        raise KeyError(key)

    def members(self, key: str) -> set[str]:
        """Keys of the nodes inside cluster ``key``, at any depth."""
        c = self.cluster(key)
        return set(c.nodes).union(*(self.members(sub.key) for sub in c.clusters))

    def main_path(self) -> list[str]:
        """The main flow, node by node, from the node no main edge enters."""
        main = [e for e in self.edges if e.main]
        nxt = {e.source: e.target for e in main}
        targets = {e.target for e in main}
        starts = [e.source for e in main if e.source not in targets]
        path = [starts[0] if starts else main[0].source]
        while path[-1] in nxt and nxt[path[-1]] not in path[1:]:
            path.append(nxt[path[-1]])
        return path


# -- what the labels are made of ------------------------------------------------------------------
def _wrap(text: str, width: int = 24) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


# Tasks that follow a job's main task without being its work: the train job's last task
# points the Model Serving endpoint at the new champion.
FOLLOW_UP_ENTRY_POINTS = ("yws-serving-update",)


def _job_for(bundle: Bundle, entry_point: str) -> dict[str, Any]:
    """The job whose tasks all run ``entry_point`` (the score job's check task runs it too),
    follow-up tasks aside."""
    for job in bundle.jobs.values():
        tasks = [t for t in job.get("tasks") or []
                 if (t.get("python_wheel_task") or {}).get("entry_point")
                 not in FOLLOW_UP_ENTRY_POINTS]
        if tasks and all((t.get("python_wheel_task") or {}).get("entry_point") == entry_point
                         for t in tasks):
            return job
    raise DiagramError(f"no job in {bundle.root} has a single task running {entry_point} "
                       "(or only tasks running it)")


def _r_models_job(bundle: Bundle) -> dict[str, Any] | None:
    """The job that registers R users' models, if the bundle has one."""
    try:
        return _job_for(bundle, REGISTER_R_ENTRY_POINT)
    except DiagramError:
        return None


def _parameter_default(job: dict[str, Any], name: str) -> str:
    for p in job.get("parameters") or []:
        if p.get("name") == name and p.get("default"):
            return str(p["default"])
    raise DiagramError(f"job {job.get('name')} has no default for parameter {name}")


def view_names(settings: Settings) -> list[str]:
    """Short names of the views ``sql/`` creates, in apply order."""
    names = []
    for stmt in sqlfiles.statements(settings):
        m = _CREATE_VIEW.match(stmt.text)
        if m:
            names.append(m.group(1).replace("`", "").split(".")[-1])
    return names


def _default_target(bundle: Bundle) -> str:
    for name, target in bundle.targets.items():
        if (target or {}).get("default"):
            return str(name)
    return next(iter(bundle.targets), "dev")


@dataclass(frozen=True)
class Endpoint:
    """A ``model_serving_endpoints`` resource as the pictures show it."""

    key: str
    name: str  # the endpoint's name, its variables resolved as in the default target
    workload: str  # "Small, scale to zero"
    updater: str | None  # the train job's task that moves the served version, if any


def serving_endpoints(bundle: Bundle) -> list[Endpoint]:
    """The bundle's Model Serving endpoints, names resolved with the default target's
    variables (a lookup stands for the looked-up name, as in ``yws serve``)."""
    variables = local_variables(bundle, _default_target(bundle))
    updater = None
    for job in bundle.jobs.values():
        for task in job.get("tasks") or []:
            if (task.get("python_wheel_task") or {}).get("entry_point") in FOLLOW_UP_ENTRY_POINTS:
                updater = str(task.get("task_key"))
    out = []
    for key, endpoint in bundle.endpoints.items():
        entities = ((endpoint.get("config") or {}).get("served_entities") or [{}])
        first = entities[0] or {}
        workload = str(first.get("workload_size", "?"))
        if first.get("scale_to_zero_enabled"):
            workload += ", scale to zero"
        out.append(Endpoint(key, str(substitute(endpoint.get("name", key), variables)),
                            workload, updater))
    return out


def _jobs_label(bundle: Bundle, head: str) -> str:
    names = ", ".join(str(job.get("name", key)) for key, job in bundle.jobs.items())
    return f"{head}\n{_wrap(names)}"


# -- the two pictures -----------------------------------------------------------------------------
def databricks_architecture(settings: Settings | None = None,
                            bundle: Bundle | None = None) -> Architecture:
    """YWS on Databricks: RageMaker calls the Jobs API; serverless jobs, MLflow and UC do the
    rest, and R reads the predictions through the DBSQL warehouse."""
    settings = dataclasses.replace(settings or Settings(), target="databricks")
    bundle = bundle or load()
    train, score = _job_for(bundle, TRAIN_ENTRY_POINT), _job_for(bundle, SCORE_ENTRY_POINT)
    alias = _parameter_default(score, "model_alias")
    env = (train.get("environments") or [{}])[0].get("spec", {}).get("environment_version", "?")
    warehouse = "DBSQL serverless warehouse" + (
        f"\n{settings.warehouse_id}" if settings.warehouse_id else "")
    nodes = (
        Node("ragemaker", "RageMaker\nexternal orchestrator", "orchestrator"),
        Node("jobs_api", _jobs_label(bundle, "Jobs API 2.2"), "api"),
        Node("train", f"Training: {train['name']}\nserverless job cluster\n"
                      f"SparkML LogisticRegression", "spark"),
        Node("score", f"Scoring: {score['name']}\nserverless job cluster\nbatch inference",
             "spark"),
        Node("mlflow", f"MLflow tracking\n{settings.experiment_name}\n+ model registry", "mlflow"),
        Node("features", f"feature table (input)\n{settings.features}", "table"),
        Node("model", f"registered model\n{settings.model_name}\n@{alias}", "model"),
        Node("predictions", f"predictions (output)\n{settings.predictions}", "table"),
        Node("dbsql", warehouse + "\nviews: " + "\n".join(view_names(settings)), "sql"),
        Node("r_client", "R / ODBC client\n(R package yws)", "r"),
    )
    uc = Cluster("unity_catalog", f"Unity Catalog — {settings.catalog}.{settings.schema}",
                 nodes=("features", "model", "predictions"), logo="unity_catalog")
    platform = Cluster("databricks", f"Databricks — serverless, environment {env}",
                       nodes=("jobs_api", "train", "score", "mlflow", "dbsql"),
                       clusters=(uc,), logo="databricks")
    edges = (
        Edge("ragemaker", "jobs_api", "run-now"),
        Edge("jobs_api", "train", TRAIN_ENTRY_POINT),
        Edge("train", "mlflow", "log run + model"),
        Edge("mlflow", "model", "register"),
        Edge("model", "score", f"load @{alias}"),
        Edge("score", "predictions", "write batch"),
        Edge("predictions", "dbsql", "views"),
        Edge("dbsql", "r_client", "ODBC / SQL API"),
        Edge("jobs_api", "score", SCORE_ENTRY_POINT, main=False, ranked=False),
        Edge("features", "train", "read", main=False),
        Edge("features", "score", "read", main=False),
    )
    for ep in serving_endpoints(bundle):  # the Phase-2 path: scoring on demand
        key = f"serving_{ep.key}"
        nodes += (Node(key, f"Model Serving endpoint\n{ep.name}\n{ep.workload}", "serving"),)
        platform = dataclasses.replace(platform, nodes=(*platform.nodes, key))
        edges += (
            Edge("model", key, "served version", main=False),
            Edge(key, "dbsql", f"ai_query('{ep.name}')", main=False, ranked=False),
            Edge(key, "r_client", "yws_predict()", main=False, ranked=False),
        )
        if ep.updater:
            edges += (Edge("train", key, f"task {ep.updater}: update_config", main=False,
                           ranked=False),)
    register = _r_models_job(bundle)
    if register is not None:  # R users' own models, governed in the same registry
        nodes += (Node("r_models", f"volume (R models' JSON)\n{settings.catalog}."
                                   f"{settings.schema}.r_models", "table"),
                  Node("register_r", f"{register['name']}\nserverless job\nR glm -> r-glm "
                                     "pyfunc, same gate", "spark"))
        uc = dataclasses.replace(uc, nodes=(*uc.nodes, "r_models"))
        platform = dataclasses.replace(platform, nodes=(*platform.nodes, "register_r"),
                                       clusters=(uc,))
        edges += (
            Edge("r_client", "r_models", "Files API: yws_register_model()", main=False,
                 ranked=False),
            Edge("r_models", "register_r", "read", main=False),
            Edge("register_r", "mlflow", "register @challenger", main=False),
        )
    return Architecture("architecture", "YWS on Databricks with Unity Catalog", CAPTION,
                        nodes, (platform,), edges)


def local_architecture(settings: Settings | None = None,
                       bundle: Bundle | None = None) -> Architecture:
    """The embedded default: ``yws serve`` runs the same jobs and SQL on one machine."""
    settings = dataclasses.replace(settings or Settings(), target="local")
    bundle = bundle or load()
    train, score = _job_for(bundle, TRAIN_ENTRY_POINT), _job_for(bundle, SCORE_ENTRY_POINT)
    alias = _parameter_default(score, "model_alias")
    home = settings.home.resolve()

    def under_home(path: Path) -> str:
        return "$YWS_HOME/" + path.relative_to(home).as_posix()

    nodes = (
        Node("r_client", "R package yws\nyws_score()", "r"),
        Node("jobs_api", _jobs_label(bundle, "yws serve: Jobs API 2.2"), "fastapi"),
        Node("sql_api", "yws serve: SQL Statement\nExecution API 2.0", "fastapi"),
        Node("train", f"{train['name']}\n{TRAIN_ENTRY_POINT} process\nlocal Spark", "spark"),
        Node("score", f"{score['name']}\n{SCORE_ENTRY_POINT} process\narrow engine\n"
                      "(Spark fallback)", "spark"),
        Node("mlflow", f"MLflow store (SQLite)\n{under_home(settings.mlflow_db)}\n"
                       f"{under_home(settings.mlflow_artifacts)}\n"
                       f"{settings.model_name}@{alias}", "mlflow"),
        Node("features", f"features\n{settings.features}", "table"),
        Node("predictions", f"predictions\n{settings.predictions}", "table"),
        Node("duckdb", "DuckDB warehouse\nviews: " + "\n".join(view_names(settings)), "duckdb"),
    )
    delta = Cluster("delta", f"Delta tables (delta-rs) — {under_home(settings.warehouse_dir)}",
                    nodes=("features", "predictions"))
    machine = Cluster("machine", "one machine — yws serve (FastAPI), all state under $YWS_HOME",
                      nodes=("jobs_api", "sql_api"), clusters=(
        Cluster("tasks", "job tasks as processes (--target local)", nodes=("train", "score")),
        Cluster("home", "$YWS_HOME", nodes=("mlflow", "duckdb"), clusters=(delta,)),
    ))
    edges = (
        Edge("r_client", "jobs_api", "run-now"),
        Edge("jobs_api", "train", TRAIN_ENTRY_POINT),
        Edge("train", "mlflow", "log run + model"),
        Edge("mlflow", "score", f"load @{alias}"),
        Edge("score", "predictions", "write batch"),
        Edge("predictions", "duckdb", "delta_scan"),
        Edge("duckdb", "sql_api", "views"),
        Edge("sql_api", "r_client", "statements", ranked=False),
        Edge("jobs_api", "score", SCORE_ENTRY_POINT, main=False, ranked=False),
        Edge("features", "train", "read", main=False),
        Edge("features", "score", "read", main=False),
    )
    for ep in serving_endpoints(bundle):  # the Phase-2 path: scoring on demand
        key = f"serving_{ep.key}"
        nodes += (Node(key, f"yws serve: Model Serving\n{ep.name} invocations", "fastapi"),)
        machine = dataclasses.replace(machine, nodes=(*machine.nodes, key))
        edges += (
            Edge("mlflow", key, "served version", main=False),
            Edge(key, "duckdb", f"ai_query('{ep.name}')", main=False, ranked=False),
            Edge("r_client", key, "yws_predict()", main=False, ranked=False),
        )
    register = _r_models_job(bundle)
    if register is not None:  # R users' own models, governed in the same registry
        nodes += (Node("r_models", "yws serve: Files API\n$YWS_HOME/volumes/.../r_models",
                       "fastapi"),
                  Node("register_r", f"{register['name']}\n{REGISTER_R_ENTRY_POINT} "
                                     "process", "spark"))
        machine = dataclasses.replace(machine, nodes=(*machine.nodes, "r_models"), clusters=(
            dataclasses.replace(machine.clusters[0],
                                nodes=(*machine.clusters[0].nodes, "register_r")),
            *machine.clusters[1:]))
        edges += (
            Edge("r_client", "r_models", "yws_register_model()", main=False, ranked=False),
            Edge("r_models", "register_r", "read", main=False),
            Edge("register_r", "mlflow", "register r-glm @challenger", main=False),
        )
    return Architecture("architecture-local", "YWS embedded default: everything on one machine",
                        LOCAL_CAPTION, nodes, (machine,), edges)


# -- drawing --------------------------------------------------------------------------------------
def _icons() -> dict[str, Any]:
    """Icon kind -> ``diagrams`` node class; every icon ships inside the package."""
    from diagrams.generic.compute import Rack
    from diagrams.generic.database import SQL
    from diagrams.generic.storage import Storage
    from diagrams.ibm.data import Model
    from diagrams.onprem.analytics import Databricks, Spark
    from diagrams.onprem.compute import Server
    from diagrams.onprem.database import Duckdb
    from diagrams.onprem.mlops import Mlflow
    from diagrams.onprem.network import Internet
    from diagrams.programming.framework import Fastapi
    from diagrams.programming.language import R

    return {"orchestrator": Server, "api": Internet, "fastapi": Fastapi, "spark": Spark,
            "mlflow": Mlflow, "table": Storage, "model": Model, "sql": SQL, "duckdb": Duckdb,
            "r": R, "databricks": Databricks, "serving": Rack}


TILES = ("mlflow",)  # icon kinds drawn on a dark tile


def _tile(node: Node) -> tuple[str, dict[str, str]]:
    """Label and attributes of a node drawn as a dark tile: the MLflow icon's "ml" is white."""
    lines = "".join(f"{_html(line)}<BR/>" for line in node.label.split("\n"))
    label = (f'<<TABLE BORDER="0" CELLPADDING="2"><TR><TD FIXEDSIZE="TRUE" WIDTH="150" '
             f'HEIGHT="55"><IMG SRC="{_logo_path(node.kind)}" SCALE="TRUE"/></TD></TR>'
             f"<TR><TD>{lines}</TD></TR></TABLE>>")
    return label, {"image": "", "shape": "box", "style": "rounded,filled",
                   "fillcolor": "#1B3139", "color": "#1B3139", "fontcolor": "white",
                   "fixedsize": "false", "width": "0.5", "height": "0.5", "margin": "0.15"}


def _logo_path(kind: str) -> Path:
    if kind == "unity_catalog":
        return UC_LOGO
    import diagrams

    cls = _icons()[kind]
    return Path(diagrams.__file__).resolve().parent.parent / cls._icon_dir / cls._icon


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cluster_label(cluster: Cluster, size: int) -> str:
    """An HTML label: the logo (if any) at ``size`` points, then the label, split at its dash."""
    lines = "".join(f'{_html(line)}<BR ALIGN="LEFT"/>' for line in cluster.label.split(" — ", 1))
    text = f'<FONT POINT-SIZE="{size // 3}"><B>{lines}</B></FONT>'
    if not cluster.logo:
        return f"<{text}>"
    return (f'<<TABLE BORDER="0" CELLSPACING="6"><TR><TD FIXEDSIZE="TRUE" WIDTH="{size}" '
            f'HEIGHT="{size}"><IMG SRC="{_logo_path(cluster.logo)}" SCALE="TRUE"/></TD>'
            f'<TD ALIGN="LEFT" BALIGN="LEFT">{text}</TD></TR></TABLE>>')


def render(arch: Architecture, out_dir: Path) -> list[Path]:
    """Draw ``arch`` as ``<out_dir>/<name>.png`` and ``.svg``; the SVG carries its images inline."""
    if shutil.which("dot") is None:
        raise DiagramError("Graphviz's dot is not on PATH: run `make system-deps` (it installs "
                           "the Debian package graphviz)")
    if not UC_LOGO.is_file():
        raise DiagramError(f"{UC_LOGO} is missing: the Unity Catalog logo is part of the "
                           "repository (see docs/assets/README.md)")
    try:
        from diagrams import Cluster as DCluster
        from diagrams import Diagram
        from diagrams import Edge as DEdge
    except ImportError:
        raise DiagramError("the diagrams package is missing: run `make setup` (it is a dev "
                           "dependency in pyproject.toml)") from None
    icons = _icons()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / arch.name
    label = (f'<<FONT POINT-SIZE="22"><B>{_html(arch.title)}</B></FONT><BR/><BR/>'
             f'<FONT POINT-SIZE="16"><I>{_html(arch.caption)}</I></FONT>>')
    graph_attr = {"label": label, "labelloc": "b", "pad": "0.5", "nodesep": "0.9",
                  "ranksep": "1.3", "bgcolor": "white", "newrank": "true"}
    drawn: dict[str, Any] = {}
    in_cluster = {key for c in arch.all_clusters() for key in c.nodes}
    with Diagram(arch.title, filename=str(stem), direction="LR", outformat=["png", "svg"],
                 show=False, graph_attr={**graph_attr, "splines": "spline"},
                 node_attr={"fontsize": "14"}):

        def draw(cluster: Cluster, depth: int) -> None:
            size = 96 if depth == 0 else 56
            with DCluster(cluster.key, graph_attr={
                    "label": _cluster_label(cluster, size), "labelloc": "t", "margin": "20",
                    "penwidth": "2" if depth == 0 else "1"}):
                for key in cluster.nodes:
                    node(arch.node(key))
                for sub in cluster.clusters:
                    draw(sub, depth + 1)

        def node(n: Node) -> None:
            label, attrs = _tile(n) if n.kind in TILES else (n.label, {})
            drawn[n.key] = icons[n.kind](label, nodeid=n.key, **attrs)

        for n in arch.nodes:
            if n.key not in in_cluster:
                node(n)
        for c in arch.clusters:
            draw(c, 0)
        for e in arch.edges:
            style = ({"color": "#1B3139", "penwidth": "2"} if e.main
                     else {"color": "#7B8894", "style": "dashed"})
            if not e.ranked:
                style["constraint"] = "false"
            drawn[e.source] >> DEdge(label=e.label, fontsize="13", **style) >> drawn[e.target]
    svg = stem.with_suffix(".svg")
    svg.write_text(inline_images(svg.read_text(encoding="utf-8")), encoding="utf-8")
    return [stem.with_suffix(".png"), svg]


def inline_images(svg: str) -> str:
    """Replace the icon file paths Graphviz writes into an SVG by ``data:`` URIs, so the SVG
    shows its icons anywhere and names no path of the machine that drew it."""

    def sub(m: re.Match[str]) -> str:
        data = base64.b64encode(Path(m.group(2)).read_bytes()).decode("ascii")
        return f'{m.group(1)}="data:image/png;base64,{data}"'

    return re.sub(r'(xlink:href|href)="([^"]+\.png)"', sub, svg)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/diagram.py", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="output folder [docs/]")
    parser.add_argument("--catalog", help="catalog shown in the names [the default setting]")
    parser.add_argument("--schema", help="schema shown in the names [the default setting]")
    args = parser.parse_args(argv)
    settings = Settings().with_(catalog=args.catalog, schema=args.schema)
    bundle = load()
    for arch in (databricks_architecture(settings, bundle), local_architecture(settings, bundle)):
        for path in render(arch, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
