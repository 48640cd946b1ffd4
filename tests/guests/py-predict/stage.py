"""A Python predictor for the tests: runs the registry model the config's
`model` names on the message's only tensor and answers its outputs, as the
Rust `onnx-predict` stage does for a one-input model."""

import sluice_sdk as sluice


class Predict(sluice.Stage):
    def __init__(self):
        self.model = None

    def run(self, message):
        if self.model is None:
            self.model = sluice.Model.load(sluice.config.require("model"), sluice.config.get("version"))
        (first,) = self.model.signature()["inputs"]
        return sluice.Message(tensors=self.model.run({first["name"]: message.only_tensor()}))
