#!/usr/bin/env bash
# Holds 64 concurrent clients for 60 s on the release build (wrk, Debian's package)
# and prints requests/s, p50/p99 latency, errors (any error fails the run) and the
# server's peak RSS. Not a timed test: figures go to bench/RESULTS.md.
#
#   bash bench/load.sh                      # the README's nested query on the demo data
#   LOAD_CONNECTIONS=128 LOAD_DURATION=30s LOAD_QUERY='{ me { id } }' bash bench/load.sh
#
# It starts `cortex serve` on the zero-config embedded default in a fresh data folder
# (or on DATABASE_URL when set, with JWT_SECRET to mint a token), and stops it after.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${LOAD_CONNECTIONS:-64}
DURATION=${LOAD_DURATION:-60s}
export LOAD_QUERY=${LOAD_QUERY:-'{ workspaces(first: 10) { nodes { name conversations(first: 10) { nodes { topic messages(last: 20) { nodes { content timestamp sender { name } } } } } } } }'}

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        echo "error: wrk is not installed (apt-get install wrk)" >&2
        exit 1
    fi
fi

cargo build --release --quiet
work=$(mktemp -d /tmp/cortex-load.XXXXXX)
chmod 755 "$work"
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -INT "$server_pid"
        wait "$server_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

CORTEX_DATA_DIR="$work/data" PORT=0 RUST_LOG=warn \
    target/release/cortex serve >"$work/out" 2>"$work/err" &
server_pid=$!
for _ in $(seq 1 300); do
    grep -q '^Cortex is listening on ' "$work/out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
done
base=$(sed -n 's/^Cortex is listening on //p' "$work/out")
if [ -n "${DATABASE_URL:-}" ]; then
    export LOAD_TOKEN=$(CORTEX_DATA_DIR="$work/data" target/release/cortex token --user-id demo --name "Demo User")
else
    export LOAD_TOKEN=$(sed -n 's/^Demo token (user `demo`): //p' "$work/out")
fi
[ -n "$base" ] && [ -n "$LOAD_TOKEN" ] || { echo "error: the server did not start" >&2; cat "$work/err" >&2; exit 1; }

# One request, sent again and again (bench/api.lua reads "token<TAB>body" lines).
export BENCH_REQUESTS="$work/requests"
printf '%s\t%s\n' "$LOAD_TOKEN" \
    "$(python3 -c 'import json, os; print(json.dumps({"query": os.environ["LOAD_QUERY"]}))')" >"$BENCH_REQUESTS"
echo "warm-up: 5 s"
wrk -t2 -c"$CONNECTIONS" -d5s -s bench/api.lua "$base/graphql" >/dev/null
echo "load: $CONNECTIONS connections for $DURATION, query: $LOAD_QUERY"
result=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/api.lua "$base/graphql")
echo "$result" | sed -n '/^requests:/,$p'
# VmHWM: the server's peak resident set so far.
echo "server peak RSS: $(awk '/^VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server_pid/status")"
errors=$(echo "$result" | sed -n 's/^errors: //p')
if [ "$errors" != 0 ]; then
    echo "INVALID RUN: $errors errors" >&2
    exit 1
fi
