"""The wheel the bundle's environments install: built with pip, its entry points and data files
checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from yws.deploy.tasks import PARSERS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_carries_the_entry_points_and_sql(wheel):
    """What the bundle's environments install (built by pip, the session's ``wheel`` fixture
    in conftest.py): the console scripts and sql/ ship inside."""
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    entry = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for script in PARSERS:
        assert f"{script} = yws.deploy.tasks:" in entry
    shipped = sorted(n.removeprefix("yws/sql/") for n in names if n.startswith("yws/sql/"))
    on_disk = sorted(p.relative_to(ROOT / "sql").as_posix() for p in (ROOT / "sql").rglob("*.sql"))
    assert shipped == on_disk
    assert "yws/specs/default.yaml" in names
