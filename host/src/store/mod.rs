//! The object store: where everything that matters lives.
//!
//! One trait, [`ObjectStore`], with two backends: a local directory
//! ([`FsStore`], the embedded default) and S3 ([`S3Store`]); [`open`] picks
//! one from a `--store` location. Keys are `/`-separated paths of plain
//! segments.
//! Blobs are immutable and named by their sha256 ([`Digest`]); small
//! mutable documents change only by compare-and-swap ([`PutMode`]), so two
//! writers never silently overwrite each other.
//!
//! ```text
//! blobs/sha256/<hex>                          component and model files, baselines
//! compiled/<engine-fingerprint>/<hex>.cwasm   precompiled components (a cache)
//! <kind>/<name>/versions/<n>.json             immutable version records (functions, models)
//! <kind>/<name>/aliases.json                  live versions and aliases (CAS-updated)
//! features/<table>/data/<gen>/...             feature segments and their manifest (see `features`)
//! drift/<model>/<version>/...                 nodes' drift windows, alert state (see `inference::drift`)
//! ```

mod fs;
mod metered;
mod s3;

pub use fs::FsStore;
pub use s3::S3Store;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// An opaque version tag of a stored object; changes whenever its bytes do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ETag(pub Arc<str>);

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object's bytes and its tag.
#[derive(Debug, Clone)]
pub struct Object {
    /// The bytes.
    pub bytes: Bytes,
    /// The tag to pass to [`PutMode::IfMatch`] to replace exactly this object.
    pub etag: ETag,
}

/// How a put treats an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Create; fail with [`StoreError::Conflict`] if the key exists.
    IfAbsent,
    /// Replace only the object with this tag; fail with
    /// [`StoreError::Conflict`] if it changed or vanished.
    IfMatch(ETag),
}

/// What went wrong in the store. `Clone`, so one failed fetch can answer
/// every request that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A conditional put lost: the object is not in the expected state.
    #[error("`{key}` was changed by someone else (current version: {})", current.as_ref().map_or("none".into(), |t| t.to_string()))]
    Conflict {
        /// The key.
        key: String,
        /// The tag of what is there now, if anything.
        current: Option<ETag>,
    },
    /// The key is not a valid store path.
    #[error("invalid store key `{0}`")]
    InvalidKey(String),
    /// Stored bytes do not match their name or format.
    #[error("`{key}` is corrupt: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The store cannot be reached or refused the request; retrying later
    /// may succeed.
    #[error("the object store is unavailable ({key}): {reason}")]
    Unavailable {
        /// The key.
        key: String,
        /// What the backend said.
        reason: String,
    },
    /// The store rejected the request for a reason retrying will not fix
    /// (permissions, a missing bucket, a bad location).
    #[error("the object store refused `{key}`: {reason}")]
    Refused {
        /// The key.
        key: String,
        /// What the backend said.
        reason: String,
    },
    /// The backend failed.
    #[error("store I/O on `{key}` failed: {source}")]
    Io {
        /// The key.
        key: String,
        /// The cause.
        source: Arc<std::io::Error>,
    },
}

impl StoreError {
    pub(crate) fn io(key: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            key: key.into(),
            source: Arc::new(source),
        }
    }
}

/// The answer to a conditional read ([`ObjectStore::get_if_changed`]).
#[derive(Debug, Clone)]
pub enum Revalidated {
    /// The object still has the given tag.
    Unchanged,
    /// The object changed; here it is.
    Changed(Object),
    /// The object is gone.
    Missing,
}

/// An upload spooled to a temporary file (removed on drop), with its
/// length and digest taken as it was written.
pub struct Spooled {
    /// The file.
    pub file: tempfile::NamedTempFile,
    /// Its length in bytes.
    pub len: u64,
    /// The sha256 of its bytes.
    pub digest: Digest,
}

impl Spooled {
    /// The file's bytes, mapped: paged in from disk as they are read and
    /// reclaimable by the kernel, never copied into the heap.
    pub fn into_bytes(self) -> std::io::Result<Bytes> {
        if self.len == 0 {
            return Ok(Bytes::new()); // an empty file cannot be mapped
        }
        // SAFETY: the file is this process's own temporary file (created
        // 0600 by `tempfile`), complete, and never written again; the
        // mapping keeps its data after the name is removed.
        let map = unsafe { memmap2::Mmap::map(self.file.as_file())? };
        Ok(Bytes::from_owner(map))
    }
}

/// A callback told how many bytes of a large write have been stored so far.
pub type Progress<'a> = Option<&'a (dyn Fn(u64) + Send + Sync)>;

/// The sha256 of a blob, written `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// The digest a streaming hash arrived at.
    pub fn finish(hasher: Sha256) -> Self {
        Self(hex::encode(hasher.finalize()))
    }

    /// The lowercase hex of the hash.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// Where the blob with this digest is stored.
    pub fn blob_key(&self) -> String {
        format!("blobs/sha256/{}", self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest `{s}` must start with `sha256:`"))?;
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(hex.to_string()))
        } else {
            Err(format!(
                "digest `{s}` must be 64 lowercase hex digits after `sha256:`"
            ))
        }
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.to_string()
    }
}

