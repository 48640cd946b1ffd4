"""Classify images through a Sluice pipeline with the real Triton HTTP
client: each file's bytes as a UINT8 input named `image`.

Usage: image_client.py HOST:PORT PIPELINE IMAGE...
Prints one JSON line: per image, the `labels` and `scores` outputs, and the
pipeline's metadata.
"""

import json
import pathlib
import sys

import numpy as np
import tritonclient.http as httpclient

url, pipeline, *images = sys.argv[1:]
client = httpclient.InferenceServerClient(url=url)
seen = {
    "ready": client.is_model_ready(pipeline),
    "metadata": client.get_model_metadata(pipeline),
    "answers": {},
}
for path in images:
    data = np.frombuffer(pathlib.Path(path).read_bytes(), dtype=np.uint8)
    image = httpclient.InferInput("image", [len(data)], "UINT8")
    image.set_data_from_numpy(data, binary_data=True)
    outputs = [httpclient.InferRequestedOutput(o, binary_data=False) for o in ("labels", "scores")]
    result = client.infer(pipeline, [image], outputs=outputs)
    seen["answers"][pathlib.Path(path).name] = {
        "labels": [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("labels").ravel().tolist()],
        "scores": result.as_numpy("scores").ravel().tolist(),
    }
print(json.dumps(seen))
