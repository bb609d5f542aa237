"""Exact replay (issue 18): a run scored again from its recorded inputs, after the features
table has moved on, matches to the last bit on its engine and to 1e-9 on the other; a changed
prediction, another spec, an unknown run or a run without recorded inputs are refused clearly.

One module-scoped trained home (a copy of the session's one training) serves every test here.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import SCORE_DAY
from yws.cli.main import main
from yws.config import Settings
from yws.contract.spec import load_spec
from yws.datasets.ingest import write_snapshot
from yws.errors import NotFoundError
from yws.scoring.job import score
from yws.scoring.replay import CROSS_ENGINE_TOLERANCE, ReplayError, ReplayMismatchError, replay
from yws.storage.local import LocalStorage


def _probabilities(storage: LocalStorage, settings: Settings, run_id: str) -> dict[str, float]:
    rows = storage.read_arrow(settings.predictions, where=("run_id", run_id),
                              columns=["entity_id", "probability"]).to_pydict()
    return dict(zip(rows["entity_id"], rows["probability"], strict=True))


@pytest.fixture(scope="module")
def first_run(trained_home: Settings, spec) -> tuple[Settings, str]:
    """A run of SCORE_DAY on the arrow engine; then the snapshot is rewritten (a new Delta
    version of the same as-of date with other values), so the current table is not what the
    run read."""
    settings, storage = trained_home, LocalStorage(trained_home)
    result = score(settings, spec, as_of=SCORE_DAY, engine="arrow", storage=storage)
    before = storage.version(settings.features)
    assert result.features_version == before
    rows = storage.read_arrow(settings.features, where=("as_of_date", SCORE_DAY))
    i = rows.schema.get_field_index("monthly_spend")
    changed = rows.set_column(i, "monthly_spend",
                              pc.add(pc.cast(rows.column(i), pa.float64()), 250.0))
    write_snapshot(storage, changed, settings.features, "as_of_date", SCORE_DAY)
    assert storage.version(settings.features) == before + 1
    return settings, result.run_id


def test_a_replay_reads_the_recorded_version_and_matches_bit_for_bit(first_run, spec, spark):
    settings, run_id = first_run
    storage = LocalStorage(settings)
    record = storage.read_arrow(settings.score_runs, where=("run_id", run_id)).to_pylist()[0]
    assert (record["engine"], record["spec_hash"]) == ("arrow", spec.hash)

    report = replay(settings, spec, run_id, storage=storage)
    assert report.matches and report.tolerance == 0.0
    assert report.rows_compared == record["rows_scored"] > 0
    assert report.bit_identical == report.rows_compared and report.max_abs_diff == 0.0
    assert not report.reasons_differ  # 0, or None before the reason codes existed
    # The replay is a published, non-official batch of its own; the original stays published.
    runs = {r["run_id"]: r for r in storage.read_arrow(settings.score_runs).to_pylist()}
    again = runs[report.replay_run_id]
    assert (again["batch_id"], again["model_alias"], again["features_version"]) == (
        f"replay-{run_id}", "replay", record["features_version"])
    assert runs[run_id]["status"] == "SUCCEEDED"
    # Scoring the table as it is now gives other probabilities: the replay did not read them.
    now = score(settings, spec, as_of=SCORE_DAY, batch_id="now", engine="arrow",
                storage=storage)
    assert now.features_version == record["features_version"] + 1
    original = _probabilities(storage, settings, run_id)
    current = _probabilities(storage, settings, now.run_id)
    assert sum(original[e] != current[e] for e in original) > len(original) // 2

    # The other engine reads the same version and agrees to 1e-9 (not necessarily bit for bit).
    across = replay(settings, spec, run_id, engine="spark", spark=spark, storage=storage)
    assert across.matches and across.replay_engine == "spark"
    assert across.tolerance == CROSS_ENGINE_TOLERANCE
    assert across.max_abs_diff <= CROSS_ENGINE_TOLERANCE
    assert across.rows_compared == report.rows_compared


def test_a_changed_prediction_fails_the_replay_and_names_the_entity(first_run, spec):
    settings, run_id = first_run
    storage = LocalStorage(settings)
    rows = storage.read_arrow(settings.predictions, where=("run_id", run_id))
    entity = rows.column("entity_id")[0].as_py()
    p = rows.column("probability").to_pylist()
    p[0] = float(p[0]) + 2 ** -50  # one ulp-sized change is enough
    tampered = rows.set_column(rows.schema.get_field_index("probability"), "probability",
                               pa.array(p, pa.float64()))
    storage.delete_runs(settings.predictions, [run_id])
    storage.write(tampered, settings.predictions)
    with pytest.raises(ReplayMismatchError, match=f"1 probabilities differ .* e.g. {entity}"
                       ) as caught:
        replay(settings, spec, run_id, storage=storage)
    report = caught.value.report
    assert (report.differing, report.bit_identical) == (1, report.rows_compared - 1)
    assert not report.missing_in_replay and not report.missing_in_original
    storage.delete_runs(settings.predictions, [run_id])
    storage.write(rows, settings.predictions)  # as it was, for the tests after this one


def test_what_cannot_be_replayed_is_refused_clearly(first_run, spec):
    settings, run_id = first_run
    storage = LocalStorage(settings)
    with pytest.raises(NotFoundError, match="no score run 0123abc in .*v_yws_score_runs"):
        replay(settings, spec, "0123abc", storage=storage)
    other = spec.with_params({"maxIter": "31"})  # any value: the hash is the spec's content
    with pytest.raises(ReplayError, match="spec whose hash is .* pass the spec file the run "
                                          "used"):
        replay(settings, other, run_id, storage=storage)
    # A run an older release published: no features_version, spec_hash or engine.
    record = storage.read_arrow(settings.score_runs, where=("run_id", run_id))
    old = record.to_pylist()[0] | {"run_id": "oldrun", "batch_id": "old-batch",
                                   "features_version": None, "spec_hash": None, "engine": None}
    storage.publish_run(settings.score_runs, pa.Table.from_pylist([old], schema=record.schema))
    with pytest.raises(ReplayError, match="run oldrun was written by a release that did not "
                                          "record its inputs"):
        replay(settings, spec, "oldrun", storage=storage)


def test_replay_through_the_command_line(first_run, monkeypatch, capsys):
    """``yws score --replay RUN_ID --json`` with the spec the run used (the CLI's default)."""
    settings, _ = first_run
    monkeypatch.setenv("YWS_HOME", str(settings.home))
    assert main(["score", "--as-of", SCORE_DAY.isoformat(), "--engine", "arrow",
                 "--batch-id", "cli", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["score", "--replay", run_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["matches"] and report["bit_identical"] == report["rows_compared"] > 0
    assert report["spec_hash"] == load_spec().hash
    assert main(["score", "--replay", run_id]) == 0
    assert "MATCH: run " in capsys.readouterr().out
    assert main(["score", "--replay", "nope"]) == 1
    assert "error: no score run nope" in capsys.readouterr().err


def test_training_logs_the_features_table_version_it_read_as_its_input(trained_home):
    """Lineage: the champion's training run names the features table at the Delta version its
    rows came from (MLflow log-inputs: a dataset named "<table>@<version>", context
    "training"; docs: Databricks REST API, POST /api/2.0/mlflow/runs/log-inputs)."""
    import mlflow
    from deltalake import DeltaTable

    from yws.model import registry

    registry.configure(trained_home)
    run = mlflow.MlflowClient().get_run(registry.resolve(trained_home, "champion").run_id)
    (found,) = run.inputs.dataset_inputs
    storage = LocalStorage(trained_home)
    history = DeltaTable(str(storage.path(trained_home.features))).history()
    read = max(h["version"] for h in history if h["timestamp"] <= run.info.start_time)
    assert found.dataset.name == f"{trained_home.features}@{read}"
    source = json.loads(found.dataset.source)
    assert source["delta_table_name"] == trained_home.features
    assert source["delta_table_id"] == storage.table_id(trained_home.features)
    assert {t.key: t.value for t in found.tags}["mlflow.data.context"] == "training"
