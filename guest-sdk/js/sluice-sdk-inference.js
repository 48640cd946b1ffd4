// Registry models run by the host, for predictor stages: the module
// imports `sluice:pipeline/inference`, so only a predictor may use it.

import { Model as HostModel } from "sluice:pipeline/inference@0.1.0";
import { Tensor, internal } from "./sluice-sdk.js";

const { ELEMENT_DTYPE, InvalidInput, Internal } = internal;

// A host error (thrown with the WIT `inference-error` as its payload) as
// the stage's own.
function rethrow(e, what) {
  const error = e?.payload ?? e;
  if (error?.tag === "invalid-input") return new InvalidInput(`${what}: ${error.val}`);
  return new Internal(`${what}: ${error?.tag ?? "error"}: ${error?.val ?? e}`);
}

/** A registry model, loaded once and shared by every instance on the node. */
export class Model {
  constructor(handle, name) {
    this.handle = handle;
    this.name = name;
  }

  /** Load `name` at `version` (a number or an alias; default: the default alias). */
  static load(name, version = undefined) {
    try {
      return new Model(HostModel.load(name, version), name);
    } catch (e) {
      throw rethrow(e, `loading model \`${name}\``);
    }
  }

  /** {inputs, outputs}: name, dtype and shape (null: dynamic) of each. */
  signature() {
    const info = (t) => ({
      name: t.name,
      dtype: ELEMENT_DTYPE[t.elementType],
      shape: Array.from(t.shape, (d) => (d === undefined || d === null ? null : Number(d))),
    });
    const s = this.handle.signature();
    return { inputs: s.inputs.map(info), outputs: s.outputs.map(info) };
  }

  /** Run on named input tensors; answers the named outputs. */
  run(inputs) {
    const named = Object.entries(inputs).map(([name, t]) => ({ name, tensor: t.toWit() }));
    let outputs;
    try {
      outputs = this.handle.run(named);
    } catch (e) {
      throw rethrow(e, `running model \`${this.name}\``);
    }
    return Object.fromEntries(outputs.map((t) => [t.name, Tensor.fromWit(t.tensor)]));
  }
}
