// `{{name}}`: a row of measurements to a class, by the registry model the
// config's `model` names (its first input takes a `[1, n]` FP32 tensor;
// its `label` output is the class index).
//
// In: `{"features": [5.1, 3.5, 1.4, 0.2]}`. Out: `{"label": 0, "class":
// "setosa"}`, the class named by the config's `classes`.

import { Stage, Message, Tensor, InvalidInput, config } from "./sluice-sdk.js";
import { Model } from "./sluice-sdk-inference.js";

export default class Predict extends Stage {
  run(message) {
    const features = message.bodyJson()?.features;
    if (!Array.isArray(features) || !features.every((v) => typeof v === "number")) {
      throw new InvalidInput("the body needs `features`: an array of numbers");
    }
    const model = Model.load(config.require("model"), config.get("version"));
    const first = model.signature().inputs[0].name;
    const outputs = model.run({ [first]: Tensor.f32([1, features.length], features) });
    const label = Number(outputs.label.data[0]);
    const classes = config.require("classes").split(",");
    return Message.json({ label, class: classes[label] ?? null });
  }
}