/// A place to keep objects. Implementations are cheap to share (`Arc`).
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// The object at `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;

    /// The object at `key` if its tag is no longer `etag`. Backends with
    /// conditional reads (S3's `If-None-Match`) send no bytes when unchanged.
    async fn get_if_changed(&self, key: &str, etag: &ETag) -> Result<Revalidated, StoreError> {
        Ok(match self.get(key).await? {
            None => Revalidated::Missing,
            Some(object) if &object.etag == etag => Revalidated::Unchanged,
            Some(object) => Revalidated::Changed(object),
        })
    }

    /// Whether an object exists at `key`, without fetching it.
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Write `bytes` at `key`, atomically: readers see the old or the new
    /// object, never a mix. Large writes report their progress.
    async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
        progress: Progress<'_>,
    ) -> Result<ETag, StoreError>;

    /// Write the `len` bytes of the file at `path` at `key`, streamed from
    /// the file (never held whole in memory), atomically, overwriting.
    async fn write_file(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        progress: Progress<'_>,
    ) -> Result<(), StoreError>;

    /// [`write`](Self::write) without progress reports.
    async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError> {
        self.write(key, bytes, mode, None).await
    }

    /// Remove `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Every key under `prefix` (a directory-like prefix ending in `/`).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Where the store is, for logs and `--help` output.
    fn describe(&self) -> String;

    /// Whether writes with [`PutMode::IfAbsent`] and [`PutMode::IfMatch`]
    /// are honoured, found by trying them under `probe_prefix`. A backend
    /// that ignores them would let concurrent alias updates overwrite each
    /// other, so nodes say so at start-up.
    async fn check_conditional_writes(&self) -> Result<bool, StoreError> {
        let key = format!(
            "_sluice/probe/{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let first = self.put(&key, Bytes::from("1"), PutMode::IfAbsent).await?;
        let create_refused = matches!(
            self.put(&key, Bytes::from("2"), PutMode::IfAbsent).await,
            Err(StoreError::Conflict { .. })
        );
        // Well-formed (quoted hex, like S3's) but matching nothing.
        let stale = ETag(format!("\"{}\"", "0".repeat(32)).into());
        let update_refused = matches!(
            self.put(&key, Bytes::from("3"), PutMode::IfMatch(stale))
                .await,
            Err(StoreError::Conflict { .. })
        );
        let update_applied = self
            .put(&key, Bytes::from("4"), PutMode::IfMatch(first))
            .await
            .is_ok();
        self.delete(&key).await?;
        Ok(create_refused && update_refused && update_applied)
    }

    /// Store an immutable blob under its digest (a no-op when present).
    async fn put_blob(&self, bytes: Bytes, progress: Progress<'_>) -> Result<Digest, StoreError> {
        let digest = Digest::of(&bytes);
        let key = digest.blob_key();
        if self.exists(&key).await? {
            return Ok(digest);
        }
        // Same bytes under the same name: an overwrite by a concurrent
        // uploader is harmless.
        self.write(&key, bytes, PutMode::Overwrite, progress)
            .await?;
        Ok(digest)
    }

    /// Store a spooled file as a blob under its digest (a no-op when
    /// present), streamed.
    async fn put_blob_file(
        &self,
        spooled: &Spooled,
        progress: Progress<'_>,
    ) -> Result<Digest, StoreError> {
        let key = spooled.digest.blob_key();
        if !self.exists(&key).await? {
            self.write_file(&key, spooled.file.path(), spooled.len, progress)
                .await?;
        }
        Ok(spooled.digest.clone())
    }

    /// A blob by digest, verified: corrupt bytes are never handed out.
    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError> {
        let key = digest.blob_key();
        let Some(object) = self.get(&key).await? else {
            return Ok(None);
        };
        let actual = Digest::of(&object.bytes);
        if &actual != digest {
            return Err(StoreError::Corrupt {
                key,
                reason: format!("its bytes hash to {actual}"),
            });
        }
        Ok(Some(object.bytes))
    }
}

/// Open the store at `location`: `s3://BUCKET[/PREFIX]` for S3 (region,
/// credentials and endpoint from the standard AWS configuration), or a
/// directory path (optionally `file://PATH`); an S3 bucket is checked
/// before it is returned.
pub async fn open(location: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let (store, reachable) = open_unchecked(location).await?;
    reachable.await?;
    Ok(store)
}

/// The store at `location`, as [`open`], and its reachability check (an S3
/// bucket's round trip), to run side by side with other start-up work.
pub async fn open_unchecked(
    location: &str,
) -> Result<
    (
        Arc<dyn ObjectStore>,
        BoxFuture<'static, Result<(), StoreError>>,
    ),
    StoreError,
> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = S3Store::connect(bucket, prefix).await?;
        let checked = s3.clone();
        let reachable = async move { checked.check().await }.boxed();
        return Ok((metered(Arc::new(s3)), reachable));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    if path.contains("://") {
        return Err(StoreError::Refused {
            key: location.to_string(),
            reason: "unknown store scheme; use s3://BUCKET/PREFIX or a directory path".into(),
        });
    }
    let fs = metered(Arc::new(FsStore::open(path)?));
    Ok((fs, futures::future::ready(Ok(())).boxed()))
}

/// `store`, its requests timed and counted in the metrics.
pub fn metered(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(metered::Metered(store))
}

/// Check a key is a relative path of plain segments, so no backend can be
/// steered outside its root. `=` is allowed for Hive-style partition
/// folders (`event_date=2026-12-01`).
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let plain = |segment: &str| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-=".contains(&b))
    };
    if key.split('/').all(plain) {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in [
            "../x", "a/../b", "/abs", "", "a//b", ".hidden", "a/b/", "a\\b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_key("functions/scaler/versions/1.json").is_ok());
    }

    #[test]
    fn digests_round_trip_and_reject_garbage() {
        let d = Digest::of(b"hello");
        let s = d.to_string();
        assert!(s.starts_with("sha256:2cf24dba"));
        assert_eq!(Digest::try_from(s).unwrap(), d);
        assert!(Digest::try_from("sha256:xyz".to_string()).is_err());
        assert!(Digest::try_from("md5:abc".to_string()).is_err());
    }
}
