"""onnxruntime on the same models and inputs as `cargo bench --bench models`.

Usage: python onnxruntime_bench.py   (with onnxruntime and numpy installed,
e.g. the venv examples/models/make.sh creates). Prints median latencies.
"""

import json
import pathlib
import statistics
import time

import numpy as np
import onnxruntime as ort

MODELS = pathlib.Path(__file__).resolve().parents[2] / "examples" / "models"
CASES = [("iris-logreg", [1, 64]), ("iris-gbt", [1, 64]), ("iris-rf", [1, 64]), ("cancer-gbt", [1, 64]), ("diabetes-gbr", [1, 64]), ("diabetes-rf", [1, 64]), ("diabetes-gbr-double", [1, 64]), ("xgb-iris", [1, 64]), ("xgb-cancer", [1, 64]), ("lgbm-iris", [1, 64]), ("lgbm-diabetes", [1, 64]), ("digits-mlp", [1, 64]), ("text-direction", [1])]

options = ort.SessionOptions()
# Same footing as Sluice's engine: one thread per run.
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1

for name, batches in CASES:
    reference = json.loads((MODELS / f"{name}.reference.json").read_text())
    session = ort.InferenceSession(str(MODELS / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
    input_name, spec = next(iter(reference["inputs"].items()))
    row_len = int(np.prod(spec["shape"][1:]))
    row = np.array(spec["data"][:row_len], dtype=spec["datatype"])
    for rows in batches:
        x = np.tile(row, rows).reshape([rows] + spec["shape"][1:])
        for _ in range(50):
            session.run(None, {input_name: x})
        samples = []
        for _ in range(20):
            n = 200 if name != "text-direction" else 20
            start = time.perf_counter()
            for _ in range(n):
                session.run(None, {input_name: x})
            samples.append((time.perf_counter() - start) / n)
        print(f"{name}/{rows}: {statistics.median(samples) * 1e6:.1f} us")
