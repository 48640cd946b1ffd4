//! The node's gateway to the object store: reads of documents through the
//! cache, writes straight through (and into the cache, so a node sees its
//! own writes at once), and a count of every request that reaches the store.
//!
//! Immutable documents (version records) are kept until evicted. Mutable
//! ones (alias documents) are revalidated with a conditional read once
//! they are older than the poll interval; if the store cannot be reached
//! then, the last known copy keeps serving and the next check waits
//! another interval. Absent keys are remembered briefly (negative caching)
//! so a burst of requests for an unknown name costs one read.

use super::{Cache, CacheStats, Weigh};
use crate::store::{ETag, Object, ObjectStore, Progress, PutMode, Revalidated, StoreError};
use bytes::Bytes;
use futures::FutureExt;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a document may be served from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentPolicy {
    /// Never changes once written (it may be deleted): kept until evicted.
    Immutable,
    /// Changes by compare-and-swap: revalidated every poll interval.
    Mutable,
}

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes of documents kept in memory.
    pub max_bytes: u64,
    /// How old a mutable document may get before it is revalidated; this
    /// bounds how long another node's alias move takes to reach this one.
    pub poll_interval: Duration,
    /// How long an absent key is remembered.
    pub negative_ttl: Duration,
    /// Bytes of model plans kept loaded (measured by model file size).
    pub model_bytes: u64,
    /// Bytes of function templates kept loaded (measured by the size of
    /// their compiled code).
    pub template_bytes: u64,
    /// Bytes of feature tables' online partitions kept decoded.
    pub feature_bytes: u64,
    /// Bytes of pipeline answers kept by pipelines that cache them.
    pub result_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            // Documents are small; 256 MiB holds far more than a node serves.
            max_bytes: 256 << 20,
            // One conditional GET per function per second: changes spread
            // within ~1 s, and an idle pointer costs ~86k requests a day.
            poll_interval: Duration::from_secs(1),
            negative_ttl: Duration::from_millis(500),
            // Room for dozens of typical tabular and small vision models.
            model_bytes: 4 << 30,
            // A Rust stage compiles to 1-5 MiB of machine code: room for a
            // few hundred functions, while a node that serves thousands
            // keeps only the ones in use instead of running out of memory.
            template_bytes: 1 << 30,
            // The online snapshot of tables with millions of entities.
            feature_bytes: 2 << 30,
            // Answers are small: 64 MiB holds hundreds of thousands.
            result_bytes: 64 << 20,
        }
    }
}

/// A cached read: the object, or the knowledge that there is none.
pub struct Doc {
    object: Option<Object>,
}

impl Weigh for Doc {
    fn weight(&self) -> u64 {
        // Bytes plus a rough allowance for the key, tag and map entry.
        self.object.as_ref().map_or(0, |o| o.bytes.len() as u64) + 128
    }
}

/// Requests that reached the store, by kind.
#[derive(Debug, Default)]
struct Requests {
    gets: AtomicU64,
    revalidations: AtomicU64,
    not_modified: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    lists: AtomicU64,
    heads: AtomicU64,
    failures: AtomicU64,
    stale_served: AtomicU64,
}

/// Counters for `/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentStats {
    /// The document cache.
    pub cache: CacheStats,
    /// Requests sent to the store.
    pub store_requests: StoreRequests,
}

/// Requests sent to the store, by kind.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRequests {
    /// Unconditional reads.
    pub gets: u64,
    /// Conditional reads of mutable documents.
    pub revalidations: u64,
    /// Conditional reads answered "unchanged".
    pub not_modified: u64,
    /// Writes.
    pub puts: u64,
    /// Deletes.
    pub deletes: u64,
    /// Listings.
    pub lists: u64,
    /// Existence checks.
    pub heads: u64,
    /// Requests that failed (store unreachable or refusing).
    pub failures: u64,
    /// Reads answered from a stale copy because the store was unreachable.
    pub stale_served: u64,
}

/// The store behind a document cache.
pub struct DocumentCache {
    store: Arc<dyn ObjectStore>,
    cache: Cache<String, Doc, StoreError>,
    config: CacheConfig,
    requests: Arc<Requests>,
}

