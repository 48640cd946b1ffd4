#!/usr/bin/env bash
# Requests/second and latency of the image example's pipeline over HTTP
# (`POST /p/image-classify` with examples/image-classify/upright.png), with
# wrk at 1, 16 and 64 connections. Server and load generator share the
# machine, so absolute numbers understate a dedicated node.
#
#   host/benches/image_load.sh [SECONDS]      (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
source host/benches/wrk_row.sh
duration="${1:-10}"
command -v wrk >/dev/null || { echo "image_load needs wrk: apt-get install wrk" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
# The test suite's build (one feature set): `sluice` with no rebuild after a test run.
cargo test --release --workspace --no-run -q 2>/dev/null
sluice="$CARGO_TARGET_DIR/release/sluice"
work="$(mktemp -d)"
image="$PWD/examples/image-classify/upright.png"
# Request logs off: they are measured separately from the runtime itself.
RUST_LOG=warn "$sluice" up examples/image-classify --data "$work/data" --listen 127.0.0.1:18081 >/dev/null 2>&1 &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT
until curl -sf http://127.0.0.1:18081/healthz >/dev/null; do sleep 0.2; done
until curl -sf -H 'content-type: image/png' --data-binary @"$image" \
  http://127.0.0.1:18081/p/image-classify >/dev/null; do sleep 0.2; done
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local file = io.open("$image", "rb")
wrk.body = file:read("*all")
file:close()
LUA
echo "| connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
for connections in 1 16 64; do
  echo "| $connections | $(wrk_row "$connections" "$duration" "$work/post.lua" http://127.0.0.1:18081/p/image-classify)"
done
