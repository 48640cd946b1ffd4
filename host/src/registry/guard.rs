//! A name's guard: what protects its callers when its versions fail or
//! are overloaded. A fallback answers instead of a failed call (another
//! version, another pipeline, or a fixed response); a circuit breaker
//! stops calling a version that keeps failing, and probes it again later;
//! rate limits cap how fast the name is called, in all and per API token.
//!
//! Like a rollout, the guard is part of the name's [`Head`], so every node
//! applies the same one and follows a change within one poll interval.
//! Breakers and token buckets are each node's own state.

use super::{Head, Name, RegistryError};
use serde::{Deserialize, Serialize};

/// The slowest rate a limit may set: one call in about 17 minutes.
const MIN_RATE: f64 = 0.001;
/// The fastest: more than any node serves.
const MAX_RATE: f64 = 1e9;

/// A name's guard, as set on the control plane (all parts optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// What answers when a call fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// When to stop calling a failing version (each version its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<Breaker>,
    /// How fast the name may be called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// What answers instead of a failed call, and on which failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    /// What answers.
    #[serde(flatten)]
    pub to: FallbackTo,
    /// The failures it answers for (default: all three).
    #[serde(default = "Trigger::all")]
    pub on: Vec<Trigger>,
}

/// What a fallback is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum FallbackTo {
    /// Another version of the same name (a simpler model, the last good
    /// stage).
    Version {
        /// Which.
        version: u64,
    },
    /// Another pipeline, called unqualified (pipelines only).
    Pipeline {
        /// Its name.
        pipeline: String,
    },
    /// A fixed response body (functions and pipelines, which answer
    /// bodies; a model's fallback is another version).
    Static {
        /// Its media type.
        content_type: String,
        /// The body, as text.
        body: String,
    },
}

impl FallbackTo {
    /// How the `x-sluice-fallback` header and the metrics name it:
    /// `version:3`, `pipeline:NAME` or `static`.
    pub fn label(&self) -> String {
        match self {
            Self::Version { version } => format!("version:{version}"),
            Self::Pipeline { pipeline } => format!("pipeline:{pipeline}"),
            Self::Static { .. } => "static".into(),
        }
    }
}

/// A failure a fallback can answer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The call failed on the server's side (a trap, a stage's internal
    /// error, a store that does not answer); never a caller's bad input.
    Error,
    /// The call ran past its deadline.
    Deadline,
    /// The version's circuit is open, so it was not called.
    Circuit,
}

impl Trigger {
    fn all() -> Vec<Self> {
        vec![Self::Error, Self::Deadline, Self::Circuit]
    }

    /// Its name, as a header and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Deadline => "deadline",
            Self::Circuit => "circuit",
        }
    }
}

/// When a version's circuit opens, and how it closes again. Failures are
/// the server-side ones a fallback answers for (errors and deadlines).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Breaker {
    /// Open after this many failures in a row.
    pub consecutive_failures: u32,
    /// Or once this share of the calls in the window failed...
    pub error_ratio: f64,
    /// ...over this many seconds...
    pub window_secs: u64,
    /// ...and at least this many calls.
    pub min_requests: u64,
    /// Seconds it stays open (calls fail at once, or fall back) before
    /// probes are let through.
    pub open_secs: u64,
    /// Probes that must succeed to close it; one failure opens it again.
    pub probes: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            error_ratio: 0.5,
            window_secs: 30,
            min_requests: 20,
            open_secs: 10,
            probes: 3,
        }
    }
}

/// Rate limits of a name's data-plane calls: one bucket for the route,
/// and one per API token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// All calls of the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Bucket>,
    /// Each token's calls (calls without a token share one bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_token: Option<Bucket>,
}

/// A token bucket, across all nodes: each node enforces `per_second` and
/// `burst` divided by the number of live nodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// Calls per second, sustained.
    pub per_second: f64,
    /// Calls let through at once after a quiet spell (the bucket's size).
    pub burst: u32,
}

