//! A node: the engine, the registries of functions and models over the
//! cached store, and what it has loaded. This is the service layer every
//! front door (HTTP, Lambda, the CLI) goes through: the one control-plane
//! service ([`ControlPlane`], `control.rs`) and the data-plane calls
//! (invoke a function, run a model).
//!
//! A call resolves `NAME[@VERSION|@ALIAS]` against the function's head
//! (in memory, revalidated every poll interval), then takes the version's
//! template from the template cache (`templates.rs`). Loading a template is
//! lazy and single-flight: the first request fetches the precompiled
//! artifact for this engine (compiling and storing it only when absent or
//! unusable); concurrent first requests wait for that one load. At steady
//! state a call costs the store nothing; when another node moves an alias,
//! this node follows within one poll interval and drops templates of
//! deleted versions. Idle functions and models are unloaded (`idle.rs`);
//! capped functions queue at their gate (`gate.rs`).

/// Run `$body` with `$registry` bound to the registry of `$kind`: the
/// operations are the same for every kind, only the record type differs.
macro_rules! on_registry {
    ($node:expr, $kind:expr, |$registry:ident| $body:expr) => {
        match $kind {
            Kind::Function => {
                let $registry = &$node.functions;
                $body
            }
            Kind::Model => {
                let $registry = $node.models.registry();
                $body
            }
            Kind::Pipeline => {
                let $registry = &$node.pipelines;
                $body
            }
            Kind::Table => {
                let $registry = $node.features.registry();
                $body
            }
        }
    };
}

mod alerts;
mod artifact;
mod control;
mod drift;
mod function;
mod gate;
mod guard;
mod http_function;
mod idle;
mod members;
mod pipeline;
mod results;
mod rollout;
mod status;
mod templates;

pub use alerts::Alerts;
pub use artifact::SigningKey;
pub use control::{
    Acting, CircuitView, ControlPlane, Deploy, GuardStatus, Kind, Listing, Published,
    RolloutStatus, Settings, Summary, Version,
};
pub use function::{Concurrency, FunctionVersion};
pub use gate::GateStats;
pub use guard::FellBack;
pub use http_function::HttpCall;
pub use idle::IdlePolicy;
pub use pipeline::{PipelineRun, Plan, StepTiming};
pub use results::CacheUse;
pub use rollout::{Figures, Judged, Keys};
pub use status::Status;

use crate::access::{Access, AccessError, Audit, Need};
use crate::cache::{Cache, CacheConfig, DocumentCache};
use crate::engine::{CallError, Engine, EngineError, Grant, Reach, World, WorldError};
use crate::features::{FeatureError, FeatureStore, Lookup};
use crate::inference::explain::Explanation;
use crate::inference::{InferenceError, Model, Models};
use crate::observe::Stats;
use crate::pipeline::{PipelineError, PipelineVersion};
use crate::registry::{
    Breaker, FallbackTo, Head, InvalidName, Invocation, Name, Registry, RegistryError, Routed,
    Selector,
};
use crate::store::{Digest, ETag, ObjectStore, Spooled, StoreError};
use crate::tensor::{Message, NamedTensor};
use axum::http::HeaderMap;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use templates::Loaded;

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
    /// A version's circuit is open: it failed repeatedly and is not called
    /// until it is probed again.
    #[error(
        "{noun} {name}@{version} is not being called: its circuit opened after repeated failures; it is tried again in {retry_after_secs} s"
    )]
    CircuitOpen {
        /// `function` or `model`.
        noun: &'static str,
        /// Its name.
        name: String,
        /// The version.
        version: u64,
        /// Seconds until it is probed.
        retry_after_secs: u64,
    },
    /// A rate limit turned the call away.
    #[error(
        "{noun} {name} is rate limited ({bucket}: {per_second}/s across {nodes} node(s)); retry in {retry_after_secs} s"
    )]
    RateLimited {
        /// `function`, `model` or `pipeline`.
        noun: &'static str,
        /// Its name.
        name: String,
        /// `route` or `per_token`.
        bucket: &'static str,
        /// The limit.
        per_second: f64,
        /// Nodes sharing it.
        nodes: u32,
        /// Seconds until a token is free.
        retry_after_secs: u64,
    },
    /// The engine failed for a reason that is not the component's fault.
    #[error("engine failure: {0}")]
    Engine(String),
    /// A pipeline manifest was refused.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A feature table could not be applied, written or read.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// A token could not be created, found or revoked.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A change landed but its audit record could not be written.
    #[error("the change was made but its audit record could not be written: {0}")]
    Audit(String),
    /// A pipeline step failed.
    #[error("pipeline {pipeline}, step {step}: {source}")]
    Step {
        /// `name@version` of the pipeline.
        pipeline: String,
        /// The step that failed.
        step: String,
        /// Why.
        source: Box<NodeError>,
    },
    /// A pipeline request ran out of its budget.
    #[error("pipeline {pipeline} ran out of its {budget_ms} ms budget (timeout_ms) in step {step}")]
    PipelineTimeout {
        /// `name@version` of the pipeline.
        pipeline: String,
        /// The step that was running.
        step: String,
        /// The request's budget.
        budget_ms: u64,
    },
}

