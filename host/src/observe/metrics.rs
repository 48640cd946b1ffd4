//! Prometheus metrics: the process's metric families, recorded where things
//! happen (a stage call, a pipeline step, a model run, a store request),
//! and encoded in the Prometheus text format for `GET /metrics`.
//!
//! The families are process-wide, like a node is a process. Per-request
//! paths hold owned handles made once per loaded version ([`StageMetrics`],
//! [`ModelMetrics`], [`PipelineMetrics`]) instead of looking labels up
//! each time. Counters a node already keeps (caches, gates, in-flight) are
//! read at scrape time by a [`Collector`] the node provides, not counted
//! twice.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use prometheus_client::metrics::histogram::Histogram;

/// Latency buckets, in seconds: 50 µs (a warm stage call) to 10 s.
const SECONDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Fuel buckets, in instructions: 10^4 to 10^10.
const INSTRUCTIONS: [f64; 7] = [1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
/// Memory buckets, in bytes: 64 KiB to 4 GiB, ×4.
const BYTES: [f64; 9] = [
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];
/// Batch-size buckets, in requests: 1 to 256, ×2.
const REQUESTS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// An HTTP request: its route (the pattern it matched, so that names do not
/// explode the series), method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// e.g. `/fn/{target}`; `unmatched` for a request no route took.
    pub route: Arc<str>,
    /// e.g. `POST`.
    pub method: &'static str,
    /// e.g. `200`.
    pub status: u16,
}

/// The route and method of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// See [`HttpLabels::route`].
    pub route: Arc<str>,
    /// See [`HttpLabels::method`].
    pub method: &'static str,
}

/// A version of a function.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// Its name.
    pub function: Arc<str>,
    /// Its version number.
    pub version: u64,
}

/// A version of a model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Its name.
    pub model: Arc<str>,
    /// Its version number.
    pub version: u64,
}

/// A version of a pipeline.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    /// Its name.
    pub pipeline: Arc<str>,
    /// Its version number.
    pub version: u64,
}

/// One feature of a model version, for its drift.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    /// The model.
    pub model: Arc<str>,
    /// Its version number.
    pub version: u64,
    /// The feature (or output) name.
    pub feature: String,
}

/// A drift alert of a model version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// The model.
    pub model: Arc<str>,
    /// Its version number.
    pub version: u64,
    /// The level it moved to.
    pub level: &'static str,
}

/// How a call of `L` (a function, model or pipeline version) ended: its
/// labels and `result`, `ok` or the kind of error (`invalid_input`,
/// `deadline`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Outcome<L> {
    /// What was called.
    pub of: L,
    /// How it ended.
    pub result: &'static str,
}

impl<L: EncodeLabelSet> EncodeLabelSet for Outcome<L> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.of.encode(encoder)?;
        ("result", self.result).encode(encoder.encode_label())
    }
}

/// The result counters of one version: `ok` made once, errors looked up.
#[derive(Clone, Debug)]
struct Results<L: 'static> {
    of: L,
    ok: Counter,
    family: &'static Family<Outcome<L>, Counter>,
}

impl<L: Clone + std::hash::Hash + Eq> Results<L> {
    fn new(family: &'static Family<Outcome<L>, Counter>, of: L) -> Self {
        let ok = family.get_or_create_owned(&Outcome {
            of: of.clone(),
            result: "ok",
        });
        Self { of, ok, family }
    }

    fn count(&self, result: Result<(), &'static str>) {
        match result {
            Ok(()) => {
                self.ok.inc();
            }
            Err(kind) => {
                self.family
                    .get_or_create(&Outcome {
                        of: self.of.clone(),
                        result: kind,
                    })
                    .inc();
            }
        }
    }
}

/// A step of a pipeline version, and what it did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// Its version number.
    pub version: u64,
    /// The step's name.
    pub step: Arc<str>,
    /// `ran`, `skipped`, `failed-skipped`, `fallback` or `failed`.
    pub outcome: &'static str,
}

/// A call a rollout routed: the name, the version that ran, its side of
/// the rollout and how it ended (`ok`/`error`; a shadow's `same`,
/// `differ` or `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    /// `function`, `model` or `pipeline`.
    pub kind: &'static str,
    /// Its name.
    pub name: Arc<str>,
    /// The version that ran.
    pub version: u64,
    /// `stable` or `canary`.
    pub arm: &'static str,
    /// How it ended.
    pub result: &'static str,
}

