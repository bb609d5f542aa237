from __future__ import annotations

import datetime as dt
import json
import shutil

import mlflow
import numpy as np
import pyarrow.compute as pc
import pytest

from conftest import SCORE_DAY, TRAIN_DAY
from yws.config import Settings
from yws.contract.quality import FeatureSchemaError, InputDataError
from yws.datasets.synthetic import generate
from yws.model import registry
from yws.model.evaluator import ArrowModel
from yws.model.registry import ModelNotFoundError
from yws.scoring import arrow as score_arrow
from yws.scoring.job import AccountingError, score
from yws.storage import StorageError
from yws.storage.local import LocalStorage


@pytest.fixture(params=["spark", "arrow"])
def engine(request) -> str:
    """Every behaviour below holds for both scoring engines."""
    return str(request.param)


@pytest.fixture
def home(trained_home: Settings, tmp_path) -> Settings:
    """A private copy of the trained home, so each test may write to it."""
    shutil.copytree(trained_home.home, tmp_path / "yws")
    return Settings(home=tmp_path / "yws")


def contents(storage: LocalStorage, settings: Settings) -> list[object]:
    """The rows of the three tables the job writes (a table that does not exist has none: a run
    may create the tables empty before it fails)."""
    return [storage.read_arrow(n).to_pylist() if storage.exists(n) else []
            for n in (settings.predictions, settings.quarantine, settings.score_runs)]


def versions(storage: LocalStorage, settings: Settings) -> list[int | None]:
    return [storage.version(n) for n in (settings.predictions, settings.quarantine,
                                         settings.score_runs)]


def test_score_accounts_for_every_row(home, spark, spec, engine):
    storage = LocalStorage(home)
    result = score(home, spec, spark, storage=storage, engine=engine)
    assert result.as_of_date == SCORE_DAY.isoformat()  # the latest snapshot by default
    assert result.batch_id == SCORE_DAY.isoformat()
    assert result.rows_read == 3000
    assert result.rows_read == result.rows_scored + result.rows_quarantined
    # 8 anomalies: 2 forbidden nulls, 2 infinities, 2 unseen tiers, 2 duplicated ids (4 rows)
    assert result.rows_quarantined == 10
    assert result.quarantine_reasons == {
        "balance_utilization is null or NaN": 2,
        "credit_limit is infinite": 2,
        "duplicate customer_id in the snapshot": 4,
        "product_tier has unseen category 'diamond'": 2,
    }
    assert sum(result.bands.values()) == result.rows_scored
    assert set(result.bands) <= {"GREEN", "YELLOW", "RED"}

    predictions = storage.read_arrow(home.predictions)
    assert predictions.column_names == ["entity_id", "as_of_date", "batch_id", "run_id",
                                        "probability", "prediction", "band", "model_name",
                                        "model_version", "scored_at",
                                        "reason_1", "reason_1_contribution",
                                        "reason_2", "reason_2_contribution",
                                        "reason_3", "reason_3_contribution"]
    assert set(predictions["run_id"].to_pylist()) == {result.run_id}
    assert predictions.num_rows == result.rows_scored
    assert pc.count_distinct(predictions["entity_id"]).as_py() == predictions.num_rows
    p = predictions["probability"].to_numpy()
    bands = np.where(p >= spec.bands.red, "RED", np.where(p >= spec.bands.yellow, "YELLOW",
                                                          "GREEN"))
    assert bands.tolist() == predictions["band"].to_pylist()
    assert set(predictions["model_version"].to_pylist()) == {1}

    quarantine = storage.read_arrow(home.quarantine).to_pylist()
    record = json.loads(quarantine[0]["record"])
    assert record["customer_id"] == quarantine[0]["entity_id"]
    assert set(record) >= set(spec.feature_names)  # the whole input row is kept

    (run,) = storage.read_arrow(home.score_runs).to_pylist()
    assert (run["rows_read"], run["rows_scored"], run["rows_quarantined"]) == (
        3000, result.rows_scored, 10)
    assert run["status"] == "SUCCEEDED" and run["model_version"] == 1
    assert run["run_id"] == result.run_id and run["superseded_by"] is None


