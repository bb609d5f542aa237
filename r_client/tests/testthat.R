library(testthat)
library(yws)

test_check("yws")
