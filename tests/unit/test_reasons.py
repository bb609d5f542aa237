"""Reason codes from the NumPy evaluator, on a hand-built pipeline (no Spark): each feature's
contribution is coefficient x (the value the regression reads - its training mean), summed over
its encoded columns; the top three positive ones, largest first, ties to the spec's order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from yws.model import evaluator
from yws.model.evaluator import (
    REASON_OUTPUTS,
    ArrowModel,
    ArrowPyfunc,
    AssemblerStage,
    CastStage,
    ImputerStage,
    IndexerStage,
    InvalidInputError,
    LogisticStage,
    OneHotStage,
    ScalerStage,
    reasons_param,
)
from yws.model.pipeline import UNKNOWN

MEAN = np.array([2.0, 10.0, 0.5, 0.25, 1.0])
STD = np.array([4.0, 5.0, 0.5, 0.0, 2.0])  # a constant column: Spark scales it to 0
BETA = np.array([0.8, -0.3, 1.5, 0.7, 0.8])


def model(*, scaler: bool = True, with_std: bool = True, with_mean: bool = False,
          beta: np.ndarray = BETA) -> ArrowModel:
    """a, b (imputed), c (categorical: x, y and the unknown bucket), d: the YWS pipeline's
    stage kinds, in its order."""
    stages: list[object] = [
        CastStage([("a", "a__num"), ("b", "b__num"), ("d", "d__num")]),
        ImputerStage(["b__num"], ["b__imp"], [10.0], float("nan")),
        IndexerStage(["c"], ["c__idx"], [["x", "y"]], "keep"),
        OneHotStage(["c__idx"], ["c__onehot"], [2], True, True),  # x, y, unknown: 3 - 1 columns
        AssemblerStage(["a__num", "b__imp", "c__onehot", "d__num"], "features__vec"),
    ]
    if scaler:
        stages.append(ScalerStage("features__vec", "features__scaled", STD, MEAN, with_std,
                                  with_mean))
    stages.append(LogisticStage("features__scaled" if scaler else "features__vec", beta, -1.0,
                                0.5))
    return ArrowModel(stages)


ROWS = pa.table({
    "a": pa.array([6.0, 2.0, -10.0, 2.0], pa.float64()),
    "b": pa.array([None, 0.0, 30.0, 10.0], pa.float64()),
    "c": pa.array(["x", "y", None, "never-seen"], pa.string()),
    "d": pa.array([7.0, 1.0, 5.0, 1.0], pa.float64()),
})


def by_hand(row: dict[str, float | str | None]) -> dict[str, float]:
    """The contribution formula written out for one row of ROWS (withStd, no withMean)."""
    def z(j: int, x: float) -> float:
        return x / STD[j] if STD[j] else 0.0

    def term(j: int, x: float) -> float:
        return BETA[j] * (z(j, x) - z(j, MEAN[j]))

    level = {"x": 0, "y": 1}.get(str(row["c"]), 2)
    b = 10.0 if row["b"] is None else float(row["b"])  # the imputer's surrogate
    c_name = f"c={['x', 'y', UNKNOWN][level]}"
    return {"a": term(0, float(row["a"])), "b": term(1, b),  # type: ignore[arg-type]
            c_name: term(2, float(level == 0)) + term(3, float(level == 1)),
            "d": term(4, float(row["d"]))}  # type: ignore[arg-type]


def test_contributions_order_and_names_follow_the_formula():
    p, y, why = model().explain(ROWS)
    assert why is not None and list(why) == list(REASON_OUTPUTS)
    assert np.array_equal(p, model().predict(ROWS)[0])  # the probability is untouched
    for i, row in enumerate(ROWS.to_pylist()):
        expected = sorted(((v, n) for n, v in by_hand(row).items() if v > 0),
                          key=lambda t: -t[0])[:3]
        for k in range(3):
            name, value = why[f"reason_{k + 1}"][i].as_py(), \
                why[f"reason_{k + 1}_contribution"][i].as_py()
            if k < len(expected):
                assert name == expected[k][1], (i, k)
                assert value == pytest.approx(expected[k][0], abs=1e-12)
            else:
                assert name is None and value is None, (i, k)  # fewer positives: null


def test_categorical_levels_by_name_and_the_unknown_bucket():
    _, _, why = model(beta=np.array([0.0, 0.0, -2.0, -2.0, 0.0])).explain(ROWS)
    assert why is not None
    # x's column is above its training mean, with a negative coefficient: no reason; y's
    # column is constant (std 0: scaled to 0), so y, like the unknown bucket (a null, an unseen
    # value), has x's column at 0, under its mean: a reason, named by the row's level
    assert why["reason_1"].to_pylist() == [None, "c=y", f"c={UNKNOWN}", f"c={UNKNOWN}"]
    assert why["reason_1_contribution"].to_pylist()[1:] == [2.0, 2.0, 2.0]
    assert why["reason_2"].to_pylist() == [None] * 4
    assert evaluator.UNKNOWN_LEVEL == UNKNOWN  # the training's coefficient names say the same


def test_ties_go_to_the_feature_first_in_the_spec():
    beta = np.array([1.0, 0.0, 0.0, 0.0, 1.0])
    stages = model(beta=beta).stages
    stages[5] = ScalerStage("features__vec", "features__scaled", np.ones(5), np.zeros(5),
                            True, False)
    tied = pa.table({"a": [3.0], "b": [1.0], "c": ["x"], "d": [3.0]})
    _, _, why = ArrowModel(stages).explain(tied)
    assert why is not None
    assert (why["reason_1"][0].as_py(), why["reason_2"][0].as_py()) == ("a", "d")
    assert why["reason_1_contribution"][0].as_py() == why["reason_2_contribution"][0].as_py()


def test_with_mean_the_training_mean_is_zero_and_without_a_scaler_there_are_no_reasons():
    _, _, centred = model(with_mean=True).explain(ROWS)
    _, _, plain = model().explain(ROWS)
    assert centred is not None and plain is not None
    # centring moves every z and its mean alike: the same reasons to rounding
    assert centred["reason_1"].to_pylist() == plain["reason_1"].to_pylist()
    assert np.allclose(centred["reason_1_contribution"].to_numpy(zero_copy_only=False),
                       plain["reason_1_contribution"].to_numpy(zero_copy_only=False),
                       rtol=1e-12, equal_nan=True)
    bare = model(scaler=False)
    assert bare.reason_plan is None and bare.explain(ROWS)[2] is None


def test_a_rows_reasons_are_the_same_alone_and_in_a_batch():
    rng = np.random.default_rng(3)
    many = pa.table({"a": rng.normal(2, 4, 300), "b": rng.normal(10, 5, 300),
                     "c": rng.choice(["x", "y", "z"], 300).tolist(),
                     "d": rng.normal(1, 2, 300)})
    m = model()
    _, _, together = m.explain(many)
    assert together is not None
    for i in (0, 17, 299):
        _, _, alone = m.explain(many.slice(i, 1))
        assert alone is not None
        for name in REASON_OUTPUTS:
            assert alone[name][0].as_py() == together[name][i].as_py(), (i, name)


def test_the_pyfunc_returns_reasons_only_when_asked():
    pyfunc = ArrowPyfunc(model())
    frame = ROWS.to_pandas()
    plain = pyfunc.predict(frame)
    assert list(plain.columns) == ["prediction", "probability"]
    asked = pyfunc.predict(frame, params={"reasons": True})
    assert list(asked.columns) == ["prediction", "probability", *REASON_OUTPUTS]
    assert pyfunc.predict(frame, params={"reasons": False}).equals(plain)
    assert reasons_param(None) is False and reasons_param({}) is False
    with pytest.raises(InvalidInputError, match="unknown inference parameter 'top'"):
        reasons_param({"top": 3})
    with pytest.raises(InvalidInputError, match="reasons must be true or false"):
        reasons_param({"reasons": "yes"})


def test_the_signature_declares_the_reasons_param():
    """MLflow hands the pyfunc only the params its signature declares (its scoring server
    splits a request's ``params`` from the input, ``SERVING_PARAMS_KEY = "params"`` in
    mlflow/pyfunc/scoring_server/__init__.py, and checks them against the ParamSchema)."""
    from yws.contract.spec import load_spec
    from yws.model.flavor import signature

    sig = signature(load_spec())
    assert sig.params is not None
    (param,) = sig.params.params
    assert (param.name, param.dtype.name, param.default) == ("reasons", "boolean", False)
    assert list(evaluator.PARAMS) == ["reasons"]
