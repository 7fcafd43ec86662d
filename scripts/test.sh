#!/usr/bin/env bash
# Every test, in order: lint; pytest on SQLite with the in-memory layer; the PostgreSQL and Redis
# tests; the production layout through nginx (scripts/prod.py); the browser tests in headless
# Chromium; the JavaScript unit tests; the protocol conformance cases against a live daphne
# (in-memory layer, then two processes on Redis and PostgreSQL, then through nginx in front of the
# production layout). Called by `make test` and by .ci/run.
#
#   PYTHON             interpreter with requirements-dev.txt installed (default .venv/bin/python)
#   POSTGRES_TEST_URL  default postgres://postgres@127.0.0.1:5432/interactive
#   REDIS_TEST_URL     default redis://127.0.0.1:6379/14 (the conformance run uses db 13)
#   CONFORMANCE_DIR    default ../shared/conformance
#   CONFORMANCE_REDIS_URL     Redis for the two-process conformance run (default: REDIS_TEST_URL's
#                             server, db 13; flushed first)
#   CONFORMANCE_DATABASE_URL  PostgreSQL database for it (default: POSTGRES_TEST_URL's server,
#                             database interactive_conformance; dropped and created first)
#   PROD_REDIS_URL     Redis for the conformance run through the production layout (default:
#                      REDIS_TEST_URL's server, db 12; flushed first)
#   PROD_DATABASE_URL  PostgreSQL database for it (default: POSTGRES_TEST_URL's server, database
#                      interactive_prod_conformance; dropped and created first)
#   REQUIRE_ALL=1      fail instead of passing over a part whose service or tool is missing (CI)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
POSTGRES_TEST_URL=${POSTGRES_TEST_URL:-postgres://postgres@127.0.0.1:5432/interactive}
REDIS_TEST_URL=${REDIS_TEST_URL:-redis://127.0.0.1:6379/14}
CONFORMANCE_DIR=${CONFORMANCE_DIR:-../shared/conformance}
REQUIRE_ALL=${REQUIRE_ALL:-0}
export REDIS_TEST_URL
failed=()
passed_over=()

step() { printf '\n=== %s\n' "$1"; }
run() {  # run NAME CMD...: record a failure, go on with the next part
  local name=$1; shift
  if "$@"; then echo "--- $name: ok"; else echo "--- $name: FAILED"; failed+=("$name"); fi
}
missing() {  # missing NAME REASON: a part that cannot run here
  if [[ $REQUIRE_ALL == 1 ]]; then echo "--- $1: FAILED ($2)"; failed+=("$1"); else
    echo "--- $1: NOT RUN ($2)"; passed_over+=("$1: $2"); fi
}

step "lint (ruff)"
run lint bash -c "'$(dirname "$PYTHON")/ruff' check . && '$(dirname "$PYTHON")/ruff' format --check ."

step "pytest: SQLite, in-memory channel layer"
run pytest "$PYTHON" -m pytest -q -m "not postgres and not redis and not e2e and not prod"

step "pytest: PostgreSQL"
if "$PYTHON" scripts/services.py pg-up "$POSTGRES_TEST_URL"; then
  run pytest-postgres env DATABASE_URL="$POSTGRES_TEST_URL" "$PYTHON" -m pytest -q -m postgres
else missing pytest-postgres "no PostgreSQL at $POSTGRES_TEST_URL"; fi

step "pytest: Redis (with the Sentinel failover test: redis-sentinel and PostgreSQL)"
if "$PYTHON" scripts/services.py redis-up "$REDIS_TEST_URL"; then
  # The failover test (marked sentinel) starts its own redis-server and redis-sentinel processes
  # and daphne on a PostgreSQL database of POSTGRES_TEST_URL's server (tests/live.py).
  no_sentinel=""
  if ! command -v redis-sentinel >/dev/null; then no_sentinel="no redis-sentinel (apt-get install redis-sentinel)"
  elif ! "$PYTHON" scripts/services.py pg-up "$POSTGRES_TEST_URL"; then no_sentinel="no PostgreSQL at $POSTGRES_TEST_URL"; fi
  if [[ -z $no_sentinel ]]; then
    run pytest-redis env POSTGRES_TEST_URL="$POSTGRES_TEST_URL" "$PYTHON" -m pytest -q -m redis
  else
    run pytest-redis "$PYTHON" -m pytest -q -m "redis and not sentinel"
    missing pytest-redis-sentinel "$no_sentinel"
  fi
else missing pytest-redis "no Redis at $REDIS_TEST_URL"; fi

step "pytest: the production layout (scripts/prod.py: nginx, PostgreSQL, a private redis-server)"
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  missing pytest-prod "no nginx (apt-get install nginx)"
elif ! command -v redis-server >/dev/null; then missing pytest-prod "no redis-server"
elif "$PYTHON" scripts/services.py pg-up "$POSTGRES_TEST_URL"; then
  run pytest-prod env POSTGRES_TEST_URL="$POSTGRES_TEST_URL" "$PYTHON" -m pytest -q -m prod
else missing pytest-prod "no PostgreSQL at $POSTGRES_TEST_URL"; fi

step "pytest: browser (headless Chromium)"
if [[ -x ${CHROMIUM:-/usr/bin/chromium} ]]; then
  run pytest-e2e "$PYTHON" -m pytest -q -m e2e
else missing pytest-e2e "no Chromium (apt-get install chromium)"; fi

step "JavaScript unit tests (node --test; with tsc on static/sessions/client.d.ts)"
if command -v node >/dev/null && [[ -d tests/js ]]; then
  # types.test.mjs runs node_modules/.bin/tsc (npm ci, from `make install-dev`); with REQUIRE_ALL=1
  # a missing tsc fails instead of being passed over.
  [[ -x node_modules/.bin/tsc ]] || echo "(tsc not installed: the type check is passed over unless REQUIRE_ALL=1)"
  run node-test env REQUIRE_ALL="$REQUIRE_ALL" node --test tests/js/
else missing node-test "no node"; fi

step "conformance: one daphne, in-memory layer, SQLite"
if [[ -x $CONFORMANCE_DIR/run.sh ]]; then
  run conformance env -u REDIS_URL -u DATABASE_URL PYTHON="$PYTHON" "$CONFORMANCE_DIR/run.sh"
  step "conformance: two daphne processes, Redis layer, PostgreSQL"
  redis_url=${CONFORMANCE_REDIS_URL:-${REDIS_TEST_URL%/*}/13}
  pg_url=${CONFORMANCE_DATABASE_URL:-${POSTGRES_TEST_URL%/*}/interactive_conformance}
  if "$PYTHON" scripts/services.py redis-up "$redis_url" && "$PYTHON" scripts/services.py pg-up "$pg_url"; then
    "$PYTHON" scripts/services.py redis-flush "$redis_url" && "$PYTHON" scripts/services.py pg-recreate "$pg_url"
    run conformance-redis-postgres env REDIS_URL="$redis_url" DATABASE_URL="$pg_url" PYTHON="$PYTHON" \
      "$CONFORMANCE_DIR/run.sh"
  else missing conformance-redis-postgres "no Redis or PostgreSQL"; fi
  step "conformance: the production layout (scripts/prod.py: nginx, two daphnes, Redis, PostgreSQL)"
  prod_redis=${PROD_REDIS_URL:-${REDIS_TEST_URL%/*}/12}
  prod_pg=${PROD_DATABASE_URL:-${POSTGRES_TEST_URL%/*}/interactive_prod_conformance}
  if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    missing conformance-prod "no nginx (apt-get install nginx)"
  elif "$PYTHON" scripts/services.py redis-up "$prod_redis" && "$PYTHON" scripts/services.py pg-up "$prod_pg"; then
    "$PYTHON" scripts/services.py redis-flush "$prod_redis" && "$PYTHON" scripts/services.py pg-recreate "$prod_pg"
    run conformance-prod env REDIS_URL="$prod_redis" DATABASE_URL="$prod_pg" PYTHON="$PYTHON" \
      CONFORMANCE_DIR="$CONFORMANCE_DIR" scripts/prod_conformance.sh
  else missing conformance-prod "no Redis or PostgreSQL"; fi
else missing conformance "no conformance cases at $CONFORMANCE_DIR"; fi

printf '\n=== summary\n'
for item in "${passed_over[@]}"; do echo "not run: $item"; done
if (( ${#failed[@]} )); then echo "FAILED: ${failed[*]}"; exit 1; fi
if (( ${#passed_over[@]} )); then echo "the parts that ran passed; ${#passed_over[@]} could not run here (above)"
else echo "all parts passed"; fi
