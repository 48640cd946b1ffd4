//! A node: the engine, the function registry over the cached store, and
//! the function templates loaded so far. HTTP handlers and the local CLI
//! both go through it.
//!
//! A call resolves `NAME[@VERSION|@ALIAS]` against the function's head
//! (in memory, revalidated every poll interval), then takes the version's
//! template from the template cache. Loading a template is lazy and
//! single-flight: the first request fetches the precompiled artifact for
//! this engine (compiling and storing it only when absent or unusable);
//! concurrent first requests wait for that one load. At steady state a call
//! costs the store nothing; when another node moves an alias, this node
//! follows within one poll interval and drops templates of deleted versions.

use crate::cache::{Cache, CacheConfig, DocumentCache, DocumentStats, Weigh};
use crate::engine::{
    CallError, Engine, EngineError, StageIdentity, StageLimits, StagePre, World, WorldError, wit,
};
use crate::inference::{InferenceError, Models};
use crate::observe::Stats;
use crate::registry::{
    Concurrency, FunctionSummary, FunctionVersion, Head, InvalidName, LATEST, Name, Record,
    Registry, RegistryError, STABLE, Selector, now_rfc3339,
};
use crate::store::{ETag, ObjectStore, Progress, PutMode, StoreError};
use bytes::Bytes;
use dashmap::DashMap;
use futures::FutureExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod artifact;
mod gate;

pub use gate::GateStats;

/// A node's failures, one variant per thing a caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// A name failed validation.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The upload is not a component this node accepts.
    #[error(transparent)]
    Refused(#[from] WorldError),
    /// A setting is out of range.
    #[error("{0}")]
    InvalidSetting(String),
    /// The stage call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The registry or store failed, or refused the request.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A model could not be stored, found or run.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The function is at its concurrency cap and its queue is full.
    #[error(
        "function {function} is busy: {max} calls running and {queue} waiting, its limits (max_concurrency, max_queue); retry shortly"
    )]
    Busy {
        /// `name@version`.
        function: String,
        /// Its cap.
        max: u32,
        /// Its queue length.
        queue: u32,
    },
    /// The engine failed for a reason that is not the component's fault.
    #[error("engine failure: {0}")]
    Engine(String),
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        Self::Registry(e.into())
    }
}

impl From<EngineError> for NodeError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Refused(w) => Self::Refused(w),
            EngineError::Config(m) => Self::Engine(m),
        }
    }
}

/// A deploy request.
#[derive(Debug, Clone, Default)]
pub struct Deploy {
    /// Configuration the stage reads through `config`.
    pub config: BTreeMap<String, String>,
    /// Overrides of the default limits.
    pub timeout_ms: Option<u64>,
    /// Memory cap in bytes.
    pub memory_bytes: Option<u64>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Most calls of this version running at once.
    pub max_concurrency: Option<u32>,
    /// Calls waiting for a slot when `max_concurrency` are running
    /// (default 0 with a cap set: turn away at once).
    pub max_queue: Option<u32>,
    /// Idle seconds before a node unloads this version (0: never; unset:
    /// the node's `--function-idle-secs`).
    pub idle_secs: Option<u64>,
    /// A description.
    pub description: Option<String>,
    /// Labels recorded with the version.
    pub labels: BTreeMap<String, String>,
    /// Who deploys.
    pub created_by: String,
}

/// What a deploy produced.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The version record.
    pub version: FunctionVersion,
    /// False when identical to the newest version, which was returned.
    pub created: bool,
}

/// A function version ready to run.
struct Loaded {
    record: FunctionVersion,
    pre: StagePre,
    config: Arc<BTreeMap<String, String>>,
    /// The artifact's size: roughly the code this template keeps mapped.
    size: u64,
}

impl Weigh for Loaded {
    fn weight(&self) -> u64 {
        self.size
    }
}

/// The runtime core of one node.
pub struct Node {
    engine: Engine,
    documents: Arc<DocumentCache>,
    functions: Registry<FunctionVersion>,
    templates: Cache<(Name, u64), Loaded, NodeError>,
    /// The head tag each function's templates were last checked against.
    heads_seen: DashMap<Name, ETag>,
    /// Concurrency caps of the versions that have one.
    gates: DashMap<(Name, u64), Arc<gate::Gate>>,
    models: Arc<Models>,
    stats: Arc<Stats>,
}

