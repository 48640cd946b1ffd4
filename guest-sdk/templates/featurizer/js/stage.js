// `{{name}}`: a user id to the user's features, read online from the
// `users` feature table.
//
// In: `{"user_id": "u1"}`. Out: `{"user_id": "u1", "known": true,
// "visits": 12, "country": "FR"}`, or `"known": false` for a user the
// table does not hold.

import { Stage, Message, InvalidInput } from "./sluice-sdk.js";
import { get } from "./sluice-sdk-features.js";

export default class UserFeatures extends Stage {
  run(message) {
    const body = message.bodyJson();
    if (typeof body?.user_id !== "string") throw new InvalidInput("the body needs a string field `user_id`");
    const user = body.user_id;
    const [[visits, country]] = get("users", [user], ["visits", "country"]);
    if (visits === undefined) return Message.json({ user_id: user, known: false });
    return Message.json({ user_id: user, known: true, visits, country });
  }
}
