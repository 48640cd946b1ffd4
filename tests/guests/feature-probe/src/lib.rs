//! A featurizer that reads one feature for the entity named in the request
//! body and reports how the host answered, as a `status` field.

use sluice_sdk::features::{self, FeatureError};
use sluice_sdk::{Message, Scalar, Stage, StageError, export_stage};

struct FeatureProbe;

impl Stage for FeatureProbe {
    fn run(input: Message) -> Result<Message, StageError> {
        let entity = String::from_utf8_lossy(input.body_bytes()?).into_owned();
        let status = match features::get("customers", &[&entity], &["age"]) {
            Ok(rows) => format!("rows: {}", rows.len()),
            Err(FeatureError::NotAvailable(m)) => format!("not-available: {m}"),
            Err(e) => format!("error: {e}"),
        };
        Ok(Message::new().with_field("status", Scalar::Text(status)))
    }
}

export_stage!(FeatureProbe);
