"""The wheel the bundle's environments install: built with pip, its entry points and data files
checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from yws.deploy.tasks import PARSERS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_carries_the_entry_points_and_sql(tmp_path):
    """What the bundle's environments install: the console scripts and sql/ ship inside."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True,
                   timeout=600)
    (wheel,) = tmp_path.glob("yws-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    entry = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for script in PARSERS:
        assert f"{script} = yws.deploy.tasks:" in entry
    shipped = sorted(n.removeprefix("yws/sql/") for n in names if n.startswith("yws/sql/"))
    on_disk = sorted(p.relative_to(ROOT / "sql").as_posix() for p in (ROOT / "sql").rglob("*.sql"))
    assert shipped == on_disk
    assert "yws/specs/default.yaml" in names
