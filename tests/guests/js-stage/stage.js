// A JavaScript preprocessor for the tests: doubles every FP32 tensor,
// keeps the fields and adds `lang` and the config's `tag`; a text body
// `invalid` is refused (400), `crash` throws (500), anything else is
// echoed upper-case.

import { Stage, Message, InvalidInput, config, log } from "./sluice-sdk.js";

export default class Probe extends Stage {
  run(message) {
    log.info("probe called", { tensors: Object.keys(message.tensors).length });
    if (message.body !== undefined) {
      const text = new TextDecoder().decode(message.body);
      if (text === "invalid") throw new InvalidInput("the probe refuses `invalid`");
      if (text === "crash") throw new TypeError("the probe crashed on purpose");
      return Message.text(text.toUpperCase());
    }
    const tensors = Object.fromEntries(
      Object.entries(message.tensors).map(([name, t]) => [name, t.dtype === "FP32" ? t.map((v) => v * 2) : t]),
    );
    const fields = { ...message.fields, lang: "javascript", tag: config.get("tag") ?? "" };
    return new Message({ tensors, fields });
  }
}
