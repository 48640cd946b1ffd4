"""Call a Sluice node with the real Triton HTTP client, as users would.

Usage: oip_client.py HOST:PORT MODEL REFERENCE.json
Prints one JSON line: what the client saw.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url, model, reference_path = sys.argv[1:4]
reference = json.load(open(reference_path))
client = httpclient.InferenceServerClient(url=url)
seen = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
    "metadata": client.get_model_metadata(model),
}

name, spec = next(iter(reference["inputs"].items()))
x = np.array(spec["data"], dtype=np.float32).reshape(spec["shape"])
runs = {}
for binary in (True, False):
    inp = httpclient.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in reference["outputs"]]
    result = client.infer(model, [inp], outputs=outputs, request_id="req-7")
    runs["binary" if binary else "json"] = {
        "id": result.get_response()["id"],
        "outputs": {o: result.as_numpy(o).ravel().tolist() for o in reference["outputs"]},
    }
# Defaults: binary inputs, no outputs named.
inp = httpclient.InferInput(name, list(x.shape), "FP32")
inp.set_data_from_numpy(x)
result = client.infer(model, [inp])
runs["defaults"] = {"outputs": {o: result.as_numpy(o).ravel().tolist() for o in reference["outputs"]}}
seen["runs"] = runs

try:
    bad = httpclient.InferInput(name, [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    client.infer(model, [bad])
    seen["wrong_shape"] = "accepted"
except InferenceServerException as e:
    seen["wrong_shape"] = str(e)
try:
    client.get_model_metadata("no-such-model")
    seen["unknown"] = "found"
except InferenceServerException as e:
    seen["unknown"] = str(e)
print(json.dumps(seen))
