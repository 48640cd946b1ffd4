//! The audit log: one immutable record per change, each carrying the hash
//! of the one before, so an edited, removed or reordered record breaks the
//! chain where it happened.
//!
//! ```text
//! audit/records/000000000001.json   {"seq":1,"at":...,"actor":...,"action":...,"prev":"","hash":...}
//! audit/head.json                   {"seq":n,"hash":...}   compare-and-swap
//! ```
//!
//! A record is written with create-only semantics under its number, so of
//! two nodes appending at once exactly one gets each number and the other
//! retries after it: the chain never forks. The head names the newest
//! record; it is moved forward by compare-and-swap after the record lands,
//! and lets `verify` notice the newest records being removed.

use super::AccessError;
use crate::cache::DocumentCache;
use crate::registry::now_rfc3339;
use crate::store::{PutMode, StoreError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const RECORDS: &str = "audit/records/";
const HEAD: &str = "audit/head.json";
/// Lost races an append or a head move may take before giving up.
const APPEND_ATTEMPTS: usize = 256;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `publish`, `alias.set`, `alias.remove`, `rollback`, `delete`,
    /// `ingest`, `compact`, `invocation`, `token.create`, `token.revoke`.
    pub action: String,
    /// `function`, `model`, `pipeline`, `table` or `token`.
    pub kind: String,
    /// The name changed.
    pub name: String,
    /// The version concerned, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// More, in words (`stable → 3`, `1000 rows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Change {
    /// A change of `kind` `name` by `action`.
    pub fn new(action: &str, kind: &str, name: &str) -> Self {
        Self {
            action: action.into(),
            kind: kind.into(),
            name: name.into(),
            version: None,
            detail: None,
        }
    }

    /// With the version concerned.
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// With a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its number, from 1, without gaps.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who: the token's name, or `local:<user>` for the CLI on the store.
    pub actor: String,
    /// What.
    #[serde(flatten)]
    pub change: Change,
    /// The hash of the record before (empty for the first).
    pub prev: String,
    /// SHA-256 (hex) of this record's JSON without this field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl AuditRecord {
    fn digest(&self) -> String {
        let unhashed = Self {
            hash: String::new(),
            ..self.clone()
        };
        // A struct serializes its fields in declaration order: stable.
        let json = serde_json::to_vec(&unhashed).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// Where the chain is broken, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broken {
    /// The record number where it breaks.
    pub seq: u64,
    /// What is wrong there.
    pub reason: String,
}

/// The audit log in a store.
pub struct Audit {
    documents: Arc<DocumentCache>,
}

impl Audit {
    /// The log in `documents`' store.
    pub fn new(documents: Arc<DocumentCache>) -> Self {
        Self { documents }
    }

    /// Append a record of `change` by `actor`.
    pub async fn append(&self, actor: &str, change: Change) -> Result<AuditRecord, AccessError> {
        let (head, _) = self.head().await?;
        let (mut seq, mut prev) = (head.seq, head.hash);
        // Every lost race means another record landed: catch up past it
        // and try the next number.
        for _ in 0..APPEND_ATTEMPTS {
            while let Some(after) = self.record(seq + 1).await? {
                seq = after.seq;
                prev = after.hash;
            }
            let mut record = AuditRecord {
                seq: seq + 1,
                at: now_rfc3339(),
                actor: actor.into(),
                change: change.clone(),
                prev: prev.clone(),
                hash: String::new(),
            };
            record.hash = record.digest();
            let bytes = serde_json::to_vec(&record).map_err(|e| corrupt(HEAD, e))?;
            let key = record_key(record.seq);
            match self
                .documents
                .store()
                .put(&key, Bytes::from(bytes), PutMode::IfAbsent)
                .await
            {
                Ok(_) => {
                    self.advance_head(&record).await?;
                    return Ok(record);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccessError::Contended(HEAD.into()))
    }

    /// Move the head forward to `record`, unless another writer already
    /// moved it as far or further.
    async fn advance_head(&self, record: &AuditRecord) -> Result<(), AccessError> {
        for _ in 0..APPEND_ATTEMPTS {
            let (head, etag) = self.head().await?;
            if head.seq >= record.seq {
                return Ok(());
            }
            let next = Head {
                seq: record.seq,
                hash: record.hash.clone(),
            };
            let bytes = serde_json::to_vec(&next).map_err(|e| corrupt(HEAD, e))?;
            let mode = etag.map_or(PutMode::IfAbsent, PutMode::IfMatch);
            match self
                .documents
                .store()
                .put(HEAD, Bytes::from(bytes), mode)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccessError::Contended(HEAD.into()))
    }

    /// Every record at or after `since` (RFC 3339), oldest first.
    pub async fn log(&self, since: Option<&str>) -> Result<Vec<AuditRecord>, AccessError> {
        let since = since
            .map(|s| {
                humantime::parse_rfc3339_weak(s)
                    .map_err(|e| AccessError::Invalid(format!("--since `{s}`: {e} (use RFC 3339)")))
            })
            .transpose()?;
        let mut out = Vec::new();
        for key in self.keys().await? {
            let Some(record) = self.read(&key).await? else {
                continue;
            };
            let at = humantime::parse_rfc3339_weak(&record.at).ok();
            if since.is_none_or(|s| at.is_some_and(|at| at >= s)) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Check the whole chain: numbers without gaps, every hash, every link,
    /// and the head. Returns how many records are intact, or where the
    /// chain breaks.
    pub async fn verify(&self) -> Result<Result<u64, Broken>, AccessError> {
        let broken = |seq, reason: String| Ok(Err(Broken { seq, reason }));
        let (head, _) = self.head().await?;
        let mut prev = String::new();
        let mut expected = 1;
        for key in self.keys().await? {
            let Some(number) = key
                .strip_prefix(RECORDS)
                .and_then(|k| k.strip_suffix(".json"))
                .and_then(|k| k.parse::<u64>().ok())
            else {
                return broken(expected, format!("`{key}` is not a record's name"));
            };
            if number != expected {
                return broken(expected, "is missing (removed)".into());
            }
            let record = match self.read(&key).await {
                Ok(Some(record)) => record,
                Ok(None) => return broken(number, "is missing (removed)".into()),
                Err(e) => return broken(number, format!("cannot be read: {e}")),
            };
            if record.seq != number {
                return broken(
                    number,
                    format!("holds record {} (records reordered)", record.seq),
                );
            }
            if record.hash != record.digest() {
                return broken(number, "was edited: its hash does not match it".into());
            }
            if record.prev != prev {
                return broken(
                    number,
                    "does not follow the record before it (edited, removed or reordered)".into(),
                );
            }
            prev = record.hash;
            expected += 1;
        }
        let last = expected - 1;
        if head.seq > last {
            return broken(
                last + 1,
                format!("is missing: the head names record {}", head.seq),
            );
        }
        Ok(Ok(last))
    }

    async fn head(&self) -> Result<(Head, Option<crate::store::ETag>), AccessError> {
        match self.documents.store().get(HEAD).await? {
            Some(o) => Ok((
                serde_json::from_slice(&o.bytes).map_err(|e| corrupt(HEAD, e))?,
                Some(o.etag),
            )),
            None => Ok((Head::default(), None)),
        }
    }

    async fn record(&self, seq: u64) -> Result<Option<AuditRecord>, AccessError> {
        self.read(&record_key(seq)).await
    }

    async fn read(&self, key: &str) -> Result<Option<AuditRecord>, AccessError> {
        match self.documents.store().get(key).await? {
            Some(o) => Ok(Some(
                serde_json::from_slice(&o.bytes).map_err(|e| corrupt(key, e))?,
            )),
            None => Ok(None),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, AccessError> {
        let mut keys = self.documents.store().list(RECORDS).await?;
        keys.sort();
        Ok(keys)
    }
}

fn record_key(seq: u64) -> String {
    format!("{RECORDS}{seq:012}.json")
}

fn corrupt(key: &str, e: serde_json::Error) -> AccessError {
    AccessError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit() -> (tempfile::TempDir, Audit) {
        let (dir, documents) = crate::access::test_documents();
        (dir, Audit::new(documents))
    }

    async fn three(audit: &Audit) {
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let record = audit
                .append("ci", Change::new("publish", "function", name).version(1))
                .await
                .unwrap();
            assert_eq!(record.seq, i as u64 + 1);
        }
        assert_eq!(audit.verify().await.unwrap(), Ok(3));
    }

    fn path(dir: &tempfile::TempDir, seq: u64) -> std::path::PathBuf {
        dir.path().join(record_key(seq))
    }

    #[tokio::test]
    async fn an_edited_record_is_found() {
        let (dir, audit) = audit();
        three(&audit).await;
        let text = std::fs::read_to_string(path(&dir, 2)).unwrap();
        std::fs::write(path(&dir, 2), text.replace("\"ci\"", "\"someone\"")).unwrap();
        let broken = audit.verify().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 2, "{broken:?}");
        assert!(broken.reason.contains("edited"), "{broken:?}");
    }

    #[tokio::test]
    async fn removed_and_swapped_records_are_found() {
        let (dir, audit) = audit();
        three(&audit).await;
        std::fs::rename(path(&dir, 1), dir.path().join("one")).unwrap();
        std::fs::rename(path(&dir, 2), path(&dir, 1)).unwrap();
        std::fs::rename(dir.path().join("one"), path(&dir, 2)).unwrap();
        let broken = audit.verify().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 1, "{broken:?}");
        assert!(broken.reason.contains("reordered"), "{broken:?}");

        let (dir, audit) = self::audit();
        three(&audit).await;
        std::fs::remove_file(path(&dir, 2)).unwrap();
        assert_eq!(audit.verify().await.unwrap().unwrap_err().seq, 2);
        // The newest removed: the head still names it.
        let (dir, audit) = self::audit();
        three(&audit).await;
        std::fs::remove_file(path(&dir, 3)).unwrap();
        assert_eq!(audit.verify().await.unwrap().unwrap_err().seq, 3);
    }

    #[tokio::test]
    async fn racing_appends_never_fork_the_chain() {
        let (_dir, audit) = audit();
        let audit = Arc::new(audit);
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let audit = audit.clone();
                tokio::spawn(async move {
                    for j in 0..4 {
                        let name = format!("f{i}-{j}");
                        audit
                            .append("ci", Change::new("publish", "function", &name))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(audit.verify().await.unwrap(), Ok(32));
        let names: std::collections::HashSet<_> = audit
            .log(None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.change.name)
            .collect();
        assert_eq!(names.len(), 32, "no append lost");
    }
}
