//! The deployment's read-only key/value configuration
//! (`sluice deploy --config key=value`).
//!
//! A missing or malformed key is the deployer's mistake, not the caller's,
//! so these helpers fail with [`StageError::Internal`] naming the key.

use crate::StageError;
use crate::bindings::sluice::pipeline::config as wit;
use std::str::FromStr;

/// The value of `key`, if set.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// Every key/value, sorted by key.
pub fn all() -> Vec<(String, String)> {
    wit::get_all()
}

/// The value of `key`, or an error telling the deployer to set it.
pub fn require(key: &str) -> Result<String, StageError> {
    get(key).ok_or_else(|| {
        StageError::internal(format!(
            "config key `{key}` is not set; redeploy with --config {key}=..."
        ))
    })
}

/// The value of `key` parsed as `T`.
pub fn parse<T: FromStr>(key: &str) -> Result<T, StageError>
where
    T::Err: std::fmt::Display,
{
    let raw = require(key)?;
    raw.trim()
        .parse()
        .map_err(|e| StageError::internal(format!("config key `{key}` = {raw:?} is invalid: {e}")))
}

/// The value of `key` as a comma-separated list of `T` (blanks around items
/// are ignored).
pub fn parse_list<T: FromStr>(key: &str) -> Result<Vec<T>, StageError>
where
    T::Err: std::fmt::Display,
{
    let raw = require(key)?;
    raw.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, item)| {
            item.parse().map_err(|e| {
                StageError::internal(format!(
                    "config key `{key}`: item {i} ({item:?}) is invalid: {e}"
                ))
            })
        })
        .collect()
}
