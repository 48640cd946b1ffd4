//! The registry: immutable, numbered versions of each named thing and one
//! small mutable document per name, its [`Head`]. It is generic over the
//! kind of record ([`Record`]); each kind lives with the code that owns it
//! (functions in `node`, models in `inference`).
//!
//! ```text
//! <kind>/<name>/versions/<n>.json   the version record, written once (create-if-absent)
//! <kind>/<name>/aliases.json        live versions, aliases and their history (compare-and-swap)
//! ```
//!
//! A version exists for readers only once the head lists it: a deploy
//! writes blob, record, then head, so one that dies halfway leaves at most
//! an unlisted record that is never served. Deploys retry their head update
//! until it lands (no deploy is lost); alias moves, rollbacks and deletes
//! are decided against the state their caller saw and make a single attempt,
//! so of two racing moves exactly one wins and the other gets
//! [`RegistryError::Conflict`] with the state it lost to.

pub mod guard;
mod names;
pub mod rollout;

pub use guard::{Breaker, Bucket, Fallback, FallbackTo, Guard, RateLimit, Trigger};
pub use names::{InvalidName, Name};
pub use rollout::{Arm, Rollout, RolloutState, Routed, Slo, StickyKey};

use crate::cache::{DocumentCache, DocumentPolicy};
use crate::store::{ETag, PutMode, StoreError};
use bytes::Bytes;
use dashmap::DashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

/// The alias the registry moves to every new version.
pub const LATEST: &str = "latest";
/// The alias an unqualified call (`NAME`) resolves to when it is set;
/// otherwise [`LATEST`].
pub const STABLE: &str = "stable";
/// Earlier targets remembered per alias, for rollback.
const HISTORY_DEPTH: usize = 20;
/// Attempts at landing a deploy against concurrent deployers.
const DEPLOY_ATTEMPTS: u32 = 32;

/// A kind of versioned thing the registry keeps.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The store folder of this kind, e.g. `functions`.
    const KIND: &'static str;
    /// What users call one, e.g. `function`.
    const NOUN: &'static str;
    /// The version number.
    fn version(&self) -> u64;
    /// The same record numbered `version`.
    fn numbered(self, version: u64) -> Self;
    /// Whether two records describe the same deployment (a redeploy of
    /// identical content returns the existing version).
    fn same_content(&self, other: &Self) -> bool;
}

/// A name's mutable state: which versions are live and where aliases point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Live version numbers.
    pub versions: BTreeSet<u64>,
    /// The highest number ever given out (numbers are never reused).
    #[serde(default)]
    pub highest: u64,
    /// Alias → version, including [`LATEST`].
    pub aliases: BTreeMap<String, u64>,
    /// Alias → earlier targets, oldest first.
    #[serde(default)]
    pub history: BTreeMap<String, Vec<u64>>,
    /// Who may call the name's versions on the data plane. A setting of
    /// the name, not of a version: a rollback never reopens it.
    #[serde(default)]
    pub invocation: Invocation,
    /// The name's rollout, active or how the last one ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// The name's fallback, circuit breaker and rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
}

/// Who may call a function, model or pipeline on the data plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invocation {
    /// Anyone who reaches the node.
    #[default]
    Open,
    /// Callers with a token whose role may invoke (invoker, deployer,
    /// admin) and whose prefixes cover the name.
    Token,
}

impl Invocation {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Token => "token",
        }
    }
}

impl std::fmt::Display for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Invocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "token" => Ok(Self::Token),
            _ => Err(format!(
                "unknown invocation `{s}`: use `open` (anyone may call) or `token` (an invoker token is needed)"
            )),
        }
    }
}

impl Head {
    /// The version an unqualified call runs: [`STABLE`] if set, else [`LATEST`].
    pub fn default_version(&self) -> Option<u64> {
        self.aliases
            .get(STABLE)
            .or_else(|| self.aliases.get(LATEST))
            .copied()
    }

    /// The rollout routing this name's unqualified calls, if one is on.
    pub fn active_rollout(&self) -> Option<&Rollout> {
        self.rollout.as_ref().filter(|r| r.is_active())
    }