impl Guard {
    /// Check the guard against the head of the `noun` it guards: every
    /// number in range, a fallback version that is live and not the one
    /// unqualified calls run, each kind's own fallbacks.
    pub fn check(&self, noun: &'static str, name: &Name, head: &Head) -> Result<(), RegistryError> {
        let invalid = |m: String| Err(RegistryError::Invalid(m));
        if let Some(fallback) = &self.fallback {
            if fallback.on.is_empty() {
                return invalid("a fallback with no triggers (`on`) would never answer; give one or more of error, deadline, circuit".into());
            }
            match &fallback.to {
                FallbackTo::Version { version } => {
                    if !head.versions.contains(version) {
                        return invalid(format!(
                            "{noun} {name} has no live version {version} to fall back to (live: {:?})",
                            head.versions
                        ));
                    }
                }
                FallbackTo::Pipeline { pipeline } => {
                    if noun != "pipeline" {
                        return invalid(format!(
                            "a {noun} cannot fall back to a pipeline: its callers expect a {noun}'s answer; fall back to another version{}",
                            if noun == "model" {
                                ""
                            } else {
                                " or a static response"
                            }
                        ));
                    }
                    let other = Name::parse(pipeline)
                        .map_err(|e| RegistryError::Invalid(format!("fallback pipeline: {e}")))?;
                    if other == *name {
                        return invalid(format!(
                            "pipeline {name} cannot fall back to itself; name another pipeline, or a version of this one"
                        ));
                    }
                }
                FallbackTo::Static { content_type, .. } => {
                    if noun == "model" {
                        return invalid("a model answers tensors, not a body: fall back to another version of it (a simpler model), or put a static default on the pipeline that serves it".into());
                    }
                    if axum::http::HeaderValue::from_str(content_type).is_err()
                        || !content_type.contains('/')
                    {
                        return invalid(format!(
                            "`{content_type}` is not a media type (e.g. application/json)"
                        ));
                    }
                }
            }
        }
        if let Some(b) = &self.breaker {
            if b.consecutive_failures == 0 || b.probes == 0 || b.open_secs == 0 {
                return invalid(
                    "breaker: consecutive_failures, probes and open_secs must be at least 1".into(),
                );
            }
            if !(b.error_ratio > 0.0 && b.error_ratio <= 1.0) {
                return invalid(format!(
                    "breaker: error_ratio {} is not in (0, 1]",
                    b.error_ratio
                ));
            }
            if b.window_secs == 0 || b.window_secs > 3600 {
                return invalid(format!(
                    "breaker: window_secs {} is not in 1..=3600",
                    b.window_secs
                ));
            }
            if b.open_secs > 3600 {
                return invalid(format!(
                    "breaker: open_secs {} is more than an hour",
                    b.open_secs
                ));
            }
        }
        if let Some(limit) = &self.rate_limit {
            if limit.route.is_none() && limit.per_token.is_none() {
                return invalid(
                    "rate_limit: give `route`, `per_token` or both (per_second and burst)".into(),
                );
            }
            for (what, bucket) in [("route", limit.route), ("per_token", limit.per_token)] {
                if let Some(b) = bucket
                    && (!(MIN_RATE..=MAX_RATE).contains(&b.per_second) || b.burst == 0)
                {
                    return invalid(format!(
                        "rate_limit.{what}: per_second must be between {MIN_RATE} and {MAX_RATE:e} and burst at least 1 (got {} and {})",
                        b.per_second, b.burst
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether it guards nothing.
    pub fn is_empty(&self) -> bool {
        self.fallback.is_none() && self.breaker.is_none() && self.rate_limit.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            versions: [1, 2].into(),
            ..Head::default()
        }
    }

    fn check(noun: &'static str, json: serde_json::Value) -> Result<(), String> {
        let guard: Guard = serde_json::from_value(json).map_err(|e| e.to_string())?;
        let name = Name::parse("g").expect("name");
        guard.check(noun, &name, &head()).map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_takes_its_own_fallbacks() {
        let static_ = serde_json::json!({"fallback": {"to": "static", "content_type": "application/json", "body": "{}"}});
        let pipeline = serde_json::json!({"fallback": {"to": "pipeline", "pipeline": "other"}});
        assert!(check("function", static_.clone()).is_ok());
        assert!(check("pipeline", pipeline.clone()).is_ok());
        let refused = check("model", static_).unwrap_err();
        assert!(refused.contains("another version"), "{refused}");
        assert!(check("function", pipeline).is_err());
        let missing = check(
            "model",
            serde_json::json!({"fallback": {"to": "version", "version": 7}}),
        )
        .unwrap_err();
        assert!(missing.contains("no live version 7"), "{missing}");
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        for bad in [
            serde_json::json!({"breaker": {"error_ratio": 1.5}}),
            serde_json::json!({"breaker": {"probes": 0}}),
            serde_json::json!({"rate_limit": {}}),
            serde_json::json!({"rate_limit": {"route": {"per_second": 0, "burst": 1}}}),
            serde_json::json!({"rate_limit": {"route": {"per_second": 1e-300, "burst": 1}}}),
            serde_json::json!({"fallback": {"to": "version", "version": 1, "on": []}}),
        ] {
            assert!(check("function", bad.clone()).is_err(), "{bad}");
        }
        let on = check(
            "function",
            serde_json::json!({"fallback": {"to": "version", "version": 1, "on": ["sometimes"]}}),
        )
        .unwrap_err();
        assert!(on.contains("unknown variant"), "{on}");
    }

    #[test]
    fn a_fallback_answers_for_every_failure_unless_told() {
        let guard: Guard = serde_json::from_value(
            serde_json::json!({"fallback": {"to": "version", "version": 1}}),
        )
        .expect("guard");
        let on = guard.fallback.expect("fallback").on;
        assert_eq!(on, Trigger::all());
    }
}
