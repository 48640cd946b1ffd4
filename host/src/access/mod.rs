//! Who may do what: API tokens with roles (`tokens.rs`) and the
//! tamper-evident audit log of every change (`audit.rs`).
//!
//! Tokens live in one small document in the store, changed only by
//! compare-and-swap; a node re-reads it through the document cache once per
//! poll interval, so a token created or revoked on one node holds on every
//! node within that interval. A check of a token already seen is a map
//! lookup; only its first use (after each change of the document) pays a
//! SHA-256.

mod audit;
mod tokens;

pub use audit::{Audit, AuditRecord, Broken, Change};
pub use tokens::{Access, Admitted, Identity, NewToken, TokenInfo};

use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including tokens and the audit log.
    Admin,
    /// Publish, move aliases, roll back, delete, ingest; read; invoke.
    Deployer,
    /// Call functions, models and pipelines that require a token.
    Invoker,
    /// Read what a node serves (lists, versions, status).
    Viewer,
}

impl Role {
    /// Every role, for help and errors.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deployer, Role::Invoker, Role::Viewer];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Deployer => "deployer",
            Self::Invoker => "invoker",
            Self::Viewer => "viewer",
        }
    }

    /// Whether this role may do `need`.
    pub fn allows(self, need: Need) -> bool {
        match self {
            Self::Admin => true,
            Self::Deployer => matches!(need, Need::View | Need::Change | Need::Invoke),
            Self::Invoker => need == Need::Invoke,
            Self::Viewer => need == Need::View,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`: use admin, deployer, invoker or viewer"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read the control plane.
    View,
    /// Change what a node serves.
    Change,
    /// Call the data plane.
    Invoke,
    /// Manage tokens, read the audit log.
    Admin,
}

/// Why access control refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessError {
    /// No token, or one that is malformed, unknown or revoked (401).
    #[error(
        "a valid API token is required: send `authorization: Bearer <token>` (the CLI reads SLUICE_TOKEN)"
    )]
    Unauthenticated,
    /// A valid token whose role or scope does not cover the request (403).
    #[error("token `{token}` ({role}) may not do this")]
    Forbidden {
        /// The token's name.
        token: String,
        /// Its role.
        role: Role,
    },
    /// A request to change tokens was refused.
    #[error("{0}")]
    Invalid(String),
    /// No such token.
    #[error("no token named `{0}`")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A stored document cannot be read.
    #[error("`{key}` is corrupt: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Racing writers kept winning.
    #[error("`{0}` is being changed by others; retry")]
    Contended(String),
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    // The OS generator failing is not something a caller can handle.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// Whether `a` and `b` are equal, in time that does not depend on where
/// they differ: no timing hint of a near match.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A document cache over a fresh directory store, for tests.
#[cfg(test)]
fn test_documents() -> (
    tempfile::TempDir,
    std::sync::Arc<crate::cache::DocumentCache>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: std::sync::Arc<dyn crate::store::ObjectStore> =
        std::sync::Arc::new(crate::store::FsStore::open(dir.path()).expect("store"));
    let documents = crate::cache::DocumentCache::new(store, crate::cache::CacheConfig::default());
    (dir, std::sync::Arc::new(documents))
}
