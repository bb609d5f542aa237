# A fake Databricks REST API in a real local HTTP server (webfakes). Every request is written
# to a JSON-lines log so tests can check exactly what the package sent.
fake_api <- function(routes, env = parent.frame()) {
  skip_if_not_installed("webfakes")  # Suggests: absent under _R_CHECK_DEPENDS_ONLY_
  skip_if_not_installed("jsonlite")
  skip_if_not_installed("withr")
  log <- tempfile(fileext = ".jsonl")
  app <- webfakes::new_app()
  app$use(webfakes::mw_json())
  app$use(function(req, res) {
    entry <- list(method = req$method, path = req$path, query = req$query,
                  auth = req$get_header("Authorization"),
                  agent = req$get_header("User-Agent"), body = req$json)
    cat(jsonlite::toJSON(entry, auto_unbox = TRUE, null = "null", digits = NA), "\n",
        file = req$app$locals$log, append = TRUE, sep = "")
    "next"
  })
  app$locals$log <- log
  for (r in routes) app[[r$method]](r$path, r$handler)
  proc <- webfakes::local_app_process(app, .local_envir = env)
  list(url = sub("/$", "", proc$url()), log = log)
}

requests <- function(fake) {
  if (!file.exists(fake$log)) return(list())
  lapply(readLines(fake$log), jsonlite::fromJSON, simplifyVector = FALSE)
}

route <- function(method, path, handler) list(method = method, path = path, handler = handler)

with_fake_env <- function(fake, env = parent.frame()) {
  withr::local_envvar(c(DATABRICKS_HOST = fake$url, DATABRICKS_TOKEN = "dapi-r-test",
                        DATABRICKS_CONFIG_FILE = tempfile(), YWS_WAREHOUSE_ID = "wh1",
                        YWS_CATALOG = "", YWS_SCHEMA = ""), .local_envir = env)
  withr::local_options(cli.progress_show_after = Inf, .local_envir = env)
}

# A port nothing listens on any more: a server's port, after the server stopped.
refused_port <- function() {
  skip_if_not_installed("webfakes")
  proc <- webfakes::new_app_process(webfakes::new_app())
  port <- proc$get_port()
  proc$stop()
  port
}

# Send this process a real SIGINT (what Ctrl-C does) after `seconds`.
interrupt_in <- function(seconds) {
  system(sprintf("(sleep %s; kill -INT %d) >/dev/null 2>&1 &", seconds, Sys.getpid()))
}