/// A guarded name's protective action: a fallback that answered (`to`
/// says what, `reason` why), a circuit's change of state (`to`: `open`,
/// `half_open`, `closed`), a call a rate limit turned away (`to`: `route`
/// or `per_token`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    /// `function`, `model` or `pipeline`.
    pub kind: &'static str,
    /// Its name.
    pub name: Arc<str>,
    /// What it did.
    pub to: Arc<str>,
    /// Why (`error`, `deadline`, `circuit`; empty for limits and circuits).
    pub reason: &'static str,
}

/// A store operation and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `get`, `exists`, `write`, `delete` or `list`.
    pub operation: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// A store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// See [`StoreLabels::operation`].
    pub operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A histogram family whose histograms have `buckets`.
fn histograms<L: Clone + std::hash::Hash + Eq>(buckets: fn() -> Histogram) -> Histograms<L> {
    Family::new_with_constructor(buckets)
}

fn seconds() -> Histogram {
    Histogram::new(SECONDS)
}

fn instructions() -> Histogram {
    Histogram::new(INSTRUCTIONS)
}

fn bytes() -> Histogram {
    Histogram::new(BYTES)
}

fn requests() -> Histogram {
    Histogram::new(REQUESTS)
}

/// Every metric family the process records.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Their duration, from the request's head to its answer.
    pub http_duration: Histograms<RouteLabels>,
    /// Stage calls, by how they ended.
    pub function_calls: Family<Outcome<FunctionLabels>, Counter>,
    /// Their duration (instantiation included).
    pub function_duration: Histograms<FunctionLabels>,
    /// Instances running a call right now.
    pub instances_active: Family<FunctionLabels, Gauge>,
    /// Instantiation of a fresh instance from the template.
    pub instantiation_duration: Histograms<FunctionLabels>,
    /// Cold starts: a template loaded on demand (precompiled artifact
    /// fetched, or the component compiled).
    pub cold_start_duration: Histograms<FunctionLabels>,
    /// Fuel a call used, when the node meters fuel.
    pub fuel: Histograms<FunctionLabels>,
    /// The largest linear memory a call grew to.
    pub memory_peak: Histograms<FunctionLabels>,
    /// Model runs, by how they ended.
    pub model_runs: Family<Outcome<ModelLabels>, Counter>,
    /// Their duration (queueing and batching included).
    pub model_duration: Histograms<ModelLabels>,
    /// Loading a model version's plan on demand.
    pub model_load_duration: Histograms<ModelLabels>,
    /// Requests per batched run.
    pub batch_size: Histograms<ModelLabels>,
    /// Pipeline requests, by how they ended.
    pub pipeline_requests: Family<Outcome<PipelineLabels>, Counter>,
    /// Their duration.
    pub pipeline_duration: Histograms<PipelineLabels>,
    /// Pipeline steps' duration (retries and fallback included), by
    /// outcome.
    pub step_duration: Histograms<StepLabels>,
    /// Store requests, by operation and result.
    pub store_requests: Family<StoreLabels, Counter>,
    /// Their duration.
    pub store_duration: Histograms<OperationLabels>,
    /// Each feature's population stability index over the drift window.
    pub drift_psi: Family<FeatureLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// A model version's drift level (-1 too few rows, 0 ok, 1 warn, 2 alert).
    pub drift_level: Family<ModelLabels, Gauge>,
    /// Drift level changes this node announced.
    pub drift_alerts: Family<AlertLabels, Counter>,
    /// Calls a rollout routed, by side and result.
    pub rollout_calls: Family<RolloutLabels, Counter>,
    /// A shadow rollout's copies, by how their answer compared.
    pub shadow_calls: Family<RolloutLabels, Counter>,
    /// Rollouts this node rolled back.
    pub rollbacks: Family<RolloutLabels, Counter>,
    /// Calls a fallback answered.
    pub fallbacks: Family<GuardLabels, Counter>,
    /// Circuit state changes.
    pub circuit_changes: Family<GuardLabels, Counter>,
    /// Calls turned away by a rate limit.
    pub rate_limited: Family<GuardLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let metrics = Self {
            registry: Registry::with_prefix("sluice"),
            http_requests: Family::default(),
            http_duration: histograms(seconds),
            function_calls: Family::default(),
            function_duration: histograms(seconds),
            instances_active: Family::default(),
            instantiation_duration: histograms(seconds),
            cold_start_duration: histograms(seconds),
            fuel: histograms(instructions),
            memory_peak: histograms(bytes),
            model_runs: Family::default(),
            model_duration: histograms(seconds),
            model_load_duration: histograms(seconds),
            batch_size: histograms(requests),
            pipeline_requests: Family::default(),
            pipeline_duration: histograms(seconds),
            step_duration: histograms(seconds),
            store_requests: Family::default(),
            store_duration: histograms(seconds),
            drift_psi: Family::default(),
            drift_level: Family::default(),
            drift_alerts: Family::default(),
            rollout_calls: Family::default(),
            shadow_calls: Family::default(),
            rollbacks: Family::default(),
            fallbacks: Family::default(),
            circuit_changes: Family::default(),
            rate_limited: Family::default(),
        };
        metrics.registered()
    }

    /// Register every family under its name and help.
    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "HTTP requests answered, by route pattern, method and status",
            self.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request duration, head to answer",
            self.http_duration.clone(),
        );
        r.register(
            "function_calls",
            "Stage calls by function version and result (ok or the error kind)",
            self.function_calls.clone(),
        );
        r.register(
            "function_call_duration_seconds",
            "Stage call duration, instantiation included",
            self.function_duration.clone(),
        );
        r.register(
            "function_instances_active",
            "Instances of a function version running a call right now",
            self.instances_active.clone(),
        );
        r.register(
            "function_instantiation_duration_seconds",
            "Instantiating a fresh instance from the template",
            self.instantiation_duration.clone(),
        );
        r.register("function_cold_start_duration_seconds", "Cold starts: loading a function version's template on demand (its _count is the number of cold starts)", self.cold_start_duration.clone());
        r.register(
            "function_fuel_instructions",
            "Fuel a stage call used (when the node meters fuel)",
            self.fuel.clone(),
        );
        r.register(
            "function_memory_peak_bytes",
            "The largest linear memory a stage call grew to",
            self.memory_peak.clone(),
        );
        r.register(
            "model_runs",
            "Model runs by model version and result",
            self.model_runs.clone(),
        );
        r.register(
            "model_run_duration_seconds",
            "Model run duration, queueing and batching included",
            self.model_duration.clone(),
        );
        r.register(
            "model_load_duration_seconds",
            "Loading a model version's plan on demand (its _count is the number of loads)",
            self.model_load_duration.clone(),
        );
        r.register(
            "model_batch_size_requests",
            "Requests joined in one batched run",
            self.batch_size.clone(),
        );
        r.register(
            "pipeline_requests",
            "Pipeline requests by pipeline version and result",
            self.pipeline_requests.clone(),
        );
        r.register(
            "pipeline_request_duration_seconds",
            "Pipeline request duration",
            self.pipeline_duration.clone(),
        );
        r.register(
            "pipeline_step_duration_seconds",
            "Pipeline step duration (retries and fallback included), by outcome",
            self.step_duration.clone(),
        );
        r.register(
            "store_requests",
            "Object-store requests by operation and result",
            self.store_requests.clone(),
        );
        r.register(
            "store_request_duration_seconds",
            "Object-store request duration",
            self.store_duration.clone(),
        );
        r.register(
            "drift_psi",
            "Population stability index of a model input feature (or output) over the drift window, every node's rows merged",
            self.drift_psi.clone(),
        );
        r.register(
            "drift_level",
            "Drift level of a model version: -1 too few rows, 0 ok, 1 warn, 2 alert",
            self.drift_level.clone(),
        );
        r.register(
            "drift_alerts",
            "Drift level changes announced by this node (webhook sent), by the level moved to",
            self.drift_alerts.clone(),
        );
        r.register(
            "rollout_calls",
            "Calls a rollout routed, by version, side (stable or canary) and result",
            self.rollout_calls.clone(),
        );
        r.register(
            "shadow_calls",
            "Copies of calls run on a shadow rollout's version, by how their answer compared with the one returned (same, differ, failed)",
            self.shadow_calls.clone(),
        );
        r.register(
            "rollbacks",
            "Rollouts this node rolled back for breaking their SLO",
            self.rollbacks.clone(),
        );
        r.register(
            "fallbacks",
            "Calls a guard's fallback answered, by what answered (to) and why (error, deadline, circuit)",
            self.fallbacks.clone(),
        );
        r.register(
            "circuit_changes",
            "Circuit breaker state changes on this node, by the state moved to (open, half_open, closed); name is name@version",
            self.circuit_changes.clone(),
        );
        r.register(
            "rate_limited",
            "Calls turned away (429) by a guard's rate limit, by bucket (route or per_token)",
            self.rate_limited.clone(),
        );
        self
    }

    /// The handles an HTTP route (its pattern and a method) records its
    /// requests with.
    pub fn http_route(&self, route: &str, method: &'static str) -> RouteMetrics {
        let labels = RouteLabels {
            route: route.into(),
            method,
        };
        RouteMetrics {
            duration: self.http_duration.get_or_create_owned(&labels),
            ok: self.http_requests.get_or_create_owned(&HttpLabels {
                route: labels.route.clone(),
                method,
                status: 200,
            }),
            labels,
        }
    }

    /// The handles a loaded function version records its calls with.
    pub fn function(&'static self, function: &str, version: u64) -> StageMetrics {
        let labels = FunctionLabels {
            function: function.into(),
            version,
        };
        StageMetrics(Arc::new(StageHandles {
            duration: self.function_duration.get_or_create_owned(&labels),
            instantiation: self.instantiation_duration.get_or_create_owned(&labels),
            cold_start: self.cold_start_duration.get_or_create_owned(&labels),
            active: self.instances_active.get_or_create_owned(&labels),
            fuel: self.fuel.get_or_create_owned(&labels),
            memory_peak: self.memory_peak.get_or_create_owned(&labels),
            results: Results::new(&self.function_calls, labels),
        }))
    }

    /// The handles a loaded model version records its runs with.
    pub fn model(&'static self, model: &str, version: u64) -> ModelMetrics {
        let labels = ModelLabels {
            model: model.into(),
            version,
        };
        ModelMetrics {
            duration: self.model_duration.get_or_create_owned(&labels),
            batch_size: self.batch_size.get_or_create_owned(&labels),
            load: self.model_load_duration.get_or_create_owned(&labels),
            results: Results::new(&self.model_runs, labels),
        }
    }

    /// The handles a pipeline version records its requests with.
    pub fn pipeline(&'static self, pipeline: &str, version: u64) -> PipelineMetrics {
        let labels = PipelineLabels {
            pipeline: pipeline.into(),
            version,
        };
        PipelineMetrics {
            duration: self.pipeline_duration.get_or_create_owned(&labels),
            results: Results::new(&self.pipeline_requests, labels),
        }
    }
}

