"""A row's probability from the NumPy evaluator does not depend on the rows scored with it.

Model Serving coalesces concurrent single-row requests into one batch, and `yws_predict(...,
chunk_size = 1)` in R must answer what one request of all the rows answers (the R end-to-end
test compares them with `identical()`). A matrix product sums a row's terms in another order
for one row than for many (BLAS), which moved the last bits: the margin is summed column by
column instead.
"""

from __future__ import annotations

import numpy as np

from yws.model.evaluator import LogisticStage


def test_a_rows_probability_is_the_same_alone_and_in_a_batch():
    rng = np.random.default_rng(7)
    stage = LogisticStage("features", rng.normal(size=31), -0.4, 0.5)
    x = np.asfortranarray(rng.normal(size=(257, 31)))
    cols = {"features": x}
    stage.apply(cols)
    together = cols["probability__p1"]
    for lo, hi in ((0, 1), (5, 7), (100, 164), (256, 257)):
        part = {"features": np.asfortranarray(x[lo:hi])}
        stage.apply(part)
        assert np.array_equal(part["probability__p1"], together[lo:hi]), (lo, hi)
    # and it is the logistic of the linear predictor
    assert np.allclose(together, 1 / (1 + np.exp(-(x @ stage.coefficients - 0.4))), rtol=1e-14)
    assert np.array_equal(cols["prediction"], (together > 0.5).astype(np.int32))
