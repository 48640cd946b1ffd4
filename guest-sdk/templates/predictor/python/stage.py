"""`{{name}}`: a row of measurements to a class, by the registry model the
config's `model` names (its first input takes a `[1, n]` FP32 tensor; its
`label` output is the class index).

In: `{"features": [5.1, 3.5, 1.4, 0.2]}`. Out: `{"label": 0, "class":
"setosa"}`, the class named by the config's `classes`.
"""

import sluice_sdk as sluice


class Predict(sluice.Stage):
    def run(self, message):
        body = message.body_json()
        features = body.get("features") if isinstance(body, dict) else None
        if not isinstance(features, list) or not all(isinstance(v, (int, float)) for v in features):
            raise sluice.InvalidInput("the body needs `features`: an array of numbers")
        model = sluice.Model.load(sluice.config.require("model"), sluice.config.get("version"))
        first = model.signature()["inputs"][0]["name"]
        outputs = model.run({first: sluice.Tensor.f32([1, len(features)], features)})
        label = outputs["label"].data[0]
        classes = sluice.config.require("classes").split(",")
        name = classes[label] if 0 <= label < len(classes) else None
        return sluice.Message.json({"label": label, "class": name})