impl NodeError {
    /// A short name of its kind: the `result` label of the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Call(e) => e.kind(),
            Self::Step { source, .. } => source.kind(),
            Self::InvalidName(_) | Self::InvalidSetting(_) => "invalid_input",
            Self::Inference(e) => e.kind(),
            Self::Registry(e) => e.kind(),
            Self::Busy { .. } => "busy",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::RateLimited { .. } => "rate_limited",
            Self::Features(_) => "features",
            Self::PipelineTimeout { .. } => "deadline",
            Self::Access(_) => "access",
            _ => "internal",
        }
    }
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

/// A function call's answer.
#[derive(Debug, Clone)]
pub struct Answered {
    /// What answered: `name@version`, or `static` (a fallback's fixed
    /// response).
    pub by: String,
    /// Its output.
    pub output: Message,
    /// Set when the guard's fallback answered instead of the version
    /// called.
    pub fallback: Option<FellBack>,
}

impl Answered {
    fn by(record: &FunctionVersion, output: Message) -> Self {
        Self {
            by: format!("{}@{}", record.name, record.version),
            output,
            fallback: None,
        }
    }
}

/// A model run's answer.
#[derive(Clone)]
pub struct Inferred {
    /// The model version that answered.
    pub model: Arc<Model>,
    /// Its outputs, in its order.
    pub outputs: Vec<NamedTensor>,
    /// Set when the guard's fallback version answered instead of the one
    /// called.
    pub fallback: Option<FellBack>,
}

/// The runtime core of one node.
pub struct Node {
    engine: Engine,
    documents: Arc<DocumentCache>,
    functions: Registry<FunctionVersion>,
    templates: Cache<(Name, u64), Loaded, NodeError>,
    /// The head tag each function's templates were last checked against.
    heads_seen: DashMap<Name, ETag>,
    /// Concurrency gates of capped versions in use (pruned with their
    /// templates).
    gates: DashMap<(Name, u64), Arc<gate::Gate>>,
    models: Arc<Models>,
    pipelines: Registry<PipelineVersion>,
    /// Plans of the pipeline versions run on this node.
    plans: DashMap<(Name, u64), Arc<pipeline::Plan>>,
    features: Arc<FeatureStore>,
    access: Access,
    audit: Audit,
    /// Signs the precompiled artifacts this node stores, and verifies the
    /// ones it loads.
    signing: SigningKey,
    stats: Arc<Stats>,
    /// Where drift level changes and rollbacks are announced (set once,
    /// at start).
    alerts: std::sync::OnceLock<Alerts>,
    /// The rollouts this node routes calls of, judged against their SLO.
    judges: rollout::Judges,
    /// Answers of pipelines that cache them.
    results: results::Results,
    /// Circuit breakers and rate-limit buckets.
    guards: guard::Guards,
}

impl Node {
    /// A node over `store`, with caches configured by `cache`.
    pub fn new(engine: Engine, store: Arc<dyn ObjectStore>, cache: CacheConfig) -> Self {
        let (model_bytes, template_bytes, feature_bytes, result_bytes) = (
            cache.model_bytes,
            cache.template_bytes,
            cache.feature_bytes,
            cache.result_bytes,
        );
        let documents = Arc::new(DocumentCache::new(store, cache));
        Self {
            features: Arc::new(FeatureStore::new(documents.clone(), feature_bytes)),
            functions: Registry::new(documents.clone()),
            models: Arc::new(Models::new(documents.clone(), model_bytes)),
            pipelines: Registry::new(documents.clone()),
            plans: DashMap::new(),
            access: Access::new(documents.clone()),
            signing: SigningKey::ephemeral(),
            audit: Audit::new(documents.clone()),
            documents,
            engine,
            templates: Cache::new(template_bytes),
            heads_seen: DashMap::new(),
            gates: DashMap::new(),
            stats: Arc::default(),
            alerts: std::sync::OnceLock::new(),
            judges: rollout::Judges::default(),
            results: results::Results::new(result_bytes),
            guards: guard::Guards::default(),
        }
    }

