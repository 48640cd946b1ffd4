//! Function versions: a component, the world it fits, and how to run it.

use crate::engine::{Origin, StageLimits, World};
use crate::registry::Record;
use crate::store::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One immutable version of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionVersion {
    /// The function's name.
    pub name: String,
    /// The version number, from 1.
    pub version: u64,
    /// The component's digest (`sha256:...`).
    pub digest: Digest,
    /// The capability world the component fits.
    pub world: World,
    /// The component's size in bytes.
    pub size: u64,
    /// When it was deployed (RFC 3339, UTC).
    pub created_at: String,
    /// Who deployed it.
    pub created_by: String,
    /// A free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels (team, git commit, ticket...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The deployment's configuration, read by the stage through `config`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Keys of `config` whose values are secret: stored, given to the
    /// stage, never answered by the API ([`Self::redacted`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secrets: BTreeSet<String>,
    /// Deadline, memory cap and fuel for each call.
    pub limits: StageLimits,
    /// At most this many calls at once, with a bounded queue in front
    /// (unset: bounded only by the node's instance pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Seconds without a call before a node unloads this version,
    /// overriding the node's default; 0: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<u64>,
    /// The origins its outgoing HTTP requests may reach; none: every
    /// outgoing request is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_outbound: Vec<Origin>,
}

/// What the API shows of a secret configuration value.
pub const REDACTED: &str = "(secret)";

impl FunctionVersion {
    /// This record as the API answers it: secret configuration values
    /// replaced by [`REDACTED`].
    pub fn redacted(mut self) -> Self {
        for key in &self.secrets {
            if let Some(value) = self.config.get_mut(key) {
                *value = REDACTED.to_string();
            }
        }
        self
    }
}

/// A function's concurrency cap: `max` calls run at once, up to `queue`
/// more wait for a slot, and the rest are turned away (503, Retry-After).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    /// Calls running at once.
    pub max: u32,
    /// Calls waiting for a slot.
    pub queue: u32,
}

impl Record for FunctionVersion {
    const KIND: &'static str = "functions";
    const NOUN: &'static str = "function";

    fn version(&self) -> u64 {
        self.version
    }

    fn numbered(self, version: u64) -> Self {
        Self { version, ..self }
    }

    fn same_content(&self, other: &Self) -> bool {
        self.digest == other.digest
            && self.config == other.config
            && self.limits == other.limits
            && self.concurrency == other.concurrency
            && self.idle_secs == other.idle_secs
            && self.allow_outbound == other.allow_outbound
            && self.labels == other.labels
            && self.description == other.description
    }
}