impl Node {
    /// A node over `store`, with a document cache configured by `cache`.
    pub fn new(engine: Engine, store: Arc<dyn ObjectStore>, cache: CacheConfig) -> Self {
        let model_bytes = cache.model_bytes;
        let documents = Arc::new(DocumentCache::new(store, cache));
        Self {
            functions: Registry::new(documents.clone()),
            models: Arc::new(Models::new(documents.clone(), model_bytes)),
            documents,
            engine,
            // Templates are bounded by the engine's instance pool, not by
            // bytes; idle release comes with scale-to-zero.
            templates: Cache::new(u64::MAX),
            heads_seen: DashMap::new(),
            gates: DashMap::new(),
            stats: Arc::default(),
        }
    }

    /// The function registry.
    pub fn functions(&self) -> &Registry<FunctionVersion> {
        &self.functions
    }

    /// The cached gateway to the store.
    pub fn documents(&self) -> &Arc<DocumentCache> {
        &self.documents
    }

    /// The node's models.
    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        self.documents.store()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The document cache's counters and the store requests made.
    pub fn document_stats(&self) -> DocumentStats {
        self.documents.stats()
    }

    /// The template cache's counters.
    pub fn template_stats(&self) -> crate::cache::CacheStats {
        self.templates.stats()
    }

    /// How often mutable documents are revalidated.
    pub fn poll_interval(&self) -> std::time::Duration {
        self.documents.config().poll_interval
    }

    /// Validate, compile and register a component as a new version.
    pub async fn deploy(
        &self,
        name: &str,
        bytes: Bytes,
        request: Deploy,
        progress: Progress<'_>,
    ) -> Result<Deployed, NodeError> {
        let name = Name::parse(name)?;
        let limits = self.limits(&request)?;
        let concurrency = self.concurrency(&request)?;
        let engine = self.engine.clone();
        let compile_input = bytes.clone();
        let (world, cwasm) =
            tokio::task::spawn_blocking(move || -> Result<(World, Vec<u8>), EngineError> {
                let (component, world) = engine.compile(&compile_input)?;
                engine.prepare(&component)?;
                Ok((world, engine.serialize(&component)?))
            })
            .await
            .map_err(|e| NodeError::Engine(e.to_string()))??;
        self.stats
            .components_compiled
            .fetch_add(1, Ordering::Relaxed);

        // Blob and artifact first, record and head last: a reader never
        // finds a version whose bytes are missing.
        let size = bytes.len() as u64;
        let digest = self.documents.put_blob(bytes, progress).await?;
        self.documents
            .put(
                &artifact_key(&self.engine, &digest),
                artifact::encode(&cwasm),
                PutMode::Overwrite,
            )
            .await?;
        let record = FunctionVersion {
            name: name.to_string(),
            version: 0,
            digest,
            world,
            size,
            created_at: now_rfc3339(),
            created_by: request.created_by,
            description: request.description,
            labels: request.labels,
            config: request.config,
            limits,
            concurrency,
            idle_secs: request.idle_secs,
        };
        let (version, created) = self.functions.record(&name, record).await?;
        tracing::info!(function = %name, version = version.version, world = %version.world, created, "deployed");
        Ok(Deployed { version, created })
    }

    fn limits(&self, request: &Deploy) -> Result<StageLimits, NodeError> {
        let defaults = StageLimits::default();
        let ceiling = self.engine.config().max_memory_bytes;
        let limits = StageLimits {
            timeout_ms: request.timeout_ms.unwrap_or(defaults.timeout_ms),
            memory_bytes: request
                .memory_bytes
                .unwrap_or(defaults.memory_bytes.min(ceiling)),
            fuel: request.fuel.unwrap_or(defaults.fuel),
        };
        if limits.timeout_ms == 0 || limits.timeout_ms > 15 * 60 * 1000 {
            return Err(NodeError::InvalidSetting(format!(
                "timeout_ms must be between 1 and 900000 (15 minutes), got {}",
                limits.timeout_ms
            )));
        }
        if limits.memory_bytes < (1 << 20) || limits.memory_bytes > ceiling {
            return Err(NodeError::InvalidSetting(format!(
                "memory must be between 1 MiB and this node's ceiling of {} MiB (--max-memory-mb), got {} bytes",
                ceiling >> 20,
                limits.memory_bytes
            )));
        }
        Ok(limits)
    }

