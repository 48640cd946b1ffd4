//! Structured logging into the node's log, tagged by the host with the
//! function, its version and the request id. `println!`/`eprintln!` also
//! reach the log (as `stdout`/`stderr` records), without levels or fields.

use crate::bindings::sluice::pipeline::log as wit;

pub use wit::Level;

/// Emit one record at `level` with key/value `fields`.
pub fn event(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wit::log(level, message, &fields);
}

/// Emit a debug record.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    event(Level::Debug, message, fields);
}

/// Emit an info record.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    event(Level::Info, message, fields);
}

/// Emit a warning.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    event(Level::Warn, message, fields);
}

/// Emit an error record.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    event(Level::Error, message, fields);
}
