// `{{name}}`: a text to its normalised form (lower case, one space between
// words) and its word count.
//
// In: `{"text": "..."}`. Out: `{"normalised": "...", "words": N}`.

import { Stage, Message, InvalidInput } from "./sluice-sdk.js";

export default class Normalise extends Stage {
  run(message) {
    const body = message.bodyJson();
    if (typeof body?.text !== "string") throw new InvalidInput("the body needs a string field `text`");
    const words = body.text.toLowerCase().split(/\s+/).filter(Boolean);
    return Message.json({ normalised: words.join(" "), words: words.length });
  }
}
