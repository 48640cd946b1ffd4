// Entity-keyed feature tables held by the host, for featurizer stages:
// the module imports `sluice:pipeline/features`.

import { get as hostGet } from "sluice:pipeline/features@0.1.0";
import { internal } from "./sluice-sdk.js";

const { InvalidInput, Internal } = internal;

/** One row per entity, one value per name; undefined where missing. */
export function get(table, entities, names) {
  let rows;
  try {
    rows = hostGet(table, Array.from(entities), Array.from(names));
  } catch (e) {
    const error = e?.payload ?? e;
    const what = `reading table \`${table}\``;
    if (error?.tag === "invalid-input") throw new InvalidInput(`${what}: ${error.val}`);
    throw new Internal(`${what}: ${error?.tag ?? "error"}: ${error?.val ?? e}`);
  }
  const value = (s) => (s === undefined || s === null ? undefined : s.tag === "int" ? Number(s.val) : s.val);
  return rows.map((row) => row.map(value));
}
