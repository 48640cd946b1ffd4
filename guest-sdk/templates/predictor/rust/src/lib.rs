//! `{{name}}`: a row of measurements to a class, by the registry model
//! the config's `model` names (its first input takes a `[1, n]` FP32
//! tensor; its `label` output is the class index).
//!
//! In: `{"features": [5.1, 3.5, 1.4, 0.2]}`. Out: `{"label": 0, "class":
//! "setosa"}`, the class named by the config's `classes`.

use serde_json::{Value, json};
use sluice_sdk::inference::Model;
use sluice_sdk::{Message, Stage, StageError, Tensor, config, export_stage};

struct Predict;

impl Stage for Predict {
    fn run(input: Message) -> Result<Message, StageError> {
        let body: Value = serde_json::from_slice(input.body_bytes()?)
            .map_err(|e| StageError::invalid_input(format!("the body is not JSON: {e}")))?;
        let features: Vec<f32> = body["features"]
            .as_array()
            .and_then(|row| row.iter().map(|v| v.as_f64().map(|f| f as f32)).collect())
            .ok_or_else(|| StageError::invalid_input("the body needs `features`: an array of numbers"))?;
        let model = Model::load(&config::require("model")?, config::get("version").as_deref())?;
        let (inputs, _) = model.signature();
        let width = features.len() as u64;
        let row = Tensor::new([1, width], features)?;
        let outputs = model.run(vec![(inputs[0].name.clone(), row)])?;
        let label = outputs
            .into_iter()
            .find(|(name, _)| name == "label")
            .ok_or_else(|| StageError::internal("the model has no `label` output"))?
            .1
            .into_vec::<i64>()?[0];
        let classes = config::parse_list::<String>("classes")?;
        let class = usize::try_from(label).ok().and_then(|i| classes.get(i));
        let answer = json!({"label": label, "class": class});
        Ok(Message::from_body("application/json", answer.to_string()))
    }
}

export_stage!(Predict);
