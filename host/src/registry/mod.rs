//! The registry: immutable, numbered versions of each function, stored as
//! JSON records next to their content-addressed blobs.
//!
//! A version record is written once with create-if-absent, so two deployers
//! racing for the same number cannot overwrite each other: the loser takes
//! the next number. Deploying bytes and settings identical to the newest
//! version returns that version instead of minting a new one.

mod names;

pub use names::{InvalidName, Name};

use crate::engine::{StageLimits, World};
use crate::store::{Digest, ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// The deployment's configuration, read by the stage through `config`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Deadline, memory cap and fuel for each call.
    pub limits: StageLimits,
}

/// A function and its newest version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionSummary {
    /// The name.
    pub name: String,
    /// The newest version number.
    pub latest: u64,
    /// How many versions exist.
    pub versions: usize,
    /// The newest version's world.
    pub world: World,
}

/// What a deploy is asked to record.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The component's digest (already stored as a blob).
    pub digest: Digest,
    /// Its world.
    pub world: World,
    /// Its size.
    pub size: u64,
    /// Who deploys.
    pub created_by: String,
    /// An optional description.
    pub description: Option<String>,
    /// The configuration.
    pub config: BTreeMap<String, String>,
    /// The limits.
    pub limits: StageLimits,
}

/// The registry's failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record cannot be read.
    #[error("version record `{key}` is unreadable: {reason}")]
    BadRecord {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Too many concurrent deployers kept taking the next number.
    #[error("could not allocate a version number for `{0}` after many attempts; retry")]
    Contended(String),
}

/// Versions of functions in an object store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn ObjectStore>,
}

/// Attempts at claiming a version number before giving up.
const CLAIM_ATTEMPTS: u32 = 32;

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    fn versions_prefix(name: &Name) -> String {
        format!("functions/{name}/versions/")
    }

    fn version_key(name: &Name, version: u64) -> String {
        format!("functions/{name}/versions/{version}.json")
    }

    /// Record a new version (or return the newest one if it is identical);
    /// the `bool` says whether a version was created.
    pub async fn record(
        &self,
        name: &Name,
        new: NewVersion,
    ) -> Result<(FunctionVersion, bool), RegistryError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let latest = self.latest(name).await?;
            if let Some(latest) = &latest
                && latest.digest == new.digest
                && latest.config == new.config
                && latest.limits == new.limits
            {
                return Ok((latest.clone(), false));
            }
            let record = FunctionVersion {
                name: name.to_string(),
                version: latest.map_or(1, |v| v.version + 1),
                digest: new.digest.clone(),
                world: new.world,
                size: new.size,
                created_at: now_rfc3339(),
                created_by: new.created_by.clone(),
                description: new.description.clone(),
                config: new.config.clone(),
                limits: new.limits,
            };
            let json =
                serde_json::to_vec_pretty(&record).map_err(|e| RegistryError::BadRecord {
                    key: Self::version_key(name, record.version),
                    reason: e.to_string(),
                })?;
            match self
                .store
                .put(
                    &Self::version_key(name, record.version),
                    Bytes::from(json),
                    PutMode::IfAbsent,
                )
                .await
            {
                Ok(_) => return Ok((record, true)),
                Err(StoreError::Conflict { .. }) => continue, // another deployer took it
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Contended(name.to_string()))
    }

    /// Every version number of `name`, ascending.
    pub async fn version_numbers(&self, name: &Name) -> Result<Vec<u64>, RegistryError> {
        let prefix = Self::versions_prefix(name);
        let mut numbers: Vec<u64> = self
            .store
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|key| {
                key.strip_prefix(&prefix)?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Every version of `name`, ascending.
    pub async fn versions(&self, name: &Name) -> Result<Vec<FunctionVersion>, RegistryError> {
        let mut out = Vec::new();
        for n in self.version_numbers(name).await? {
            // A version deleted between list and get is simply skipped.
            if let Some(v) = self.get(name, n).await? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// One version, if it exists.
    pub async fn get(
        &self,
        name: &Name,
        version: u64,
    ) -> Result<Option<FunctionVersion>, RegistryError> {
        let key = Self::version_key(name, version);
        let Some(object) = self.store.get(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&object.bytes)
            .map(Some)
            .map_err(|e| RegistryError::BadRecord {
                key,
                reason: e.to_string(),
            })
    }

    /// The newest version, if any.
    pub async fn latest(&self, name: &Name) -> Result<Option<FunctionVersion>, RegistryError> {
        for n in self.version_numbers(name).await?.into_iter().rev() {
            if let Some(v) = self.get(name, n).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Every function with at least one version.
    pub async fn list(&self) -> Result<Vec<FunctionSummary>, RegistryError> {
        let keys = self.store.list("functions/").await?;
        let mut names: Vec<&str> = keys
            .iter()
            .filter_map(|k| k.strip_prefix("functions/")?.split('/').next())
            .collect();
        names.dedup();
        let mut out = Vec::new();
        for raw in names {
            let Ok(name) = Name::parse(raw) else { continue };
            let numbers = self.version_numbers(&name).await?;
            if let Some(latest) = self.latest(&name).await? {
                out.push(FunctionSummary {
                    name: name.to_string(),
                    latest: latest.version,
                    versions: numbers.len(),
                    world: latest.world,
                });
            }
        }
        Ok(out)
    }

    /// Delete one version record; `false` if it did not exist. The blob
    /// stays: other versions may share it.
    pub async fn delete(&self, name: &Name, version: u64) -> Result<bool, RegistryError> {
        if self.get(name, version).await?.is_none() {
            return Ok(false);
        }
        self.store.delete(&Self::version_key(name, version)).await?;
        Ok(true)
    }
}

/// The current UTC time as RFC 3339, to the second.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
