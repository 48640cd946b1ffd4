//! Models: ONNX files run natively by tract, outside the sandbox, shared by
//! every stage instance and request on the node.
//!
//! 1. `push` checks that tract can load and optimise the model (an
//!    unsupported operator is named in the refusal), records its signature
//!    and stores it as a registry version.
//! 2. `get` resolves a name (version or alias) and returns the optimised
//!    plan, loaded lazily and single-flight through the node's cache, so
//!    optimising (up to seconds for a CNN) happens once per version.
//! 3. `run` checks named inputs against the signature and runs the plan,
//!    at most one run per core at a time (a run holds its slot until tract
//!    is done, even when its request is dropped): on the blocking pool
//!    unless an input at least this large has already finished in under
//!    100 µs (then the thread hop would cost more than the run), so one
//!    large batch never stalls the async reactor. With batching on,
//!    concurrent requests go through the model's batch queue instead
//!    (`batch.rs`).
//!
//! Tensors cross into tract and back in `tract_tensor.rs`; the ONNX-ML
//! operators tract lacks are Sluice's own (`onnx_ml/`).

mod batch;
pub mod drift;
pub mod explain;
mod heads;
mod onnx_ml;
pub mod onnxruntime;
mod record;
mod tract_tensor;

pub use batch::{BatchStats, Batching};
use onnx_ml::TreeModel;
pub use record::{Engine, ModelVersion};

use crate::cache::{Cache, DocumentCache, Weigh, idle_time};
use crate::observe::metrics::{ModelMetrics, metrics};
use crate::registry::{Name, Registry, RegistryError, Selector, now_rfc3339};
use crate::store::{Digest, StoreError};
use crate::tensor::{NamedTensor, Signature, Tensor, shape_text};
use bytes::Bytes;
use futures::FutureExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::Instrument;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, ShapeFactoid};

/// Why a model could not be stored, found or run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    /// The inputs do not fit the model (HTTP 400).
    #[error("{0}")]
    InvalidInput(String),
    /// The model file is not one this node can run (HTTP 400 at upload).
    #[error("the model cannot be served: {0}")]
    Unsupported(String),
    /// The registry or store failed, or the model does not exist.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The engine failed running a valid model on valid inputs (HTTP 500).
    #[error("inference failed: {0}")]
    Internal(String),
    /// The model version's batching queue is full (HTTP 503, retry).
    #[error(
        "model `{model}` version {version} already has {max_queue_size} requests waiting to batch (its max_queue_size): retry shortly"
    )]
    QueueFull {
        /// The model.
        model: String,
        /// Its version.
        version: u64,
        /// The bound that was reached.
        max_queue_size: u32,
    },
}

impl InferenceError {
    /// A short name of its kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Unsupported(_) => "unsupported",
            Self::Registry(e) => e.kind(),
            Self::Internal(_) => "internal",
            Self::QueueFull { .. } => "busy",
        }
    }
}

impl From<StoreError> for InferenceError {
    fn from(e: StoreError) -> Self {
        Self::Registry(e.into())
    }
}

/// An optimised plan tract runs, shared by every run of a model version.
type Plan = Arc<Runner>;

/// A plan and the run states it keeps between runs. A state holds what a
/// run sets up before computing anything (per-operator states, value
/// slots, scratch keyed by session); tract's `plan.run` builds one per
/// run, which at batch 64 costs more than the arithmetic of a small model.
/// At most one state per concurrent run is kept (runs are bounded by the
/// core count).
///
/// Only plans without operator states reuse them: an operator state
/// outlives its run (a `Scan`'s loop variables, which scikit-learn's k-NN
/// exports carry its input rows in), so a reused one would compute a
/// request with the previous request's values.
pub struct TractRunner {
    plan: Arc<TypedRunnableModel>,
    idle: std::sync::Mutex<Vec<TypedSimpleState>>,
    reuse: bool,
}

/// A model version's plan, on the engine it was pushed for.
pub enum Runner {
    /// tract's optimised plan.
    Tract(TractRunner),
    /// onnxruntime sessions.
    Onnxruntime(onnxruntime::Sessions),
}

impl Runner {
    /// Run on `inputs` (in the model's input order).
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, InferenceError> {
        match self {
            Self::Tract(tract) => tract.run(inputs),
            Self::Onnxruntime(sessions) => sessions.run(inputs),
        }
    }

    /// The typed graph, when tract runs it (for TreeSHAP).
    fn tract_model(&self) -> Option<&TypedModel> {
        match self {
            Self::Tract(tract) => Some(tract.plan.model()),
            Self::Onnxruntime(_) => None,
        }
    }
}

impl TractRunner {
    fn new(plan: Arc<TypedRunnableModel>) -> TractResult<Self> {
        let first = plan.spawn()?;
        let reuse = first.op_states.iter().all(Option::is_none);
        Ok(Self {
            plan,
            idle: std::sync::Mutex::new(if reuse { vec![first] } else { vec![] }),
            reuse,
        })
    }

