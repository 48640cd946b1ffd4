//! Pipeline versions: the manifest as deployed, and the version each step
//! resolved to at deploy, so moving a step's alias later does not change
//! what a deployed pipeline runs (unless the step follows it).

use super::Pipeline;
use crate::registry::Record;
use crate::tensor::Signature;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One immutable version of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineVersion {
    /// The pipeline's name.
    pub name: String,
    /// The version number, from 1.
    pub version: u64,
    /// The manifest as deployed.
    pub pipeline: Pipeline,
    /// Step name → the version of its function or model resolved at
    /// deploy (steps with `follow` resolve at each request instead).
    pub pinned: BTreeMap<String, u64>,
    /// What the pipeline takes and answers, where its steps say: the inputs
    /// of its first steps and the outputs of its last ones that are model
    /// steps (function steps declare none). Served as the pipeline's Open
    /// Inference Protocol metadata.
    #[serde(default)]
    pub signature: Signature,
    /// When it was deployed (RFC 3339, UTC).
    pub created_at: String,
    /// Who deployed it.
    pub created_by: String,
}

impl Record for PipelineVersion {
    const KIND: &'static str = "pipelines";
    const NOUN: &'static str = "pipeline";

    fn version(&self) -> u64 {
        self.version
    }

    fn numbered(self, version: u64) -> Self {
        Self { version, ..self }
    }

    fn same_content(&self, other: &Self) -> bool {
        self.pipeline == other.pipeline && self.pinned == other.pinned
    }
}
