//! A featurizer that reads feature `age` of table `customers` for the entity
//! named in the request body, and reports how the host answered: a `status`
//! field, and the value as an `age` field when there is one.

use sluice_sdk::features::{self, FeatureError};
use sluice_sdk::{Message, Scalar, Stage, StageError, export_stage};

struct FeatureProbe;

impl Stage for FeatureProbe {
    fn run(input: Message) -> Result<Message, StageError> {
        let entity = String::from_utf8_lossy(input.body_bytes()?).into_owned();
        let mut output = Message::new();
        let status = match features::get("customers", &[&entity], &["age"]) {
            Ok(rows) => {
                if let Some(Some(age)) = rows.first().and_then(|row| row.first()) {
                    output = output.with_field("age", age.clone());
                }
                format!("rows: {}", rows.len())
            }
            Err(FeatureError::NotAvailable(m)) => format!("not-available: {m}"),
            Err(e) => format!("error: {e}"),
        };
        Ok(output.with_field("status", Scalar::Text(status)))
    }
}

export_stage!(FeatureProbe);
