use crate::bindings::sluice::pipeline::types as wit;
use std::fmt;

/// Why a stage could not produce its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// The caller sent something wrong; served as HTTP 400.
    InvalidInput(String),
    /// Anything else; served as HTTP 500.
    Internal(String),
}

impl StageError {
    /// The caller's input is wrong: say what was expected and what was found.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// The stage failed for a reason the caller cannot fix.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m) | Self::Internal(m) => m,
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for StageError {}

impl From<StageError> for wit::StageError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::InvalidInput(m) => Self::InvalidInput(m),
            StageError::Internal(m) => Self::Internal(m),
        }
    }
}
