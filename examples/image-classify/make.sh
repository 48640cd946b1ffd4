#!/usr/bin/env bash
# Recreate the image example's test images and expected answers: a virtual
# environment with Pillow, numpy and onnxruntime from PyPI, then
# make_example.py. The outputs are committed; run this only to change them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
"$venv/bin/python" "$here/make_example.py"