def test_rescoring_a_batch_replaces_it_and_leaves_others_alone(home, spark, spec, engine):
    storage = LocalStorage(home)
    first = score(home, spec, spark, storage=storage, batch_id="b1", engine=engine)
    other = score(home, spec, spark, storage=storage, batch_id="b2", engine=engine)
    before_b2 = storage.read_arrow(home.predictions).filter(
        pc.field("batch_id") == "b2").sort_by("entity_id")
    again = score(home, spec, spark, storage=storage, batch_id="b1", engine=engine)
    predictions = storage.read_arrow(home.predictions)
    counts = {b: n for b, n in zip(*[predictions.group_by("batch_id").aggregate(
        [("batch_id", "count")])[c].to_pylist() for c in ("batch_id", "batch_id_count")],
        strict=True)}
    assert counts == {"b1": first.rows_scored, "b2": other.rows_scored}
    assert again.rows_scored == first.rows_scored
    after_b2 = predictions.filter(pc.field("batch_id") == "b2").sort_by("entity_id")
    assert after_b2.equals(before_b2)  # untouched, scored_at included
    quarantine = storage.read_arrow(home.quarantine)
    assert quarantine.num_rows == 2 * first.rows_quarantined
    runs = {r["run_id"]: r for r in storage.read_arrow(home.score_runs).to_pylist()}
    assert len(runs) == 3  # every run is recorded; the re-run superseded the first
    assert runs[first.run_id]["status"] == "SUPERSEDED"
    assert runs[first.run_id]["superseded_by"] == again.run_id
    assert [runs[r.run_id]["status"] for r in (other, again)] == ["SUCCEEDED", "SUCCEEDED"]
    assert set(predictions["run_id"].to_pylist()) == {other.run_id, again.run_id}