    /// The gate of a capped version (only capped calls pay for the key).
    fn gate(
        &self,
        record: &FunctionVersion,
        cap: Concurrency,
    ) -> Result<Arc<gate::Gate>, NodeError> {
        let key = (Name::parse(&record.name)?, record.version);
        Ok(self
            .gates
            .entry(key)
            .or_insert_with(|| {
                let function = format!("{}@{}", record.name, record.version);
                Arc::new(gate::Gate::new(function, cap))
            })
            .clone())
    }

    /// Running and queued calls of every capped function version.
    pub fn concurrency_stats(&self) -> Vec<GateStats> {
        let mut stats: Vec<GateStats> = self.gates.iter().map(|g| g.stats()).collect();
        stats.sort_by(|a, b| a.function.cmp(&b.function));
        stats
    }

    fn concurrency(&self, request: &Deploy) -> Result<Option<Concurrency>, NodeError> {
        let pool = self.engine.config().max_instances;
        match (request.max_concurrency, request.max_queue) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(NodeError::InvalidSetting(
                "max_queue needs max_concurrency: the queue is in front of a concurrency cap"
                    .into(),
            )),
            (Some(max), _) if max == 0 || max > pool => Err(NodeError::InvalidSetting(format!(
                "max_concurrency must be between 1 and this node's instance pool of {pool} (--max-instances), got {max}"
            ))),
            (Some(_), Some(queue)) if queue > 100_000 => Err(NodeError::InvalidSetting(format!(
                "max_queue must be at most 100000, got {queue}"
            ))),
            (Some(max), queue) => Ok(Some(Concurrency {
                max,
                queue: queue.unwrap_or(0),
            })),
        }
    }

    /// The version of `name` that `selector` picks, checking this node's
    /// templates against the head it was read from.
    async fn pick(&self, name: &Name, selector: &Selector) -> Result<u64, NodeError> {
        let (head, etag) =
            self.functions
                .head(name)
                .await?
                .ok_or_else(|| RegistryError::NotFound {
                    noun: FunctionVersion::NOUN,
                    name: name.to_string(),
                })?;
        if self.heads_seen.get(name).is_none_or(|seen| *seen != etag) {
            // The head changed (here or on another node): drop templates of
            // versions that are no longer live.
            self.templates
                .retain(|(n, v)| n != name || head.versions.contains(v));
            self.heads_seen.insert(name.clone(), etag);
        }
        Ok(crate::registry::select(
            FunctionVersion::NOUN,
            name,
            &head,
            selector,
        )?)
    }

    /// The record `selector` picks for `name`.
    pub async fn resolve(
        &self,
        name: &str,
        selector: &Selector,
    ) -> Result<FunctionVersion, NodeError> {
        let name = Name::parse(name)?;
        Ok(self.functions.resolve(&name, selector).await?)
    }

    /// Run the version of `name` that `selector` picks on `input`.
    pub async fn invoke(
        &self,
        name: &str,
        selector: &Selector,
        input: wit::Message,
        request_id: Arc<str>,
    ) -> Result<(FunctionVersion, wit::Message), NodeError> {
        let name = Name::parse(name)?;
        let version = self.pick(&name, selector).await?;
        let loaded = self.load(name, version).await?;
        // Held for the call: a slot under the function's concurrency cap.
        let _slot = match loaded.record.concurrency {
            Some(cap) => Some(self.gate(&loaded.record, cap)?.enter().await?),
            None => None,
        };
        let identity = StageIdentity {
            function: loaded.record.name.as_str().into(),
            version: loaded.record.version,
            request_id,
        };
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let output = self
            .engine
            .call(
                &loaded.pre,
                identity,
                loaded.config.clone(),
                loaded.record.limits,
                // Only predictor stages can reach models.
                (loaded.record.world == World::Predictor).then(|| self.models.clone()),
                input,
            )
            .await?;
        Ok((loaded.record.clone(), output))
    }

    /// Every function with its aliases and newest version.
    pub async fn list(&self) -> Result<Vec<FunctionSummary>, NodeError> {
        let mut out = Vec::new();
        for (name, head) in self.functions.names().await? {
            let Some(latest) = head.aliases.get(LATEST) else {
                continue;
            };
            if let Some(record) = self.functions.get(&name, *latest).await? {
                out.push(FunctionSummary::new(&head, &record));
            }
        }
        Ok(out)
    }

    /// Every live version of `name` and its aliases.
    pub async fn versions(&self, name: &str) -> Result<(Head, Vec<FunctionVersion>), NodeError> {
        Ok(self.functions.versions(&Name::parse(name)?).await?)
    }

    /// Point `alias` of `name` at `version` (see [`Registry::set_alias`]).
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
        expect: Option<Option<u64>>,
    ) -> Result<Head, NodeError> {
        let (name, alias) = (Name::parse(name)?, Name::parse(alias)?);
        let head = self
            .functions
            .set_alias(&name, &alias, version, expect)
            .await?;
        tracing::info!(function = %name, %alias, version, "alias moved");
        Ok(head)
    }

    /// Move `alias` (default `stable`) back to its previous version.
    pub async fn rollback(&self, name: &str, alias: Option<&str>) -> Result<Head, NodeError> {
        let name = Name::parse(name)?;
        let alias = Name::parse(alias.unwrap_or(STABLE))?;
        let head = self.functions.rollback(&name, &alias).await?;
        tracing::info!(function = %name, %alias, version = head.aliases.get(alias.as_str()), "rolled back");
        Ok(head)
    }

    /// Remove `alias` of `name`.
    pub async fn remove_alias(&self, name: &str, alias: &str) -> Result<Head, NodeError> {
        let (name, alias) = (Name::parse(name)?, Name::parse(alias)?);
        Ok(self.functions.remove_alias(&name, &alias).await?)
    }

    /// Delete a version (refused while an alias points at it) and forget
    /// it on this node.
    pub async fn delete_version(&self, name: &str, version: u64) -> Result<Head, NodeError> {
        let parsed = Name::parse(name)?;
        let head = self.functions.delete(&parsed, version).await?;
        self.templates.remove(&(parsed, version));
        tracing::info!(function = %name, version, "version deleted");
        Ok(head)
    }
}

