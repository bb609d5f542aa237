"""Shared by the command-line tests in unit/ and integration/: a seeded features table, specs
with one field changed, and the one-line refusal every error must be."""

from __future__ import annotations

import copy
import datetime as dt

import yaml

from yws.contract.spec import default_spec_text
from yws.datasets.synthetic import generate
from yws.storage.local import LocalStorage

DAY = dt.date(2026, 9, 30)


FEATURES = "yws_dev.ml.yws_features"


def one_error(err: str) -> str:
    """The single ``error: …`` line a refusal prints."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err and "Py4J" not in err
    return lines[0]


def seed_features(storage: LocalStorage) -> int:
    """The features table with one snapshot; returns its version."""
    from yws.datasets.ingest import write_snapshot

    write_snapshot(storage, generate(60, DAY), FEATURES, "as_of_date", DAY)
    version = storage.version(FEATURES)
    assert version is not None
    return version


# -- specs -------------------------------------------------------------------------------------
def default_spec() -> dict:
    return yaml.safe_load(default_spec_text())


def spec_with(**changes: object) -> str:
    raw = copy.deepcopy(default_spec())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = raw
        for p in parents:
            target = target[p]
        target[last] = value
    return yaml.safe_dump(raw)
