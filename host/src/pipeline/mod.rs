//! Pipelines: stage graphs as one versioned object. This module owns what
//! a pipeline is — the manifest users write (`manifest.rs`) and the record
//! a deploy stores (`record.rs`), with the step versions it resolved. The
//! node runs them (`node/pipeline.rs`), since running a step is calling a
//! function or a model.

mod manifest;
mod record;

pub use manifest::{
    DEFAULT_TIMEOUT_MS, MAX_RETRIES, MAX_TIMEOUT_MS, OnError, Pipeline, Step, StepKind, When,
    parse, parse_one,
};
pub use record::PipelineVersion;

/// Why a pipeline manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// The file is not TOML (or JSON) of the expected shape.
    #[error("the pipeline manifest cannot be read: {0}")]
    Manifest(String),
    /// A value is wrong; names the pipeline, the step and the field.
    #[error("pipeline {pipeline}{}: `{field}` {reason}", step.as_ref().map(|s| format!(", step {s}")).unwrap_or_default())]
    Invalid {
        /// The pipeline's name.
        pipeline: String,
        /// The step, if the problem is in one.
        step: Option<String>,
        /// The field at fault.
        field: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
}
