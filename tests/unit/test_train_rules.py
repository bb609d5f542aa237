"""Training's rules without Spark: the gate, the evaluator standing alone, and the volume a
Databricks target needs before anything is read."""

from __future__ import annotations

import pytest

from yws.model import registry
from yws.training.gate import gate
from yws.training.job import train


def test_gate_rules():
    assert gate(0.70, None, 0.01) == (True, "no champion yet")
    assert gate(0.695, 0.70, 0.01)[0] is True
    promote, why = gate(0.60, 0.70, 0.01)
    assert not promote and "worse than the champion's 0.7000" in why
    assert gate(0.60, 0.70, 0.01, force=True)[0] is True


def test_the_engine_imports_nothing_from_yws():
    """yws/model/evaluator.py is logged as each model's pyfunc code: it must stand alone."""
    import ast

    import yws.model.evaluator
    from yws.model.flavor import PYFUNC_PACKAGES

    tree = ast.parse(open(yws.model.evaluator.__file__).read())
    guarded = [node for node in ast.walk(tree) if isinstance(node, ast.Try)
               and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError"
                       for h in node.handlers)]
    for node in guarded:  # an optional import, with a fallback when yws is not installed
        node.body = []
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    third_party = imported - {"__future__", "json", "dataclasses", "pathlib", "typing"}
    packages = {p.replace("-skinny", "") for p in PYFUNC_PACKAGES}
    assert third_party <= packages, third_party - packages


def test_databricks_target_needs_a_volume_before_anything_is_read(settings, spec, monkeypatch):
    from yws.config import SettingsError

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"storage.{name} used before the settings were checked")

    monkeypatch.delenv("MLFLOW_DFS_TMP", raising=False)
    on_databricks = settings.with_(target="databricks")
    with pytest.raises(SettingsError, match="needs --dfs-tmpdir .* /Volumes/"):
        train(on_databricks, spec, None, storage=Untouchable())  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="got '/tmp/mlflow'"):
        registry.dfs_tmpdir(on_databricks.with_(dfs_tmpdir="/tmp/mlflow"))
    volume = "/Volumes/yws_dev/ml/yws_tmp/mlflow"
    assert registry.dfs_tmpdir(on_databricks.with_(dfs_tmpdir=volume)) == volume
    monkeypatch.setenv("MLFLOW_DFS_TMP", volume)  # MLflow's own setting is honoured too
    assert registry.dfs_tmpdir(on_databricks) == volume
    monkeypatch.delenv("MLFLOW_DFS_TMP")
    assert registry.dfs_tmpdir(settings) is None  # locally MLflow's default temp dir is fine
