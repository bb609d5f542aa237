# The constants shared with the Python package (issue 15): R/yws-contract.R must say what
# inst/contract.json says, and that file must be the same bytes as the Python side's copy.

shared_contract <- function() {
  path <- system.file("contract.json", package = "yws")
  expect_true(nzchar(path), label = "inst/contract.json is installed")
  jsonlite::fromJSON(path, simplifyVector = TRUE)
}

test_that("the package's constants are the shared contract's", {
  shared <- shared_contract()
  expect_setequal(setdiff(names(shared), "_comment"), names(contract))
  for (name in names(contract)) {
    expect_identical(unname(contract[[name]]), shared[[name]], label = paste0("contract$", name))
  }
  expect_true(nzchar(shared[["_comment"]]))
})

test_that("inst/contract.json is a byte-identical copy of python/yws/contract/shared.json", {
  python <- test_path("..", "..", "..", "python", "yws", "contract", "shared.json")
  skip_if_not(file.exists(python), "not run from a checkout of the repository")
  ours <- system.file("contract.json", package = "yws")
  expect_identical(readBin(ours, "raw", file.size(ours)), readBin(python, "raw", file.size(python)))
})

test_that("the patterns match whole strings, as the Python checks do", {
  ok <- c("b1", "r-20261130T055555-bef43616", "nightly-2026-11-30", "a.b:c_d", strrep("x", 128))
  bad <- c("", strrep("x", 129), "b 1", "b'1", "b;1", "b\n", "b\\1", "b/1", "\u00e9")
  for (x in ok) expect_identical(check_batch_id(x), x)
  for (x in bad) expect_error(check_batch_id(x), class = "yws_input_error")
  expect_identical(check_identifier("yws_dev", "catalog"), "yws_dev")
  for (x in c("1ml", "ml-x", "ml.x", "ml\n", strrep("m", 256))) {
    expect_error(check_identifier(x, "schema"), class = "yws_input_error")
  }
  expect_identical(check_identifier(strrep("m", 255), "schema"), strrep("m", 255))
})

test_that("model aliases follow the registry's rule", {
  for (x in c("champion", "challenger", "my-alias", "_x", "v1a")) expect_identical(check_alias(x), x)
  for (x in c("latest", "v1", "v42", "1x", "a b", "a.b", "a\n", "", strrep("a", 256))) {
    expect_error(check_alias(x), class = "yws_input_error")
  }
})

test_that("bands and views come from the contract", {
  df <- prediction_types(data.frame(band = c("RED", "GREEN"), previous_band = "YELLOW"))
  expect_identical(levels(df$band), contract$bands)
  expect_identical(levels(df$previous_band), contract$bands)
  expect_error(check_bands("AMBER"), "GREEN, YELLOW, RED", class = "yws_input_error")
  skip_if_not_installed("withr")
  withr::local_options(yws.catalog = "c", yws.schema = "s")
  for (view in c("all", "latest", "warnings")) {
    sql <- prediction_query(view, list(), FALSE, "sql")$sql
    expect_match(sql, paste0("FROM c.s.", contract$views[[c(all = "predictions", latest = "latest",
                                                           warnings = "warnings")[[view]]]], " "),
                 fixed = TRUE)
  }
})
