//! `fraud-features`: a card transaction (JSON) to the fraud model's input.
//! It checks the transaction, derives fields from it, reads the user's
//! aggregates from a feature table (online, through the host), and answers
//! an `[1, 8]` f32 tensor `features` in the order the model was trained on
//! (`examples/fraud/make_example.py` builds its training set the same way):
//!
//! `amount, hour, txn_count_7d, avg_amount_7d, max_amount_7d, amount_ratio,
//! foreign, has_history`
//!
//! A user without aggregates (new, or older than the table's TTL) gets
//! zeros and `has_history = 0`. Fields for the decision step pass through:
//! `transaction_id`, `amount`, `amount_ratio`, `foreign`, `has_history`,
//! `max_amount_7d`.
//!
//! Config:
//! - `table`: the feature table (default `user_stats`).

use serde_json::{Map, Value};
use sluice_sdk::features::{self, FeatureError};
use sluice_sdk::{Message, Scalar, Stage, StageError, Tensor, config, export_stage};

/// What the stage reads of the table, in this order.
const FEATURES: [&str; 4] = [
    "txn_count_7d",
    "avg_amount_7d",
    "max_amount_7d",
    "home_country",
];

struct FraudFeatures;

/// A checked transaction.
#[derive(Debug, PartialEq)]
struct Transaction {
    id: String,
    user_id: String,
    amount: f64,
    country: String,
    hour: u32,
}

/// The user's aggregates, as read (missing ones are `None`).
#[derive(Debug, Default, PartialEq)]
struct Aggregates {
    count: Option<i64>,
    avg: Option<f64>,
    max: Option<f64>,
    home: Option<String>,
}

impl Stage for FraudFeatures {
    fn run(input: Message) -> Result<Message, StageError> {
        let table = config::get("table").unwrap_or_else(|| "user_stats".into());
        let txn = parse(input.body_bytes()?)?;
        let rows = features::get(&table, &[&txn.user_id], &FEATURES).map_err(|e| match e {
            FeatureError::InvalidInput(m) => StageError::invalid_input(m),
            e => StageError::internal(format!("reading table `{table}`: {e}")),
        })?;
        let aggregates = rows.into_iter().next().map(aggregates).unwrap_or_default();
        let row = features_of(&txn, &aggregates);
        let output = Message::new()
            .with_tensor(
                "features",
                Tensor::new([1, row.len() as u64], row.to_vec())?,
            )
            .with_field("transaction_id", Scalar::Text(txn.id))
            .with_field("amount", Scalar::Float(txn.amount))
            .with_field("amount_ratio", Scalar::Float(row[5] as f64))
            .with_field("foreign", Scalar::Bool(row[6] == 1.0))
            .with_field("has_history", Scalar::Bool(row[7] == 1.0))
            .with_field(
                "max_amount_7d",
                Scalar::Float(aggregates.max.unwrap_or(0.0)),
            );
        Ok(output)
    }
}

export_stage!(FraudFeatures);

fn parse(body: &[u8]) -> Result<Transaction, StageError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        StageError::invalid_input(format!("the body must be a JSON transaction: {e}"))
    })?;
    let Value::Object(object) = value else {
        return Err(StageError::invalid_input(
            "the body must be a JSON object: {\"transaction_id\", \"user_id\", \"amount\", \"country\", \"timestamp\"}",
        ));
    };
    let text = |name: &str| -> Result<String, StageError> {
        match object.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(other) => Err(StageError::invalid_input(format!(
                "`{name}` must be a non-empty string, got {other}"
            ))),
            None => Err(StageError::invalid_input(format!("`{name}` is missing"))),
        }
    };
    let amount = amount(&object)?;
    let country = text("country")?.to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(StageError::invalid_input(format!(
            "`country` must be an ISO 3166 alpha-2 code such as \"FR\", got \"{country}\""
        )));
    }
    Ok(Transaction {
        id: text("transaction_id")?,
        user_id: text("user_id")?,
        amount,
        country,
        hour: hour(&text("timestamp")?)?,
    })
}

fn amount(object: &Map<String, Value>) -> Result<f64, StageError> {
    match object.get("amount").map(|v| (v, v.as_f64())) {
        Some((_, Some(a))) if a.is_finite() && a > 0.0 && a < 1e9 => Ok(a),
        Some((v, _)) => Err(StageError::invalid_input(format!(
            "`amount` must be a positive number below 1e9, got {v}"
        ))),
        None => Err(StageError::invalid_input("`amount` is missing")),
    }
}