def test_registered_model_equals_numpy_from_coefficients_json(home, spark, spec):
    """The logged coefficients.json reproduces the stored probabilities to 1e-9."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    storage = LocalStorage(home)
    score(home, spec, spark, storage=storage)
    registry.configure(home)
    version = registry.resolve(home, "champion")
    coefs = json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="coefficients.json")).read())
    model = registry.load(home, version.version)
    upto = next(i for i, s in enumerate(model.stages) if isinstance(s, VectorAssembler))
    prep = PipelineModel(model.stages[: upto + 1])
    rows = storage.read(spark, home.features).where(F.col("as_of_date") == SCORE_DAY)
    vectors = prep.transform(rows.where(F.col("balance_utilization").isNotNull()
                                        & ~F.col("credit_limit").isin(float("inf"))
                                        & (F.col("product_tier") != "diamond"))).select(
        F.col("customer_id").alias("entity_id"),
        vector_to_array(F.col("features__vec")).alias("x")).toArrow()
    stored = storage.read_arrow(home.predictions)
    by_id = dict(zip(stored["entity_id"].to_pylist(), stored["probability"].to_pylist(),
                     strict=True))
    x = np.array(vectors["x"].to_pylist())
    beta = np.array([coefs["coefficients"][n] for n in coefs["feature_order"]])
    expected = 1 / (1 + np.exp(-(x @ beta + coefs["intercept"])))
    ids = vectors["entity_id"].to_pylist()
    got = np.array([by_id.get(i, np.nan) for i in ids])
    scored = ~np.isnan(got)  # duplicated ids were quarantined, not scored
    assert scored.sum() == len(by_id)
    assert np.max(np.abs(expected[scored] - got[scored])) < 1e-9


def test_schema_error_before_any_write(home, spark, spec, engine):
    storage = LocalStorage(home)
    before = versions(storage, home)
    bad = generate(50, SCORE_DAY + dt.timedelta(days=1)).drop_columns(["channel"])
    storage.write(bad, home.features, mode="overwrite")
    with pytest.raises(FeatureSchemaError, match="missing column\\(s\\): channel"):
        score(home, spec, spark, storage=storage, engine=engine)
    assert versions(storage, home) == before


def test_model_and_alias_errors(home, spark, spec, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no version with alias @staging.*yws train"):
        score(home, spec, spark, alias="staging")
    with pytest.raises(ValueError, match="reserved"):
        score(home, spec, spark, alias="latest")
    empty = Settings(home=tmp_path / "empty")
    with pytest.raises(ModelNotFoundError, match="@champion"):
        score(empty, spec, spark)


def test_no_rows_for_the_date_and_bad_batch_ids(home, spark, spec, engine):
    with pytest.raises(InputDataError, match="no rows for as-of 2001-01-01"):
        score(home, spec, spark, as_of=dt.date(2001, 1, 1), engine=engine)
    with pytest.raises(StorageError, match="batch id"):
        score(home, spec, spark, batch_id="x'; DROP TABLE y; --", engine=engine)


def test_failure_part_way_leaves_every_table_as_it_was(home, spark, spec, engine, monkeypatch):
    storage = LocalStorage(home)
    score(home, spec, spark, storage=storage, as_of=SCORE_DAY, batch_id="keep", engine=engine)
    before = contents(storage, home)
    real_write = storage.write

    def failing_write(data, name, **kw):
        if name == home.quarantine:
            raise StorageError("disk full (simulated)")
        return real_write(data, name, **kw)

    monkeypatch.setattr(storage, "write", failing_write)
    with pytest.raises(StorageError, match="simulated"):
        score(home, spec, spark, storage=storage, as_of=TRAIN_DAY, batch_id="lost",
              engine=engine)
    assert contents(storage, home) == before  # restored (as a new Delta version)
    batches = set(storage.read_arrow(home.predictions)["batch_id"].to_pylist())
    assert batches == {"keep"}


def test_both_engines_write_the_same_batch(home, spark, spec):
    """Arrow and Spark: the same rows, quarantine reasons and bands, probabilities to 1e-9."""
    storage = LocalStorage(home)
    a = score(home, spec, spark, storage=storage, batch_id="by-spark", engine="spark")
    b = score(home, spec, spark, storage=storage, batch_id="by-arrow", engine="arrow")
    assert (a.engine, b.engine) == ("spark", "arrow")
    assert (a.rows_scored, a.rows_quarantined, a.quarantine_reasons, a.bands) == (
        b.rows_scored, b.rows_quarantined, b.quarantine_reasons, b.bands)
    table = storage.read_arrow(home.predictions)
    by = {batch: {r["entity_id"]: r for r in table.filter(pc.field("batch_id") == batch)
                  .to_pylist()} for batch in ("by-spark", "by-arrow")}
    assert by["by-spark"].keys() == by["by-arrow"].keys()
    for entity, row in by["by-spark"].items():
        other = by["by-arrow"][entity]
        assert abs(row["probability"] - other["probability"]) < 1e-9
        assert (row["prediction"], row["band"]) == (other["prediction"], other["band"])
        for k in (1, 2, 3):  # the reason codes: the same names, contributions to 1e-9
            assert row[f"reason_{k}"] == other[f"reason_{k}"], (entity, k)
            mine, theirs = row[f"reason_{k}_contribution"], other[f"reason_{k}_contribution"]
            assert (mine is None) == (theirs is None) and \
                (mine is None or abs(mine - theirs) < 1e-9), (entity, k)
    assert sum(r["reason_1"] is not None for r in by["by-arrow"].values()) > \
        len(by["by-arrow"]) // 2
    bare = score(home, spec, None, storage=storage, batch_id="bare", engine="arrow",
                 reason_codes=False)  # yws score --no-reasons
    rows = storage.read_arrow(home.predictions, where=("batch_id", "bare"))
    assert rows.num_rows == bare.rows_scored == b.rows_scored
    assert all(rows[f"reason_{k}"].null_count == rows.num_rows for k in (1, 2, 3))
    assert rows["probability"].to_pylist() == [by["by-arrow"][e]["probability"]
                                               for e in rows["entity_id"].to_pylist()]
    quarantine = storage.read_arrow(home.quarantine).to_pylist()
    reasons = {}
    for row in quarantine:
        reasons.setdefault(row["batch_id"], set()).add((row["entity_id"], row["reason"]))
    assert reasons["by-spark"] == reasons["by-arrow"]
    assert score(home, spec, None, storage=storage, batch_id="auto", engine="auto").engine == \
        "arrow"


def _by_entity(storage: LocalStorage, table: str, batch: str) -> dict:
    rows = storage.read_arrow(table, where=("batch_id", batch)).to_pylist()
    return {r["entity_id"]: {k: v for k, v in r.items()
                             if k not in ("batch_id", "run_id", "scored_at", "quarantined_at")}
            for r in rows}


def test_arrow_engine_streams_in_record_batches(home, spec, monkeypatch):
    """Many small batches give exactly what one batch gives, duplicates across batches too."""
    storage = LocalStorage(home)
    whole = score(home, spec, None, storage=storage, batch_id="whole", engine="arrow")
    seen: list[int] = []
    real_scan = storage.scan_arrow

    def counting_scan(*args, **kwargs):  # opens the table now, as the real scan does
        batches = real_scan(*args, **kwargs)
        if kwargs.get("where") is None:  # the date pass that finds the snapshot
            return batches

        def counted():
            for batch in batches:
                seen.append(batch.num_rows)
                yield batch
        return counted()

    monkeypatch.setattr(score_arrow, "BATCH_ROWS", 97)
    monkeypatch.setattr(storage, "scan_arrow", counting_scan)
    small = score(home, spec, None, storage=storage, batch_id="small", engine="arrow")
    assert len(seen) >= 3000 // 97 and max(seen) <= 97 and sum(seen) == 3000
    assert (small.rows_scored, small.rows_quarantined, small.quarantine_reasons,
            small.bands) == (whole.rows_scored, whole.rows_quarantined,
                             whole.quarantine_reasons, whole.bands)
    assert small.quarantine_reasons["duplicate customer_id in the snapshot"] == 4
    assert _by_entity(storage, home.quarantine, "small") == \
        _by_entity(storage, home.quarantine, "whole")
    small_rows = _by_entity(storage, home.predictions, "small")
    whole_rows = _by_entity(storage, home.predictions, "whole")
    assert small_rows.keys() == whole_rows.keys()
    for entity, row in small_rows.items():  # the matrix product may round in its last bit
        other = whole_rows[entity]
        assert abs(row.pop("probability") - other.pop("probability")) < 1e-12
        assert row == other


def test_arrow_failure_mid_stream_keeps_its_error_and_writes_nothing(home, spec, monkeypatch):
    storage = LocalStorage(home)
    score(home, spec, None, storage=storage, batch_id="keep", engine="arrow")
    before = contents(storage, home)
    calls = {"n": 0}
    real_explain = ArrowModel.explain  # what the arrow engine calls per record batch

    def failing_explain(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("out of memory on the third batch (simulated)")
        return real_explain(self, *args, **kwargs)

    monkeypatch.setattr(score_arrow, "BATCH_ROWS", 500)
    monkeypatch.setattr(ArrowModel, "explain", failing_explain)
    with pytest.raises(MemoryError, match="third batch"):
        score(home, spec, None, storage=storage, batch_id="lost", engine="arrow")
    assert contents(storage, home) == before


def test_rows_that_change_while_read_are_an_accounting_error(home, spec, monkeypatch):
    storage = LocalStorage(home)
    before = contents(storage, home)
    real_scan = storage.scan_arrow

    def short_scan(*args, **kwargs):  # the scoring stream loses its last batch
        batches = list(real_scan(*args, **kwargs))
        return iter(batches[:-1] if kwargs.get("where") is not None else batches)

    monkeypatch.setattr(score_arrow, "BATCH_ROWS", 1000)
    monkeypatch.setattr(storage, "scan_arrow", short_scan)
    with pytest.raises(AccountingError, match="3000 rows were counted .* 2000 went through"):
        score(home, spec, None, storage=storage, batch_id="short", engine="arrow")
    assert contents(storage, home) == before


def test_auto_scores_on_spark_when_the_batch_does_not_fit(home, spark, spec, monkeypatch):
    assert score_arrow.fits(10_000_000, memory=24 * 2**30)
    assert not score_arrow.fits(10_000_000, memory=1 * 2**30)
    assert score_arrow.fits(10_000, memory=1 * 2**30)  # a small batch fits a small machine
    assert score_arrow.available_memory() > 0
    said: list[str] = []
    monkeypatch.setattr(score_arrow, "available_memory", lambda: 8 * 2**20)
    result = score(home, spec, spark, engine="auto", progress=said.append)
    assert result.engine == "spark"
    assert any("3,000 rows is more than the arrow engine should hold" in s for s in said)
    monkeypatch.setattr(score_arrow, "available_memory", lambda: 16 * 2**30)
    assert score(home, spec, spark, engine="auto", batch_id="fits").engine == "arrow"


def test_arrow_reads_one_table_version_even_if_the_snapshot_is_replaced(home, spec,
                                                                        monkeypatch):
    """Rows re-loaded for the date while a run reads them: the run scores what it counted."""
    from yws.datasets.ingest import write_snapshot

    storage = LocalStorage(home)
    score(home, spec, None, storage=storage, batch_id="before", engine="arrow")
    real_scan = storage.scan_arrow

    def scan_after_a_reload(*args, **kwargs):
        if kwargs.get("where") is not None:  # the scoring stream, after counting and keys
            write_snapshot(storage, generate(3000, SCORE_DAY, seed=99, labeled=False),
                           home.features, "as_of_date", SCORE_DAY)
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(storage, "scan_arrow", scan_after_a_reload)
    during = score(home, spec, None, storage=storage, batch_id="during", engine="arrow")
    assert during.rows_read == 3000 and during.rows_quarantined == 10
    assert _by_entity(storage, home.quarantine, "during") == \
        _by_entity(storage, home.quarantine, "before")
    old = _by_entity(storage, home.predictions, "before")
    new = _by_entity(storage, home.predictions, "during")
    assert old.keys() == new.keys()
    assert all(abs(old[k]["probability"] - new[k]["probability"]) < 1e-12 for k in old)
    monkeypatch.undo()
    after = score(home, spec, None, storage=storage, batch_id="after", engine="arrow")
    assert after.rows_quarantined == 0  # the reloaded snapshot has no planted bad rows


def test_too_many_duplicate_keys_is_a_clear_error_on_both_engines(home, spark, spec, engine,
                                                                  monkeypatch):
    from yws.contract import quality

    monkeypatch.setattr(quality, "MAX_DUPLICATE_KEYS", 1)
    storage = LocalStorage(home)
    with pytest.raises(InputDataError, match="not one row per entity and date"):
        score(home, spec, spark, storage=storage, engine=engine)
    assert not storage.exists(home.predictions)


def test_arrow_leaves_no_temporary_files(home, spec, monkeypatch, tmp_path):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = score(home, spec, None, batch_id="ok", engine="arrow")
    assert result.rows_quarantined == 10  # held back on disk, then written
    monkeypatch.setattr(score_arrow, "predictions", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        score(home, spec, None, batch_id="broken", engine="arrow")
    assert list(scratch.iterdir()) == []


def test_check_score_request_answers_without_writing(home, spark, spec):
    """The score job's check task (no retries): the same errors as a score run, at once."""
    from yws.scoring.job import check_score_request

    storage = LocalStorage(home)
    before = versions(storage, home)
    assert check_score_request(home, spec, batch_id="b1", storage=storage) == {
        "ok": True, "as_of_date": SCORE_DAY.isoformat(), "batch_id": "b1",
        "model_name": home.model_name, "model_alias": "champion", "model_version": 1,
        "rows": 3000}
    on_spark = check_score_request(home, spec, as_of=TRAIN_DAY, storage=storage, spark=spark)
    assert (on_spark["rows"], on_spark["batch_id"]) == (3000, TRAIN_DAY.isoformat())
    with pytest.raises(InputDataError, match="no rows for as-of 2001-01-01"):
        check_score_request(home, spec, as_of=dt.date(2001, 1, 1), storage=storage)
    with pytest.raises(ModelNotFoundError, match="@staging"):
        check_score_request(home, spec, alias="staging", storage=storage)
    with pytest.raises(ValueError, match="reserved"):
        check_score_request(home, spec, alias="v2", storage=storage)
    with pytest.raises(StorageError, match="batch id"):
        check_score_request(home, spec, batch_id="b'; DROP TABLE x", storage=storage)
    assert versions(storage, home) == before


