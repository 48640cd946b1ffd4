// A JavaScript predictor for the tests: runs the registry model the
// config's `model` names on the message's only tensor and answers its
// outputs, as the Rust `onnx-predict` stage does for a one-input model.

import { Stage, Message, config } from "./sluice-sdk.js";
import { Model } from "./sluice-sdk-inference.js";

export default class Predict extends Stage {
  run(message) {
    this.model ??= Model.load(config.require("model"), config.get("version"));
    const [first] = this.model.signature().inputs;
    return new Message({ tensors: this.model.run({ [first.name]: message.onlyTensor() }) });
  }
}
