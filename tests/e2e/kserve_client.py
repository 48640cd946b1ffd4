"""Call a Sluice node with the KServe Python SDK's REST client (protocol v2),
as users would.

Usage: kserve_client.py URL MODEL REFERENCE.json
Prints one JSON line: what the client saw.
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main():
    url, model, reference_path = sys.argv[1:4]
    reference = json.load(open(reference_path))
    name, spec = next(iter(reference["inputs"].items()))
    x = np.array(spec["data"], dtype=np.float32).reshape(spec["shape"])
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as client:
        seen = {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, model),
            "unknown_ready": await client.is_model_ready(url, "no-such-model"),
        }
        runs = {}
        for binary in (True, False):
            tensor = InferInput(name, list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            request = InferRequest(model_name=model, infer_inputs=[tensor], request_id="kserve-1")
            result = await client.infer(url, request, model_name=model)
            runs["binary" if binary else "json"] = {
                "id": result.id,
                "outputs": {o.name: o.as_numpy().ravel().tolist() for o in result.outputs},
            }
        seen["runs"] = runs
    print(json.dumps(seen))


asyncio.run(main())