/// How long a version may stay idle: its own `idle_secs` (0: forever),
/// else the node's default.
pub(crate) fn idle_time(own: Option<u64>, default: Option<Duration>) -> Option<Duration> {
    match own {
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(secs)),
        None => default,
    }
}

/// When a node lets go of what it loaded: after a function has gone
/// `functions` without a call (its template: compiled code and linked
/// instance factory), and a model `models` without a run (its plan). The
/// next call pays a cold start.
#[derive(Debug, Clone, Copy)]
pub struct IdlePolicy {
    /// Idle time before a function is unloaded (`None`: never).
    pub functions: Option<Duration>,
    /// Idle time before a model is unloaded (`None`: never).
    pub models: Option<Duration>,
}

impl Node {
    /// Unload what has been idle past `policy` and give the freed memory
    /// back to the operating system. Returns (functions, models) unloaded.
    pub fn evict_idle(&self, policy: IdlePolicy) -> (usize, usize) {
        let functions = self
            .templates
            .evict_idle(|loaded| idle_time(loaded.record.idle_secs, policy.functions));
        let models = self.models.evict_idle(policy.models);
        if functions + models > 0 {
            // Their artifacts and model files were read through the
            // document cache: drop those copies too.
            let shortest = [policy.functions, policy.models]
                .into_iter()
                .flatten()
                .min();
            if let Some(idle) = shortest {
                self.documents.evict_idle(idle);
            }
            crate::observe::release_free_memory();
            tracing::info!(functions, models, "unloaded idle functions and models");
        }
        (functions, models)
    }