    fn point(&mut self, alias: &str, version: u64) {
        if let Some(previous) = self.aliases.insert(alias.to_string(), version)
            && previous != version
        {
            let history = self.history.entry(alias.to_string()).or_default();
            history.push(previous);
            if history.len() > HISTORY_DEPTH {
                history.remove(0);
            }
        }
    }
}

/// Which version of a name a caller wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// [`STABLE`] if set, else [`LATEST`].
    Default,
    /// A version number.
    Version(u64),
    /// An alias.
    Alias(String),
}

impl Selector {
    /// Split a call target `NAME`, `NAME@VERSION` or `NAME@ALIAS`.
    pub fn split(target: &str) -> Result<(&str, Self), InvalidName> {
        match target.split_once('@') {
            None => Ok((target, Self::Default)),
            Some((name, selector)) => Ok((name, Self::parse(selector)?)),
        }
    }

    /// Parse what follows `@` in `NAME@...`: a number or an alias.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        match s.parse::<u64>() {
            Ok(n) => Ok(Self::Version(n)),
            Err(_) => Name::parse(s).map(|a| Self::Alias(a.to_string())),
        }
    }
}

/// The registry's failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored document cannot be read.
    #[error("`{key}` is unreadable: {reason}")]
    BadRecord {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Nothing by that name.
    #[error("{noun} `{name}` not found; list them with `sluice {noun}s ls`")]
    NotFound {
        /// What kind of thing.
        noun: &'static str,
        /// The name.
        name: String,
    },
    /// The name exists but not that version.
    #[error("{noun} `{name}` has no version {version}; see `sluice {noun}s versions {name}`")]
    VersionNotFound {
        /// What kind of thing.
        noun: &'static str,
        /// The name.
        name: String,
        /// The missing version.
        version: u64,
    },
    /// The name exists but has no such alias.
    #[error("{noun} `{name}` has no alias `{alias}`; its aliases: {}", list_aliases(.aliases))]
    AliasNotFound {
        /// What kind of thing.
        noun: &'static str,
        /// The name.
        name: String,
        /// The missing alias.
        alias: String,
        /// The aliases it has.
        aliases: BTreeMap<String, u64>,
    },
    /// The change was decided against a state that is no longer current.
    #[error("{reason}; current aliases of `{name}`: {}", list_aliases(&.current.aliases))]
    Conflict {
        /// The name.
        name: String,
        /// Why the change was refused.
        reason: String,
        /// The state now.
        current: Box<Head>,
    },
    /// A request the registry refuses by rule (e.g. setting `latest`).
    #[error("{0}")]
    Invalid(String),
    /// Too many concurrent deployers kept taking the next number.
    #[error("could not land a version of `{0}` against concurrent deploys; retry")]
    Contended(String),
}

impl RegistryError {
    /// A short name of its kind, for metrics: `not_found` or `store`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::VersionNotFound { .. } | Self::AliasNotFound { .. } => {
                "not_found"
            }
            _ => "store",
        }
    }
}

