"""An R glm, exported by the R package, scores in Python as R's predict(type = "response").

R (Rscript, with the package installed from r_client/ into a temporary library) fits a
binomial glm on a synthetic training snapshot like the demo's, exports it with
yws_export_glm() and predicts a scoring snapshot; Python reads the description with
yws.model.r_glm and scores the same rows. The probabilities agree to 1e-12; the rows R answers
NA (a missing value) or cannot score (a level it has not seen: predict() stops) are exactly
the rows Python refuses, with the quarantine rules' words, besides rows with an infinite
value, which R turns into a probability of (nearly) 0 or 1 and YWS refuses as the batch job
does.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from yws.datasets.synthetic import generate
from yws.model.r_glm import RGlm

REPO = Path(__file__).resolve().parents[2]
TRAIN_DAY, SCORE_DAY = dt.date(2026, 8, 31), dt.date(2026, 11, 30)
NUMERIC = ["tenure_months", "monthly_spend", "balance_utilization", "days_past_due_avg",
           "late_payments_12m", "credit_limit", "support_calls_90d"]
LOGICAL = ["has_autopay", "is_business"]
CATEGORICAL = ["region", "product_tier", "channel"]
FEATURES = NUMERIC + LOGICAL + CATEGORICAL

# region and product_tier become factors; channel stays character (glm() makes it a factor
# with the levels it records in fit$xlevels, which the export takes).
R_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressPackageStartupMessages(library(yws, lib.loc = args[[1]]))
read <- function(path) utils::read.csv(path, na.strings = "NA", stringsAsFactors = FALSE)
train <- read(args[[2]])
score <- read(args[[3]])
train$region <- factor(train$region)
train$product_tier <- factor(train$product_tier)
stopifnot(is.logical(train$has_autopay), is.logical(score$has_autopay),
          is.character(train$channel))
fit <- glm(defaulted_90d ~ tenure_months + monthly_spend + balance_utilization +
             days_past_due_avg + late_payments_12m + credit_limit + support_calls_90d +
             has_autopay + is_business + region + product_tier + channel,
           family = binomial, data = train)
writeLines(yws_glm_json(yws_export_glm(fit, as_of = args[[6]], features_version = 0)),
           args[[4]])
# predict() stops at a level the fit has not seen: predict the other rows, mark those.
unseen <- rep(FALSE, nrow(score))
for (v in names(fit$xlevels)) {
  unseen <- unseen | (!is.na(score[[v]]) & !score[[v]] %in% fit$xlevels[[v]])
}
p <- rep(NA_real_, nrow(score))
p[!unseen] <- predict(fit, score[!unseen, , drop = FALSE], type = "response")
writeLines(ifelse(unseen, "unseen", ifelse(is.na(p), "NA", sprintf("%.17g", p))), args[[5]])
"""


def _csv(table: pa.Table, path: Path) -> None:
    """CSV for utils::read.csv: NA for a missing value (and NaN, which R reads as NA too),
    floats in their shortest exact form, TRUE/FALSE for logicals."""
    frame = table.to_pandas()
    for name in LOGICAL:
        frame[name] = frame[name].map({True: "TRUE", False: "FALSE"})
    frame.to_csv(path, index=False, na_rep="NA")


def _score_rows() -> pa.Table:
    """A scoring snapshot like the demo's (missing values, anomalies: a forbidden null, an
    infinite credit limit, an unseen product tier), plus rows made bad by hand."""
    table = generate(2000, SCORE_DAY, labeled=False, anomalies=8)
    data = table.to_pydict()
    data["region"][5] = "atlantis"
    data["channel"][6] = "fax"
    data["has_autopay"][7] = None
    data["tenure_months"][8] = float("nan")
    data["monthly_spend"][9] = float("-inf")
    return pa.table(data, schema=table.schema)


@pytest.fixture(scope="module")
def r_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("Rscript"):
        pytest.skip("R is not installed (the make test set-up installs it)")
    lib = tmp_path_factory.mktemp("rlib")
    done = subprocess.run(["R", "CMD", "INSTALL", "--no-test-load", "-l", str(lib),
                           str(REPO / "r_client")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return lib


def test_an_exported_glm_scores_in_python_as_r_predicts(r_lib: Path, tmp_path: Path) -> None:
    train = generate(3000, TRAIN_DAY)
    score = _score_rows()
    _csv(train, tmp_path / "train.csv")
    _csv(score, tmp_path / "score.csv")
    (tmp_path / "fit.R").write_text(R_SCRIPT)
    done = subprocess.run(
        ["Rscript", str(tmp_path / "fit.R"), str(r_lib), str(tmp_path / "train.csv"),
         str(tmp_path / "score.csv"), str(tmp_path / "model.json"), str(tmp_path / "p.txt"),
         TRAIN_DAY.isoformat()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    model = RGlm.load(tmp_path / "model.json")
    assert model.features == tuple(FEATURES)
    assert [t.kind for t in model.terms] == ["numeric"] * 7 + ["logical"] * 2 + ["factor"] * 3
    assert model.terms[-1].levels == ("branch", "phone", "web")  # the character column
    complete = np.ones(train.num_rows, dtype=bool)
    for name in FEATURES:
        complete &= np.asarray(pc.is_valid(train[name]).to_numpy(zero_copy_only=False))
    assert model.training.nobs == int(complete.sum())  # glm dropped the incomplete rows
    assert model.training.as_of == TRAIN_DAY

    r_out = (tmp_path / "p.txt").read_text().split()
    assert len(r_out) == score.num_rows
    r_unseen = np.array([v == "unseen" for v in r_out])
    r_na = np.array([v == "NA" for v in r_out])
    r_p = np.array([float(v) if v not in ("NA", "unseen") else np.nan for v in r_out])
    infinite = np.zeros(score.num_rows, dtype=bool)
    for name in NUMERIC:
        infinite |= np.isinf(score[name].to_numpy(zero_copy_only=False).astype(float))

    scores = model.predict(score)
    refused = scores.refused
    # Python refuses exactly what R cannot score, and the infinite values the batch job holds
    # back (R answers those too; their probability is 0 or 1 to a hair).
    assert r_unseen.sum() >= 3 and r_na.sum() >= 50 and infinite.sum() >= 3
    assert (refused == (r_unseen | r_na | infinite)).all()
    both = ~refused
    diff = np.abs(scores.probability[both] - r_p[both])
    assert both.sum() > 1500
    assert diff.max() <= 1e-12, f"max |python - R| = {diff.max():.3g}"
    print(f"max {diff.max():.3g}, identical {int((diff == 0).sum())} of {int(both.sum())}")

    made_bad = {5: "region has unseen category 'atlantis'",
                6: "channel has unseen category 'fax'", 7: "has_autopay is null",
                8: "tenure_months is null or NaN", 9: "monthly_spend is infinite"}
    for row, reason in made_bad.items():  # a row may have a missing value of its own too
        assert reason in (scores.reasons[row] or "").split("; ")
    diamond = [i for i, r in enumerate(scores.reasons) if r and "'diamond'" in r]
    assert diamond and all(r_unseen[i] for i in diamond)
    # pandas gives the same answer as Arrow
    again = model.predict(score.to_pandas())
    assert again.reasons == scores.reasons
    assert np.array_equal(again.probability, scores.probability, equal_nan=True)
