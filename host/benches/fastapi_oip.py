"""The baseline for `oip_load.sh`: the same model behind FastAPI +
onnxruntime, answering the same Open Inference Protocol JSON request.

Run: uvicorn --app-dir host/benches fastapi_oip:app --workers 2
(MODEL=path/to/model.onnx in the environment).
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

session = ort.InferenceSession(os.environ["MODEL"], providers=["CPUExecutionProvider"])
outputs = [o.name for o in session.get_outputs()]
app = FastAPI()


@app.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request):
    body = await request.json()
    feeds = {
        t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]) for t in body["inputs"]
    }
    results = session.run(None, feeds)
    return {
        "model_name": model,
        "outputs": [
            {"name": n, "datatype": "INT64" if r.dtype == np.int64 else "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
            for n, r in zip(outputs, results)
        ],
    }
