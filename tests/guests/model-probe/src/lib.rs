//! A predictor that loads the model named in the request body and reports
//! how the host answered, as a `status` field.

use sluice_sdk::inference::{InferenceError, Model};
use sluice_sdk::{Message, Scalar, Stage, StageError, export_stage};

struct ModelProbe;

impl Stage for ModelProbe {
    fn run(input: Message) -> Result<Message, StageError> {
        let name = String::from_utf8_lossy(input.body_bytes()?).into_owned();
        let status = match Model::load(&name, None) {
            Ok(_) => "loaded".to_string(),
            Err(InferenceError::NotAvailable(m)) => format!("not-available: {m}"),
            Err(e) => format!("error: {e}"),
        };
        Ok(Message::new().with_field("status", Scalar::Text(status)))
    }
}

export_stage!(ModelProbe);
