test_that("host and token come from arguments, options, variables, then a profile", {
  skip_if_not_installed("withr")
  cfg <- withr::local_tempfile(lines = c("[DEFAULT]", "host = adb-1.azuredatabricks.net",
                                         "token = dapi-from-file", "[other]",
                                         "host = https://other.example/"))
  withr::local_envvar(DATABRICKS_HOST = NA, DATABRICKS_TOKEN = NA,
                      DATABRICKS_CONFIG_FILE = cfg, DATABRICKS_CONFIG_PROFILE = NA)
  expect_equal(yws_host(), "https://adb-1.azuredatabricks.net")
  expect_equal(yws_token(), "dapi-from-file")
  withr::local_envvar(DATABRICKS_CONFIG_PROFILE = "other")
  expect_equal(yws_host(), "https://other.example")
  withr::local_envvar(DATABRICKS_HOST = "http://127.0.0.1:8765/")
  expect_equal(yws_host(), "http://127.0.0.1:8765")
  withr::local_options(yws.host = "https://opt.example")
  expect_equal(yws_host(), "https://opt.example")
  expect_equal(yws_host("https://arg.example"), "https://arg.example")
})

test_that("a missing host or token is a classed error that says what to set", {
  skip_if_not_installed("withr")
  withr::local_envvar(DATABRICKS_HOST = NA, DATABRICKS_TOKEN = NA,
                      DATABRICKS_CONFIG_FILE = tempfile())
  expect_error(yws_host(), class = "yws_config_error")
  expect_error(yws_token(), "DATABRICKS_TOKEN", class = "yws_error")
})

test_that("catalog and schema are validated identifiers", {
  skip_if_not_installed("withr")
  withr::local_envvar(YWS_CATALOG = "yws_prod", YWS_SCHEMA = NA)
  expect_equal(yws_catalog(), "yws_prod")
  expect_equal(yws_schema(), "ml")
  withr::local_options(yws.schema = "ml; DROP TABLE x")
  expect_error(yws_schema(), class = "yws_input_error")
})
