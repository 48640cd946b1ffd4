#!/usr/bin/env bash
# What access control costs the data plane: `POST /fn/{name}` (json-to-tensor,
# the iris request of http_load.sh) on one node, to a function whose
# invocation is open and to the same component deployed with
# `--invoke token` called with an invoker token. The two alternate, ROUNDS
# runs each of SECONDS, at 1 and 16 connections, so both see the same box;
# the table gives each run and the median ratio.
#
#   host/benches/access_load.sh [SECONDS] [ROUNDS]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
source host/benches/wrk_row.sh
duration="${1:-10}"
rounds="${2:-3}"
command -v wrk >/dev/null || { echo "access_load needs wrk: apt-get install wrk" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
# The test suite's build (one feature set): `sluice` with no rebuild after a test run.
cargo test --release --workspace --no-run -q 2>/dev/null
sluice="$CARGO_TARGET_DIR/release/sluice"
work="$(mktemp -d)"
export RUST_LOG=warn SLUICE_SIGNING_KEY="bench-signing-key-0123456789abcdef0123"
wasm="$("$sluice" build functions/json-to-tensor 2>/dev/null | cut -f2)"
fields=sepal_length,sepal_width,petal_length,petal_width
"$sluice" deploy "$wasm" --name iris-open --data "$work/data" --config fields=$fields >/dev/null
"$sluice" deploy "$wasm" --name iris-token --invoke token --data "$work/data" \
  --config fields=$fields >/dev/null
token="$("$sluice" tokens create app --role invoker --data "$work/data" | grep -o 'slc_[A-Za-z0-9_-]*')"
SLUICE_ADMIN_TOKEN=bench-admin-token-0123456789 \
  "$sluice" serve --data "$work/data" --listen 127.0.0.1:18080 >/dev/null 2>&1 &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT
until curl -sf http://127.0.0.1:18080/healthz >/dev/null; do sleep 0.1; done
body='{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
cat >"$work/open.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA
{ cat "$work/open.lua"; echo "wrk.headers[\"Authorization\"] = \"Bearer $token\""; } >"$work/token.lua"
# Both answer, and the closed one only with the token.
curl -sf -X POST -H 'content-type: application/json' --data "$body" http://127.0.0.1:18080/fn/iris-open >/dev/null
curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $token" \
  --data "$body" http://127.0.0.1:18080/fn/iris-token >/dev/null
test "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data "$body" http://127.0.0.1:18080/fn/iris-token)" = 401
echo "| connections | invocation | run | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|---|"
for connections in 1 16; do
  open=() closed=()
  for round in $(seq "$rounds"); do
    row="$(wrk_row "$connections" "$duration" "$work/open.lua" http://127.0.0.1:18080/fn/iris-open)"
    echo "| $connections | open | $round | $row"
    open+=("$(cut -d' ' -f1 <<<"$row")")
    row="$(wrk_row "$connections" "$duration" "$work/token.lua" http://127.0.0.1:18080/fn/iris-token)"
    echo "| $connections | token | $round | $row"
    closed+=("$(cut -d' ' -f1 <<<"$row")")
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  echo "| $connections | token / open (medians) | | $(awk -v t="$(median "${closed[@]}")" -v o="$(median "${open[@]}")" 'BEGIN { printf "%.3f", t / o }') | | |"
done