impl DocumentCache {
    /// A cache in front of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, config: CacheConfig) -> Self {
        Self {
            store,
            cache: Cache::new(config.max_bytes),
            config,
            requests: Arc::default(),
        }
    }

    /// The store itself.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Forget documents not read for `idle` (they are fetched again when
    /// needed); how many.
    pub fn evict_idle(&self, idle: std::time::Duration) -> usize {
        self.cache.evict_idle(|_| Some(idle))
    }

    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.requests.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The document at `key`, served from memory when `policy` allows.
    pub async fn get(
        &self,
        key: &str,
        policy: DocumentPolicy,
    ) -> Result<Option<Object>, StoreError> {
        let config = &self.config;
        let fresh = |doc: &Doc, loaded_at: Instant| match (&doc.object, policy) {
            (None, _) => loaded_at.elapsed() < config.negative_ttl,
            (Some(_), DocumentPolicy::Immutable) => true,
            (Some(_), DocumentPolicy::Mutable) => loaded_at.elapsed() < config.poll_interval,
        };
        let doc = self
            .cache
            .get_or_load(key, fresh, |stale| {
                // Only on a miss or a revalidation: hits clone nothing.
                let (store, requests) = (self.store.clone(), self.requests.clone());
                let load_key = key.to_string();
                async move {
                    let previous = stale.and_then(|doc| doc.object.clone());
                    let result = match &previous {
                        Some(object) => {
                            requests.revalidations.fetch_add(1, Ordering::Relaxed);
                            store
                                .get_if_changed(&load_key, &object.etag)
                                .await
                                .map(|r| match r {
                                    Revalidated::Unchanged => {
                                        requests.not_modified.fetch_add(1, Ordering::Relaxed);
                                        Some(object.clone())
                                    }
                                    Revalidated::Changed(object) => Some(object),
                                    Revalidated::Missing => None,
                                })
                        }
                        None => {
                            requests.gets.fetch_add(1, Ordering::Relaxed);
                            store.get(&load_key).await
                        }
                    };
                    match (result, previous) {
                        (Ok(object), _) => Ok(Doc { object }),
                        // Keep serving what we had; look again next interval.
                        (Err(e), Some(previous)) => {
                            requests.failures.fetch_add(1, Ordering::Relaxed);
                            requests.stale_served.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(key = %load_key, error = %e, "store unreachable; serving the last known copy");
                            Ok(Doc {
                                object: Some(previous),
                            })
                        }
                        (Err(e), None) => {
                            requests.failures.fetch_add(1, Ordering::Relaxed);
                            Err(e)
                        }
                    }
                }
                .boxed()
            })
            .await?;
        Ok(doc.object.clone())
    }

    /// Read `key` from the store, bypassing the cache: for large artifacts
    /// that are consumed once (their callers single-flight the load).
    pub async fn fetch(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.requests.gets.fetch_add(1, Ordering::Relaxed);
        self.counted(self.store.get(key).await)
    }

    /// A blob by digest from the store, verified (see
    /// [`ObjectStore::get_blob`]), bypassing the cache like [`fetch`](Self::fetch).
    pub async fn fetch_blob(
        &self,
        digest: &crate::store::Digest,
    ) -> Result<Option<Bytes>, StoreError> {
        self.requests.gets.fetch_add(1, Ordering::Relaxed);
        self.counted(self.store.get_blob(digest).await)
    }

    /// Whether `key` exists, asking the store.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.requests.heads.fetch_add(1, Ordering::Relaxed);
        self.counted(self.store.exists(key).await)
    }

    /// Write through to the store; a small document is then cached as
    /// written, so this node reads its own writes.
    pub async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<ETag, StoreError> {
        self.write(key, bytes, mode, None).await
    }

    /// [`put`](Self::put) with progress reports for large writes.
    pub async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
        progress: Progress<'_>,
    ) -> Result<ETag, StoreError> {
        self.requests.puts.fetch_add(1, Ordering::Relaxed);
        let result = self.store.write(key, bytes.clone(), mode, progress).await;
        match &result {
            Ok(etag) if bytes.len() <= 64 << 10 => {
                self.cache.insert(
                    key.to_string(),
                    Doc {
                        object: Some(Object {
                            bytes,
                            etag: etag.clone(),
                        }),
                    },
                );
            }
            _ => self.cache.remove(&key.to_string()),
        }
        self.counted(result)
    }

    /// Store a blob under its digest (a no-op when present).
    pub async fn put_blob(
        &self,
        bytes: Bytes,
        progress: Progress<'_>,
    ) -> Result<crate::store::Digest, StoreError> {
        self.requests.heads.fetch_add(1, Ordering::Relaxed);
        self.requests.puts.fetch_add(1, Ordering::Relaxed);
        self.counted(self.store.put_blob(bytes, progress).await)
    }

    /// Store a spooled file as a blob under its digest, streamed.
    pub async fn put_blob_file(
        &self,
        spooled: &crate::store::Spooled,
    ) -> Result<crate::store::Digest, StoreError> {
        self.requests.heads.fetch_add(1, Ordering::Relaxed);
        self.requests.puts.fetch_add(1, Ordering::Relaxed);
        self.counted(self.store.put_blob_file(spooled, None).await)
    }

    /// Delete through to the store and forget the key.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.requests.deletes.fetch_add(1, Ordering::Relaxed);
        self.cache.remove(&key.to_string());
        self.counted(self.store.delete(key).await)
    }

    /// List through to the store.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.requests.lists.fetch_add(1, Ordering::Relaxed);
        self.counted(self.store.list(prefix).await)
    }

    /// Counters.
    pub fn stats(&self) -> DocumentStats {
        let r = &self.requests;
        DocumentStats {
            cache: self.cache.stats(),
            store_requests: StoreRequests {
                gets: r.gets.load(Ordering::Relaxed),
                revalidations: r.revalidations.load(Ordering::Relaxed),
                not_modified: r.not_modified.load(Ordering::Relaxed),
                puts: r.puts.load(Ordering::Relaxed),
                deletes: r.deletes.load(Ordering::Relaxed),
                lists: r.lists.load(Ordering::Relaxed),
                heads: r.heads.load(Ordering::Relaxed),
                failures: r.failures.load(Ordering::Relaxed),
                stale_served: r.stale_served.load(Ordering::Relaxed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FsStore;
    use tokio::sync::Semaphore;

    /// A store whose revalidations read at once but answer only when the
    /// test lets them: a slow round trip, in which another write lands.
    struct SlowRevalidations {
        inner: FsStore,
        read: Semaphore,
        answer: Semaphore,
    }

    #[async_trait::async_trait]
    impl ObjectStore for SlowRevalidations {
        async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
            self.inner.get(key).await
        }
        async fn get_if_changed(&self, key: &str, etag: &ETag) -> Result<Revalidated, StoreError> {
            let answer = self.inner.get_if_changed(key, etag).await;
            self.read.add_permits(1);
            let _ = self.answer.acquire().await;
            answer
        }
        async fn exists(&self, key: &str) -> Result<bool, StoreError> {
            self.inner.exists(key).await
        }
        async fn write(
            &self,
            key: &str,
            bytes: Bytes,
            mode: PutMode,
            progress: Progress<'_>,
        ) -> Result<ETag, StoreError> {
            self.inner.write(key, bytes, mode, progress).await
        }
        async fn write_file(
            &self,
            key: &str,
            path: &std::path::Path,
            len: u64,
            progress: Progress<'_>,
        ) -> Result<(), StoreError> {
            self.inner.write_file(key, path, len, progress).await
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix).await
        }
        fn describe(&self) -> String {
            "slow revalidations".into()
        }
    }

    #[tokio::test]
    async fn a_revalidation_that_outlives_a_write_does_not_bring_back_the_old_document() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SlowRevalidations {
            inner: FsStore::open(dir.path()).unwrap(),
            read: Semaphore::new(0),
            answer: Semaphore::new(0),
        });
        let config = CacheConfig {
            poll_interval: Duration::from_millis(1),
            ..CacheConfig::default()
        };
        let documents = Arc::new(DocumentCache::new(store.clone(), config));
        documents
            .put("doc", Bytes::from("old"), PutMode::Overwrite)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        // A read past the poll interval revalidates: the store says
        // "unchanged" (still the old document), slowly.
        let revalidation = tokio::spawn({
            let documents = documents.clone();
            async move { documents.get("doc", DocumentPolicy::Mutable).await }
        });
        store.read.acquire().await.unwrap().forget();
        documents
            .put("doc", Bytes::from("new"), PutMode::Overwrite)
            .await
            .unwrap();
        store.answer.add_permits(1);
        let answered = revalidation.await.unwrap().unwrap().unwrap();
        assert_eq!(answered.bytes, "old", "it started before the write");
        // What the cache holds now is the write, not the late answer.
        let held = documents
            .get("doc", DocumentPolicy::Immutable)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.bytes, "new");
    }
}