def test_a_failure_after_the_commit_point_keeps_the_published_batch(home, spec, monkeypatch):
    """Whether a commit landed is unknown when the error comes during it (a connection reset
    after the MERGE): undo looks first, and a published run keeps its rows."""
    storage = LocalStorage(home)
    real = storage.publish_run

    def commit_then_fail(name, record):
        real(name, record)
        raise OSError("connection reset after the commit (simulated)")

    monkeypatch.setattr(storage, "publish_run", commit_then_fail)
    said: list[str] = []
    with pytest.raises(OSError, match="after the commit"):
        score(home, spec, None, storage=storage, batch_id="landed", engine="arrow",
              progress=said.append)
    (run,) = storage.read_arrow(home.score_runs).to_pylist()
    assert run["batch_id"] == "landed" and run["status"] == "SUCCEEDED"
    kept = storage.read_arrow(home.predictions, where=("run_id", run["run_id"]))
    assert kept.num_rows == run["rows_scored"] > 0
    assert any("was published before it failed" in s for s in said)


def test_the_spark_band_expression_agrees_with_the_bands_at_every_edge(spark, spec):
    import numpy as np

    from yws.scoring.spark import band_column

    b = spec.bands
    edges = [0.0, float(np.nextafter(b.yellow, 0)), b.yellow, float(np.nextafter(b.red, 0)),
             b.red, 1.0]
    rows = spark.createDataFrame([(p,) for p in edges], "probability double")
    got = [r["band"] for r in rows.select(band_column(spec).alias("band")).collect()]
    assert got == [b.band(p) for p in edges] == ["GREEN", "GREEN", "YELLOW", "YELLOW", "RED",
                                                 "RED"]




