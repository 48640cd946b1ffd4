//! `{{name}}`: a user id to the user's features, read online from the
//! `users` feature table.
//!
//! In: `{"user_id": "u1"}`. Out: `{"user_id": "u1", "known": true,
//! "visits": 12, "country": "FR"}`, or `"known": false` for a user the
//! table does not hold.

use serde_json::{Value, json};
use sluice_sdk::{Message, Scalar, Stage, StageError, export_stage, features};

struct UserFeatures;

impl Stage for UserFeatures {
    fn run(input: Message) -> Result<Message, StageError> {
        let body: Value = serde_json::from_slice(input.body_bytes()?)
            .map_err(|e| StageError::invalid_input(format!("the body is not JSON: {e}")))?;
        let user = body["user_id"]
            .as_str()
            .ok_or_else(|| StageError::invalid_input("the body needs a string field `user_id`"))?;
        let rows = features::get("users", &[user], &["visits", "country"])?;
        let mut answer = json!({"user_id": user, "known": false});
        if let [Some(Scalar::Int(visits)), Some(Scalar::Text(country))] = rows[0].as_slice() {
            answer = json!({"user_id": user, "known": true, "visits": visits, "country": country});
        }
        Ok(Message::from_body("application/json", answer.to_string()))
    }
}

export_stage!(UserFeatures);