    /// Run [`Self::evict_idle`] in the background for as long as the node
    /// lives, checking a few times per idle period (and every second at
    /// most, for versions with idle times of their own).
    pub fn spawn_idle_reaper(self: &Arc<Self>, policy: IdlePolicy) {
        let shortest = [policy.functions, policy.models]
            .into_iter()
            .flatten()
            .min();
        let tick = shortest.map_or(Duration::from_secs(1), |s| {
            (s / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
        });
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(node) = node.upgrade() else { return };
                node.evict_idle(policy);
            }
        });
    }
}

impl Node {
    async fn load(&self, name: Name, version: u64) -> Result<Arc<Loaded>, NodeError> {
        let key = (name, version);
        self.templates
            .get_or_load(
                &key,
                |_, _| true,
                // Called only on a miss: the hit path clones nothing.
                |_| {
                    let (functions, documents, engine, stats) = (
                        self.functions.clone(),
                        self.documents.clone(),
                        self.engine.clone(),
                        self.stats.clone(),
                    );
                    let load_key = key.clone();
                    async move {
                        let (name, version) = load_key;
                        let started = std::time::Instant::now();
                        let record = functions.record_of(&name, version).await?;
                        let (pre, size) = template(&engine, &documents, &stats, &record).await?;
                        stats.cold_starts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(function = %name, version, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "cold start: function loaded");
                        Ok(Loaded {
                            config: Arc::new(record.config.clone()),
                            record,
                            pre,
                            size,
                        })
                    }
                    .boxed()
                },
            )
            .await
    }
}

/// Where this engine's precompiled form of a component is stored.
fn artifact_key(engine: &Engine, digest: &crate::store::Digest) -> String {
    format!("compiled/{}/{}.cwasm", engine.fingerprint(), digest.hex())
}

/// The linked template of a version and its artifact's size: from the
/// precompiled artifact when this engine can load it, otherwise compiled
/// (and the artifact stored for the next node).
async fn template(
    engine: &Engine,
    documents: &DocumentCache,
    stats: &Stats,
    record: &FunctionVersion,
) -> Result<(StagePre, u64), NodeError> {
    let key = artifact_key(engine, &record.digest);
    match documents.fetch(&key).await? {
        Some(object) => match artifact::decode(&object.bytes) {
            Ok(cwasm) => {
                let size = cwasm.len() as u64;
                let engine = engine.clone();
                let loaded = tokio::task::spawn_blocking(move || {
                    // SAFETY: artifacts are written only by nodes (`deploy` and
                    // this function) into the operator's store, never by
                    // clients, and their digest was just verified.
                    let component = unsafe { engine.deserialize(&cwasm) }?;
                    engine.prepare(&component)
                })
                .await
                .map_err(|e| NodeError::Engine(e.to_string()))?;
                match loaded {
                    Ok(pre) => {
                        stats.artifacts_loaded.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(function = %record.name, version = record.version, "loaded precompiled artifact");
                        return Ok((pre, size));
                    }
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "precompiled artifact unusable; recompiling")
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(%key, %reason, "precompiled artifact corrupt; recompiling")
            }
        },
        None => {
            tracing::info!(function = %record.name, version = record.version, "no precompiled artifact for this engine; compiling")
        }
    }
    let component =
        documents
            .fetch_blob(&record.digest)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                key: record.digest.blob_key(),
                reason: format!(
                    "the component of {} version {} is missing",
                    record.name, record.version
                ),
            })?;
    let engine_clone = engine.clone();
    let (pre, cwasm) = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
        let (component, _) = engine_clone.compile(&component)?;
        Ok((
            engine_clone.prepare(&component)?,
            engine_clone.serialize(&component)?,
        ))
    })
    .await
    .map_err(|e| NodeError::Engine(e.to_string()))??;
    stats.components_compiled.fetch_add(1, Ordering::Relaxed);
    let size = cwasm.len() as u64;
    // A read-only node (e.g. a serving Lambda role) cannot store the
    // artifact; it still serves from what it compiled.
    match documents
        .put(&key, artifact::encode(&cwasm), PutMode::Overwrite)
        .await
    {
        Ok(_) => {
            tracing::info!(function = %record.name, version = record.version, "compiled and stored artifact")
        }
        Err(e) => tracing::warn!(%key, error = %e, "compiled, but could not store the artifact"),
    }
    Ok((pre, size))
}
