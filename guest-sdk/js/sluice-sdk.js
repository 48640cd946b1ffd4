// Sluice stages in JavaScript: the `sluice:pipeline` contract, as the Rust
// SDK gives it, over the bindings componentize-js generates from the WIT.
//
// A stage is the default export of `stage.js`, a subclass of `Stage`:
//
//     import { Stage, Message, config } from "./sluice-sdk.js";
//     export default class Scale extends Stage {
//       run(message) {
//         const factor = config.number("factor", 1);
//         return new Message({ tensors: { scaled: message.tensor("x").map((v) => v * factor) } });
//       }
//     }
//
// `sluice build DIR` puts this file next to `stage.js` and builds the
// folder into a component (the module evaluated at build time). Throw
// `InvalidInput` for a request the caller can fix (HTTP 400); anything else
// thrown is an internal failure (HTTP 500).

import { log as hostLog } from "sluice:pipeline/log@0.1.0";
import { get as configGet, getAll as configAll } from "sluice:pipeline/config@0.1.0";

/** The input is wrong and the caller can fix it: HTTP 400. */
export class InvalidInput extends Error {}

/** The stage failed for a reason the caller cannot fix: HTTP 500. */
export class Internal extends Error {}

// Element types by their Open Inference Protocol names: the WIT case and
// the typed array the elements travel in.
const TYPES = {
  FP32: ["f32", Float32Array],
  FP64: ["f64", Float64Array],
  INT32: ["i32", Int32Array],
  INT64: ["i64", BigInt64Array],
  UINT8: ["u8", Uint8Array],
  BOOL: ["bool", null],
  BYTES: ["string", null],
};
const DTYPE_OF = Object.fromEntries(Object.entries(TYPES).map(([name, [tag]]) => [tag, name]));
const ELEMENT_DTYPE = {
  f32: "FP32", f64: "FP64", i32: "INT32", i64: "INT64", u8: "UINT8", bool: "BOOL", string: "BYTES",
};

/** A dense tensor: an element type, a shape, its elements row-major. */
export class Tensor {
  constructor(dtype, shape, data) {
    if (!(dtype in TYPES)) {
      throw new Internal(`unknown tensor type ${dtype}; use one of ${Object.keys(TYPES).join(", ")}`);
    }
    const dims = Array.from(shape, Number);
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) {
      throw new Internal(`a tensor of shape [${dims}] holds ${count} elements, got ${data.length}`);
    }
    const array = TYPES[dtype][1];
    this.dtype = dtype;
    this.shape = dims;
    this.data = array ? (data instanceof array ? data : array.from(data)) : Array.from(data);
  }

  static f32(shape, data) { return new Tensor("FP32", shape, data); }
  static f64(shape, data) { return new Tensor("FP64", shape, data); }
  static i64(shape, data) { return new Tensor("INT64", shape, Array.from(data, BigInt)); }
  static strings(shape, data) { return new Tensor("BYTES", shape, data); }

  /** The elements as rows of the last dimension. */
  rows() {
    const width = Math.max(this.shape[this.shape.length - 1] ?? 1, 1);
    const rows = [];
    for (let i = 0; i < this.data.length; i += width) rows.push(Array.from(this.data.slice(i, i + width)));
    return rows;
  }

  /** Throw InvalidInput unless the shape matches `pattern` (null: any). */
  expectShape(pattern) {
    const ok = pattern.length === this.shape.length && pattern.every((p, i) => p === null || p === this.shape[i]);
    if (!ok) {
      const want = pattern.map((p) => (p === null ? "?" : p));
      throw new InvalidInput(`expected a tensor of shape [${want}], got [${this.shape}]`);
    }
  }

  map(f) { return new Tensor(this.dtype, this.shape, Array.from(this.data, f)); }

  toWit() {
    return { shape: BigUint64Array.from(this.shape, BigInt), data: { tag: TYPES[this.dtype][0], val: this.data } };
  }

  static fromWit(tensor) {
    return new Tensor(DTYPE_OF[tensor.data.tag], tensor.shape, tensor.data.val);
  }
}

/** What a stage receives and returns: a body, named tensors, named fields. */
export class Message {
  constructor({ tensors = {}, fields = {}, body = undefined, contentType = "application/octet-stream" } = {}) {
    this.tensors = { ...tensors };
    this.fields = { ...fields };
    this.body = body;
    this.contentType = contentType;
  }

  /** A message whose body is `value` as compact JSON with sorted keys. */
  static json(value) {
    return new Message({ body: new TextEncoder().encode(sortedJson(value)), contentType: "application/json" });
  }