/// The UTC hour of an RFC 3339 timestamp (`2026-03-01T14:22:00Z`, or with
/// an offset, which is applied).
fn hour(timestamp: &str) -> Result<u32, StageError> {
    let bad = || {
        StageError::invalid_input(format!(
            "`timestamp` must be RFC 3339, e.g. \"2026-03-01T14:22:00Z\", got \"{timestamp}\""
        ))
    };
    let b = timestamp.as_bytes();
    if b.len() < 20 || b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i32, StageError> {
        timestamp
            .get(range)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let (h, m) = (number(11..13)?, number(14..16)?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    let zone = timestamp[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset_minutes = match zone {
        "Z" | "z" => 0,
        _ if zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let oh: i32 = zone[1..3].parse().map_err(|_| bad())?;
            let om: i32 = zone[4..6].parse().map_err(|_| bad())?;
            sign * (oh * 60 + om)
        }
        _ => return Err(bad()),
    };
    let minutes = (h * 60 + m - offset_minutes).rem_euclid(24 * 60);
    Ok((minutes / 60) as u32)
}

fn aggregates(row: Vec<Option<Scalar>>) -> Aggregates {
    let mut values = row.into_iter();
    let mut next = || values.next().flatten();
    Aggregates {
        count: match next() {
            Some(Scalar::Int(n)) => Some(n),
            _ => None,
        },
        avg: next().and_then(float),
        max: next().and_then(float),
        home: match next() {
            Some(Scalar::Text(s)) => Some(s),
            _ => None,
        },
    }
}

fn float(s: Scalar) -> Option<f64> {
    match s {
        Scalar::Float(f) => Some(f),
        Scalar::Int(i) => Some(i as f64),
        _ => None,
    }
}

/// The model's input row; see the crate docs for the order.
fn features_of(txn: &Transaction, user: &Aggregates) -> [f32; 8] {
    let count = user.count.unwrap_or(0);
    let has_history = count > 0;
    let avg = user.avg.filter(|_| has_history).unwrap_or(0.0);
    let max = user.max.filter(|_| has_history).unwrap_or(0.0);
    let ratio = if avg > 0.0 { txn.amount / avg } else { 1.0 };
    let foreign = user.home.as_deref().is_some_and(|home| home != txn.country);
    [
        txn.amount as f32,
        txn.hour as f32,
        count as f32,
        avg as f32,
        max as f32,
        ratio as f32,
        if foreign { 1.0 } else { 0.0 },
        if has_history { 1.0 } else { 0.0 },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_checked_and_their_hour_derived() {
        let txn = parse(br#"{"transaction_id": "t1", "user_id": "u1", "amount": 12.5, "country": "fr", "timestamp": "2026-03-01T23:30:00-02:00"}"#).unwrap();
        assert_eq!((txn.country.as_str(), txn.hour), ("FR", 1));
        for (body, says) in [
            (r#"{"user_id": "u1"}"#, "`amount` is missing"),
            (
                r#"{"transaction_id": "t", "user_id": "u", "amount": -1, "country": "FR", "timestamp": "x"}"#,
                "`amount` must be a positive number",
            ),
            (
                r#"{"transaction_id": "t", "user_id": "u", "amount": 1, "country": "France", "timestamp": "x"}"#,
                "ISO 3166",
            ),
            (
                r#"{"transaction_id": "t", "user_id": "u", "amount": 1, "country": "FR", "timestamp": "yesterday"}"#,
                "RFC 3339",
            ),
            (
                r#"{"transaction_id": "t", "user_id": 7, "amount": 1, "country": "FR", "timestamp": "2026-03-01T00:00:00Z"}"#,
                "`user_id` must be a non-empty string",
            ),
        ] {
            let error = parse(body.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(says), "{body}: {error}");
        }
    }

    #[test]
    fn users_without_history_get_zeros() {
        let txn = Transaction {
            id: "t".into(),
            user_id: "u".into(),
            amount: 30.0,
            country: "DE".into(),
            hour: 3,
        };
        assert_eq!(
            features_of(&txn, &Aggregates::default()),
            [30.0, 3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
        );
        let user = Aggregates {
            count: Some(4),
            avg: Some(10.0),
            max: Some(20.0),
            home: Some("FR".into()),
        };
        assert_eq!(
            features_of(&txn, &user),
            [30.0, 3.0, 4.0, 10.0, 20.0, 3.0, 1.0, 1.0]
        );
    }
}