    /// Run the plan on `inputs` (in the model's input order). A panic
    /// inside tract fails this run only, like a trapping stage.
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, InferenceError> {
        let idle = match self.reuse {
            true => self.idle.lock().ok().and_then(|mut idle| idle.pop()),
            false => None,
        };
        let mut state = match idle {
            Some(state) => state,
            None => self.plan.spawn().map_err(internal)?,
        };
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.run(inputs)));
        match run {
            Ok(Ok(outputs)) => {
                if let Ok(mut idle) = self.idle.lock()
                    && self.reuse
                {
                    idle.push(state);
                }
                Ok(outputs)
            }
            // A failed or panicked run drops its state: nothing half-done
            // is reused.
            Ok(Err(e)) => Err(internal(e)),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                tracing::error!(%reason, "the model engine panicked");
                Err(InferenceError::Internal(format!(
                    "the model engine (tract) panicked: {reason}"
                )))
            }
        }
    }
}

fn internal(e: TractError) -> InferenceError {
    InferenceError::Internal(format!("{e:#}"))
}

/// A model version ready to run.
pub struct Model {
    /// Its registry record.
    pub record: ModelVersion,
    plan: Plan,
    /// The element types the plan takes, per input (the signature may
    /// widen them).
    input_types: Vec<DatumType>,
    /// The queue joining concurrent requests, when batching is on.
    batcher: Option<batch::Batcher>,
    /// Inputs with fewer elements than this run inline on the async
    /// worker: a run at least that large has finished within
    /// [`INLINE_BELOW`] (0 until one has).
    inline_below_elements: AtomicU64,
    /// Inputs with fewer elements than this run in place on their worker
    /// thread (`block_in_place`): a run at least that large has finished
    /// within [`IN_PLACE_BELOW`] (0 until one has).
    in_place_below_elements: AtomicU64,
    /// Where its runs are counted.
    metrics: ModelMetrics,
    /// Its drift window, when it has a baseline.
    drift: Option<Arc<drift::Monitor>>,
    /// How it is explained, when its baseline has background rows.
    explainer: Option<explain::Explainer>,
}

impl Weigh for Model {
    fn weight(&self) -> u64 {
        // The file's size is a fair proxy for the weights a plan holds.
        self.record.size
    }
}

impl Model {
    /// Its inputs and outputs.
    pub fn signature(&self) -> &Signature {
        &self.record.signature
    }

    /// Its baseline statistics, when pushed with some.
    pub fn baseline(&self) -> Option<&Arc<drift::Baseline>> {
        self.drift.as_ref().map(|m| m.baseline())
    }
}

/// What a push records besides the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Push {
    /// Who pushes.
    pub created_by: String,
    /// A description.
    pub description: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Baseline statistics of the training data (JSON), for drift checks.
    pub baseline: Option<Baseline>,
    /// Shapes for inputs the file leaves unknown (`-1`: dynamic).
    pub input_shapes: BTreeMap<String, Vec<i64>>,
    /// Dynamic batching for this version.
    pub batching: Option<Batching>,
    /// Idle seconds before a node unloads this version's plan (0: never;
    /// unset: the node's `--model-idle-secs`).
    pub idle_secs: Option<u64>,
    /// The engine that runs it.
    pub engine: Engine,
}

/// Baseline statistics given with a push.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// The JSON itself.
    Json(Bytes),
    /// A JSON blob already in the store (uploaded with `PUT /v1/blobs`).
    Stored(Digest),
}

/// Load and optimise an ONNX model: the plan and what it takes. Input
/// dimensions the file leaves unknown become symbols (the first one `N`,
/// the batch); `input_shapes` pins them (`-1`: dynamic).
pub fn compile(
    bytes: &[u8],
    input_shapes: &BTreeMap<String, Vec<i64>>,
) -> Result<(Plan, Signature, Vec<DatumType>), InferenceError> {
    let unsupported = |stage: &str, e: TractError| {
        // tract's chain ends in the operator or fact it could not handle.
        InferenceError::Unsupported(format!("{stage}: {e:#}"))
    };
    let mut onnx = tract_onnx::onnx();
    onnx_ml::register(&mut onnx.op_register);
    // Decoded from the bytes themselves: tract's `model_for_read` would
    // copy the whole file first.
    let proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes)
        .map_err(|e| unsupported("not a loadable ONNX model", e.into()))?;
    let mut model = onnx
        .model_for_proto_model(&proto)
        .map_err(|e| unsupported("not a loadable ONNX model", e))?;
    drop(proto);
    determine_inputs(&mut model, input_shapes)?;
    let mut typed = model.into_optimized().map_err(|e| optimise_failure(&e))?;
    heads::install(&mut typed).map_err(internal)?;
    let signature = tract_tensor::signature_of(&typed)?;
    let input_types = typed
        .input_outlets()
        .map_err(|e| InferenceError::Internal(e.to_string()))?
        .iter()
        .map(|o| typed.outlet_fact(*o).map(|f| f.datum_type))
        .collect::<TractResult<Vec<_>>>()
        .map_err(|e| InferenceError::Internal(e.to_string()))?;
    let plan = typed
        .into_runnable()
        .map_err(|e| unsupported("tract cannot plan it", e))?;
    let runner = TractRunner::new(plan).map_err(|e| unsupported("tract cannot plan it", e))?;
    Ok((Arc::new(Runner::Tract(runner)), signature, input_types))
}

