#!/usr/bin/env bash
# The R package's tests: R CMD check (unit tests against webfakes and unixODBC + SQLite), then
# the end-to-end tests against a real `yws serve` on the local target in a fresh YWS_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_BIN="$PWD/.venv/bin"
work=$(mktemp -d /tmp/yws-r-test.XXXXXX)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== R CMD build / check"
(cd "$work" && R CMD build --no-manual "$OLDPWD/r_client" >/dev/null)
tarball=$(ls "$work"/yws_*.tar.gz)
(cd "$work" && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual "$tarball" \
  > "$work/check.log" 2>&1) || { cat "$work/check.log"; exit 1; }
tail -n 3 "$work/check.log"
if ! grep -qE "^Status: OK" "$work/yws.Rcheck/00check.log"; then  # notes count too
  cat "$work/yws.Rcheck/00check.log"; exit 1
fi

echo "== R CMD check with the hard dependencies only (_R_CHECK_DEPENDS_ONLY_=true)"
# The vignette's code still runs; re-building its HTML needs rmarkdown, a Suggests that this
# check hides on purpose (the full check above re-builds it).
mkdir "$work/depends-only"
(cd "$work/depends-only" && _R_CHECK_DEPENDS_ONLY_=true R CMD check --no-manual \
  --no-build-vignettes "$tarball" \
  > "$work/depends-only/check.log" 2>&1) || { cat "$work/depends-only/check.log"; exit 1; }
grep -qE "^Status: OK" "$work/depends-only/yws.Rcheck/00check.log" || {
  cat "$work/depends-only/yws.Rcheck/00check.log"; exit 1; }
grep -E "^\[ FAIL" "$work/depends-only/yws.Rcheck/tests/testthat.Rout" | tail -n 1
R CMD INSTALL --no-test-load "$tarball" >/dev/null 2>&1

echo "== end to end against yws serve"
export YWS_HOME="$work/home" SPARK_LOCAL_IP=127.0.0.1
train_day=2026-08-31; score_day=2026-11-30
"$VENV_BIN/yws" data generate --rows 2000 --as-of "$train_day" >/dev/null
"$VENV_BIN/yws" data generate --rows 2000 --as-of "$score_day" --unlabeled --anomalies 4 >/dev/null
"$VENV_BIN/yws" sql apply >/dev/null 2>&1
token=$("$VENV_BIN/yws" tokens create --principal yws_orchestrator --group yws_r_users \
  --group yws_analysts 2>/dev/null | tail -n 1)
port=$("$VENV_BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VENV_BIN/yws" serve --port "$port" > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  "$VENV_BIN/python" -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" \
    2>/dev/null && break
  sleep 0.2
done
DATABRICKS_HOST="http://127.0.0.1:$port" DATABRICKS_TOKEN="$token" YWS_WAREHOUSE_ID=yws_local \
DATABRICKS_CONFIG_FILE=/dev/null YWS_E2E=1 YWS_E2E_TRAIN_DAY="$train_day" \
YWS_E2E_SCORE_DAY="$score_day" RETICULATE_PYTHON="$VENV_BIN/python" \
  Rscript -e 'res <- testthat::test_local("r_client", reporter = "summary", stop_on_failure = TRUE)'
