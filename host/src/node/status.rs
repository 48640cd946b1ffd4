//! What a node is and what it has done, for `GET /v1/status`.

use super::{GateStats, Node};
use crate::cache::{CacheStats, StoreRequests};
use crate::inference::{BatchCounts, RunStats};
use crate::observe::metrics::{Sampled, Samples};
use crate::observe::{Resident, StatsSnapshot};
use prometheus_client::encoding::EncodeLabelSet;
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
    /// Answers kept by pipelines that cache them.
    pub results: CacheStats,
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
            results: self.results.stats(),
            model_runs: self.models.run_stats(),
            batching: self.models.batch_counts(),
            store_requests: documents.store_requests,
        }
    }
}

/// A sample without labels.
const NO_LABELS: [(&str, &str); 0] = [];

/// A cache, as a metrics label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    cache: &'static str,
}

/// Why a cache dropped entries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvictionLabels {
    cache: &'static str,
    /// `budget` (to stay within its bytes) or `idle` (unused too long).
    reason: &'static str,
}

/// A capped function version's gate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabel {
    /// `name@version`.
    function: String,
}

/// What the node keeps count of itself, read at each scrape: what it
/// holds and is doing right now, and its caches' counters.
impl Sampled for Node {
    fn sample(&self, samples: &mut Samples<'_>) -> Result<(), std::fmt::Error> {
        let one = |value| [(NO_LABELS, value)];
        samples.gauges(
            "http_requests_in_flight",
            "HTTP requests being handled",
            one(self.stats.in_flight.load(Ordering::Relaxed)),
        )?;
        samples.counters(
            "components_compiled",
            "Components compiled by this process (deploys, and artifacts missing or unusable)",
            one(self.stats.components_compiled.load(Ordering::Relaxed)),
        )?;
        samples.counters(
            "artifacts_loaded",
            "Precompiled artifacts loaded from the store instead of compiling",
            one(self.stats.artifacts_loaded.load(Ordering::Relaxed)),
        )?;
        let gates: Vec<GateStats> = self.gates.iter().map(|g| g.stats()).collect();
        let per_gate = |f: fn(&GateStats) -> u32| {
            gates.iter().map(move |g| {
                let function = g.function.clone();
                (GateLabel { function }, u64::from(f(g)))
            })
        };
        samples.gauges(
            "function_calls_running",
            "Calls running of each function version with a concurrency cap",
            per_gate(|g| g.running),
        )?;
        samples.gauges(
            "function_queue_depth",
            "Calls waiting for a slot of each function version with a concurrency cap",
            per_gate(|g| g.queued),
        )?;
        let runs = self.models.run_stats();
        samples.gauges(
            "model_runs_in_flight",
            "Model runs in the engine right now (at most one per core)",
            one(runs.in_flight),
        )?;
        let caches = [
            ("documents", self.documents.stats().cache),
            ("templates", self.templates.stats()),
            ("models", self.models.stats()),
            ("features", self.features.cache_stats()),
            ("results", self.results.stats()),
        ];
        let each = |f: fn(&CacheStats) -> u64| {
            caches
                .iter()
                .map(move |(cache, s)| (CacheLabel { cache }, f(s)))
        };
        samples.counters(
            "cache_hits",
            "Cache lookups answered from memory",
            each(|s| s.hits),
        )?;
        samples.counters(
            "cache_misses",
            "Cache lookups that had to load or wait for a load",
            each(|s| s.misses),
        )?;
        samples.counters(
            "cache_loads",
            "Cache loads run (one per single-flight group)",
            each(|s| s.loads),
        )?;
        samples.counters(
            "cache_load_failures",
            "Cache loads that failed",
            each(|s| s.load_failures),
        )?;
        samples.counters(
            "cache_evictions",
            "Entries a cache dropped, to stay within its budget or after going unused",
            caches.iter().flat_map(|(cache, s)| {
                [
                    (
                        EvictionLabels {
                            cache,
                            reason: "budget",
                        },
                        s.evictions,
                    ),
                    (
                        EvictionLabels {
                            cache,
                            reason: "idle",
                        },
                        s.idle_evictions,
                    ),
                ]
            }),
        )?;
        samples.gauges(
            "cache_entries",
            "Entries a cache holds",
            each(|s| s.entries),
        )?;
        samples.gauges("cache_bytes", "Bytes a cache holds", each(|s| s.bytes))?;
        samples.gauges("cache_budget_bytes", "A cache's budget", each(|s| s.budget))?;
        let resident = crate::observe::resident();
        samples.gauges(
            "resident_memory_bytes",
            "Resident memory of the process, all pages",
            resident.map(|r| (NO_LABELS, r.bytes)),
        )?;
        samples.gauges(
            "resident_anonymous_memory_bytes",
            "Resident anonymous memory (heap, stacks): what unloading can free",
            resident.map(|r| (NO_LABELS, r.anonymous_bytes)),
        )
    }
}