/// [`compile`] on `engine`: onnxruntime only where the node has its
/// library.
fn compile_on(
    engine: Engine,
    onnxruntime: &std::sync::OnceLock<onnxruntime::Onnxruntime>,
    bytes: &[u8],
    input_shapes: &BTreeMap<String, Vec<i64>>,
) -> Result<(Plan, Signature, Vec<DatumType>), InferenceError> {
    match engine {
        Engine::Tract => compile(bytes, input_shapes),
        Engine::Onnxruntime => {
            let library = onnxruntime.get().ok_or_else(|| {
                InferenceError::Unsupported(
                    "this model runs on onnxruntime and this node has no onnxruntime library: start the node with --onnxruntime PATH (or ORT_DYLIB_PATH), the libonnxruntime.so of onnxruntime 1.24 or later (e.g. from the onnxruntime wheel's capi/ folder)".into(),
                )
            })?;
            let (sessions, signature, input_types) = library.compile(bytes, input_shapes)?;
            Ok((
                Arc::new(Runner::Onnxruntime(sessions)),
                signature,
                input_types,
            ))
        }
    }
}

/// Why tract could not optimise a model, said so the user can act on it.
fn optimise_failure(e: &TractError) -> InferenceError {
    let chain = format!("{e:#}");
    if let Some(start) = chain.find("Unimplemented(") {
        let op = chain[start + "Unimplemented(".len()..]
            .split(')')
            .next()
            .unwrap_or_default();
        return InferenceError::Unsupported(format!(
            "operator `{op}` is not implemented by this node's engine (tract); export the model without it ({chain})"
        ));
    }
    if chain.contains("without a determined fact") || chain.contains("is variable") {
        return InferenceError::Unsupported(format!(
            "tract cannot optimise it with the input shapes the file declares; pin them with --input-shape NAME=N,3,224,224 ({chain})"
        ));
    }
    InferenceError::Unsupported(format!("tract cannot optimise it: {chain}"))
}

/// Give every input a datum type and rank with symbols for unknown
/// dimensions, so tract can type and optimise the graph.
fn determine_inputs(
    model: &mut InferenceModel,
    input_shapes: &BTreeMap<String, Vec<i64>>,
) -> Result<(), InferenceError> {
    let internal = |e: TractError| InferenceError::Internal(format!("{e:#}"));
    let outlets = model.input_outlets().map_err(internal)?.to_vec();
    let mut pinned = 0;
    for (ix, outlet) in outlets.iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let fact = model.input_fact(ix).map_err(internal)?.clone();
        let Some(datum_type) = fact.datum_type.concretize() else {
            continue;
        };
        let symbol = |model: &InferenceModel, dim: usize| -> TDim {
            if dim == 0 {
                model.sym("N").into()
            } else {
                model.sym(&format!("{name}_{dim}")).into()
            }
        };
        let shape: ShapeFactoid = match input_shapes.get(&name) {
            Some(dims) => {
                pinned += 1;
                dims.iter()
                    .enumerate()
                    .map(|(i, d)| {
                        if *d < 0 {
                            symbol(model, i)
                        } else {
                            TDim::from(*d)
                        }
                    })
                    .collect()
            }
            None if fact.shape.is_open() => continue,
            None => fact
                .shape
                .dims()
                .enumerate()
                .map(|(i, d)| d.concretize().unwrap_or_else(|| symbol(model, i)))
                .collect(),
        };
        model
            .set_input_fact(ix, InferenceFact::dt_shape(datum_type, shape))
            .map_err(internal)?;
    }
    if pinned < input_shapes.len() {
        let names: Vec<String> = outlets
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        return Err(InferenceError::InvalidInput(format!(
            "--input-shape names an input the model does not have; its inputs are {}",
            names.join(", ")
        )));
    }
    Ok(())
}

/// The node's models: registry, plan cache and the pool they run on.
pub struct Models {
    registry: Registry<ModelVersion>,
    documents: Arc<DocumentCache>,
    plans: Cache<(Name, u64), Model, InferenceError>,
    /// One slot per core; a run holds its slot until tract returns.
    runs: Arc<Semaphore>,
    slots: usize,
    batches: Arc<BatchStats>,
    inline_runs: AtomicU64,
    in_place_runs: AtomicU64,
    pooled_runs: AtomicU64,
    drift: Arc<drift::Monitors>,
    /// The second engine's library, when the node was given one.
    onnxruntime: Arc<std::sync::OnceLock<onnxruntime::Onnxruntime>>,
}

