#!/usr/bin/env bash
# The protocol conformance cases (../shared/conformance/run.sh) through the production layout:
# scripts/prod.py (nginx in front of two daphne processes) on PostgreSQL and Redis, the cases
# connecting to nginx (CONFORMANCE_EXTERNAL_WS; the cross-process cases use nginx's address twice,
# and least_conn sends the second client to the other process). Called by scripts/test.sh.
#
#   PYTHON             interpreter with requirements-dev.txt installed (default .venv/bin/python)
#   DATABASE_URL       PostgreSQL database for the run (dropped and created by the caller)
#   REDIS_URL          Redis for the layout's channel layer (flushed by the caller)
#   CONFORMANCE_DIR    default ../shared/conformance
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
CONFORMANCE_DIR=${CONFORMANCE_DIR:-../shared/conformance}
: "${DATABASE_URL:?a PostgreSQL DATABASE_URL}" "${REDIS_URL:?REDIS_URL}"
tmp=$(mktemp -d)
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The values run.sh gives the servers it starts itself, which an external server must share.
export DJANGO_SECRET_KEY="conformance-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export DJANGO_DEBUG=0 DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost
export SESSIONS_AUTH_TIMEOUT=2 SESSIONS_TOKEN_EXPIRY_WARNING=2 SESSIONS_RATE_LIMIT=50 SESSIONS_RATE_BURST=100
export SESSIONS_MAX_MESSAGE_BYTES=65536 SESSIONS_MAX_CONNECTIONS_PER_USER=50 JWT_ACCESS_LIFETIME=300
export PROCESSES=2 PROD_LISTEN=127.0.0.1:$port PROD_RUN_DIR=$tmp/run NGINX_WORKERS=1 PYTHONUNBUFFERED=1

"$PYTHON" scripts/prod.py >"$tmp/prod.log" 2>&1 &
layout=$!
stop() {
  kill -TERM "$layout" 2>/dev/null || true
  wait "$layout" 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop EXIT
for _ in $(seq 1 600); do
  grep -q '^prod | ready:' "$tmp/prod.log" && break
  kill -0 "$layout" 2>/dev/null || { cat "$tmp/prod.log"; echo "prod_conformance: the layout did not start" >&2; exit 1; }
  sleep 0.2
done
grep '^prod | ready:' "$tmp/prod.log" || { cat "$tmp/prod.log"; echo "prod_conformance: no ready line" >&2; exit 1; }

status=0
CONFORMANCE_EXTERNAL_WS=ws://127.0.0.1:$port CONFORMANCE_EXTERNAL_WS2=ws://127.0.0.1:$port PYTHON="$PYTHON" \
  "$CONFORMANCE_DIR/run.sh" "$@" || status=$?
if [[ $status != 0 ]]; then echo "--- tail of the layout's output"; tail -n 60 "$tmp/prod.log"; fi
exit $status
