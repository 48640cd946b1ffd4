//! A node: the engine, the registry over the store, and the functions
//! loaded so far. HTTP handlers and the local CLI both go through it.
//!
//! Loading a version is lazy and single-flight: the first request for it
//! fetches the precompiled artifact for this engine (compiling and storing
//! it only when absent or incompatible) and links it into a template;
//! concurrent first requests wait for that one load.

use crate::engine::{
    CallError, Engine, EngineError, StageIdentity, StageLimits, StagePre, World, WorldError, wit,
};
use crate::observe::Stats;
use crate::registry::{FunctionVersion, InvalidName, Name, NewVersion, Registry, RegistryError};
use crate::store::{ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::OnceCell;

/// A node's failures, one variant per thing a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A name failed validation.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// No function with that name.
    #[error("function `{0}` not found; deploy it with `sluice deploy FILE.wasm --name {0}`")]
    FunctionNotFound(String),
    /// The function exists but not that version.
    #[error("function `{name}` has no version {version}; see `sluice functions versions {name}`")]
    VersionNotFound {
        /// The function.
        name: String,
        /// The missing version.
        version: u64,
    },
    /// The upload is not a component this node accepts.
    #[error(transparent)]
    Refused(#[from] WorldError),
    /// A setting is out of range.
    #[error("{0}")]
    InvalidSetting(String),
    /// The stage call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The registry or store failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
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
    /// A description.
    pub description: Option<String>,
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
}

/// The runtime core of one node.
pub struct Node {
    engine: Engine,
    store: Arc<dyn ObjectStore>,
    registry: Registry,
    loaded: DashMap<(Name, u64), Arc<OnceCell<Arc<Loaded>>>>,
    stats: Arc<Stats>,
}

impl Node {
    /// A node over `store`.
    pub fn new(engine: Engine, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            registry: Registry::new(store.clone()),
            engine,
            store,
            loaded: DashMap::new(),
            stats: Arc::default(),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Function versions currently loaded on this node.
    pub fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    fn artifact_key(&self, record: &FunctionVersion) -> String {
        format!(
            "compiled/{}/{}.cwasm",
            self.engine.fingerprint(),
            record.digest.hex()
        )
    }

    /// Validate, compile and register a component as a new version.
    pub async fn deploy(
        &self,
        name: &str,
        bytes: Bytes,
        request: Deploy,
    ) -> Result<Deployed, NodeError> {
        let name = Name::parse(name)?;
        let limits = self.limits(&request)?;
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

        // Blob and artifact first, record last: a reader never finds a
        // version whose bytes are missing.
        let size = bytes.len() as u64;
        let digest = self.store.put_blob(bytes).await?;
        let artifact = format!(
            "compiled/{}/{}.cwasm",
            self.engine.fingerprint(),
            digest.hex()
        );
        self.store
            .put(&artifact, Bytes::from(cwasm), PutMode::Overwrite)
            .await?;
        let (version, created) = self
            .registry
            .record(
                &name,
                NewVersion {
                    digest,
                    world,
                    size,
                    created_by: request.created_by,
                    description: request.description,
                    config: request.config,
                    limits,
                },
            )
            .await?;
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

    /// Resolve `version` (or the newest) of `name`.
    pub async fn resolve(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<FunctionVersion, NodeError> {
        let name = Name::parse(name)?;
        let found = match version {
            Some(v) => self.registry.get(&name, v).await?,
            None => self.registry.latest(&name).await?,
        };
        match (found, version) {
            (Some(record), _) => Ok(record),
            (None, Some(version)) if !self.registry.version_numbers(&name).await?.is_empty() => {
                Err(NodeError::VersionNotFound {
                    name: name.to_string(),
                    version,
                })
            }
            (None, _) => Err(NodeError::FunctionNotFound(name.to_string())),
        }
    }

    /// Run `version` (or the newest) of `name` on `input`.
    pub async fn invoke(
        &self,
        name: &str,
        version: Option<u64>,
        input: wit::Message,
        request_id: Arc<str>,
    ) -> Result<(FunctionVersion, wit::Message), NodeError> {
        let loaded = match self.loaded_version(name, version) {
            Some(loaded) => loaded,
            None => self.load(self.resolve(name, version).await?).await?,
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
                input,
            )
            .await?;
        Ok((loaded.record.clone(), output))
    }

    /// Delete a version and forget it on this node.
    pub async fn delete_version(&self, name: &str, version: u64) -> Result<(), NodeError> {
        let parsed = Name::parse(name)?;
        if !self.registry.delete(&parsed, version).await? {
            self.resolve(name, Some(version)).await?;
            return Err(NodeError::VersionNotFound {
                name: name.to_string(),
                version,
            });
        }
        self.loaded.remove(&(parsed, version));
        tracing::info!(function = %name, version, "version deleted");
        Ok(())
    }

    /// A pinned version already loaded here: version records are immutable,
    /// so `name@version` needs no store round trip once loaded.
    fn loaded_version(&self, name: &str, version: Option<u64>) -> Option<Arc<Loaded>> {
        let key = (Name::parse(name).ok()?, version?);
        self.loaded.get(&key)?.get().cloned()
    }

    async fn load(&self, record: FunctionVersion) -> Result<Arc<Loaded>, NodeError> {
        let key = (Name::parse(&record.name)?, record.version);
        let cell = self.loaded.entry(key).or_default().clone();
        let loaded = cell
            .get_or_try_init(|| async {
                let pre = self.template(&record).await?;
                Ok::<_, NodeError>(Arc::new(Loaded {
                    config: Arc::new(record.config.clone()),
                    record,
                    pre,
                }))
            })
            .await?;
        Ok(loaded.clone())
    }

    /// The linked template of a version: from the precompiled artifact when
    /// this engine can load it, otherwise compiled (and the artifact stored).
    async fn template(&self, record: &FunctionVersion) -> Result<StagePre, NodeError> {
        let key = self.artifact_key(record);
        if let Some(artifact) = self.store.get(&key).await? {
            let engine = self.engine.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                // SAFETY: artifacts are written only by `deploy` and `template`
                // of a node into the operator's store; clients cannot write them.
                let component = unsafe { engine.deserialize(&artifact.bytes) }?;
                engine.prepare(&component)
            })
            .await
            .map_err(|e| NodeError::Engine(e.to_string()))?;
            match loaded {
                Ok(pre) => {
                    self.stats.artifacts_loaded.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(function = %record.name, version = record.version, "loaded precompiled artifact");
                    return Ok(pre);
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "precompiled artifact unusable; recompiling")
                }
            }
        }
        let bytes =
            self.store
                .get_blob(&record.digest)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    key: record.digest.blob_key(),
                    reason: format!(
                        "the blob of {} version {} is missing",
                        record.name, record.version
                    ),
                })?;
        let engine = self.engine.clone();
        let (pre, cwasm) = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            let (component, _) = engine.compile(&bytes)?;
            Ok((engine.prepare(&component)?, engine.serialize(&component)?))
        })
        .await
        .map_err(|e| NodeError::Engine(e.to_string()))??;
        self.stats
            .components_compiled
            .fetch_add(1, Ordering::Relaxed);
        self.store
            .put(&key, Bytes::from(cwasm), PutMode::Overwrite)
            .await?;
        tracing::info!(function = %record.name, version = record.version, "compiled and stored artifact");
        Ok(pre)
    }
}