/// Where model runs went, for `/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// Runs made on the async worker (small inputs known to be fast).
    pub inline: u64,
    /// Runs made in place on their worker thread, its other tasks handed
    /// to another thread (inputs known to finish within milliseconds).
    pub in_place: u64,
    /// Runs sent to the blocking pool.
    pub pooled: u64,
    /// Runs in tract right now (at most one per core).
    pub in_flight: u64,
}

/// How much dynamic batching happened, for `/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchCounts {
    /// Runs made by batchers.
    pub batches: u64,
    /// Requests those runs served.
    pub requests: u64,
}

impl Models {
    /// Models over `documents`; plans bounded by `plan_bytes`; at most one
    /// run per core at a time.
    pub fn new(documents: Arc<DocumentCache>, plan_bytes: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::with_run_slots(documents, plan_bytes, cores)
    }

    /// [`Models::new`] with `slots` concurrent runs.
    pub fn with_run_slots(documents: Arc<DocumentCache>, plan_bytes: u64, slots: usize) -> Self {
        Self {
            registry: Registry::new(documents.clone()),
            documents,
            plans: Cache::new(plan_bytes),
            runs: Arc::new(Semaphore::new(slots)),
            slots,
            batches: Arc::default(),
            inline_runs: AtomicU64::new(0),
            in_place_runs: AtomicU64::new(0),
            pooled_runs: AtomicU64::new(0),
            drift: Arc::default(),
            onnxruntime: Arc::default(),
        }
    }

    /// Run models pushed with `--engine onnxruntime` on this library (set
    /// once, at start; a second call is ignored).
    pub fn use_onnxruntime(&self, library: onnxruntime::Onnxruntime) {
        let _ = self.onnxruntime.set(library);
    }

    /// The drift windows of the versions this node ran.
    pub fn drift(&self) -> &drift::Monitors {
        &self.drift
    }

    /// Where runs went.
    pub fn run_stats(&self) -> RunStats {
        use std::sync::atomic::Ordering::Relaxed;
        RunStats {
            inline: self.inline_runs.load(Relaxed),
            in_place: self.in_place_runs.load(Relaxed),
            pooled: self.pooled_runs.load(Relaxed),
            in_flight: (self.slots - self.runs.available_permits()) as u64,
        }
    }

    /// How much dynamic batching happened.
    pub fn batch_counts(&self) -> BatchCounts {
        use std::sync::atomic::Ordering::Relaxed;
        BatchCounts {
            batches: self.batches.batches.load(Relaxed),
            requests: self.batches.requests.load(Relaxed),
        }
    }

    /// The model registry.
    pub fn registry(&self) -> &Registry<ModelVersion> {
        &self.registry
    }

    /// The plan cache's counters.
    pub fn stats(&self) -> crate::cache::CacheStats {
        self.plans.stats()
    }

    /// Unload the plans of models not run for their idle time (their own
    /// `idle_secs`, else `default`); how many.
    pub fn evict_idle(&self, default: Option<Duration>) -> usize {
        self.plans
            .evict_idle(|model| idle_time(model.record.idle_secs, default))
    }

    /// Validate and store a model as a new version of `name`.
    pub async fn push(
        &self,
        name: &Name,
        bytes: Bytes,
        push: Push,
        progress: crate::store::Progress<'_>,
    ) -> Result<(ModelVersion, bool), InferenceError> {
        let input = bytes.clone();
        let shapes = push.input_shapes.clone();
        let onnxruntime = self.onnxruntime.clone();
        let (_, signature, _) = tokio::task::spawn_blocking(move || {
            compile_on(push.engine, &onnxruntime, &input, &shapes)
        })
        .await
        .map_err(|e| InferenceError::Internal(e.to_string()))??;
        if let Some(batching) = &push.batching {
            check_batchable(&signature, batching)?;
        }
        let size = bytes.len() as u64;
        let digest = self.documents.put_blob(bytes, progress).await?;
        let refused = InferenceError::InvalidInput;
        let baseline = match push.baseline {
            Some(Baseline::Json(stats)) => {
                drift::Baseline::parse(&stats, &signature).map_err(refused)?;
                Some(self.documents.put_blob(stats, None).await?)
            }
            Some(Baseline::Stored(digest)) => {
                let stats = self.documents.fetch_blob(&digest).await?.ok_or_else(|| {
                    InferenceError::InvalidInput(format!(
                        "no blob {digest} in the store; upload the baseline with PUT /v1/blobs first"
                    ))
                })?;
                drift::Baseline::parse(&stats, &signature).map_err(refused)?;
                Some(digest)
            }
            None => None,
        };
        let record = ModelVersion {
            name: name.to_string(),
            version: 0,
            digest,
            size,
            format: "onnx".into(),
            engine: push.engine,
            signature,
            input_shapes: push.input_shapes,
            batching: push.batching,
            idle_secs: push.idle_secs,
            baseline,
            created_at: now_rfc3339(),
            created_by: push.created_by,
            description: push.description,
            labels: push.labels,
        };
        let (record, created) = self.registry.record(name, record).await?;
        tracing::info!(model = %name, version = record.version, created, "model pushed");
        Ok((record, created))
    }

