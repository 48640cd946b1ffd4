"""`{{name}}`: a user id to the user's features, read online from the
`users` feature table.

In: `{"user_id": "u1"}`. Out: `{"user_id": "u1", "known": true,
"visits": 12, "country": "FR"}`, or `"known": false` for a user the table
does not hold.
"""

import sluice_sdk as sluice


class UserFeatures(sluice.Stage):
    def run(self, message):
        body = message.body_json()
        user = body.get("user_id") if isinstance(body, dict) else None
        if not isinstance(user, str):
            raise sluice.InvalidInput("the body needs a string field `user_id`")
        [[visits, country]] = sluice.features.get("users", [user], ["visits", "country"])
        if visits is None:
            return sluice.Message.json({"user_id": user, "known": False})
        return sluice.Message.json({"user_id": user, "known": True, "visits": visits, "country": country})
