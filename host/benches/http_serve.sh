#!/usr/bin/env bash
# The same standard wasi:http component (tests/guests/http-echo) served by
# Sluice (`/fn/echo/...`) and by `wasmtime serve` 48.0.8 (the wasmtime
# Sluice embeds), with wrk at 1, 16 and 64 connections, in alternating
# rounds. Both give every request a fresh instance; `wasmtime serve` runs
# with its default settings and again with the pooling allocator (Sluice's
# default). Servers and load generator share the machine. Before the load,
# each server's answer is checked to be the same bytes.
#
#   host/benches/http_serve.sh [SECONDS] [ROUNDS]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
source host/benches/wrk_row.sh
duration="${1:-10}"
rounds="${2:-3}"
command -v wrk >/dev/null || { echo "http_serve needs wrk: apt-get install wrk" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
tools="${SLUICE_WASMTIME_CLI:-$HOME/.cache/sluice/wasmtime-cli}"
wasmtime="$tools/bin/wasmtime"
[ -x "$wasmtime" ] || cargo install wasmtime-cli --version 48.0.8 --locked --root "$tools"
"$wasmtime" --version
# The test suite's build (one feature set): `sluice` with no rebuild after a test run.
cargo test --release --workspace --no-run -q 2>/dev/null
sluice="$CARGO_TARGET_DIR/release/sluice"
wasm="$(RUST_LOG=warn "$sluice" build tests/guests/http-echo | cut -f2)"
work="$(mktemp -d)"
RUST_LOG=warn "$sluice" deploy "$wasm" --name echo --config GREETING=hi --data "$work/data" >/dev/null
RUST_LOG=warn "$sluice" serve --data "$work/data" --listen 127.0.0.1:18091 >/dev/null 2>&1 &
sluice_pid=$!
"$wasmtime" serve -S cli=y --env GREETING=hi --addr 127.0.0.1:18092 "$wasm" >/dev/null 2>&1 &
plain_pid=$!
"$wasmtime" serve -S cli=y -O pooling-allocator=y --env GREETING=hi --addr 127.0.0.1:18093 "$wasm" >/dev/null 2>&1 &
pooling_pid=$!
trap 'kill $sluice_pid $plain_pid $pooling_pid; rm -rf "$work"' EXIT
urls=("sluice http://127.0.0.1:18091/fn/echo/hello?x=1" \
      "wasmtime http://127.0.0.1:18092/hello?x=1" \
      "wasmtime-pooling http://127.0.0.1:18093/hello?x=1")
for entry in "${urls[@]}"; do
  until curl -sf "${entry#* }" >/dev/null; do sleep 0.2; done
done
first="$(curl -s "${urls[0]#* }")"
for entry in "${urls[@]:1}"; do
  [ "$(curl -s "${entry#* }")" = "$first" ] || { echo "${entry%% *} answers differently" >&2; exit 1; }
done
printf 'wrk.method = "GET"\n' >"$work/get.lua"
echo "| server | connections | round | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|---|"
for connections in 1 16 64; do
  for round in $(seq "$rounds"); do
    for entry in "${urls[@]}"; do
      echo "| ${entry%% *} | $connections | $round | $(wrk_row "$connections" "$duration" "$work/get.lua" "${entry#* }")"
    done
  done
done
