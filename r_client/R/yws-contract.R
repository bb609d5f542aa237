# The constants the R client shares with the Python package, in one place. They come from the
# Python source of truth through python/yws/contract/shared.json, whose byte-identical copy is
# inst/contract.json; tests/testthat/test-yws-contract.R checks that these equal it. Change
# the JSON (both copies) and these together.
contract <- list(
  # probability bands, lowest first (Python: Bands.NAMES)
  bands = c("GREEN", "YELLOW", "RED"),
  # the views the package reads (sql/20_views), by what they hold
  views = c(predictions = "v_yws_predictions", latest = "v_yws_predictions_latest",
            warnings = "v_yws_warnings", score_runs = "v_yws_score_runs",
            quarantine = "v_yws_quarantine", drift = "v_yws_drift"),
  # a batch id (Python: the storage's check_literal) and a catalog or schema name (the
  # config's check_identifier), each matched against the whole string
  batch_id_pattern = "^[A-Za-z0-9_.:-]{1,128}$",
  identifier_pattern = "^[A-Za-z_][A-Za-z0-9_]{0,254}$",
  # a model alias (Python: the registry's check_alias): like an identifier but '-' allowed,
  # and never "latest" or v<N>, which name versions
  alias_pattern = "^[A-Za-z_][A-Za-z0-9_-]{0,254}$",
  reserved_aliases = "latest",
  reserved_alias_pattern = "^v[0-9]+$",
  # Jobs API: the life-cycle states in which a run (or task) has ended, and the one result
  # state that is a success (Python: the Jobs client's END_STATES and RunOutcome.succeeded)
  run_end_states = c("TERMINATED", "SKIPPED", "INTERNAL_ERROR"),
  run_success_state = "SUCCESS"
)
