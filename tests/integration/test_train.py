from __future__ import annotations

import datetime as dt
import json

import mlflow
import pytest

from conftest import TRAIN_DAY, load_demo_data
from yws.contract.quality import FeatureSchemaError, InputDataError
from yws.datasets.ingest import write_snapshot
from yws.datasets.synthetic import generate
from yws.model import registry
from yws.training.job import TrainingError, train


def test_train_registers_logs_and_promotes(trained_home, spec):
    registry.configure(trained_home)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(trained_home.model_name, "champion")
    assert str(champion.version) == "1"
    assert set(champion.aliases) == {"champion", "challenger"}
    assert champion.tags["validation"] == "passed"
    run = client.get_run(champion.run_id)
    for key in ("auc_roc", "auc_pr", "log_loss", "brier", "tp", "fp", "tn", "fn"):
        assert key in run.data.metrics, key
    assert run.data.params["regParam"] == str(spec.model["regParam"])
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"coefficients.json", "roc_curve.png", "calibration_curve.png",
            "coefficients.png", "model"} <= artifacts
    coefs = json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=champion.run_id, artifact_path="coefficients.json")).read())
    assert set(coefs) == {"intercept", "coefficients", "feature_order"}
    info = mlflow.models.get_model_info(f"models:/{trained_home.model_name}/1")
    assert [c.name for c in info.signature.inputs.inputs] == spec.feature_names
    assert [c.name for c in info.signature.outputs.inputs] == [
        "probability", "prediction", "band", "error"]
    assert info.saved_input_example_info["type"] == "dataframe"


@pytest.mark.slow
def test_worse_model_stays_challenger_and_force_promote(spark, settings, storage, spec):
    load_demo_data(storage, settings)
    first = train(settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
    assert first.promoted and first.aliases == ["challenger", "champion"]
    # Heavy L1 regularisation zeroes every coefficient: a far worse model.
    worse = spec.with_params({"regParam": "1.0", "elasticNetParam": "1.0"})
    second = train(settings, worse, spark, as_of=TRAIN_DAY, storage=storage)
    assert not second.promoted
    assert second.champion_metrics["auc_roc"] == pytest.approx(first.metrics["auc_roc"])
    assert "worse than the champion" in second.reason
    assert second.aliases == ["challenger"]
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(settings.model_name, "champion").version) == "1"
    assert client.get_model_version(settings.model_name, "2").tags["validation"] == "failed"
    forced = train(settings, worse, spark, as_of=TRAIN_DAY, storage=storage,
                   force_promote=True)
    assert forced.promoted and forced.version == "3"
    assert str(client.get_model_version_by_alias(settings.model_name, "champion").version) == "3"


def _registered_versions(settings) -> int:
    registry.configure(settings)
    return len(mlflow.MlflowClient().search_model_versions(f"name='{settings.model_name}'"))


def _nothing_cached(spark) -> bool:
    return spark._jsparkSession.sharedState().cacheManager().isEmpty()


@pytest.fixture(params=["cached", "uncached"])
def caching(request, monkeypatch):
    """Train on a target whose session caches the checked rows, and on one that cannot."""
    from yws.platform import LocalTarget

    if request.param == "uncached":  # as on serverless environment 4
        monkeypatch.setattr(LocalTarget, "cached", lambda self, df: None)
    return request.param


