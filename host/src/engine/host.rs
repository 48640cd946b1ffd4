//! The host side of the WIT contract: generated glue, the per-call sandbox
//! state, and the implementations of the imports a stage may call.
//!
//! `log` and `config` are served here; `inference` hands predictor stages
//! registry models run by the node's model engine (a `model` resource is a
//! handle on a shared plan); `wasi:nn` reaches the same models
//! (`wasi_nn.rs`); `features` reads the node's feature tables (online
//! snapshot, through the cache) for featurizer stages.

use super::output::CapturedOutput;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

#[allow(missing_docs)]
mod gen_ {
    wasmtime::component::bindgen!({
        inline: "
            package sluice:host;
            world node {
                include sluice:pipeline/featurizer@0.1.0;
                include sluice:pipeline/predictor@0.1.0;
            }
        ",
        path: "../wit",
        world: "sluice:host/node",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "sluice:pipeline/inference.model": super::ModelHandle,
        },
    });
}

/// The WIT types shared with stages (converted to [`crate::tensor`]'s in
/// `convert.rs`).
pub(super) mod wit {
    pub use super::gen_::sluice::pipeline::types::{
        Body, ElementType, Field, Message, NamedTensor, Scalar, StageError, Tensor, TensorData,
    };
}

use super::outbound::Outbound;
use super::wasi_nn::{WasiNnCtx, WasiNnView};
use crate::features::{FeatureError, FeatureStore, Value};
use crate::inference::{InferenceError, Models};
use crate::observe::metrics::StageMetrics;
use crate::registry::{Name, RegistryError, Selector};
use gen_::sluice::pipeline::{config, features, inference, log, types};

/// A stage version linked and ready to instantiate in microseconds.
pub type StagePre = gen_::NodePre<StageState>;

/// An HTTP function version (`wasi:http/incoming-handler`), linked.
pub type HttpPre = wasmtime_wasi_http::p2::bindings::ProxyPre<StageState>;

/// A stage's handle on a loaded model: the plan is shared, the handle is
/// the stage's own.
pub struct ModelHandle(Arc<crate::inference::Model>);

/// Who a call belongs to, for log records and metrics.
#[derive(Debug, Clone)]
pub struct StageIdentity {
    /// Function name.
    pub function: Arc<str>,
    /// Function version.
    pub version: u64,
    /// The request being served.
    pub request_id: Arc<str>,
    /// Where its calls are counted.
    pub metrics: StageMetrics,
}

/// What a call may reach besides its input and config.
#[derive(Clone, Default)]
pub struct Reach {
    /// The node's models: predictor stages only.
    pub models: Option<Arc<Models>>,
    /// The node's feature tables: featurizer stages only.
    pub features: Option<Arc<FeatureStore>>,
    /// A pipeline step's grant: the only models and tables it may use.
    /// `None` for a function called on its own (its world decides).
    pub grant: Option<Arc<Grant>>,
    /// Where its outgoing HTTP requests may go (nowhere by default).
    pub outbound: Outbound,
}

/// The models and feature tables a pipeline step's manifest grants it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Whose grant it is, for errors: `pipeline P, step S`.
    pub holder: String,
    /// Model names (any version of each).
    pub models: BTreeSet<String>,
    /// Feature table names.
    pub tables: BTreeSet<String>,
}

impl Grant {
    /// Why `name` of `kind` (`model`, `table`) is out of this grant, if it is.
    pub fn refuses(&self, kind: &str, name: &str) -> Option<String> {
        let (granted, field) = match kind {
            "model" => (&self.models, "models"),
            _ => (&self.tables, "tables"),
        };
        if granted.contains(name) {
            return None;
        }
        let list = if granted.is_empty() {
            "none".to_string()
        } else {
            granted.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        Some(format!(
            "{kind} `{name}` is not granted to {} (it may use: {list}); add it to the step's `{field} = [...]` and redeploy the pipeline",
            self.holder
        ))
    }
}

/// Log records a single call may emit before the rest are dropped.
const MAX_LOG_RECORDS: u32 = 1000;
/// Longest log message kept; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;
/// Fields kept per log record, and bytes of each field's key and value.
const MAX_LOG_FIELDS: usize = 32;
const MAX_LOG_FIELD_KEY: usize = 64;
const MAX_LOG_FIELD_VALUE: usize = 1024;

/// The sandbox state of one call: an empty WASI context (no files, no
/// network; no environment but an HTTP function's config), outgoing HTTP
/// only to the allowed origins, the deployment's config and the call's
/// limits.
pub struct StageState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: MemoryCap,
    config: Arc<BTreeMap<String, String>>,
    identity: StageIdentity,
    log_records: u32,
    /// When the call's deadline passes: synchronous host calls (wasi-nn)
    /// stop waiting then, as the epoch check stops guest code.
    deadline: Instant,
    /// Models and the step's grant.
    reach: Reach,
    /// wasi-nn's state, made on the stage's first wasi-nn call.
    nn: Option<WasiNnCtx>,
}