fn list_aliases(aliases: &BTreeMap<String, u64>) -> String {
    if aliases.is_empty() {
        return "none".into();
    }
    aliases
        .iter()
        .map(|(a, v)| format!("{a} → {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Versions and aliases of one kind of record, over a document cache.
pub struct Registry<R> {
    documents: Arc<DocumentCache>,
    /// Heads already parsed, by the tag of the bytes they came from: every
    /// call reads its head, so it should not parse JSON each time.
    parsed: Arc<DashMap<Name, (ETag, Arc<Head>)>>,
    kind: PhantomData<fn() -> R>,
}

impl<R> Clone for Registry<R> {
    fn clone(&self) -> Self {
        Self {
            documents: self.documents.clone(),
            parsed: self.parsed.clone(),
            kind: PhantomData,
        }
    }
}

impl<R: Record> Registry<R> {
    /// A registry over `documents`.
    pub fn new(documents: Arc<DocumentCache>) -> Self {
        Self {
            documents,
            parsed: Arc::default(),
            kind: PhantomData,
        }
    }

    fn head_key(name: &Name) -> String {
        // Built without the formatting machinery: every call looks it up.
        const FILE: &str = "/aliases.json";
        let mut key = String::with_capacity(R::KIND.len() + 1 + name.as_str().len() + FILE.len());
        key.push_str(R::KIND);
        key.push('/');
        key.push_str(name.as_str());
        key.push_str(FILE);
        key
    }

    fn version_key(name: &Name, version: u64) -> String {
        format!("{}/{name}/versions/{version}.json", R::KIND)
    }

    fn not_found(name: &Name) -> RegistryError {
        RegistryError::NotFound {
            noun: R::NOUN,
            name: name.to_string(),
        }
    }

    /// The head of `name` as this node knows it (revalidated every poll
    /// interval), or `None` if the name has no versions.
    pub async fn head(&self, name: &Name) -> Result<Option<(Arc<Head>, ETag)>, RegistryError> {
        let key = Self::head_key(name);
        let Some(object) = self.documents.get(&key, DocumentPolicy::Mutable).await? else {
            self.parsed.remove(name);
            return Ok(None);
        };
        if let Some(entry) = self.parsed.get(name)
            && entry.0 == object.etag
        {
            return Ok(Some((entry.1.clone(), object.etag)));
        }
        let head: Arc<Head> = Arc::new(parse(&key, &object.bytes)?);
        self.parsed
            .insert(name.clone(), (object.etag.clone(), head.clone()));
        Ok(Some((head, object.etag)))
    }

    /// The head of `name`, which must have versions ([`RegistryError::NotFound`]).
    pub async fn existing_head(&self, name: &Name) -> Result<(Arc<Head>, ETag), RegistryError> {
        self.head(name).await?.ok_or_else(|| Self::not_found(name))
    }

    /// The head read straight from the store, for a compare-and-swap.
    async fn head_for_update(&self, name: &Name) -> Result<Option<(Head, ETag)>, RegistryError> {
        let key = Self::head_key(name);
        match self.documents.fetch(&key).await? {
            Some(object) => Ok(Some((parse(&key, &object.bytes)?, object.etag))),
            None => Ok(None),
        }
    }

    /// Replace the head if it is still `expected` (`None`: create it).
    async fn swap_head(
        &self,
        name: &Name,
        expected: Option<&ETag>,
        head: &Head,
    ) -> Result<(), RegistryError> {
        let key = Self::head_key(name);
        let json = serde_json::to_vec_pretty(head).map_err(|e| RegistryError::BadRecord {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let mode = match expected {
            Some(etag) => PutMode::IfMatch(etag.clone()),
            None => PutMode::IfAbsent,
        };
        self.documents.put(&key, Bytes::from(json), mode).await?;
        Ok(())
    }

    /// One version's record as stored, if it exists.
    pub async fn get(&self, name: &Name, version: u64) -> Result<Option<R>, RegistryError> {
        let key = Self::version_key(name, version);
        match self.documents.get(&key, DocumentPolicy::Immutable).await? {
            Some(object) => parse(&key, &object.bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The record of a version a head listed as live, or `None` if it has
    /// been deleted since (this node's head may be a poll interval old).
    /// A record that is missing while the store's head still lists it is
    /// damage: every reader reports it the same way, and the log says so.
    async fn live_record(&self, name: &Name, version: u64) -> Result<Option<R>, RegistryError> {
        if let Some(record) = self.get(name, version).await? {
            return Ok(Some(record));
        }
        let listed = self
            .head_for_update(name)
            .await?
            .is_some_and(|(head, _)| head.versions.contains(&version));
        if !listed {
            return Ok(None);
        }
        let key = Self::version_key(name, version);
        tracing::warn!(%key, "a live version's record is missing from the store");
        Err(RegistryError::BadRecord {
            key,
            reason: format!(
                "listed as live but missing from the store; delete the version (`sluice {}s rm {name} {version}`) or restore the file",
                R::NOUN
            ),
        })
    }

    /// One live version's record; a missing one is [`RegistryError::VersionNotFound`].
    pub async fn record_of(&self, name: &Name, version: u64) -> Result<R, RegistryError> {
        self.live_record(name, version)
            .await?
            .ok_or_else(|| RegistryError::VersionNotFound {
                noun: R::NOUN,
                name: name.to_string(),
                version,
            })
    }

    /// The version number `selector` picks for `name`.
    pub async fn resolve_number(
        &self,
        name: &Name,
        selector: &Selector,
    ) -> Result<u64, RegistryError> {
        let (head, _) = self.existing_head(name).await?;
        select(R::NOUN, name, &head, selector)
    }

    /// The record `selector` picks for `name`.
    pub async fn resolve(&self, name: &Name, selector: &Selector) -> Result<R, RegistryError> {
        let version = self.resolve_number(name, selector).await?;
        self.record_of(name, version).await
    }

    /// Record a new version (or return the newest if identical), then move
    /// [`LATEST`] to it; the `bool` says whether a version was created.
    pub async fn record(&self, name: &Name, new: R) -> Result<(R, bool), RegistryError> {
        // Claim a number: the record is written create-if-absent, so of two
        // deployers only one gets each number. A number whose write lost is
        // someone else's: only a write that landed claims one.
        let mut claimed = None;
        let mut lost = 0;
        for _ in 0..DEPLOY_ATTEMPTS {
            let head = self.head_for_update(name).await?.map(|(h, _)| h);
            let head = head.unwrap_or_default();
            if let Some(latest) = head.aliases.get(LATEST)
                && let Some(existing) = self.get(name, *latest).await?
                && existing.same_content(&new)
            {
                return Ok((existing, false));
            }
            let version =
                (head.highest.max(head.versions.last().copied().unwrap_or(0)) + 1).max(lost + 1);
            let record = new.clone().numbered(version);
            let key = Self::version_key(name, version);
            let json =
                serde_json::to_vec_pretty(&record).map_err(|e| RegistryError::BadRecord {
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
            match self
                .documents
                .put(&key, Bytes::from(json), PutMode::IfAbsent)
                .await
            {
                Ok(_) => {
                    claimed = Some(version);
                    break;
                }
                // Taken by a concurrent deployer, or left unlisted by one
                // that died: try the next number.
                Err(StoreError::Conflict { .. }) => lost = version,
                Err(e) => return Err(e.into()),
            }
        }
        let version = claimed.ok_or_else(|| RegistryError::Contended(name.to_string()))?;
        // Publish it: retry the head update until it lands.
        for _ in 0..DEPLOY_ATTEMPTS {
            let current = self.head_for_update(name).await?;
            let (mut head, etag) = match current {
                Some((head, etag)) => (head, Some(etag)),
                None => (Head::default(), None),
            };
            head.versions.insert(version);
            head.highest = head.highest.max(version);
            if head.aliases.get(LATEST).is_none_or(|l| *l < version) {
                head.point(LATEST, version);
            }
            match self.swap_head(name, etag.as_ref(), &head).await {
                Ok(()) => {
                    let record =
                        self.get(name, version)
                            .await?
                            .ok_or_else(|| RegistryError::BadRecord {
                                key: Self::version_key(name, version),
                                reason: "written but not readable".into(),
                            })?;
                    return Ok((record, true));
                }
                Err(RegistryError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(RegistryError::Contended(name.to_string()))
    }

    /// Point `alias` of `name` at `version`. With `expect`, the move happens
    /// only if the alias still points where the caller believes (`None`:
    /// the alias must not exist yet). Returns the new head.
    pub async fn set_alias(
        &self,
        name: &Name,
        alias: &Name,
        version: u64,
        expect: Option<Option<u64>>,
    ) -> Result<Head, RegistryError> {
        if alias.as_str() == LATEST {
            return Err(RegistryError::Invalid(format!(
                "`{LATEST}` always points at the newest version and cannot be set; pick another alias name"
            )));
        }
        if alias.as_str().parse::<u64>().is_ok() {
            return Err(RegistryError::Invalid(format!(
                "alias `{alias}` is a number and would read as a version; use a name with a letter"
            )));
        }
        let (mut head, etag) = self
            .head_for_update(name)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        if !head.versions.contains(&version) {
            return Err(RegistryError::VersionNotFound {
                noun: R::NOUN,
                name: name.to_string(),
                version,
            });
        }
        let now = head.aliases.get(alias.as_str()).copied();
        if let Some(expected) = expect
            && expected != now
        {
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                reason: format!(
                    "`{alias}` points at {}, not {} as expected",
                    now.map_or("nothing".into(), |v| format!("version {v}")),
                    expected.map_or("nothing".into(), |v| format!("version {v}")),
                ),
                current: Box::new(head),
            });
        }
        head.point(alias.as_str(), version);
        self.swap_once(name, &etag, head, alias).await
    }

    /// Set who may call `name` on the data plane. A name without versions
    /// gets a head of its own, so that its first version can be deployed
    /// closed. Returns the new head.
    pub async fn set_invocation(
        &self,
        name: &Name,
        invocation: Invocation,
    ) -> Result<Head, RegistryError> {
        for _ in 0..DEPLOY_ATTEMPTS {
            let (mut head, etag) = match self.head_for_update(name).await? {
                Some((head, etag)) => (head, Some(etag)),
                None => (Head::default(), None),
            };
            if head.invocation == invocation && etag.is_some() {
                return Ok(head);
            }
            head.invocation = invocation;
            match self.swap_head(name, etag.as_ref(), &head).await {
                Ok(()) => return Ok(head),
                Err(RegistryError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(RegistryError::Contended(name.to_string()))
    }

    /// Change the head of `name` with `change`, applied to the stored head
    /// and applied again to a fresh one whenever a concurrent writer got
    /// in first, until it lands. `change` decides against the state it is
    /// given: it returns `false` when there is nothing to write. Returns
    /// the head and whether it was written.
    pub async fn update(
        &self,
        name: &Name,
        mut change: impl FnMut(&mut Head) -> Result<bool, RegistryError>,
    ) -> Result<(Head, bool), RegistryError> {
        for _ in 0..DEPLOY_ATTEMPTS {
            let (mut head, etag) = self
                .head_for_update(name)
                .await?
                .ok_or_else(|| Self::not_found(name))?;
            if !change(&mut head)? {
                return Ok((head, false));
            }
            match self.swap_head(name, Some(&etag), &head).await {
                Ok(()) => return Ok((head, true)),
                Err(RegistryError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(RegistryError::Contended(name.to_string()))
    }

    /// Move `alias` back to the version it pointed at before its last move
    /// (skipping versions deleted since). Returns the new head.
    pub async fn rollback(&self, name: &Name, alias: &Name) -> Result<Head, RegistryError> {
        let (mut head, etag) = self
            .head_for_update(name)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        let Some(current) = head.aliases.get(alias.as_str()).copied() else {
            return Err(RegistryError::AliasNotFound {
                noun: R::NOUN,
                name: name.to_string(),
                alias: alias.to_string(),
                aliases: head.aliases,
            });
        };
        let history = head.history.entry(alias.to_string()).or_default();
        let previous = loop {
            match history.pop() {
                Some(v) if v != current && head.versions.contains(&v) => break Some(v),
                Some(_) => continue,
                None => break None,
            }
        };
        let Some(previous) = previous else {
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                reason: format!(
                    "`{alias}` (version {current}) has no earlier version to roll back to; move it with `sluice alias set {name} {alias} N`"
                ),
                current: Box::new(head),
            });
        };
        // A rollback does not enter the history, so repeated rollbacks walk
        // further back instead of flip-flopping.
        head.aliases.insert(alias.to_string(), previous);
        self.swap_once(name, &etag, head, alias).await
    }

    /// Remove `alias` (not [`LATEST`]).
    pub async fn remove_alias(&self, name: &Name, alias: &Name) -> Result<Head, RegistryError> {
        if alias.as_str() == LATEST {
            return Err(RegistryError::Invalid(format!(
                "`{LATEST}` is maintained by the registry and cannot be removed"
            )));
        }
        let (mut head, etag) = self
            .head_for_update(name)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        if head.aliases.remove(alias.as_str()).is_none() {
            return Err(RegistryError::AliasNotFound {
                noun: R::NOUN,
                name: name.to_string(),
                alias: alias.to_string(),
                aliases: head.aliases,
            });
        }
        head.history.remove(alias.as_str());
        self.swap_once(name, &etag, head, alias).await
    }

    async fn swap_once(
        &self,
        name: &Name,
        etag: &ETag,
        head: Head,
        alias: &Name,
    ) -> Result<Head, RegistryError> {
        match self.swap_head(name, Some(etag), &head).await {
            Ok(()) => Ok(head),
            Err(RegistryError::Store(StoreError::Conflict { .. })) => {
                let current = self
                    .head_for_update(name)
                    .await?
                    .map(|(h, _)| h)
                    .unwrap_or_default();
                Err(RegistryError::Conflict {
                    name: name.to_string(),
                    reason: format!(
                        "`{alias}` of `{name}` was changed by someone else while this change was made; check the state and retry"
                    ),
                    current: Box::new(current),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Delete a version: refused while an alias other than [`LATEST`]
    /// points at it; deleting the newest moves [`LATEST`] back. The record
    /// goes; the blob stays (other versions may share it).
    pub async fn delete(&self, name: &Name, version: u64) -> Result<Head, RegistryError> {
        let (mut head, etag) = self
            .head_for_update(name)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        if !head.versions.remove(&version) {
            return Err(RegistryError::VersionNotFound {
                noun: R::NOUN,
                name: name.to_string(),
                version,
            });
        }
        if let Some(rollout) = head.active_rollout()
            && (rollout.from == version || rollout.to == version)
        {
            let reason = format!(
                "version {version} is in the rollout of {} → {}; promote or abort it first (`sluice rollout promote|abort {name}`)",
                rollout.from, rollout.to
            );
            head.versions.insert(version);
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                reason,
                current: Box::new(head),
            });
        }
        if let Some(Guard {
            fallback:
                Some(Fallback {
                    to: FallbackTo::Version { version: fallback },
                    ..
                }),
            ..
        }) = &head.guard
            && *fallback == version
        {
            let reason = format!(
                "version {version} is the fallback of {name}; set another fallback first (`sluice guard set {name} ...`, or `sluice guard clear {name}`)"
            );
            head.versions.insert(version);
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                reason,
                current: Box::new(head),
            });
        }
        let pinned: Vec<&String> = head
            .aliases
            .iter()
            .filter(|(a, v)| **v == version && a.as_str() != LATEST)
            .map(|(a, _)| a)
            .collect();
        if !pinned.is_empty() {
            let names = pinned
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            head.versions.insert(version);
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                reason: format!(
                    "version {version} is the target of alias(es) {names}; move them first (`sluice alias set {name} ALIAS N`)"
                ),
                current: Box::new(head),
            });
        }
        match head.versions.last().copied() {
            Some(newest) => {
                head.aliases.insert(LATEST.into(), newest);
            }
            None => {
                head.aliases.remove(LATEST);
            }
        }
        for targets in head.history.values_mut() {
            targets.retain(|v| *v != version);
        }
        match self.swap_head(name, Some(&etag), &head).await {
            Ok(()) => {}
            Err(RegistryError::Store(StoreError::Conflict { .. })) => {
                return Err(RegistryError::Conflict {
                    name: name.to_string(),
                    reason: format!(
                        "`{name}` changed while version {version} was being deleted; retry"
                    ),
                    current: Box::new(
                        self.head_for_update(name)
                            .await?
                            .map(|(h, _)| h)
                            .unwrap_or_default(),
                    ),
                });
            }
            Err(e) => return Err(e),
        }
        self.documents
            .delete(&Self::version_key(name, version))
            .await?;
        Ok(head)
    }

    /// Every live version of `name`, ascending.
    pub async fn versions(&self, name: &Name) -> Result<(Head, Vec<R>), RegistryError> {
        let (head, _) = self
            .head(name)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        let mut out = Vec::with_capacity(head.versions.len());
        for n in &head.versions {
            if let Some(record) = self.live_record(name, *n).await? {
                out.push(record);
            }
        }
        Ok((Head::clone(&head), out))
    }

    /// Every name with at least one live version: its head and its newest
    /// record.
    pub async fn list(&self) -> Result<Vec<(Head, R)>, RegistryError> {
        let mut out = Vec::new();
        for (name, head) in self.names().await? {
            let Some(latest) = head.aliases.get(LATEST) else {
                continue;
            };
            if let Some(record) = self.live_record(&name, *latest).await? {
                out.push((head, record));
            }
        }
        Ok(out)
    }

    /// Every name with at least one live version, and its head.
    pub async fn names(&self) -> Result<Vec<(Name, Head)>, RegistryError> {
        let prefix = format!("{}/", R::KIND);
        let keys = self.documents.list(&prefix).await?;
        let mut out = Vec::new();
        for key in &keys {
            let Some(raw) = key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix("/aliases.json"))
            else {
                continue;
            };
            let Ok(name) = Name::parse(raw) else { continue };
            if let Some((head, _)) = self.head(&name).await?
                && !head.versions.is_empty()
            {
                out.push((name, Head::clone(&head)));
            }
        }
        Ok(out)
    }
}

/// The version `selector` picks from `head` of the `noun` called `name`.
pub fn select(
    noun: &'static str,
    name: &Name,
    head: &Head,
    selector: &Selector,
) -> Result<u64, RegistryError> {
    let missing = || RegistryError::NotFound {
        noun,
        name: name.to_string(),
    };
    match selector {
        Selector::Default => head.default_version().ok_or_else(missing),
        Selector::Version(v) if head.versions.contains(v) => Ok(*v),
        Selector::Version(v) => Err(RegistryError::VersionNotFound {
            noun,
            name: name.to_string(),
            version: *v,
        }),
        Selector::Alias(alias) => {
            head.aliases
                .get(alias)
                .copied()
                .ok_or_else(|| RegistryError::AliasNotFound {
                    noun,
                    name: name.to_string(),
                    alias: alias.clone(),
                    aliases: head.aliases.clone(),
                })
        }
    }
}

fn parse<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::BadRecord {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// The current UTC time as RFC 3339, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;
    use crate::store::{FsStore, ObjectStore};

    /// A record kind of the tests' own.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Note {
        version: u64,
        text: String,
    }

    impl Record for Note {
        const KIND: &'static str = "notes";
        const NOUN: &'static str = "note";
        fn version(&self) -> u64 {
            self.version
        }
        fn numbered(self, version: u64) -> Self {
            Self { version, ..self }
        }
        fn same_content(&self, other: &Self) -> bool {
            self.text == other.text
        }
    }

    fn registry(dir: &std::path::Path) -> Registry<Note> {
        let store = Arc::new(FsStore::open(dir).unwrap());
        Registry::new(Arc::new(DocumentCache::new(store, CacheConfig::default())))
    }

    fn record(tag: &str) -> Note {
        Note {
            version: 0,
            text: tag.into(),
        }
    }

    #[tokio::test]
    async fn a_deploy_never_publishes_a_number_another_deployer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        // Records other deployers wrote (or left unlisted when they died)
        // for every number this deploy will try.
        for n in 1..=u64::from(DEPLOY_ATTEMPTS) {
            let theirs = serde_json::to_vec(&Note {
                version: n,
                text: format!("theirs {n}"),
            })
            .unwrap();
            store
                .put(
                    &format!("notes/f/versions/{n}.json"),
                    theirs.into(),
                    PutMode::IfAbsent,
                )
                .await
                .unwrap();
        }
        let name = Name::parse("f").unwrap();
        let registry = registry(dir.path());
        match registry.record(&name, record("mine")).await {
            Err(RegistryError::Contended(_)) => {}
            Ok((note, _)) => {
                assert_eq!(
                    note.text, "mine",
                    "published version {} of another deployer",
                    note.version
                )
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            registry.head(&name).await.unwrap().is_none(),
            "no record of another deployer was published"
        );
    }

    #[tokio::test]
    async fn a_missing_record_is_reported_alike_by_listings_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let name = Name::parse("f").unwrap();
        let writer = registry(dir.path());
        for tag in ["a", "b", "c"] {
            writer.record(&name, record(tag)).await.unwrap();
        }
        // Damage: the store lost the record of version 1, which is live.
        let store = FsStore::open(dir.path()).unwrap();
        store.delete("notes/f/versions/1.json").await.unwrap();
        let reader = registry(dir.path());
        let listed = reader
            .versions(&name)
            .await
            .expect_err("listing reports it");
        let resolved = reader
            .resolve(&name, &Selector::Version(1))
            .await
            .expect_err("resolve reports it");
        for e in [&listed, &resolved] {
            assert!(
                matches!(e, RegistryError::BadRecord { key, .. } if key == "notes/f/versions/1.json"),
                "{e}"
            );
        }
        // A version deleted through the registry is no damage: a reader
        // whose head is older than the delete skips it, and resolving it
        // says it does not exist.
        let other = Name::parse("g").unwrap();
        for tag in ["a", "b"] {
            writer.record(&other, record(tag)).await.unwrap();
        }
        let stale = registry(dir.path());
        stale.head(&other).await.unwrap();
        registry(dir.path()).delete(&other, 1).await.unwrap();
        let (head, versions) = stale.versions(&other).await.unwrap();
        assert!(
            head.versions.contains(&1),
            "the reader's head predates the delete"
        );
        assert_eq!(versions.iter().map(|n| n.version).collect::<Vec<_>>(), [2]);
        assert!(matches!(
            stale.resolve(&other, &Selector::Version(1)).await,
            Err(RegistryError::VersionNotFound { version: 1, .. })
        ));
    }

    #[tokio::test]
    async fn concurrent_deploys_all_get_distinct_numbers_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let name = Name::parse("f").unwrap();
        let deploys = (0..8).map(|i| {
            let (registry, name) = (registry(dir.path()), name.clone());
            async move { registry.record(&name, record(&i.to_string())).await }
        });
        let mut numbers: Vec<u64> = futures::future::join_all(deploys)
            .await
            .into_iter()
            .map(|r| r.unwrap().0.version)
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
        let (head, _) = registry(dir.path()).head(&name).await.unwrap().unwrap();
        assert_eq!(head.versions, (1..=8).collect());
        assert_eq!(head.aliases[LATEST], 8);
    }

    #[tokio::test]
    async fn rollback_skips_deleted_versions_and_latest_is_not_settable() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(dir.path());
        let name = Name::parse("f").unwrap();
        let stable = Name::parse(STABLE).unwrap();
        for tag in ["a", "b", "c"] {
            registry.record(&name, record(tag)).await.unwrap();
        }
        for v in [1, 2, 3] {
            registry.set_alias(&name, &stable, v, None).await.unwrap();
        }
        registry.delete(&name, 2).await.unwrap();
        let head = registry.rollback(&name, &stable).await.unwrap();
        assert_eq!(
            head.aliases[STABLE], 1,
            "2 was deleted, so 3 rolls back to 1"
        );
        assert!(matches!(
            registry.rollback(&name, &stable).await,
            Err(RegistryError::Conflict { .. })
        ));
        let latest = Name::parse(LATEST).unwrap();
        assert!(matches!(
            registry.set_alias(&name, &latest, 1, None).await,
            Err(RegistryError::Invalid(_))
        ));
        // Deleting the newest moves `latest` back; a redeploy takes a new number.
        registry.delete(&name, 3).await.unwrap();
        let (head, _) = registry.head(&name).await.unwrap().unwrap();
        assert_eq!(head.aliases[LATEST], 1);
        let (again, created) = registry.record(&name, record("d")).await.unwrap();
        assert_eq!((again.version, created), (4, true));
    }

    #[test]
    fn moves_are_remembered_for_rollback_and_bounded() {
        let mut head = Head::default();
        for v in 1..=30 {
            head.versions.insert(v);
            head.point(STABLE, v);
        }
        assert_eq!(head.aliases[STABLE], 30);
        assert_eq!(head.history[STABLE].len(), HISTORY_DEPTH);
        assert_eq!(head.history[STABLE].last(), Some(&29));
    }

    #[test]
    fn unqualified_calls_prefer_stable_over_latest() {
        let mut head = Head::default();
        assert_eq!(head.default_version(), None);
        head.aliases.insert(LATEST.into(), 3);
        assert_eq!(head.default_version(), Some(3));
        head.aliases.insert(STABLE.into(), 2);
        assert_eq!(head.default_version(), Some(2));
    }

    #[test]
    fn selectors_read_numbers_as_versions_and_names_as_aliases() {
        assert_eq!(Selector::parse("3").unwrap(), Selector::Version(3));
        assert_eq!(
            Selector::parse("canary").unwrap(),
            Selector::Alias("canary".into())
        );
        assert!(Selector::parse("Not Valid").is_err());
    }
}