# -- drift (issue 18) ------------------------------------------------------------------------------
def test_drift_is_ok_on_a_normal_batch_and_alerts_on_shifted_features_alike_on_both_engines(
        home, spark, spec):
    """A snapshot drawn like the training one drifts nowhere; one generated with the drift
    option (`yws data generate --drift balance_utilization=+0.3,region`) raises ALERT on exactly
    those two features. Both engines count the same rows in the same bins."""
    from yws.datasets.ingest import write_snapshot
    from yws.datasets.synthetic import parse_drift

    storage = LocalStorage(home)
    shifted_day = dt.date(2026, 12, 31)
    write_snapshot(storage, generate(3000, shifted_day, labeled=False, anomalies=8,
                                     drift=parse_drift("balance_utilization=+0.3,region")),
                   home.features, "as_of_date", shifted_day)
    runs = {(engine, day): score(home, spec, spark, storage=storage, as_of=day, engine=engine,
                                 batch_id=f"{engine}-{day}")
            for engine in ("spark", "arrow") for day in (SCORE_DAY, shifted_day)}
    table = storage.read_arrow(home.drift).to_pylist()

    def rows(engine: str, day: dt.date) -> dict[str, dict]:
        run = runs[engine, day].run_id
        return {r["feature"]: {k: v for k, v in r.items()
                               if k not in ("run_id", "batch_id", "computed_at")}
                for r in table if r["run_id"] == run}

    for day in (SCORE_DAY, shifted_day):
        assert rows("spark", day) == rows("arrow", day)  # counts, shares and PSI alike
    normal, shifted = rows("arrow", SCORE_DAY), rows("arrow", shifted_day)
    features = spec.feature_names
    assert set(normal) == {*features, "__score__", "__bands__"}
    assert {f: normal[f]["status"] for f in features} == dict.fromkeys(features, "OK")
    assert runs["arrow", SCORE_DAY].drift["status"] == "OK"
    assert {f for f in features if shifted[f]["status"] == "ALERT"} == {
        "balance_utilization", "region"}
    assert all(shifted[f]["status"] == "OK" for f in features
               if f not in ("balance_utilization", "region"))
    assert shifted["__score__"]["psi"] > normal["__score__"]["psi"]
    # features over every row read (the quarantined too), the score over the rows scored
    result = runs["arrow", SCORE_DAY]
    assert normal["product_tier"]["rows_counted"] == result.rows_read == 3000
    assert normal["product_tier"]["unseen_rate"] == pytest.approx(2 / 3000)  # the 'diamond's
    assert normal["__score__"]["rows_counted"] == result.rows_scored
    audit = {r["run_id"]: r for r in storage.read_arrow(home.score_runs).to_pylist()}
    summary = audit[runs["arrow", shifted_day].run_id]
    assert (summary["drift_status"], summary["drift_worst_feature"]) == (
        "ALERT", "balance_utilization")
    assert summary["drift_worst_psi"] == shifted["balance_utilization"]["psi"]


