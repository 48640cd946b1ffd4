// A JavaScript stage that answers its input unchanged: the per-request
// cost of a JavaScript stage with no work in it (`host/benches/languages.rs`).

import { Stage } from "./sluice-sdk.js";

export default class PassThrough extends Stage {
  run(message) {
    return message;
  }
}
