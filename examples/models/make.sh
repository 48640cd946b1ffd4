#!/usr/bin/env bash
# Recreate the example models: a virtual environment with scikit-learn,
# skl2onnx and onnxruntime from PyPI, the rapidocr-onnxruntime wheel for its
# CNN, then make_models.py. The outputs are committed; run this only to
# change them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
wheels="$(mktemp -d)"
"$venv/bin/pip" download -q --no-deps -d "$wheels" rapidocr-onnxruntime==1.4.4
"$venv/bin/python" "$here/make_models.py" "$wheels"
"$venv/bin/python" "$here/make_graphs.py"
"$venv/bin/python" "$here/zoo/make_zoo.py"
rm -rf "$wheels"