    /// Drop the plan of a deleted version.
    pub fn forget(&self, name: &Name, version: u64) {
        self.plans.remove(&(name.clone(), version));
        self.drift.forget(name.as_str(), version);
    }

    /// The model `selector` picks, with its plan loaded.
    pub async fn get(
        &self,
        name: &Name,
        selector: &Selector,
    ) -> Result<Arc<Model>, InferenceError> {
        let version = self.registry.resolve_number(name, selector).await?;
        let key = (name.clone(), version);
        self.plans
            .get_or_load(
                &key,
                |_, _| true,
                // Called only on a miss: the hit path clones nothing.
                |_| {
                    let (registry, documents) = (self.registry.clone(), self.documents.clone());
                    let monitors = self.drift.clone();
                    let onnxruntime = self.onnxruntime.clone();
                    let (runs, batches) = (self.runs.clone(), self.batches.clone());
                    let load_key = key.clone();
                    async move {
                        let (name, version) = load_key;
                        let record = registry.record_of(&name, version).await?;
                        let bytes = documents.fetch_blob(&record.digest).await?.ok_or_else(|| {
                            StoreError::Corrupt {
                                key: record.digest.blob_key(),
                                reason: format!("the file of model {name} version {version} is missing"),
                            }
                        })?;
                        let started = std::time::Instant::now();
                        let shapes = record.input_shapes.clone();
                        let engine = record.engine;
                        let (plan, _, input_types) = tokio::task::spawn_blocking(move || {
                            compile_on(engine, &onnxruntime, &bytes, &shapes)
                        })
                        .await
                        .map_err(|e| InferenceError::Internal(e.to_string()))??;
                        tracing::info!(model = %name, version, elapsed_ms = started.elapsed().as_millis() as u64, "model plan ready");
                        let metrics = metrics().model(name.as_str(), version);
                        metrics.loaded(started.elapsed());
                        let drift = match &record.baseline {
                            Some(digest) => monitor(&monitors, &documents, &record, digest).await,
                            None => None,
                        };
                        let batcher = record
                            .batching
                            .map(|b| batch::Batcher::start(&record, plan.clone(), b, runs, batches));
                        let explainer = drift
                            .as_ref()
                            .map(|m| explain::Explainer::of(&plan, m.baseline()));
                        Ok(Model {
                            record,
                            plan,
                            input_types,
                            batcher,
                            inline_below_elements: AtomicU64::new(0),
                            in_place_below_elements: AtomicU64::new(0),
                            metrics,
                            explainer,
                            drift,
                        })
                    }
                    .boxed()
                },
            )
            .await
    }

    /// Run `model` on named inputs; outputs in the model's order.
    pub async fn run(
        &self,
        model: &Arc<Model>,
        inputs: Vec<NamedTensor>,
    ) -> Result<Vec<NamedTensor>, InferenceError> {
        let started = Instant::now();
        let span = tracing::info_span!(target: crate::observe::trace::SPANS, "inference", model = %model.record.name, version = model.record.version);
        explain::record(model, &inputs);
        let watched = model
            .drift
            .as_ref()
            .and_then(|m| Some((m, m.watched(&inputs)?)));
        let outputs = self.run_arranged(model, inputs).instrument(span).await;
        let result = outputs.as_ref().map(|_| ()).map_err(InferenceError::kind);
        model.metrics.record(started.elapsed(), result);
        if let (Some((monitor, input)), Ok(outputs)) = (watched, &outputs) {
            monitor.observe(&input, outputs);
        }
        outputs
    }

    async fn run_arranged(
        &self,
        model: &Model,
        inputs: Vec<NamedTensor>,
    ) -> Result<Vec<NamedTensor>, InferenceError> {
        let values = arrange(&model.signature().inputs, &model.input_types, inputs)?;
        let outputs = match &model.batcher {
            Some(batcher) => batcher.run(values).await?,
            None => self.run_alone(model, values).await?,
        };
        named_outputs(model.signature(), &outputs)
    }

