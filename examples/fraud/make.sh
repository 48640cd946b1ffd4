#!/usr/bin/env bash
# Recreate the fraud example's data (user_stats.csv), model (fraud-gbt.onnx)
# and expected answers (expected.json): a virtual environment with
# scikit-learn, skl2onnx and onnxruntime from PyPI, the sluice binary for
# the point-in-time export, then make_example.py. The outputs are
# committed; run this only to change them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
cargo build --release -q -p sluice --manifest-path "$here/../../Cargo.toml"
target="$(cargo metadata --format-version 1 --no-deps --manifest-path "$here/../../Cargo.toml" | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
"$venv/bin/python" "$here/make_example.py" "$target/release/sluice"