impl StageState {
    /// `environment`: the config is also the environment (HTTP functions,
    /// which have no `config` interface).
    pub(super) fn new(
        identity: StageIdentity,
        config: Arc<BTreeMap<String, String>>,
        memory_bytes: u64,
        deadline: Instant,
        reach: Reach,
        (stdout, stderr): (CapturedOutput, CapturedOutput),
        environment: bool,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if environment {
            for (key, value) in config.iter() {
                wasi.env(key, value);
            }
        }
        let wasi = wasi.build();
        let limits = MemoryCap {
            bytes: memory_bytes,
            peak: 0,
        };
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits,
            config,
            identity,
            log_records: 0,
            deadline,
            reach,
            nn: None,
        }
    }

    pub(super) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// The largest linear memory the call was granted, in bytes.
    pub(super) fn memory_peak(&self) -> u64 {
        self.limits.peak
    }
}

/// The memory a stage tried to take beyond its cap; the call traps with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "memory limit exceeded: the stage tried to grow its memory to {desired} bytes; its cap is {cap} bytes"
)]
pub struct MemoryLimitExceeded {
    /// The cap, in bytes.
    pub cap: u64,
    /// The size the stage asked for, in bytes.
    pub desired: u64,
}

/// Caps a stage's linear memory. Growing past the cap traps with
/// [`MemoryLimitExceeded`] instead of returning -1 to the guest, where most
/// languages would abort with an unhelpful `unreachable`.
struct MemoryCap {
    bytes: u64,
    /// The largest memory size granted so far (for metrics).
    peak: u64,
}

/// Tables hold function references; no honest stage needs more.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                cap: self.bytes,
                desired: desired as u64,
            }));
        }
        self.peak = self.peak.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StageState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.reach.outbound,
        }
    }
}

/// The linker every function version is prepared against: WASI 0.2 and
/// `wasi:http` (the context grants nothing through files, sockets or
/// outgoing requests but the deploy's allowed origins), the Sluice
/// interfaces and wasi-nn.
pub(super) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StageState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    gen_::Node::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    wasmtime_wasi_nn::wit::add_to_linker(&mut linker, |state: &mut StageState| {
        let nn = state
            .nn
            .get_or_insert_with(|| super::wasi_nn::context(state.reach.clone(), state.deadline));
        WasiNnView::new(&mut state.table, nn)
    })?;
    Ok(linker)
}

impl types::Host for StageState {}

impl log::Host for StageState {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.log_records += 1;
        if self.log_records > MAX_LOG_RECORDS {
            if self.log_records == MAX_LOG_RECORDS + 1 {
                tracing::warn!(function = %self.identity.function, version = self.identity.version,
                    request_id = %self.identity.request_id, "stage exceeded {MAX_LOG_RECORDS} log records; dropping the rest");
            }
            return Ok(());
        }
        let message = truncate(message, MAX_LOG_MESSAGE);
        let fields = fields_text(fields);
        let id = &self.identity;
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(target: "sluice::guest", function = %id.function, version = id.version,
                    request_id = %id.request_id, fields = %fields, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit!(trace),
            log::Level::Debug => emit!(debug),
            log::Level::Info => emit!(info),
            log::Level::Warn => emit!(warn),
            log::Level::Error => emit!(error),
        }
        Ok(())
    }
}

/// A record's fields as `k=v k=v`, bounded: each key and value
/// truncated, at most [`MAX_LOG_FIELDS`] of them, and the rest counted.
fn fields_text(fields: Vec<(String, String)>) -> String {
    let count = fields.len();
    let mut text = String::new();
    for (key, value) in fields.into_iter().take(MAX_LOG_FIELDS) {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&truncate(key, MAX_LOG_FIELD_KEY));
        text.push('=');
        text.push_str(&truncate(value, MAX_LOG_FIELD_VALUE));
    }
    if count > MAX_LOG_FIELDS {
        text.push_str(&format!(" …(+{} more fields)", count - MAX_LOG_FIELDS));
    }
    text
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl config::Host for StageState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).cloned())
    }

    async fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl inference::Host for StageState {}

/// A model failure as the guest sees it; host faults are logged here.
fn guest_error(e: InferenceError) -> inference::InferenceError {
    match e {
        InferenceError::InvalidInput(m) => inference::InferenceError::InvalidInput(m),
        InferenceError::Registry(
            r @ (RegistryError::NotFound { .. }
            | RegistryError::VersionNotFound { .. }
            | RegistryError::AliasNotFound { .. }),
        ) => inference::InferenceError::NotFound(r.to_string()),
        other => {
            tracing::error!(error = %other, "model failure reported to a stage");
            inference::InferenceError::Internal(other.to_string())
        }
    }
}

