#!/usr/bin/env bash
# Sluice's Open Inference Protocol endpoint vs FastAPI + onnxruntime
# (uvicorn, 2 workers) serving the same model and request, with wrk at 1,
# 16 and 64 connections. Server and load generator share the machine.
#
#   host/benches/oip_load.sh [SECONDS] [sluice|fastapi]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
source host/benches/wrk_row.sh
duration="${1:-10}"
only="${2:-}"   # `sluice` to skip the baseline
command -v wrk >/dev/null || { echo "oip_load needs wrk: apt-get install wrk" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# uvicorn[standard]: httptools and uvloop, as FastAPI deployments run it.
"$venv/bin/pip" install -q -r examples/models/requirements.txt fastapi "uvicorn[standard]"
# The test suite's build (one feature set): `sluice` with no rebuild after a test run.
cargo test --release --workspace --no-run -q 2>/dev/null
sluice="$CARGO_TARGET_DIR/release/sluice"
model=examples/models/digits-mlp.onnx
work="$(mktemp -d)"
RUST_LOG=warn "$sluice" models push "$model" --name mlp --data "$work/data" >/dev/null
RUST_LOG=warn "$sluice" serve --data "$work/data" --listen 127.0.0.1:18081 >/dev/null &
sluice_pid=$!
MODEL="$model" "$venv/bin/uvicorn" --app-dir host/benches fastapi_oip:app --workers 2 \
  --host 127.0.0.1 --port 18082 --log-level warning &
fastapi_pid=$!
trap 'kill $sluice_pid $fastapi_pid; rm -rf "$work"' EXIT
# One digits row (64 pixels) as an OIP request.
row="$("$venv/bin/python" -c 'import json; r=json.load(open("examples/models/digits-mlp.reference.json")); print(json.dumps(r["inputs"]["X"]["data"][:64]))')"
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,64],"data":$row}]}'
LUA
for port in 18081 18082; do
  until curl -sf -X POST -H 'content-type: application/json' \
    --data "{\"inputs\":[{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1,64],\"data\":$row}]}" \
    "http://127.0.0.1:$port/v2/models/mlp/infer" >/dev/null; do sleep 0.2; done
done
echo "| server | connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for server in "sluice 18081" "fastapi 18082"; do
  set -- $server
  [ -z "$only" ] || [ "$only" = "$1" ] || continue
  for connections in 1 16 64; do
    echo "| $1 | $connections | $(wrk_row "$connections" "$duration" "$work/post.lua" "http://127.0.0.1:$2/v2/models/mlp/infer")"
  done
done
