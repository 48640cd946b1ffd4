//! `fraud-decision`: the fraud model's probabilities to a decision with
//! reason codes, as a JSON body:
//!
//! ```json
//! {"transaction_id": "t1", "score": 0.93, "decision": "decline",
//!  "reasons": ["amount_far_above_average", "foreign_country"]}
//! ```
//!
//! `score` is the probability of fraud (column 1 of the `[1, 2]` f32
//! tensor `probabilities`). Reasons name the risk signals present, whatever
//! the decision, from the fields `fraud-features` passes through:
//! `amount_far_above_average` (amount ≥ 3 × the 7-day average),
//! `amount_above_recent_max`, `foreign_country`, `no_recent_history`.
//!
//! Config:
//! - `review` (default 0.3) and `decline` (default 0.7): score thresholds.

use serde_json::json;
use sluice_sdk::{Message, Scalar, Stage, StageError, config, export_stage};

struct FraudDecision;

impl Stage for FraudDecision {
    fn run(input: Message) -> Result<Message, StageError> {
        let threshold = |key: &str, default: f64| match config::get(key) {
            Some(_) => config::parse::<f64>(key),
            None => Ok(default),
        };
        let (review, decline) = (threshold("review", 0.3)?, threshold("decline", 0.7)?);
        let probabilities = input.tensor("probabilities")?;
        probabilities.expect_shape(&[Some(1), Some(2)])?;
        let score = probabilities.as_slice::<f32>()?[1] as f64;
        let decision = if score >= decline {
            "decline"
        } else if score >= review {
            "review"
        } else {
            "approve"
        };
        let body = json!({
            "transaction_id": text(&input, "transaction_id"),
            "score": score,
            "decision": decision,
            "reasons": reasons(&input),
        });
        Ok(Message::from_body("application/json", body.to_string()))
    }
}

export_stage!(FraudDecision);

fn reasons(input: &Message) -> Vec<&'static str> {
    let number = |name: &str| match input.field(name) {
        Some(Scalar::Float(f)) => *f,
        Some(Scalar::Int(i)) => *i as f64,
        _ => 0.0,
    };
    let flag = |name: &str| matches!(input.field(name), Some(Scalar::Bool(true)));
    let mut reasons = Vec::new();
    let history = flag("has_history");
    if history && number("amount_ratio") >= 3.0 {
        reasons.push("amount_far_above_average");
    }
    if history && number("amount") > number("max_amount_7d") {
        reasons.push("amount_above_recent_max");
    }
    if flag("foreign") {
        reasons.push("foreign_country");
    }
    if !history {
        reasons.push("no_recent_history");
    }
    reasons
}

fn text(input: &Message, name: &str) -> String {
    match input.field(name) {
        Some(Scalar::Text(s)) => s.clone(),
        _ => String::new(),
    }
}