/// An HTTP route's metric handles: made once per route and method, so
/// that a request hashes no labels unless it fails.
#[derive(Debug)]
pub struct RouteMetrics {
    labels: RouteLabels,
    duration: Histogram,
    ok: Counter,
}

impl RouteMetrics {
    /// The route's pattern.
    pub fn route(&self) -> &str {
        &self.labels.route
    }

    /// The method these handles count.
    pub fn method(&self) -> &'static str {
        self.labels.method
    }

    /// Record a request answered with `status` after `took`.
    pub fn record(&self, status: u16, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        if status == 200 {
            self.ok.inc();
        } else {
            metrics()
                .http_requests
                .get_or_create(&HttpLabels {
                    route: self.labels.route.clone(),
                    method: self.labels.method,
                    status,
                })
                .inc();
        }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// A function version's metric handles (cheap to clone: one per call).
#[derive(Clone, Debug)]
pub struct StageMetrics(Arc<StageHandles>);

#[derive(Debug)]
struct StageHandles {
    results: Results<FunctionLabels>,
    duration: Histogram,
    instantiation: Histogram,
    cold_start: Histogram,
    active: Gauge,
    fuel: Histogram,
    memory_peak: Histogram,
}

/// An instance counted as active; dropping it counts it out.
pub struct Active(Gauge);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What one stage call cost.
#[derive(Debug, Clone, Copy)]
pub struct CallCost {
    /// Instantiation, then the whole call.
    pub instantiation: Duration,
    /// The whole call.
    pub total: Duration,
    /// Fuel used, when metered.
    pub fuel: Option<u64>,
    /// The largest linear memory reached, in bytes.
    pub memory_peak: u64,
}

impl StageMetrics {
    /// Count an instance as active until the guard is dropped.
    pub fn enter(&self) -> Active {
        self.0.active.inc();
        Active(self.0.active.clone())
    }

    /// Record a cold start that took `took`.
    pub fn cold_start(&self, took: Duration) {
        self.0.cold_start.observe(took.as_secs_f64());
    }

    /// Record a call that ended with `result` (`Ok` or an error kind).
    pub fn record(&self, cost: &CallCost, result: Result<(), &'static str>) {
        let this = &self.0;
        this.duration.observe(cost.total.as_secs_f64());
        this.instantiation.observe(cost.instantiation.as_secs_f64());
        if let Some(fuel) = cost.fuel {
            this.fuel.observe(fuel as f64);
        }
        this.memory_peak.observe(cost.memory_peak as f64);
        this.results.count(result);
    }
}

/// A model version's metric handles.
#[derive(Clone, Debug)]
pub struct ModelMetrics {
    results: Results<ModelLabels>,
    duration: Histogram,
    batch_size: Histogram,
    load: Histogram,
}

impl ModelMetrics {
    /// Record a run that took `took` and ended with `result`.
    pub fn record(&self, took: Duration, result: Result<(), &'static str>) {
        self.duration.observe(took.as_secs_f64());
        self.results.count(result);
    }

    /// Record a plan load that took `took`.
    pub fn loaded(&self, took: Duration) {
        self.load.observe(took.as_secs_f64());
    }

    /// Record a batched run of `requests` requests.
    pub fn batch(&self, requests: usize) {
        self.batch_size.observe(requests as f64);
    }
}

/// A pipeline version's metric handles.
#[derive(Clone, Debug)]
pub struct PipelineMetrics {
    results: Results<PipelineLabels>,
    duration: Histogram,
}

impl PipelineMetrics {
    /// Record a request that took `took` and ended with `result`.
    pub fn record(&self, took: Duration, result: Result<(), &'static str>) {
        self.duration.observe(took.as_secs_f64());
        self.results.count(result);
    }

    /// The histogram of step `step`'s runs with `outcome`: made once per
    /// plan for the common outcome, so a request hashes no labels.
    pub fn step_histogram(&self, step: &str, outcome: &'static str) -> Histogram {
        metrics().step_duration.get_or_create_owned(&StepLabels {
            pipeline: self.results.of.pipeline.clone(),
            version: self.results.of.version,
            step: step.into(),
            outcome,
        })
    }

    /// Record step `step` that took `took` and ended with `outcome`.
    pub fn step(&self, step: &Arc<str>, took: Duration, outcome: &'static str) {
        metrics()
            .step_duration
            .get_or_create(&StepLabels {
                pipeline: self.results.of.pipeline.clone(),
                version: self.results.of.version,
                step: step.clone(),
                outcome,
            })
            .observe(took.as_secs_f64());
    }
}

/// Record a store request of `operation` that took `took`.
pub fn store_request(operation: &'static str, took: Duration, ok: bool) {
    let metrics = metrics();
    let result = if ok { "ok" } else { "error" };
    metrics
        .store_requests
        .get_or_create(&StoreLabels { operation, result })
        .inc();
    metrics
        .store_duration
        .get_or_create(&OperationLabels { operation })
        .observe(took.as_secs_f64());
}

/// Samples read at scrape time from counters kept elsewhere.
pub struct Samples<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Samples<'_> {
    /// A counter family: `name` (without `sluice_` and `_total`), its help,
    /// and one value per label set.
    pub fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (L, u64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in values {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge family, like [`counters`](Self::counters).
    pub fn gauges<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (L, u64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in values {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// What a node adds at scrape time.
pub trait Sampled: Send + Sync + 'static {
    /// Write its samples.
    fn sample(&self, samples: &mut Samples<'_>) -> Result<(), std::fmt::Error>;
}

struct SampledCollector<S>(Arc<S>);

impl<S> std::fmt::Debug for SampledCollector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampledCollector")
    }
}

impl<S: Sampled> Collector for SampledCollector<S> {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.sample(&mut Samples { encoder })
    }
}

/// A scrape: the process's families, then what `sampled` adds, in the
/// Prometheus text format (version 0.0.4, [`CONTENT_TYPE`]).
pub fn scrape<S: Sampled>(sampled: Arc<S>) -> String {
    let mut registry = Registry::with_prefix("sluice");
    registry.register_collector(Box::new(SampledCollector(sampled)));
    let mut text = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics().registry);
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}
