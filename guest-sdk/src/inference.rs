//! Models run natively by the host. Using anything here makes the stage a
//! `predictor`.

use crate::bindings::sluice::pipeline::inference as wit;
use crate::bindings::sluice::pipeline::types::NamedTensor;
use crate::{ElementType, StageError, Tensor};
use std::fmt;

/// Why a model could not be loaded or run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InferenceError {
    /// This node does not serve models.
    NotAvailable(String),
    /// No model, version or alias with that name.
    NotFound(String),
    /// The inputs do not fit the model's signature.
    InvalidInput(String),
    /// The model failed.
    Internal(String),
}

impl fmt::Display for InferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAvailable(m) => write!(f, "inference not available: {m}"),
            Self::NotFound(m) => write!(f, "model not found: {m}"),
            Self::InvalidInput(m) => write!(f, "invalid model input: {m}"),
            Self::Internal(m) => write!(f, "model failed: {m}"),
        }
    }
}

impl std::error::Error for InferenceError {}

/// Bad inputs are the caller's fault; everything else is the stage's.
impl From<InferenceError> for StageError {
    fn from(e: InferenceError) -> Self {
        match e {
            InferenceError::InvalidInput(_) => StageError::invalid_input(e.to_string()),
            _ => StageError::internal(e.to_string()),
        }
    }
}

impl From<wit::InferenceError> for InferenceError {
    fn from(e: wit::InferenceError) -> Self {
        match e {
            wit::InferenceError::NotAvailable(m) => Self::NotAvailable(m),
            wit::InferenceError::NotFound(m) => Self::NotFound(m),
            wit::InferenceError::InvalidInput(m) => Self::InvalidInput(m),
            wit::InferenceError::Internal(m) => Self::Internal(m),
        }
    }
}

/// One input or output of a model; `None` dimensions are dynamic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name in the model.
    pub name: String,
    /// Its element type.
    pub element_type: ElementType,
    /// Its shape; `None` marks a dynamic dimension.
    pub shape: Vec<Option<u64>>,
}

/// A model held by the host.
pub struct Model(wit::Model);

impl Model {
    /// Load model `name` at `version` (a number or an alias; `None` for the
    /// default alias).
    pub fn load(name: &str, version: Option<&str>) -> Result<Self, InferenceError> {
        wit::Model::load(name, version)
            .map(Self)
            .map_err(Into::into)
    }

    /// The model's inputs and outputs.
    pub fn signature(&self) -> (Vec<TensorInfo>, Vec<TensorInfo>) {
        let sig = self.0.signature();
        let convert = |infos: Vec<wit::TensorInfo>| {
            infos
                .into_iter()
                .map(|i| TensorInfo {
                    name: i.name,
                    element_type: i.element_type.into(),
                    shape: i.shape,
                })
                .collect()
        };
        (convert(sig.inputs), convert(sig.outputs))
    }

    /// Run the model on named inputs; returns the named outputs.
    pub fn run(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, InferenceError> {
        let inputs: Vec<NamedTensor> = inputs
            .into_iter()
            .map(|(name, tensor)| NamedTensor {
                name,
                tensor: tensor.into(),
            })
            .collect();
        let outputs = self.0.run(&inputs)?;
        Ok(outputs
            .into_iter()
            .map(|t| (t.name, t.tensor.into()))
            .collect())
    }
}