    async fn run_alone(
        &self,
        model: &Model,
        values: TVec<TValue>,
    ) -> Result<TVec<TValue>, InferenceError> {
        let slot = self
            .runs
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| InferenceError::Internal(e.to_string()))?;
        let plan = model.plan.clone();
        let elements: u64 = values.iter().map(|v| v.len() as u64).sum();
        let timed = move |values| {
            let _slot = slot;
            let started = Instant::now();
            let outputs = plan.run(values);
            (outputs, started.elapsed())
        };
        // Placed by the size of this input against sizes seen to finish in
        // time: a hop to the blocking pool costs ~20 µs and, on a busy
        // machine, a wake-up of another thread; more than a small model
        // takes. The first run of any size goes to the pool.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let (outputs, took) = if elements < model.inline_below_elements.load(Ordering::Relaxed) {
            self.inline_runs.fetch_add(1, Ordering::Relaxed);
            timed(values)
        } else if multi_thread && elements < model.in_place_below_elements.load(Ordering::Relaxed) {
            // This thread runs it; tokio moves the worker's other tasks to
            // another thread meanwhile, so HTTP handling goes on. The run
            // cannot be abandoned by a deadline, hence only runs known to
            // take milliseconds.
            self.in_place_runs.fetch_add(1, Ordering::Relaxed);
            tokio::task::block_in_place(move || timed(values))
        } else {
            self.pooled_runs.fetch_add(1, Ordering::Relaxed);
            // The slot travels with the run: a request dropped meanwhile
            // (deadline, client gone) leaves tract running, still counted.
            tokio::task::spawn_blocking(move || timed(values))
                .await
                .map_err(|e| InferenceError::Internal(e.to_string()))?
        };
        for (threshold, limit) in [
            (&model.inline_below_elements, INLINE_BELOW),
            (&model.in_place_below_elements, IN_PLACE_BELOW),
        ] {
            if took < limit {
                threshold.fetch_max(elements + 1, Ordering::Relaxed);
            } else {
                threshold.fetch_min(elements, Ordering::Relaxed);
            }
        }
        outputs
    }
}

/// The drift monitor of a version pushed with a baseline. A baseline that
/// cannot be read (checked at push, so only a damaged store) leaves the
/// model serving without one, loudly.
async fn monitor(
    monitors: &drift::Monitors,
    documents: &DocumentCache,
    record: &ModelVersion,
    digest: &Digest,
) -> Option<Arc<drift::Monitor>> {
    let parsed = match documents.fetch_blob(digest).await {
        Ok(Some(bytes)) => drift::Baseline::parse(&bytes, &record.signature),
        Ok(None) => Err(format!("its blob {digest} is missing")),
        Err(e) => Err(e.to_string()),
    };
    match parsed {
        Ok(baseline) => Some(monitors.monitor(&record.name, record.version, Arc::new(baseline))),
        Err(reason) => {
            tracing::error!(model = %record.name, version = record.version, %reason, "the baseline cannot be read; serving without drift detection");
            None
        }
    }
}

/// The outputs of a run, named as the signature names them.
fn named_outputs(
    signature: &Signature,
    outputs: &[TValue],
) -> Result<Vec<NamedTensor>, InferenceError> {
    signature
        .outputs
        .iter()
        .zip(outputs)
        .map(|(spec, value)| {
            Ok(NamedTensor {
                name: spec.name.clone(),
                tensor: tract_tensor::from_tract(value)?,
            })
        })
        .collect()
}

/// A model compiled for one-off work beside a node (`sluice models
/// baseline`), on the engine that serves it; not for serving.
pub struct Evaluator {
    plan: Plan,
    signature: Signature,
    input_types: Vec<DatumType>,
}

impl Evaluator {
    /// Compile the model in `bytes` on `engine`; onnxruntime's library is
    /// loaded from `onnxruntime` when that is the engine.
    pub fn compile(
        bytes: &[u8],
        engine: Engine,
        onnxruntime: Option<&std::path::Path>,
    ) -> Result<Self, InferenceError> {
        let library = std::sync::OnceLock::new();
        if let (Engine::Onnxruntime, Some(path)) = (engine, onnxruntime) {
            let _ = library.set(onnxruntime::Onnxruntime::load(path)?);
        }
        let (plan, signature, input_types) = compile_on(engine, &library, bytes, &BTreeMap::new())?;
        Ok(Self {
            plan,
            signature,
            input_types,
        })
    }

