#!/usr/bin/env bash
# Sluice's Open Inference Protocol endpoint vs FastAPI + onnxruntime
# (uvicorn, 2 workers) and MLServer (Seldon's OIP server, the scikit-learn
# runtime, 2 parallel inference workers) serving the same model and
# request, with wrk at 1, 16 and 64 connections. Servers and load generator
# share the machine.
#
#   host/benches/oip_load.sh [SECONDS] [sluice|fastapi|mlserver]   (needs wrk: apt-get install wrk)
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
# MLServer pins its own dependencies: a venv of its own.
mlvenv="${SLUICE_MLSERVER_VENV:-$HOME/.cache/sluice/venv-mlserver}"
[ -x "$mlvenv/bin/python" ] || python3 -m venv "$mlvenv"
# uvloop 0.22+ raises in get_event_loop(), which MLServer 1.7 workers call;
# httptools, as the FastAPI baseline has it.
"$mlvenv/bin/pip" install -q mlserver==1.7.1 mlserver-sklearn==1.7.1 "uvloop<0.22" httptools
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
"$mlvenv/bin/python" host/benches/mlserver_model.py "$work/mlserver"
(cd "$work/mlserver" && exec "$mlvenv/bin/mlserver" start . >"$work/mlserver.log" 2>&1) &
mlserver_pid=$!
trap 'kill $sluice_pid $fastapi_pid $mlserver_pid; rm -rf "$work"' EXIT
# One digits row (64 pixels) as an OIP request.
row="$("$venv/bin/python" -c 'import json; r=json.load(open("examples/models/digits-mlp.reference.json")); print(json.dumps(r["inputs"]["X"]["data"][:64]))')"
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,64],"data":$row}]}'
LUA
# MLServer's scikit-learn runtime answers `predict` unless asked: ask for
# the label and the probabilities, what the other two answer.
mlserver_body="{\"inputs\":[{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1,64],\"data\":$row}],\"outputs\":[{\"name\":\"predict\"},{\"name\":\"predict_proba\"}]}"
cat >"$work/post-mlserver.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$mlserver_body'
LUA
plain_body="{\"inputs\":[{\"name\":\"X\",\"datatype\":\"FP32\",\"shape\":[1,64],\"data\":$row}]}"
for ready in "18081 $plain_body" "18082 $plain_body" "18083 $mlserver_body"; do
  until curl -sf -X POST -H 'content-type: application/json' --data "${ready#* }" \
    "http://127.0.0.1:${ready%% *}/v2/models/mlp/infer" >/dev/null; do sleep 0.2; done
done
echo "| server | connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for server in "sluice 18081 post" "fastapi 18082 post" "mlserver 18083 post-mlserver"; do
  set -- $server
  [ -z "$only" ] || [ "$only" = "$1" ] || continue
  for connections in 1 16 64; do
    echo "| $1 | $connections | $(wrk_row "$connections" "$duration" "$work/$3.lua" "http://127.0.0.1:$2/v2/models/mlp/infer")"
  done
done
