#!/usr/bin/env bash
# Requests/second and latency of `POST /fn/iris` (json-to-tensor) over HTTP,
# measured with wrk at 1, 16 and 64 connections. Server and load generator
# share the machine, so absolute numbers understate a dedicated node.
#
#   host/benches/http_load.sh [SECONDS]       (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
source host/benches/wrk_row.sh
duration="${1:-10}"
command -v wrk >/dev/null || { echo "http_load needs wrk: apt-get install wrk" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
# The test suite's build (one feature set): `sluice` with no rebuild after a test run.
cargo test --release --workspace --no-run -q 2>/dev/null
sluice="$CARGO_TARGET_DIR/release/sluice"
work="$(mktemp -d)"
wasm="$(RUST_LOG=warn "$sluice" build functions/json-to-tensor 2>/dev/null | cut -f2)"
RUST_LOG=warn "$sluice" deploy "$wasm" --name iris --data "$work/data" \
  --config fields=sepal_length,sepal_width,petal_length,petal_width >/dev/null
# Request logs off: they are measured separately from the runtime itself.
RUST_LOG=warn "$sluice" serve --data "$work/data" --listen 127.0.0.1:18080 >/dev/null &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT
until curl -sf http://127.0.0.1:18080/healthz >/dev/null; do sleep 0.1; done
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
LUA
curl -sf -X POST -H 'content-type: application/json' --data "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$work/post.lua")" \
  http://127.0.0.1:18080/fn/iris >/dev/null
echo "| connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
for connections in 1 16 64; do
  echo "| $connections | $(wrk_row "$connections" "$duration" "$work/post.lua" http://127.0.0.1:18080/fn/iris)"
done