    /// Sign and verify precompiled artifacts with `key` (shared by every
    /// node of a store, so they load each other's); without it a node
    /// trusts only what it compiled itself.
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing = key;
        self
    }

    /// Run models pushed with `--engine onnxruntime` on `library`.
    pub fn with_onnxruntime(self, library: crate::inference::onnxruntime::Onnxruntime) -> Self {
        self.models.use_onnxruntime(library);
        self
    }

    /// Its access control: who a token belongs to.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Let a data-plane call of `name` (a function, model or pipeline)
    /// through: anyone's when its invocation is open, else only one with a
    /// token that may invoke it ([`AccessError::Unauthenticated`] without
    /// one, [`AccessError::Forbidden`] with one that may not); then, for a
    /// call (`call`: not a metadata read), within its guard's rate limits
    /// ([`NodeError::RateLimited`]). A name that does not exist passes:
    /// the call itself answers that.
    pub async fn admit_call(
        &self,
        kind: Kind,
        name: &str,
        token: Option<&str>,
        call: bool,
    ) -> Result<(), NodeError> {
        let Ok(name) = Name::parse(name) else {
            return Ok(());
        };
        let head = match kind {
            Kind::Function => self.functions.head(&name).await?,
            Kind::Model => self.models.registry().head(&name).await?,
            Kind::Pipeline => self.pipelines.head(&name).await?,
            Kind::Table => None,
        };
        let Some((head, _)) = head else {
            return Ok(());
        };
        let limit = (head.guard.as_ref())
            .and_then(|g| g.rate_limit)
            .filter(|_| call);
        let per_token = limit.is_some_and(|l| l.per_token.is_some());
        let mut caller = None;
        if head.invocation == Invocation::Token || (per_token && token.is_some()) {
            let identity = self.access.identify(token).await?;
            if head.invocation == Invocation::Token
                && !identity.may(Need::Invoke, Some(name.as_str()))
            {
                return Err(AccessError::Forbidden {
                    token: identity.name.clone(),
                    role: identity.role,
                }
                .into());
            }
            caller = Some(identity.name.clone());
        }
        match limit {
            Some(limit) => self.limit(kind, &name, &limit, caller.as_deref()),
            None => Ok(()),
        }
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

    /// Store an uploaded file as a content-addressed blob (e.g. a model's
    /// baseline statistics, uploaded before the push that names it),
    /// streamed from the file.
    pub async fn put_blob(&self, spooled: &Spooled) -> Result<Digest, NodeError> {
        Ok(self.documents.put_blob_file(spooled).await?)
    }

    /// Whether the store answers: a node that cannot reach it serves only
    /// what it has in memory.
    pub async fn ready(&self) -> Result<(), NodeError> {
        self.store().exists("functions/ready-probe").await?;
        Ok(())
    }

    /// The version of `name` that `selector` picks (through its rollout,
    /// if one is on), with the head it was read from, checking this node's
    /// templates against that head.
    async fn pick(
        &self,
        name: &Name,
        selector: &Selector,
        keys: Option<Keys<'_>>,
    ) -> Result<(Arc<Head>, u64, Option<Routed>), NodeError> {
        let (head, etag) = self.functions.existing_head(name).await?;
        if self.heads_seen.get(name).is_none_or(|seen| *seen != etag) {
            // The head changed (here or on another node): drop templates of
            // versions that are no longer live.
            self.templates
                .retain(|(n, v)| n != name || head.versions.contains(v));
            self.prune_gates();
            self.heads_seen.insert(name.clone(), etag);
        }
        let (version, routed) = self.route(Kind::Function, name, &head, selector, keys)?;
        Ok((head, version, routed))
    }

    /// Run the version of `name` that `selector` picks on `input`. An
    /// unqualified call (`NAME`) goes where the function's rollout sends
    /// it, read from `headers` and `input` when it is sticky. A failure
    /// the function's guard has a fallback for is answered by it.
    pub async fn invoke(
        self: &Arc<Self>,
        name: &str,
        selector: &Selector,
        input: Message,
        request_id: Arc<str>,
        headers: Option<&HeaderMap>,
    ) -> Result<Answered, NodeError> {
        let name = Name::parse(name)?;
        let keys = Keys {
            headers,
            input: Some(&input),
        };
        let (head, version, routed) = self.pick(&name, selector, Some(keys)).await?;
        let breaker = guard::breaker_of(&head);
        // Kept only when a fallback may need it.
        let kept = head
            .guard
            .as_ref()
            .is_some_and(|g| g.fallback.is_some())
            .then(|| input.clone());
        let (called, rid) = (name.clone(), request_id.clone());
        let run = move |node: Arc<Self>, version, input| {
            let (name, request_id) = (called.clone(), rid.clone());
            async move {
                node.call_version(&name, version, input, request_id, breaker)
                    .await
            }
        };
        let result = self
            .run_routed(
                Kind::Function,
                &name,
                version,
                routed,
                input,
                run,
                |(_, output)| output.clone(),
            )
            .await;
        let failure = match result {
            Ok((record, output)) => return Ok(Answered::by(&record, output)),
            Err(e) => e,
        };
        let (Some((to, reason)), Some(input)) =
            (guard::fallback_for(&head, &failure, version), kept)
        else {
            return Err(failure);
        };
        let answered = match to {
            FallbackTo::Version { version } => self
                .call_version(&name, *version, input, request_id, breaker)
                .await
                .map(|(record, output)| Answered::by(&record, output)),
            FallbackTo::Static { content_type, body } => Ok(Answered {
                by: "static".into(),
                output: guard::static_answer(content_type, body),
                fallback: None,
            }),
            FallbackTo::Pipeline { .. } => return Err(failure),
        };
        match answered {
            Ok(mut answered) => {
                answered.fallback =
                    Some(self.fell_back(Kind::Function, &name, to, reason, &failure));
                Ok(answered)
            }
            Err(e) => {
                tracing::warn!(%name, fallback = %to.label(), error = %e, "the fallback failed too");
                Err(failure)
            }
        }
    }

    /// Run version `version` of function `name` on `input`, through its
    /// circuit when `breaker` sets one.
    async fn call_version(
        &self,
        name: &Name,
        version: u64,
        input: Message,
        request_id: Arc<str>,
        breaker: Option<Breaker>,
    ) -> Result<(FunctionVersion, Message), NodeError> {
        let loaded = self.load(name.clone(), version).await?;
        // Held for the call: a slot under the function's concurrency cap.
        let _slot = match loaded.record.concurrency {
            Some(cap) => Some(self.gate(&loaded.record, cap)?.enter().await?),
            None => None,
        };
        let identity = loaded.identity(request_id);
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let call = self.engine.call(
            loaded.stage()?,
            identity,
            loaded.config.clone(),
            loaded.record.limits,
            self.reach(&loaded, None),
            input,
        );
        let output = self
            .breaking(Kind::Function, name, version, breaker, async {
                Ok(call.await?)
            })
            .await?;
        Ok((loaded.record.clone(), output))
    }

    /// What a call of `loaded` may reach: models for predictor stages
    /// only, narrowed to a pipeline step's `grant`, and the origins its
    /// deploy allows.
    fn reach(&self, loaded: &Loaded, grant: Option<Arc<Grant>>) -> Reach {
        let world = loaded.record.world;
        Reach {
            models: (world == World::Predictor).then(|| self.models.clone()),
            features: (world == World::Featurizer).then(|| self.features.clone()),
            grant,
            outbound: loaded.outbound.clone(),
        }
    }

    /// Read `names` (all when empty) of the entities `keys` from a feature
    /// table (`TABLE` or `TABLE@VERSION`).
    pub async fn lookup(
        &self,
        table: &str,
        keys: &[impl AsRef<str>],
        names: &[impl AsRef<str>],
    ) -> Result<Lookup, NodeError> {
        Ok(self.features.lookup(table, keys, names).await?)
    }

    /// The feature store, for what runs beside a node rather than through
    /// it (point-in-time export, compaction).
    pub fn features(&self) -> &Arc<FeatureStore> {
        &self.features
    }

    /// The model `selector` picks for `name`, its plan loaded.
    pub async fn model(&self, name: &str, selector: &Selector) -> Result<Arc<Model>, NodeError> {
        Ok(self.models.get(&Name::parse(name)?, selector).await?)
    }

    /// The model `selector` picks for `name`, through its rollout when
    /// unqualified (routed by `headers`), and where the rollout sent the
    /// call.
    pub async fn routed_model(
        &self,
        name: &str,
        selector: &Selector,
        headers: Option<&HeaderMap>,
    ) -> Result<(Arc<Model>, Option<Routed>), NodeError> {
        let name = Name::parse(name)?;
        let (head, _) = self.models.registry().existing_head(&name).await?;
        let keys = Keys {
            headers,
            input: None,
        };
        let (version, routed) = self.route(Kind::Model, &name, &head, selector, Some(keys))?;
        let model = self.models.get(&name, &Selector::Version(version)).await?;
        Ok((model, routed))
    }

    /// Run `model` on named inputs (the other version of a rollout, if it
    /// sent the call there: see [`Self::routed_model`]), through the
    /// circuit of the version that runs. A failure the model's guard has a
    /// fallback version for is answered by that version.
    pub async fn infer_routed(
        self: &Arc<Self>,
        model: &Arc<Model>,
        routed: Option<Routed>,
        inputs: Vec<NamedTensor>,
    ) -> Result<Inferred, NodeError> {
        let name = Name::parse(&model.record.name)?;
        let (head, _) = self.models.registry().existing_head(&name).await?;
        let breaker = guard::breaker_of(&head);
        let has_fallback = head.guard.as_ref().is_some_and(|g| g.fallback.is_some());
        let kept = has_fallback.then(|| inputs.clone());
        let (called, first) = (name.clone(), model.clone());
        let run = move |node: Arc<Self>, version, inputs| {
            let (name, first) = (called.clone(), first.clone());
            async move {
                let model = match version == first.record.version {
                    true => first,
                    false => node.models.get(&name, &Selector::Version(version)).await?,
                };
                node.run_model(&model, inputs, breaker).await
            }
        };
        let version = model.record.version;
        let result = self
            .run_routed(
                Kind::Model,
                &name,
                version,
                routed,
                inputs,
                run,
                |(_, outputs)| outputs.clone(),
            )
            .await;
        let failure = match result {
            Ok((model, outputs)) => {
                return Ok(Inferred {
                    model,
                    outputs,
                    fallback: None,
                });
            }
            Err(e) => e,
        };
        let Some(((to, reason), inputs)) = guard::fallback_for(&head, &failure, version).zip(kept)
        else {
            return Err(failure);
        };
        let FallbackTo::Version { version } = to else {
            return Err(failure);
        };
        let answered = async {
            let model = self.models.get(&name, &Selector::Version(*version)).await?;
            self.run_model(&model, inputs, breaker).await
        };
        match answered.await {
            Ok((model, outputs)) => Ok(Inferred {
                model,
                outputs,
                fallback: Some(self.fell_back(Kind::Model, &name, to, reason, &failure)),
            }),
            Err(e) => {
                tracing::warn!(%name, fallback = %to.label(), error = %e, "the fallback failed too");
                Err(failure)
            }
        }
    }

    /// Run `model` through its version's circuit, if `breaker` sets one.
    async fn run_model(
        &self,
        model: &Arc<Model>,
        inputs: Vec<NamedTensor>,
        breaker: Option<Breaker>,
    ) -> Result<(Arc<Model>, Vec<NamedTensor>), NodeError> {
        let name = Name::parse(&model.record.name)?;
        let run = async { Ok(self.models.run(model, inputs).await?) };
        let outputs =
            (self.breaking(Kind::Model, &name, model.record.version, breaker, run)).await?;
        Ok((model.clone(), outputs))
    }

    /// Run `model` on named inputs; outputs in the model's order.
    pub async fn infer(
        &self,
        model: &Arc<Model>,
        inputs: Vec<NamedTensor>,
    ) -> Result<Vec<NamedTensor>, NodeError> {
        Ok(self.models.run(model, inputs).await?)
    }

    /// The attributions of each model run a request made (recorded with
    /// [`crate::inference::explain::recording`]).
    pub async fn explain(
        &self,
        runs: Vec<(Arc<Model>, Vec<NamedTensor>)>,
    ) -> Result<Vec<Explanation>, NodeError> {
        if runs.is_empty() {
            return Err(InferenceError::InvalidInput(
                "explain=true, but the request ran no model: explanations are of model runs (a pipeline's model steps, a predictor stage's inference calls)".into(),
            )
            .into());
        }
        let mut explained = Vec::with_capacity(runs.len());
        for (model, inputs) in runs {
            explained.push(self.models.explain(&model, &inputs).await?);
        }
        Ok(explained)
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
}
