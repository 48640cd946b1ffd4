#!/usr/bin/env bash
# The engine benchmark (host/benches/engines.rs): installs the onnxruntime
# wheel in the examples' virtual environment, points ORT_DYLIB_PATH at the
# libonnxruntime it ships, and runs the benchmark. Arguments go to the benchmark (a model name filter).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q onnxruntime==1.32.0
capi="$("$venv/bin/python" -c 'import onnxruntime, pathlib; print(pathlib.Path(onnxruntime.__file__).parent / "capi")')"
export ORT_DYLIB_PATH="$(ls "$capi"/libonnxruntime.so.* | head -n 1)"
cd "$repo"
cargo bench -p sluice --bench engines -- "$@"
