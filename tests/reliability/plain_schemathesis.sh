#!/usr/bin/env bash
# A plain schemathesis run against a live API with users on: no project
# configuration, a random seed (SEED= replays one), given an admin's token.
# What #21 asks beside the configured runs of test_fuzz.py; not part of
# `make test` (random by design).  Needs DATABASE_URL naming a server where
# it may create and drop a database of its own.
#
#   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres tests/reliability/plain_schemathesis.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-.venv/bin/python}
: "${DATABASE_URL:?set DATABASE_URL to a server this may create a database on}"
DB=tunix_plainfuzz_$$
SERVER=$DATABASE_URL
$PY - "$SERVER" "$DB" create <<'PYEOF'
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1]); conn.autocommit = True
conn.cursor().execute(f"CREATE DATABASE {sys.argv[2]}")
PYEOF
URL=$($PY -c 'import sys; from urllib.parse import urlparse; u = urlparse(sys.argv[1]); print(u._replace(path="/" + sys.argv[2]).geturl())' "$SERVER" "$DB")
WORK=$(mktemp -d)
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  kill "$API" 2>/dev/null || true; sleep 1
  $PY - "$SERVER" "$DB" <<'PYEOF'
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1]); conn.autocommit = True
conn.cursor().execute(f"DROP DATABASE IF EXISTS {sys.argv[2]} WITH (FORCE)")
PYEOF
  rm -rf "$WORK"
}
DATABASE_URL=$URL $PY -m tasks.migrate >/dev/null 2>&1
TOKEN=$(DATABASE_URL=$URL $PY -m tasks.users_admin create-user root --role admin 2>/dev/null | grep -oE 'tnx_[A-Za-z0-9_-]+' | head -1)
# No worker: a sync submit answers 202 after SYNC_TIMEOUT_S instead of
# waiting, and a followed log stream of a run nobody trains closes after
# SSE_MAX_STREAM_S (as every stream does at its limit; a client opens it
# again) rather than at schemathesis's 10 s read time-out.
DATABASE_URL=$URL DATA_DIR=$WORK/data SYNC_TIMEOUT_S=5 SSE_MAX_STREAM_S=5 $PY -m gunicorn --worker-class gthread --workers 1 \
  --threads 32 --bind "127.0.0.1:$PORT" --no-control-socket 'app:create_app()' > "$WORK/api.log" 2>&1 &
API=$!
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
SEED=${SEED:-$RANDOM}
echo "plain schemathesis run, seed $SEED (replay: SEED=$SEED)"
(cd "$WORK" && "$OLDPWD/$PY" -m schemathesis.cli run "http://127.0.0.1:$PORT/openapi.json" --checks all \
  --seed "$SEED" -H "Authorization: Bearer $TOKEN" --max-examples "${MAX_EXAMPLES:-20}")
