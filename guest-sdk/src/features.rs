//! Entity-keyed feature tables held by the host. Using anything here makes
//! the stage a `featurizer`.

use crate::bindings::sluice::pipeline::features as wit;
use crate::{Scalar, StageError};
use std::fmt;

/// Why features could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureError {
    /// This node does not serve feature tables.
    NotAvailable(String),
    /// No such table or feature.
    NotFound(String),
    /// The request is malformed.
    InvalidInput(String),
    /// The store failed.
    Internal(String),
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAvailable(m) => write!(f, "features not available: {m}"),
            Self::NotFound(m) => write!(f, "feature not found: {m}"),
            Self::InvalidInput(m) => write!(f, "invalid feature request: {m}"),
            Self::Internal(m) => write!(f, "feature store failed: {m}"),
        }
    }
}

impl std::error::Error for FeatureError {}

impl From<FeatureError> for StageError {
    fn from(e: FeatureError) -> Self {
        match e {
            FeatureError::InvalidInput(_) => StageError::invalid_input(e.to_string()),
            _ => StageError::internal(e.to_string()),
        }
    }
}

impl From<wit::FeatureError> for FeatureError {
    fn from(e: wit::FeatureError) -> Self {
        match e {
            wit::FeatureError::NotAvailable(m) => Self::NotAvailable(m),
            wit::FeatureError::NotFound(m) => Self::NotFound(m),
            wit::FeatureError::InvalidInput(m) => Self::InvalidInput(m),
            wit::FeatureError::Internal(m) => Self::Internal(m),
        }
    }
}

/// Read `names` for each of `entities` from `table`: one row per entity in
/// order, one value per name; `None` is a missing value.
pub fn get(
    table: &str,
    entities: &[&str],
    names: &[&str],
) -> Result<Vec<Vec<Option<Scalar>>>, FeatureError> {
    let entities: Vec<String> = entities.iter().map(|s| s.to_string()).collect();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let rows = wit::get(table, &entities, &names)?;
    Ok(rows
        .into_iter()
        .map(|row| row.into_iter().map(|v| v.map(Into::into)).collect())
        .collect())
}
