"""The second peer of `oip_load.sh`: the digits MLP as MLServer serves a
scikit-learn model, written to the folder given as the only argument:

  model.joblib         MLPClassifier(hidden_layer_sizes=(64, 32),
                       max_iter=300, random_state=7) on the digits / 16,
                       the training of examples/models/digits-mlp.onnx
                       (retrained here with this venv's scikit-learn, so
                       the pickle loads in the server that serves it)
  model-settings.json  name `mlp`, the mlserver-sklearn runtime
  settings.json        2 parallel inference workers, port 18083, no gRPC
                       or metrics server (only the HTTP port is measured)
"""

import json
import pathlib
import sys

import joblib
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
digits = load_digits()
mlp = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=7)
mlp.fit((digits.data / 16.0).astype("float32"), digits.target)
joblib.dump(mlp, out / "model.joblib")
(out / "model-settings.json").write_text(
    json.dumps({"name": "mlp", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}})
)
(out / "settings.json").write_text(
    json.dumps({"parallel_workers": 2, "http_port": 18083, "host": "127.0.0.1", "grpc_port": 18084, "metrics_port": 18085, "metrics_endpoint": None})
)
