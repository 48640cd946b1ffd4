//! `onnx-predict`: run a registry model on the tensors of the previous
//! stage and return its outputs.
//!
//! Config:
//! - `model` (required): the model's registry name;
//! - `version`: a version number or alias (default: the model's `stable`,
//!   else `latest`);
//! - `inputs`: `MODEL_INPUT=TENSOR` pairs, comma-separated, when the
//!   message's tensor names differ from the model's input names (a model
//!   with one input takes a message's only tensor without it);
//! - `classes`: class names, comma-separated, indexed by a classifier's
//!   `label` output: each row's name is returned in the `class` field
//!   (one row) or the `classes` tensor.

use sluice_sdk::inference::Model;
use sluice_sdk::{Message, Scalar, Stage, StageError, Tensor, config, export_stage};

struct OnnxPredict;

impl Stage for OnnxPredict {
    fn run(mut input: Message) -> Result<Message, StageError> {
        let model_name = config::require("model")?;
        let version = config::get("version");
        let model = Model::load(&model_name, version.as_deref())?;
        let (wanted, _) = model.signature();
        let mapping: Vec<(String, String)> = match config::get("inputs") {
            Some(pairs) => pairs
                .split(',')
                .map(|pair| match pair.split_once('=') {
                    Some((model_input, tensor)) => {
                        Ok((model_input.trim().to_string(), tensor.trim().to_string()))
                    }
                    None => Err(StageError::internal(format!(
                        "config `inputs` must be MODEL_INPUT=TENSOR pairs, got {pair:?}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            None => wanted
                .iter()
                .map(|w| (w.name.clone(), w.name.clone()))
                .collect(),
        };
        let mut inputs = Vec::with_capacity(mapping.len());
        for (model_input, tensor_name) in &mapping {
            let tensor = match input.take_tensor(tensor_name) {
                Ok(tensor) => tensor,
                // One input, one tensor: the names need not agree.
                Err(_) if mapping.len() == 1 => input.take_only_tensor()?,
                Err(e) => return Err(e),
            };
            inputs.push((model_input.clone(), tensor));
        }
        let outputs = model.run(inputs)?;
        let classes: Option<Vec<String>> =
            config::get("classes").map(|c| c.split(',').map(|s| s.trim().to_string()).collect());
        let mut out = Message::new();
        let mut class_names = None;
        for (name, tensor) in outputs {
            if name == "label"
                && let Some(classes) = &classes
            {
                class_names = Some(names_of(&tensor, classes)?);
            }
            out = out.with_tensor(name, tensor);
        }
        match class_names {
            Some(names) if names.len() == 1 => {
                out = out.with_field("class", Scalar::Text(names[0].clone()));
            }
            Some(names) => out = out.with_tensor("classes", Tensor::vector(names)),
            None => {}
        }
        Ok(out)
    }
}

/// The class name of each label.
fn names_of(labels: &Tensor, classes: &[String]) -> Result<Vec<String>, StageError> {
    labels
        .clone()
        .into_vec::<i64>()?
        .into_iter()
        .map(|label| {
            usize::try_from(label)
                .ok()
                .and_then(|i| classes.get(i))
                .cloned()
                .ok_or_else(|| {
                    StageError::internal(format!(
                        "label {label} has no name: config `classes` lists {} classes",
                        classes.len()
                    ))
                })
        })
        .collect()
}

export_stage!(OnnxPredict);
