# The tests need testthat (and, for most of them, webfakes and withr): all in Suggests, so a
# check with only the hard dependencies installed (_R_CHECK_DEPENDS_ONLY_=true) runs none.
if (requireNamespace("testthat", quietly = TRUE)) {
  library(testthat)
  library(yws)
  test_check("yws")
}
