//! The in-memory cache: one type for everything a node keeps in memory
//! (store documents, loaded function templates), with
//!
//! - a byte budget: each value says what it weighs ([`Weigh`]); past the
//!   budget the least recently used entries are evicted;
//! - single-flight loading: concurrent misses on one key share one load,
//!   and its result (value or error) answers all of them;
//! - freshness decided by the caller per lookup, so the same cache serves
//!   immutable values (never stale) and documents revalidated on a timer.
//!
//! Lookups touch a [`DashMap`] shard and an atomic clock; eviction scans for
//! the oldest entry, which is cheap at the hundreds of entries a node holds
//! and runs only when the budget is exceeded. The byte count changes only
//! under the lock of the entry's shard, together with the entry, so it
//! always equals the sum of the weights held.
//!
//! A value written by [`Cache::insert`] (or a key dropped by
//! [`Cache::remove`]) ends any load of that key in flight: the load still
//! answers its waiters, but never files its (older) result over the write.

mod documents;

pub use documents::{CacheConfig, DocumentCache, DocumentPolicy, DocumentStats, StoreRequests};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::Serialize;
use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a version may stay idle before a node unloads it: its own
/// `idle_secs` (0: forever), else the node's default (`None`: forever).
pub fn idle_time(own: Option<u64>, default: Option<Duration>) -> Option<Duration> {
    match own {
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(secs)),
        None => default,
    }
}

/// What a cached value costs in memory, in bytes (approximately).
pub trait Weigh {
    /// The value's weight.
    fn weight(&self) -> u64;
}

struct Entry<V> {
    value: Arc<V>,
    weight: u64,
    loaded_at: Instant,
    last_used: AtomicU64,
    /// When it was last used: milliseconds since the cache's `epoch`.
    used_ms: AtomicU64,
}

type Flight<V, E> = Shared<BoxFuture<'static, Result<Arc<V>, E>>>;

/// A byte-budgeted, single-flight, least-recently-used cache.
pub struct Cache<K, V, E> {
    budget: u64,
    entries: DashMap<K, Entry<V>>,
    flights: DashMap<K, Flight<V, E>>,
    clock: AtomicU64,
    bytes: AtomicU64,
    counters: Counters,
    epoch: Instant,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    load_failures: AtomicU64,
    evictions: AtomicU64,
    idle_evictions: AtomicU64,
}

/// A snapshot of a cache's counters, for `/v1/status`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that had to load (or wait for a load).
    pub misses: u64,
    /// Loads run (one per single-flight group).
    pub loads: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Entries dropped to stay within the budget.
    pub evictions: u64,
    /// Entries dropped after going unused for the idle time.
    pub idle_evictions: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The budget, in bytes.
    pub budget: u64,
}

