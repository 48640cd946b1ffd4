//! Model versions: an ONNX file, its signature and where it came from.

use super::Batching;
use crate::registry::Record;
use crate::store::Digest;
use crate::tensor::Signature;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One immutable version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// The model's name.
    pub name: String,
    /// The version number, from 1.
    pub version: u64,
    /// The file's digest (`sha256:...`).
    pub digest: Digest,
    /// The file's size in bytes.
    pub size: u64,
    /// The file format (`onnx`).
    pub format: String,
    /// Inputs and outputs, as recorded at push.
    pub signature: Signature,
    /// The engine that runs it.
    #[serde(default, skip_serializing_if = "Engine::is_tract")]
    pub engine: Engine,
    /// Shapes pinned at push for inputs the file leaves unknown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub input_shapes: BTreeMap<String, Vec<i64>>,
    /// Dynamic batching, when on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    /// Baseline statistics of the training data (a JSON blob), if pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Digest>,
    /// When it was pushed (RFC 3339, UTC).
    pub created_at: String,
    /// Who pushed it.
    pub created_by: String,
    /// A free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels (framework, dataset, run id...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Seconds without a call before a node unloads this version,
    /// overriding the node's default; 0: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<u64>,
}

impl Record for ModelVersion {
    const KIND: &'static str = "models";
    const NOUN: &'static str = "model";

    fn version(&self) -> u64 {
        self.version
    }

    fn numbered(self, version: u64) -> Self {
        Self { version, ..self }
    }

    fn same_content(&self, other: &Self) -> bool {
        self.digest == other.digest
            && self.engine == other.engine
            && self.input_shapes == other.input_shapes
            && self.batching == other.batching
            && self.idle_secs == other.idle_secs
            && self.baseline == other.baseline
            && self.labels == other.labels
            && self.description == other.description
    }
}

/// The engine a model version runs on, chosen at push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// tract, built in: every node runs it.
    #[default]
    Tract,
    /// onnxruntime, on nodes started with its library (`--onnxruntime`).
    Onnxruntime,
}

impl Engine {
    fn is_tract(&self) -> bool {
        *self == Self::Tract
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tract" => Ok(Self::Tract),
            "onnxruntime" => Ok(Self::Onnxruntime),
            other => Err(format!(
                "unknown engine `{other}`; use tract or onnxruntime"
            )),
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tract => "tract",
            Self::Onnxruntime => "onnxruntime",
        })
    }
}