def test_drift_rows_are_invisible_until_the_run_publishes_and_undone_with_it(home, spec,
                                                                          monkeypatch):
    from yws.contract.sqlfiles import statements
    from yws.warehouse.local import LocalWarehouse

    storage = LocalStorage(home)
    warehouse = LocalWarehouse(home)
    warehouse.apply(statements(home))
    count = "SELECT count(*) AS n FROM yws_dev.ml.v_yws_drift"
    real = storage.publish_run
    seen: list[int] = []

    def look_then_fail(name, record):
        run = record["run_id"][0].as_py()
        seen.append(storage.read_arrow(home.drift, where=("run_id", run)).num_rows)
        seen.append(warehouse.query(count)["n"][0].as_py())
        raise OSError("the publish failed (simulated)")

    monkeypatch.setattr(storage, "publish_run", look_then_fail)
    with pytest.raises(OSError, match="simulated"):
        score(home, spec, None, storage=storage, engine="arrow")
    assert seen == [len(spec.features) + 2, 0]  # written, but no reader sees them
    assert storage.read_arrow(home.drift).num_rows == 0  # undo removed them
    monkeypatch.setattr(storage, "publish_run", real)
    published = score(home, spec, None, storage=storage, engine="arrow")
    shown = warehouse.query("SELECT DISTINCT run_id, official FROM yws_dev.ml.v_yws_drift")
    assert shown.to_pylist() == [{"run_id": published.run_id, "official": True}]