impl inference::HostModel for StageState {
    async fn load(
        &mut self,
        name: String,
        version: Option<String>,
    ) -> wasmtime::Result<Result<Resource<ModelHandle>, inference::InferenceError>> {
        let Some(models) = self.reach.models.clone() else {
            return Ok(Err(inference::InferenceError::NotAvailable(
                "models are only available to predictor stages".into(),
            )));
        };
        if let Some(refused) = self
            .reach
            .grant
            .as_ref()
            .and_then(|g| g.refuses("model", &name))
        {
            tracing::warn!(model = %name, "{refused}");
            return Ok(Err(inference::InferenceError::NotFound(refused)));
        }
        let selector = match version.as_deref().map(Selector::parse).transpose() {
            Ok(selector) => selector.unwrap_or(Selector::Default),
            Err(e) => return Ok(Err(inference::InferenceError::InvalidInput(e.to_string()))),
        };
        let name = match Name::parse(&name) {
            Ok(name) => name,
            Err(e) => return Ok(Err(inference::InferenceError::InvalidInput(e.to_string()))),
        };
        tracing::debug!(model = %name, ?selector, "stage loads a model");
        match models.get(&name, &selector).await {
            Ok(model) => Ok(Ok(self.table.push(ModelHandle(model))?)),
            Err(e) => Ok(Err(guest_error(e))),
        }
    }

    async fn signature(
        &mut self,
        model: Resource<ModelHandle>,
    ) -> wasmtime::Result<inference::Signature> {
        let handle = self.table.get(&model)?;
        let info = |specs: &[crate::tensor::TensorSpec]| {
            specs
                .iter()
                .map(|s| inference::TensorInfo {
                    name: s.name.clone(),
                    element_type: s.datatype.carried_as().into(),
                    shape: s.shape.iter().map(|d| u64::try_from(*d).ok()).collect(),
                })
                .collect()
        };
        let signature = handle.0.signature();
        Ok(inference::Signature {
            inputs: info(&signature.inputs),
            outputs: info(&signature.outputs),
        })
    }

    async fn run(
        &mut self,
        model: Resource<ModelHandle>,
        inputs: Vec<types::NamedTensor>,
    ) -> wasmtime::Result<Result<Vec<types::NamedTensor>, inference::InferenceError>> {
        let plan = self.table.get(&model)?.0.clone();
        let Some(models) = self.reach.models.clone() else {
            return Ok(Err(inference::InferenceError::NotAvailable(
                "models are only available to predictor stages".into(),
            )));
        };
        let inputs = inputs.into_iter().map(Into::into).collect();
        Ok(models
            .run(&plan, inputs)
            .await
            .map(|outputs| outputs.into_iter().map(Into::into).collect())
            .map_err(guest_error))
    }

    async fn drop(&mut self, model: Resource<ModelHandle>) -> wasmtime::Result<()> {
        self.table.delete(model)?;
        Ok(())
    }
}

impl features::Host for StageState {
    async fn get(
        &mut self,
        table: String,
        entities: Vec<String>,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Vec<Option<types::Scalar>>>, features::FeatureError>> {
        use features::FeatureError as Wit;
        if let Some(refused) = self
            .reach
            .grant
            .as_ref()
            .and_then(|g| g.refuses("table", &table))
        {
            tracing::warn!(%table, "{refused}");
            return Ok(Err(Wit::NotFound(refused)));
        }
        let Some(store) = self.reach.features.clone() else {
            return Ok(Err(Wit::NotAvailable(
                "only featurizer stages read feature tables".into(),
            )));
        };
        if entities.is_empty() || names.is_empty() {
            return Ok(Err(Wit::InvalidInput(
                "name at least one entity and one feature".into(),
            )));
        }
        let lookup = match store.lookup(&table, &entities, &names).await {
            Ok(lookup) => lookup,
            Err(e) => {
                let message = e.to_string();
                return Ok(Err(match e {
                    FeatureError::Registry(RegistryError::NotFound { .. })
                    | FeatureError::Registry(RegistryError::VersionNotFound { .. })
                    | FeatureError::Registry(RegistryError::AliasNotFound { .. })
                    | FeatureError::UnknownFeature { .. } => Wit::NotFound(message),
                    e if e.is_input() => Wit::InvalidInput(message),
                    _ => Wit::Internal(message),
                }));
            }
        };
        Ok(Ok(lookup
            .entities
            .into_iter()
            .map(|entity| entity.values.into_iter().map(scalar).collect())
            .collect()))
    }
}

fn scalar(value: Value) -> Option<types::Scalar> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => types::Scalar::Bool(b),
        Value::Int(i) => types::Scalar::Int(i),
        Value::Float(f) => types::Scalar::Float(f),
        Value::Text(s) => types::Scalar::Text(s.into()),
    })
}