def test_every_row_read_is_accounted_for_and_nothing_stays_cached(spark, settings, storage,
                                                                  spec, caching):
    """Rows read = rows trained + rows held out + rows left out (unlabelled, or failed a
    quality check), whether or not the session caches the checked rows; the cache is gone
    when the job returns, and when it refuses the rows."""
    import pyarrow as pa

    # 8 anomalies: 2 nulls, 2 infinities and 2 repeated ids (4 rows) fail the checks; the 2
    # unseen tiers are only judged when scoring. Every 100th row, from the 4th, has no label.
    table = generate(3000, TRAIN_DAY, anomalies=8)
    labels = [None if i % 100 == 3 else v
              for i, v in enumerate(table["defaulted_90d"].to_pylist())]
    table = table.set_column(table.schema.get_field_index("defaulted_90d"), "defaulted_90d",
                             pa.array(labels, pa.int32()))
    write_snapshot(storage, table, settings.features, "as_of_date", TRAIN_DAY)
    result = train(settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
    assert result.rows_read == 3000
    assert result.rows_excluded == {"unlabelled": 30, "failed quality checks": 8}
    assert result.rows_used == 2962 == result.rows_train + result.rows_test
    assert 0 < result.rows_test < result.rows_train
    assert _nothing_cached(spark)
    assert {"read_and_check", "fit", "evaluate", "log_model"} <= set(result.timings)

    one_class = table.set_column(table.schema.get_field_index("defaulted_90d"),
                                 "defaulted_90d", pa.array([0] * 3000, pa.int32()))
    write_snapshot(storage, one_class, settings.features, "as_of_date", TRAIN_DAY)
    with pytest.raises(InputDataError, match="one class only"):
        train(settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
    assert _nothing_cached(spark)


def test_missing_feature_table(spark, settings, spec):
    with pytest.raises(LookupError, match="yws_features does not exist.*yws data generate"):
        train(settings, spec, spark)


def test_schema_errors_name_the_columns(spark, settings, storage, spec):
    table = generate(200, TRAIN_DAY).drop_columns(["region", "credit_limit"])
    table = table.set_column(table.schema.get_field_index("has_autopay"), "has_autopay",
                             table["tenure_months"])
    write_snapshot(storage, table, settings.features, "as_of_date", TRAIN_DAY)
    with pytest.raises(FeatureSchemaError) as err:
        train(settings, spec, spark)
    message = str(err.value)
    assert "missing column(s): credit_limit, region" in message
    assert "has_autopay is double, expected boolean" in message
    assert _registered_versions(settings) == 0


def test_one_class_label(spark, settings, storage, spec):
    import pyarrow as pa

    table = generate(300, TRAIN_DAY)
    table = table.set_column(table.schema.get_field_index("defaulted_90d"), "defaulted_90d",
                             pa.array([0] * 300, pa.int32()))
    write_snapshot(storage, table, settings.features, "as_of_date", TRAIN_DAY)
    with pytest.raises(InputDataError, match="one class only"):
        train(settings, spec, spark)


def test_label_values_outside_0_1(spark, settings, storage, spec):
    import pyarrow as pa

    table = generate(300, TRAIN_DAY)
    labels = [2 if i % 50 == 0 else v for i, v in enumerate(table["defaulted_90d"].to_pylist())]
    table = table.set_column(table.schema.get_field_index("defaulted_90d"), "defaulted_90d",
                             pa.array(labels, pa.int32()))
    write_snapshot(storage, table, settings.features, "as_of_date", TRAIN_DAY)
    with pytest.raises(InputDataError, match="must be 0 or 1; 6 row"):
        train(settings, spec, spark)


def test_no_rows_for_the_date(spark, settings, storage, spec):
    write_snapshot(storage, generate(100, TRAIN_DAY), settings.features, "as_of_date", TRAIN_DAY)
    with pytest.raises(InputDataError, match="has no rows for as-of 2020-01-01"):
        train(settings, spec, spark, as_of=dt.date(2020, 1, 1))


def test_non_finite_metrics_are_never_registered(spark, settings, storage, spec, monkeypatch):
    import yws.training.job as train_module

    load_demo_data(storage, settings, rows=800)
    monkeypatch.setattr(train_module, "metrics",
                        lambda y, p, t: {"auc_roc": float("nan"), "auc_pr": 0.1})
    with pytest.raises(TrainingError, match="non-finite metrics"):
        train(settings, spec, spark, as_of=TRAIN_DAY, storage=storage)
    assert _registered_versions(settings) == 0


def test_the_model_carries_its_pyfunc_code_and_no_pyspark_requirement(trained_home):
    """Model Serving and `mlflow.pyfunc` install the model's requirements and load its pyfunc
    flavour: the arrow engine, logged with the model, needs NumPy, pandas, pyarrow, sqlglot and
    MLflow — never open-source pyspark, which on serverless would break Databricks Connect."""
    import yaml

    from yws.model.flavor import PYFUNC_MODULE, PYFUNC_PACKAGES

    registry.configure(trained_home)
    folder = mlflow.artifacts.download_artifacts(f"models:/{trained_home.model_name}/1")
    requirements = open(f"{folder}/requirements.txt").read().split()
    names = [r.split("==")[0] for r in requirements if not r.startswith("-")]
    assert names == list(PYFUNC_PACKAGES) and "pyspark" not in names
    assert all("==" in r for r in requirements if not r.startswith("-"))
    pyfunc = yaml.safe_load(open(f"{folder}/MLmodel"))["flavors"]["python_function"]
    assert (pyfunc["loader_module"], pyfunc["code"], pyfunc["data"]) == \
        (PYFUNC_MODULE, "code", "sparkml")
    logged = open(f"{folder}/code/{PYFUNC_MODULE}.py").read()
    assert "class ArrowPyfunc" in logged