    /// The model's inputs and outputs.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Run it once on `inputs`.
    pub fn run(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, InferenceError> {
        let values = arrange(&self.signature.inputs, &self.input_types, inputs)?;
        let outputs = self.plan.run(values)?;
        named_outputs(&self.signature, &outputs)
    }
}

/// Runs that finish faster than this may stay on the async worker.
const INLINE_BELOW: Duration = Duration::from_micros(100);
/// Runs that finish faster than this may run in place on their worker
/// thread: the most a deadline can be overrun by.
const IN_PLACE_BELOW: Duration = Duration::from_millis(20);

/// Batching needs every input and output to lead with a dynamic batch
/// dimension.
fn check_batchable(signature: &Signature, batching: &Batching) -> Result<(), InferenceError> {
    if batching.max_batch_size < 2 {
        return Err(InferenceError::InvalidInput(
            "max_batch_size must be at least 2 to batch anything".into(),
        ));
    }
    if batching.max_queue_size == 0 {
        return Err(InferenceError::InvalidInput(
            "max_queue_size must be at least 1: it is how many requests may wait for a run".into(),
        ));
    }
    let fixed = signature
        .inputs
        .iter()
        .chain(&signature.outputs)
        .find(|spec| spec.shape.first() != Some(&-1));
    match fixed {
        Some(spec) => Err(InferenceError::InvalidInput(format!(
            "dynamic batching needs a batch dimension: `{}` has shape {}, which does not start with N",
            spec.name,
            shape_text(&spec.shape)
        ))),
        None => Ok(()),
    }
}

/// The inputs in the model's order, checked and converted.
fn arrange(
    specs: &[crate::tensor::TensorSpec],
    input_types: &[DatumType],
    inputs: Vec<NamedTensor>,
) -> Result<TVec<TValue>, InferenceError> {
    let mut by_name: BTreeMap<String, Tensor> =
        inputs.into_iter().map(|t| (t.name, t.tensor)).collect();
    let mut values = TVec::new();
    for (spec, datum_type) in specs.iter().zip(input_types) {
        let tensor = by_name.remove(&spec.name).ok_or_else(|| {
            InferenceError::InvalidInput(format!(
                "input `{}` is missing; the model expects {} of shape {}",
                spec.name,
                spec.datatype,
                shape_text(&spec.shape)
            ))
        })?;
        let value = tract_tensor::to_tract(spec, tensor)?;
        let value = if value.datum_type() == *datum_type {
            value
        } else {
            value
                .cast_to_dt(*datum_type)
                .map_err(|e| InferenceError::InvalidInput(format!("input `{}`: {e}", spec.name)))?
                .into_owned()
                .into_tvalue()
        };
        values.push(value);
    }
    if let Some(extra) = by_name.keys().next() {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(InferenceError::InvalidInput(format!(
            "the model has no input `{extra}`; its inputs are {}",
            known.join(", ")
        )));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;
    use crate::store::FsStore;
    use crate::tensor::TensorData;

    const GRAM: &[u8] = include_bytes!("../../../examples/models/gram.onnx");
    const GATHER: &[u8] = include_bytes!("../../../examples/models/gather.onnx");

    /// A node's models over a fresh directory store, with `slots` runs at
    /// a time, and `file` pushed as model `name`.
    async fn models_with(
        dir: &std::path::Path,
        slots: usize,
        name: &str,
        file: &'static [u8],
    ) -> (Models, Arc<Model>) {
        let store = Arc::new(FsStore::open(dir).unwrap());
        let documents = Arc::new(DocumentCache::new(store, CacheConfig::default()));
        let models = Models::with_run_slots(documents, 64 << 20, slots);
        let name = Name::parse(name).unwrap();
        models
            .push(&name, Bytes::from_static(file), Push::default(), None)
            .await
            .unwrap();
        let model = models.get(&name, &Selector::Default).await.unwrap();
        (models, model)
    }

    /// X = all ones, n × n: the gram model answers n in every cell.
    fn ones(n: u64) -> Vec<NamedTensor> {
        vec![NamedTensor {
            name: "X".into(),
            tensor: Tensor {
                shape: vec![n, n],
                data: TensorData::F32(vec![1.0; (n * n) as usize]),
            },
        }]
    }

    fn indices(i: &[i64]) -> Vec<NamedTensor> {
        vec![NamedTensor {
            name: "I".into(),
            tensor: Tensor {
                shape: vec![i.len() as u64],
                data: TensorData::I64(i.to_vec()),
            },
        }]
    }

    /// Run small inputs until one stays on the async worker (the first
    /// goes to the pool; a loaded machine may need a few to come in under
    /// the inline threshold).
    async fn warm_until_inline(
        models: &Models,
        model: &Arc<Model>,
        input: fn() -> Vec<NamedTensor>,
    ) {
        for _ in 0..200 {
            models.run(model, input()).await.unwrap();
            if models.run_stats().inline > 0 {
                return;
            }
        }
        panic!("no small run stayed inline: {:?}", models.run_stats());
    }

    #[tokio::test]
    async fn a_dropped_request_keeps_its_run_slot_until_tract_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let (models, model) = models_with(dir.path(), 1, "gram", GRAM).await;
        // About a second of one core: the deadline passes long before.
        let run = models.run(&model, ones(2000));
        let dropped = tokio::time::timeout(Duration::from_millis(20), run).await;
        assert!(dropped.is_err(), "the large run finished within 20 ms");
        assert_eq!(
            models.run_stats().in_flight,
            1,
            "the slot went with the request"
        );
        let started = Instant::now();
        while models.run_stats().in_flight != 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the run never ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The slot came back: the next run gets it.
        let out = models.run(&model, ones(3)).await.unwrap();
        assert_eq!(out[0].tensor.data, TensorData::F32(vec![3.0; 9]));
    }

    #[tokio::test]
    async fn a_full_batching_queue_refuses_at_once_and_the_queued_requests_still_run() {
        const IRIS: &[u8] = include_bytes!("../../../examples/models/iris-logreg.onnx");
        let dir = tempfile::tempdir().unwrap();
        let (models, gram) = models_with(dir.path(), 1, "gram", GRAM).await;
        let name = Name::parse("iris").unwrap();
        let batching = Batching {
            max_batch_size: 2,
            max_queue_delay_us: 0,
            max_queue_size: 2,
        };
        let push = Push {
            batching: Some(batching),
            ..Push::default()
        };
        models
            .push(&name, Bytes::from_static(IRIS), push, None)
            .await
            .unwrap();
        let iris = models.get(&name, &Selector::Default).await.unwrap();
        // The only run slot is held by a run of about a second whose
        // request is gone: the batcher cannot run anything meanwhile.
        let held = tokio::time::timeout(Duration::from_millis(20), models.run(&gram, ones(2000)));
        assert!(held.await.is_err(), "the large run finished within 20 ms");
        // Two reference rows (standardised iris features) and their labels.
        let rows = [
            ([-0.052506078, -0.592373, 0.76275826, 1.5804638], 2),
            ([-0.4160097, 2.6303818, -1.3402265, -1.3154444], 0),
        ];
        let input = |i: usize| {
            vec![NamedTensor {
                name: "X".into(),
                tensor: Tensor {
                    shape: vec![1, 4],
                    data: TensorData::F32(rows[i % 2].0.to_vec()),
                },
            }]
        };
        // On this single-threaded runtime every request reaches the queue
        // before the batcher takes any: two fit, six are refused at once.
        let answers = futures::future::join_all((0..8).map(|i| models.run(&iris, input(i)))).await;
        for (i, answer) in answers.iter().enumerate() {
            match (i, answer) {
                (0 | 1, Ok(out)) => {
                    assert_eq!(out[0].tensor.data, TensorData::I64(vec![rows[i].1]))
                }
                (
                    2..,
                    Err(InferenceError::QueueFull {
                        max_queue_size: 2,
                        version: 1,
                        ..
                    }),
                ) => {}
                _ => panic!("request {i}: {answer:?}"),
            }
        }
        let refused = answers[2].as_ref().unwrap_err().to_string();
        assert!(
            refused.contains("model `iris` version 1 already has 2 requests waiting"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn whether_a_run_stays_inline_is_decided_by_its_own_input() {
        let dir = tempfile::tempdir().unwrap();
        let (models, model) = models_with(dir.path(), 2, "gram", GRAM).await;
        warm_until_inline(&models, &model, || ones(2)).await;
        let before = models.run_stats();
        // Fast runs so far, but this input is far larger than any of them:
        // it must not block the async worker.
        let out = models.run(&model, ones(600)).await.unwrap();
        assert_eq!(out[0].tensor.shape, vec![600, 600]);
        let after = models.run_stats();
        assert_eq!(after.pooled, before.pooled + 1, "{before:?} → {after:?}");
        assert_eq!(after.inline, before.inline, "{before:?} → {after:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_known_to_take_milliseconds_run_in_place_and_longer_ones_in_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (models, model) = models_with(dir.path(), 2, "gram", GRAM).await;
        // Too slow to stay inline, fast enough to run in place: the first
        // goes to the pool, the next ones (same size) in place. 300³
        // multiply-adds cannot finish within the 100 µs inline limit on any
        // CPU (120³ did, once, on a CI machine) and take a few milliseconds.
        for _ in 0..50 {
            models.run(&model, ones(300)).await.unwrap();
            if models.run_stats().in_place > 0 {
                break;
            }
        }
        let before = models.run_stats();
        assert!(before.in_place > 0, "no run went in place: {before:?}");
        assert_eq!(before.inline, 0, "{before:?}");
        // Far larger than any run seen: the pool, where a deadline can
        // leave it behind.
        let out = models.run(&model, ones(600)).await.unwrap();
        assert_eq!(out[0].tensor.shape, vec![600, 600]);
        let after = models.run_stats();
        assert_eq!(after.pooled, before.pooled + 1, "{before:?} → {after:?}");
        assert_eq!(after.in_place, before.in_place, "{before:?} → {after:?}");
    }

    #[tokio::test]
    async fn a_panic_inside_tract_on_the_inline_path_fails_that_run_only() {
        let dir = tempfile::tempdir().unwrap();
        let (models, model) = models_with(dir.path(), 1, "gather", GATHER).await;
        warm_until_inline(&models, &model, || indices(&[0, 1, 2])).await;
        let before = models.run_stats();
        let err = models.run(&model, indices(&[100])).await.unwrap_err();
        assert!(
            matches!(&err, InferenceError::Internal(m) if m.contains("panicked")),
            "{err}"
        );
        assert_eq!(
            models.run_stats().inline,
            before.inline + 1,
            "the panic was not inline"
        );
        assert_eq!(
            models.run_stats().in_flight,
            0,
            "the panicked run kept its slot"
        );
        let out = models.run(&model, indices(&[2, 0])).await.unwrap();
        assert_eq!(
            out[0].tensor.data,
            TensorData::F32(vec![4.0, 5.0, 0.0, 1.0])
        );
    }
}
