"""The local registry fast path: `registry.locate` and its cache."""

from __future__ import annotations

import json
import shutil
import tempfile

import mlflow
import pytest

from yws.config import Settings
from yws.model import registry


@pytest.fixture
def home(trained_home: Settings, tmp_path, monkeypatch) -> Settings:
    shutil.copytree(trained_home.home, tmp_path / "yws")
    monkeypatch.setattr(registry, "CACHE_SETTLE_SECONDS", 0.0)
    return Settings(home=tmp_path / "yws")


def _no_mlflow(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("MLflow was asked")

    monkeypatch.setattr(registry, "resolve", refuse)
    monkeypatch.setattr(registry, "configure", refuse)


def test_locate_answers_like_mlflow_then_from_its_cache(home, monkeypatch):
    registry.configure(home)
    expected = registry.resolve(home, "champion")
    first = registry.locate(home, "champion")
    assert first.version == int(expected.version)
    assert (first.path / "MLmodel").is_file() and (first.path / "sparkml").is_dir()
    assert (home.home / "cache" / "registry.json").is_file()
    _no_mlflow(monkeypatch)
    assert registry.locate(home, "champion") == first


def test_any_registry_write_sends_locate_back_to_mlflow(home, monkeypatch):
    registry.configure(home)
    first = registry.locate(home, "champion")
    client = mlflow.MlflowClient()
    source = client.get_model_version(home.model_name, str(first.version)).source
    second = client.create_model_version(home.model_name, source)
    client.set_registered_model_alias(home.model_name, "champion", second.version)
    moved = registry.locate(home, "champion")
    assert moved.version == int(second.version) != first.version
    _no_mlflow(monkeypatch)
    assert registry.locate(home, "champion") == moved


def test_unsettled_or_damaged_cache_is_not_trusted(home, monkeypatch):
    registry.configure(home)
    cache = home.home / "cache" / "registry.json"
    monkeypatch.setattr(registry, "CACHE_SETTLE_SECONDS", 3600.0)
    registry.locate(home, "champion")
    assert not cache.exists()  # the registry was written moments ago: nothing cached
    monkeypatch.setattr(registry, "CACHE_SETTLE_SECONDS", 0.0)
    located = registry.locate(home, "champion")
    asked = []
    real_resolve = registry.resolve
    monkeypatch.setattr(registry, "resolve", lambda *a: asked.append(a) or real_resolve(*a))
    cache.write_text("{not json")
    assert registry.locate(home, "champion") == located
    assert len(asked) == 1  # read through MLflow again …
    assert json.loads(cache.read_text())["entries"]["yws_dev.ml.yws_lr@champion"][
        "version"] == located.version  # … and the cache written anew
    with pytest.raises(registry.ModelNotFoundError, match="no version with alias @staging"):
        registry.locate(home, "staging")
    with pytest.raises(ValueError, match="reserved"):
        registry.locate(home, "latest")


def test_a_home_that_cannot_be_written_only_loses_the_cache(home, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system (simulated)")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    located = registry.locate(home, "champion")
    assert located.version == 1 and (located.path / "MLmodel").is_file()
    assert not (home.home / "cache" / "registry.json").exists()
    assert [p.name for p in (home.home / "cache").glob("*")] == []
