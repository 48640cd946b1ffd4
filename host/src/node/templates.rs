//! Function templates: a version's compiled code linked into a factory of
//! fresh instances. Loaded lazily and single-flight, from the precompiled
//! artifact for this engine when the store has a usable one, otherwise
//! compiled from the component (and the artifact stored for the next node).

use super::artifact::{self, SigningKey};
use super::{Node, NodeError};
use crate::cache::{DocumentCache, Weigh};
use crate::engine::{Engine, EngineError, Outbound, StageIdentity, StagePre, Template};
use crate::observe::Stats;
use crate::observe::metrics::{StageMetrics, metrics};
use crate::registry::Name;
use crate::store::{Digest, PutMode, StoreError};
use futures::FutureExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::FunctionVersion;

/// A function version ready to run.
pub(super) struct Loaded {
    pub(super) record: FunctionVersion,
    pub(super) template: Template,
    pub(super) config: Arc<BTreeMap<String, String>>,
    /// Where its outgoing HTTP requests may go.
    pub(super) outbound: Outbound,
    /// The artifact's size: roughly the code this template keeps mapped.
    size: u64,
    /// Where its calls are counted.
    metrics: StageMetrics,
    function: Arc<str>,
}

impl Loaded {
    /// Who a call of this version for `request_id` is.
    pub(super) fn identity(&self, request_id: Arc<str>) -> StageIdentity {
        StageIdentity {
            function: self.function.clone(),
            version: self.record.version,
            request_id,
            metrics: self.metrics.clone(),
        }
    }
}

impl Loaded {
    /// The stage template, or why this version cannot run as a stage.
    pub(super) fn stage(&self) -> Result<&StagePre, NodeError> {
        match &self.template {
            Template::Stage(pre) => Ok(pre),
            Template::Http(_) => Err(NodeError::InvalidSetting(format!(
                "function `{}` version {} is an HTTP function: call it with any method at /fn/{}/..., not as a stage",
                self.record.name, self.record.version, self.record.name
            ))),
        }
    }
}

impl Weigh for Loaded {
    fn weight(&self) -> u64 {
        self.size
    }
}

impl Node {
    /// The template of `name` version `version`, loading it on first use.
    pub(super) async fn load(&self, name: Name, version: u64) -> Result<Arc<Loaded>, NodeError> {
        let key = (name, version);
        self.templates
            .get_or_load(
                &key,
                |_, _| true,
                // Called only on a miss: the hit path clones nothing.
                |_| {
                    let (functions, documents, engine, stats, signing) = (
                        self.functions.clone(),
                        self.documents.clone(),
                        self.engine.clone(),
                        self.stats.clone(),
                        self.signing.clone(),
                    );
                    let load_key = key.clone();
                    async move {
                        let (name, version) = load_key;
                        let started = std::time::Instant::now();
                        let record = functions.record_of(&name, version).await?;
                        let (template, size) =
                            template(&engine, &documents, &stats, &signing, &record).await?;
                        stats.cold_starts.fetch_add(1, Ordering::Relaxed);
                        let metrics = metrics().function(name.as_str(), version);
                        metrics.cold_start(started.elapsed());
                        tracing::info!(function = %name, version, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "cold start: function loaded");
                        Ok(Loaded {
                            config: Arc::new(record.config.clone()),
                            outbound: Outbound {
                                allowed: record.allow_outbound.iter().cloned().collect(),
                                caller: format!("{name}@{version}").into(),
                            },
                            function: name.as_str().into(),
                            record,
                            template,
                            size,
                            metrics,
                        })
                    }
                    .boxed()
                },
            )
            .await
    }

    /// Compile `bytes` as a component for this engine: the world it fits
    /// and its precompiled artifact (refused when it fits no world).
    pub(super) async fn compile(
        &self,
        bytes: bytes::Bytes,
    ) -> Result<(crate::engine::World, Vec<u8>), NodeError> {
        let engine = self.engine.clone();
        let compiled = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            let (component, world) = engine.compile(&bytes)?;
            engine.prepare(&component, world)?;
            Ok((world, engine.serialize(&component)?))
        })
        .await
        .map_err(|e| NodeError::Engine(e.to_string()))??;
        self.stats
            .components_compiled
            .fetch_add(1, Ordering::Relaxed);
        Ok(compiled)
    }

    /// Store the precompiled artifact of the component `digest`.
    pub(super) async fn store_artifact(
        &self,
        digest: &Digest,
        cwasm: &[u8],
    ) -> Result<(), NodeError> {
        self.documents
            .put(
                &artifact_key(&self.engine, digest),
                artifact::encode(cwasm, &self.signing, &artifact_key(&self.engine, digest)),
                PutMode::Overwrite,
            )
            .await?;
        Ok(())
    }
}

/// Where this engine's precompiled form of a component is stored.
fn artifact_key(engine: &Engine, digest: &Digest) -> String {
    format!("compiled/{}/{}.cwasm", engine.fingerprint(), digest.hex())
}

/// The linked template of a version and its artifact's size: from the
/// precompiled artifact when this engine can load it, otherwise compiled
/// (and the artifact stored for the next node).
async fn template(
    engine: &Engine,
    documents: &DocumentCache,
    stats: &Stats,
    signing: &SigningKey,
    record: &FunctionVersion,
) -> Result<(Template, u64), NodeError> {
    let key = artifact_key(engine, &record.digest);
    match documents.fetch(&key).await? {
        Some(object) => match artifact::decode(&object.bytes, signing, &key) {
            Ok(cwasm) => {
                let size = cwasm.len() as u64;
                let (engine, world) = (engine.clone(), record.world);
                let loaded = tokio::task::spawn_blocking(move || {
                    // SAFETY: the artifact's signature was just verified: a
                    // node holding this node's signing key compiled it from
                    // this very component for this engine.
                    let component = unsafe { engine.deserialize(&cwasm) }?;
                    engine.prepare(&component, world)
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
                tracing::warn!(%key, %reason, "precompiled artifact not trusted; recompiling")
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
        let (component, world) = engine_clone.compile(&component)?;
        Ok((
            engine_clone.prepare(&component, world)?,
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
        .put(
            &key,
            artifact::encode(&cwasm, signing, &key),
            PutMode::Overwrite,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(function = %record.name, version = record.version, "compiled and stored artifact")
        }
        Err(e) => tracing::warn!(%key, error = %e, "compiled, but could not store the artifact"),
    }
    Ok((pre, size))
}
