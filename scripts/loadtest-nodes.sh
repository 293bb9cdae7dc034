#!/usr/bin/env bash
# Load test of N voxbridge nodes sharing one PostgreSQL database ("Running several nodes" in the
# README): starts `voxbridge sim` (the fakes at the reference delays, hearing the load test's
# callers), N `voxbridge serve` processes on a fresh database, and `voxbridge loadtest` spreading
# calls over them; the report sums the nodes' CPU and memory.
#
#   cargo build --release
#   scripts/loadtest-nodes.sh NODES CALLS [OUT.json]
#
# Environment (not VOXBRIDGE_*: the server reads those as its configuration): VB_BIN (default
# target/release/voxbridge), PGHOST/PGUSER (default 127.0.0.1/postgres; the database
# vb_loadtest is dropped and created), DURATION (60), TURNS (3).
set -euo pipefail
NODES=${1:?nodes}
CALLS=${2:?calls}
OUT=${3:-loadtest-${NODES}nodes-${CALLS}.json}
BIN=${VB_BIN:-target/release/voxbridge}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
DURATION=${DURATION:-60}
TURNS=${TURNS:-3}
SIM_PORT=9400
DELAYS=(--stt-final-ms 100 --llm-first-token-ms 200 --tts-first-byte-ms 150)

psql -q -h "$PGHOST" -U "$PGUSER" postgres \
    -c "DROP DATABASE IF EXISTS vb_loadtest" -c "CREATE DATABASE vb_loadtest" 2>/dev/null
export VOXBRIDGE_DATABASE_URL="postgres://$PGUSER@$PGHOST:5432/vb_loadtest"
export VOXBRIDGE_LOG_LEVEL=warn VOXBRIDGE_MAX_CONCURRENT_CALLS_PER_OWNER=5000
export VOXBRIDGE_DATABASE_MAX_CONNECTIONS=16

CHILDREN=()
trap 'kill "${CHILDREN[@]}" 2>/dev/null || true' EXIT
"$BIN" sim --port "$SIM_PORT" --loadtest-turns "$TURNS" "${DELAYS[@]}" >/dev/null 2>&1 &
CHILDREN+=($!)
KEY=$("$BIN" keys create --email loadtest@localhost 2>/dev/null | head -1)
SERVERS=()
for i in $(seq 1 "$NODES"); do
    VOXBRIDGE_BIND="127.0.0.1:$((9500 + i))" "$BIN" serve --sim-url "http://127.0.0.1:$SIM_PORT" \
        >"node$i.log" 2>&1 &
    CHILDREN+=($!)
    SERVERS+=(--server "http://127.0.0.1:$((9500 + i))" --server-pid "$!")
done
sleep 3
"$BIN" loadtest "${SERVERS[@]}" --api-key "$KEY" --sim-url "http://127.0.0.1:$SIM_PORT" \
    "${DELAYS[@]}" --calls "$CALLS" --ramp 50 --duration "$DURATION" --turns "$TURNS" --json "$OUT"
