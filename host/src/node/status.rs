//! What a node is and what it has done, for `GET /v1/status`.

use super::{GateStats, Node};
use crate::cache::{CacheStats, StoreRequests};
use crate::inference::{BatchCounts, RunStats};
use crate::observe::{Resident, StatsSnapshot};
use serde::Serialize;
use std::sync::atomic::Ordering;

/// A node's identity, settings and counters.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Sluice's version.
    pub version: &'static str,
    /// Where the store is.
    pub store: String,
    /// Whether the store honours conditional writes (`None`: not checked).
    pub conditional_writes: Option<bool>,
    /// How often mutable documents are revalidated.
    pub poll_interval_ms: u64,
    /// The engine.
    pub engine: EngineStatus,
    /// Function templates loaded.
    pub functions_loaded: u64,
    /// HTTP requests being handled.
    pub in_flight: u64,
    /// Running and queued calls of every capped function version.
    pub concurrency: Vec<GateStats>,
    /// Resident memory, all pages.
    pub resident_bytes: Option<u64>,
    /// Resident memory, anonymous pages (what unloading can free).
    pub resident_anonymous_bytes: Option<u64>,
    /// Node counters.
    pub counters: StatsSnapshot,
    /// The document cache.
    pub cache: CacheStats,
    /// The template cache.
    pub templates: CacheStats,
    /// The model plan cache.
    pub models: CacheStats,
    /// Where model runs went.
    pub model_runs: RunStats,
    /// Dynamic batching.
    pub batching: BatchCounts,
    /// Requests sent to the store.
    pub store_requests: StoreRequests,
}

/// The engine's identity.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    /// The compiled-code fingerprint precompiled artifacts are keyed by.
    pub fingerprint: String,
    /// Whether the pooling allocator is in use.
    pub pooling: bool,
}

impl Node {
    /// The node's status; `conditional_writes` is what the start-up probe
    /// found.
    pub async fn status(&self, conditional_writes: Option<bool>) -> Status {
        // Reading /proc is a file read: not on an async worker.
        let resident = tokio::task::spawn_blocking(crate::observe::resident)
            .await
            .ok()
            .flatten();
        let documents = self.documents.stats();
        let mut concurrency: Vec<GateStats> = self.gates.iter().map(|g| g.stats()).collect();
        concurrency.sort_by(|a, b| a.function.cmp(&b.function));
        let templates = self.templates.stats();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            store: self.store().describe(),
            conditional_writes,
            poll_interval_ms: self.documents.config().poll_interval.as_millis() as u64,
            engine: EngineStatus {
                fingerprint: self.engine.fingerprint().to_string(),
                pooling: self.engine.pooling(),
            },
            functions_loaded: templates.entries,
            in_flight: self.stats.in_flight.load(Ordering::Relaxed),
            concurrency,
            resident_bytes: resident.map(|r: Resident| r.bytes),
            resident_anonymous_bytes: resident.map(|r| r.anonymous_bytes),
            counters: self.stats.snapshot(),
            cache: documents.cache,
            templates,
            models: self.models.stats(),
            model_runs: self.models.run_stats(),
            batching: self.models.batch_counts(),
            store_requests: documents.store_requests,
        }
    }
}
