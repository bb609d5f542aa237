"""What the jobs write (through Spark and the arrow engine) matches the DDL in sql/ column for
column."""

from __future__ import annotations

import shutil

from yws.config import Settings
from yws.contract.sqlfiles import (
    statements,
)
from yws.storage.local import LocalStorage
from yws.warehouse.local import LocalWarehouse

TABLES = ["yws_features", "yws_predictions", "yws_quarantine", "yws_score_runs"]


def test_written_tables_match_the_ddl_column_for_column(trained_home, spark, spec, tmp_path):
    """What the jobs write is what sql/10_tables declares, names and types."""
    from yws.contract.sqlfiles import table_columns
    from yws.contract.tables import arrow_type
    from yws.scoring.job import score
    from yws.warehouse.local import _kind

    home = Settings(home=tmp_path / "yws")
    shutil.copytree(trained_home.home, home.home)
    storage = LocalStorage(home)
    score(home, spec, spark, storage=storage)
    for table in TABLES:
        written = storage.arrow_schema(home.table(table))
        ddl = table_columns(table)
        assert written.names == list(ddl), table
        for name, (kind, _) in ddl.items():
            assert _kind(written.field(name).type) == _kind(arrow_type(kind)), (table, name)
    # and the DDL applies over them as they are
    steps = LocalWarehouse(home).apply(statements(home))
    assert [s.action for s in steps if s.kind == "TABLE"] == ["exists"] * 5