impl<K, V, E> Cache<K, V, E>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Weigh + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            entries: DashMap::new(),
            flights: DashMap::new(),
            clock: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            counters: Counters::default(),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The cached value of `key` and when it was loaded, without loading.
    pub fn peek<Q>(&self, key: &Q) -> Option<(Arc<V>, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.entries.get(key)?;
        entry.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        entry.used_ms.store(self.now_ms(), Ordering::Relaxed);
        Some((entry.value.clone(), entry.loaded_at))
    }

    /// The value of `key`: cached if `fresh(value, loaded_at)` says so,
    /// otherwise loaded by `load` (given the stale value, if any). One load
    /// runs per key at a time; concurrent callers share its result. A hit
    /// does not copy the key.
    pub async fn get_or_load<Q, F>(
        &self,
        key: &Q,
        fresh: impl Fn(&V, Instant) -> bool,
        load: F,
    ) -> Result<Arc<V>, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: FnOnce(Option<Arc<V>>) -> BoxFuture<'static, Result<V, E>>,
    {
        let stale = match self.peek(key) {
            Some((value, loaded_at)) if fresh(&value, loaded_at) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(value);
            }
            other => other.map(|(value, _)| value),
        };
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let flight = self
            .flights
            .entry(key.to_owned())
            .or_insert_with(|| {
                self.counters.loads.fetch_add(1, Ordering::Relaxed);
                load(stale).map(|r| r.map(Arc::new)).boxed().shared()
            })
            .clone();
        let result = flight.clone().await;
        // File the value while the flight is still the key's, then end the
        // flight, both under the flight map's lock for the key: a caller
        // arriving in between finds one or the other, never neither (which
        // would start a second load), and a write (`insert`, `remove`) that
        // ended the flight meanwhile is never overwritten by its result.
        // Waiters racing here file the same value; a later flight for the
        // key is left alone.
        let mut filed = false;
        let ours = self
            .flights
            .remove_if(key, |_, f| {
                let ours = f.ptr_eq(&flight);
                if ours && let Ok(value) = &result {
                    self.file(key.to_owned(), value.clone());
                    filed = true;
                }
                ours
            })
            .is_some();
        if filed {
            self.evict_to_budget();
        }
        if ours && result.is_err() {
            self.counters.load_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Put a value in the cache (replacing any entry for `key`); a load of
    /// `key` in flight will not replace it.
    pub fn insert(&self, key: K, value: V) -> Arc<V> {
        let value = Arc::new(value);
        self.flights.remove(&key);
        self.file(key, value.clone());
        self.evict_to_budget();
        value
    }

    /// Hold `value` under `key`, adjusting the byte count under the key's
    /// lock (callers then call [`Self::evict_to_budget`]).
    fn file(&self, key: K, value: Arc<V>) {
        let weight = value.weight();
        if weight > self.budget {
            // Larger than the whole budget: serve it, never keep it.
            self.forget(&key);
            return;
        }
        let entry = Entry {
            value,
            weight,
            loaded_at: Instant::now(),
            last_used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
            used_ms: AtomicU64::new(self.now_ms()),
        };
        match self.entries.entry(key) {
            MapEntry::Occupied(mut held) => {
                let old = held.insert(entry);
                self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
                self.bytes.fetch_add(weight, Ordering::Relaxed);
            }
            MapEntry::Vacant(empty) => {
                self.bytes.fetch_add(weight, Ordering::Relaxed);
                empty.insert(entry);
            }
        }
    }

    /// Drop the entry of `key`, if any, counting its bytes out under its lock.
    fn forget(&self, key: &K) -> bool {
        self.entries
            .remove_if(key, |_, old| {
                self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
                true
            })
            .is_some()
    }

    /// Forget `key` (a load of it in flight will not bring it back).
    pub fn remove(&self, key: &K) {
        self.flights.remove(key);
        self.forget(key);
    }

    /// Whether `key` is held.
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Forget every entry whose key fails `keep`.
    pub fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        self.entries.retain(|k, entry| {
            let kept = keep(k);
            if !kept {
                self.bytes.fetch_sub(entry.weight, Ordering::Relaxed);
            }
            kept
        });
    }

    /// Forget every entry unused for as long as `idle` says it may be
    /// (`None`: kept) (scale to zero: callers still holding a value keep it
    /// until they finish). Returns how many were dropped.
    pub fn evict_idle(&self, idle: impl Fn(&V) -> Option<Duration>) -> usize {
        let now = self.now_ms();
        let mut dropped = 0;
        self.entries.retain(|_, entry| {
            let unused_ms = now.saturating_sub(entry.used_ms.load(Ordering::Relaxed));
            let keep =
                idle(&entry.value).is_none_or(|idle| u128::from(unused_ms) < idle.as_millis());
            if !keep {
                self.bytes.fetch_sub(entry.weight, Ordering::Relaxed);
                dropped += 1;
            }
            keep
        });
        self.counters
            .idle_evictions
            .fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }

    /// Keys currently held.
    pub fn keys(&self) -> Vec<K> {
        self.entries.iter().map(|e| e.key().clone()).collect()
    }

    fn evict_to_budget(&self) {
        while self.bytes.load(Ordering::Relaxed) > self.budget {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|e| e.last_used.load(Ordering::Relaxed))
                .map(|e| e.key().clone());
            let Some(oldest) = oldest else { break };
            if self.forget(&oldest) {
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            load_failures: c.load_failures.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            idle_evictions: c.idle_evictions.load(Ordering::Relaxed),
            entries: self.entries.len() as u64,
            bytes: self.bytes.load(Ordering::Relaxed),
            budget: self.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Blob(u64);
    impl Weigh for Blob {
        fn weight(&self) -> u64 {
            self.0
        }
    }

    fn always(_: &Blob, _: Instant) -> bool {
        true
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache: Arc<Cache<&str, Blob, String>> = Arc::new(Cache::new(1000));
        let loads = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(&"k", always, |_| {
                        async move {
                            loads.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(Blob(10))
                        }
                        .boxed()
                    })
                    .await
                    .map(|b| b.0)
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(10));
        }
        assert_eq!(loads.load(Ordering::Relaxed), 1);
        let stats = cache.stats();
        assert_eq!((stats.loads, stats.misses, stats.entries), (1, 64, 1));
    }

    #[tokio::test]
    async fn a_failed_load_answers_its_waiters_and_is_not_kept() {
        let cache: Cache<&str, Blob, String> = Cache::new(1000);
        let failed = cache
            .get_or_load(&"k", always, |_| async { Err("down".to_string()) }.boxed())
            .await;
        assert_eq!(failed.err(), Some("down".to_string()));
        assert!(cache.peek(&"k").is_none());
        let loaded = cache
            .get_or_load(&"k", always, |_| async { Ok(Blob(1)) }.boxed())
            .await;
        assert_eq!(loaded.map(|b| b.0), Ok(1));
        assert_eq!(cache.stats().load_failures, 1);
    }

    #[test]
    fn least_recently_used_entries_go_first_and_bytes_stay_in_budget() {
        let cache: Cache<u32, Blob, ()> = Cache::new(100);
        cache.insert(1, Blob(40));
        cache.insert(2, Blob(40));
        cache.peek(&1); // 2 is now the least recently used
        cache.insert(3, Blob(40));
        assert!(cache.peek(&1).is_some());
        assert!(cache.peek(&2).is_none());
        assert!(cache.peek(&3).is_some());
        cache.insert(4, Blob(500)); // over the whole budget: not kept
        assert!(cache.peek(&4).is_none());
        let stats = cache.stats();
        assert_eq!((stats.bytes, stats.entries, stats.evictions), (80, 2, 1));
    }

    #[test]
    fn entries_unused_for_the_idle_time_are_dropped() {
        let cache: Cache<u32, Blob, ()> = Cache::new(100);
        cache.insert(1, Blob(10));
        cache.insert(2, Blob(20));
        std::thread::sleep(std::time::Duration::from_millis(30));
        cache.peek(&2); // used again: stays
        assert_eq!(
            cache.evict_idle(|_| Some(std::time::Duration::from_millis(20))),
            1
        );
        assert!(cache.peek(&1).is_none());
        assert!(cache.peek(&2).is_some());
        let stats = cache.stats();
        assert_eq!(
            (stats.bytes, stats.entries, stats.idle_evictions),
            (20, 1, 1)
        );
        assert_eq!(cache.evict_idle(|_| None), 0, "kept when the value says so");
        assert_eq!(cache.evict_idle(|_| Some(std::time::Duration::ZERO)), 1);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn racing_inserts_and_removes_of_a_key_keep_the_byte_count_exact() {
        let cache: Arc<Cache<u32, Blob, ()>> = Arc::new(Cache::new(100));
        cache.insert(0, Blob(10));
        let rounds = 300_000;
        let inserter = std::thread::spawn({
            let cache = cache.clone();
            move || (0..rounds).for_each(|_| drop(cache.insert(1, Blob(10))))
        });
        let remover = std::thread::spawn({
            let cache = cache.clone();
            move || (0..rounds).for_each(|_| cache.remove(&1))
        });
        let mut most = 0;
        while !(inserter.is_finished() && remover.is_finished()) {
            most = most.max(cache.stats().bytes);
        }
        inserter.join().unwrap();
        remover.join().unwrap();
        // Two entries of 10 bytes at most, never a count that wrapped
        // below zero (after which one insert evicts everything).
        assert!(most <= 20, "the byte count read {most}");
        assert!(cache.peek(&0).is_some(), "nothing over budget was evicted");
        let held = if cache.contains(&1) { 20 } else { 10 };
        assert_eq!(cache.stats().bytes, held);
        assert_eq!(cache.stats().evictions, 0);
    }

    #[tokio::test]
    async fn a_write_during_a_load_wins_over_the_load() {
        let cache: Arc<Cache<u32, Blob, ()>> = Arc::new(Cache::new(100));
        let (started, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let load = tokio::spawn({
            let (cache, started, release) = (cache.clone(), started.clone(), release.clone());
            async move {
                cache
                    .get_or_load(&1, always, move |_| {
                        async move {
                            started.notify_one();
                            release.notified().await;
                            Ok(Blob(1))
                        }
                        .boxed()
                    })
                    .await
                    .map(|b| b.0)
            }
        });
        started.notified().await;
        cache.insert(1, Blob(2));
        release.notify_one();
        assert_eq!(load.await.unwrap(), Ok(1), "the load answers its caller");
        assert_eq!(cache.peek(&1).map(|(b, _)| b.0), Some(2), "the write stays");
    }

    #[tokio::test]
    async fn stale_values_are_handed_to_the_loader() {
        let cache: Cache<u32, Blob, ()> = Cache::new(100);
        cache.insert(1, Blob(5));
        let reloaded = cache
            .get_or_load(
                &1,
                |_, _| false,
                |stale| {
                    let previous = stale.map(|b| b.0).unwrap_or(0);
                    async move { Ok(Blob(previous + 1)) }.boxed()
                },
            )
            .await;
        assert_eq!(reloaded.map(|b| b.0), Ok(6));
    }
}