  static text(value, contentType = "text/plain") {
    return new Message({ body: new TextEncoder().encode(value), contentType });
  }

  /** The tensor `name`, or InvalidInput naming what there is. */
  tensor(name) {
    if (!(name in this.tensors)) {
      const have = Object.keys(this.tensors).join(", ") || "none";
      throw new InvalidInput(`no tensor named \`${name}\` in the input (it has: ${have})`);
    }
    return this.tensors[name];
  }

  onlyTensor() {
    const all = Object.values(this.tensors);
    if (all.length !== 1) throw new InvalidInput(`expected exactly one tensor, got ${all.length}`);
    return all[0];
  }

  field(name, fallback = undefined) { return name in this.fields ? this.fields[name] : fallback; }

  /** The body parsed as JSON, or InvalidInput saying why not. */
  bodyJson() {
    if (this.body === undefined) throw new InvalidInput("the request has no body");
    try {
      return JSON.parse(new TextDecoder().decode(this.body));
    } catch (e) {
      throw new InvalidInput(`the body is not JSON: ${e.message}`);
    }
  }

  toWit() {
    return {
      body: this.body === undefined ? undefined : { contentType: this.contentType, bytes: Uint8Array.from(this.body) },
      tensors: Object.entries(this.tensors).map(([name, t]) => ({ name, tensor: t.toWit() })),
      fields: Object.entries(this.fields).map(([name, v]) => ({ name, value: scalarToWit(v) })),
    };
  }

  static fromWit(message) {
    const scalar = (s) => (s.tag === "int" ? Number(s.val) : s.val);
    return new Message({
      tensors: Object.fromEntries(message.tensors.map((t) => [t.name, Tensor.fromWit(t.tensor)])),
      fields: Object.fromEntries(message.fields.map((f) => [f.name, scalar(f.value)])),
      body: message.body?.bytes,
      contentType: message.body?.contentType ?? "application/octet-stream",
    });
  }
}

function scalarToWit(value) {
  switch (typeof value) {
    case "boolean": return { tag: "bool", val: value };
    case "bigint": return { tag: "int", val: value };
    case "number": return Number.isInteger(value) ? { tag: "int", val: BigInt(value) } : { tag: "float", val: value };
    case "string": return { tag: "text", val: value };
    default: throw new Internal(`a field holds a boolean, number or string, not ${typeof value}`);
  }
}

// JSON as Rust's serde_json and Python's json.dumps(sort_keys=True) write it.
function sortedJson(value) {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Subclass it and define `run(message)`; export the subclass as default. */
export class Stage {
  run(_message) { throw new Internal("the stage does not define run(message)"); }
}

// The WIT export for `StageClass` (used by the build's entry module). The
// error's `payload` is the WIT `stage-error`.
export function exportStage(StageClass) {
  if (typeof StageClass !== "function" || !(StageClass.prototype instanceof Stage)) {
    throw new Error("stage.js must `export default` a class extending Stage");
  }
  const stage = new StageClass();
  const fail = (tag, message) => Object.assign(new Error(message), { payload: { tag, val: message } });
  return {
    run(input) {
      let output;
      try {
        output = stage.run(Message.fromWit(input));
      } catch (e) {
        if (e instanceof InvalidInput) throw fail("invalid-input", e.message);
        throw fail("internal", e instanceof Error ? `${e.name}: ${e.message}` : String(e));
      }
      if (!(output instanceof Message)) {
        throw fail("internal", "run returned something other than a Message");
      }
      return output.toWit();
    },
  };
}

/** The deployment's configuration (`sluice deploy --config k=v`). */
export const config = {
  get: (key) => configGet(key) ?? undefined,
  all: () => Object.fromEntries(configAll()),
  require(key) {
    const value = configGet(key);
    if (value === undefined || value === null) throw new Internal(`config \`${key}\` is not set; deploy with --config ${key}=...`);
    return value;
  },
  number(key, fallback) {
    const value = configGet(key);
    if (value === undefined || value === null) return fallback;
    const n = Number(value);
    if (Number.isNaN(n)) throw new Internal(`config \`${key}\` must be a number, got ${JSON.stringify(value)}`);
    return n;
  },
};

const emit = (level) => (message, fields = {}) =>
  hostLog(level, message, Object.entries(fields).map(([k, v]) => [k, String(v)]));

/** Levelled records with key/value fields, into the node's log. */
export const log = { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };

// For the world-specific modules (sluice-sdk-inference.js, -features.js).
export const internal = { ELEMENT_DTYPE, InvalidInput, Internal };
