//! Running pipelines: deploy resolves every step against the registries
//! and pins its version; a request walks the step graph with typed
//! messages in memory (no JSON between steps), runs independent steps
//! concurrently, and holds the whole request to one budget: each step's
//! deadline is the smaller of its own and what remains.
//!
//! A pipeline version's plan (step order, parents, merged configs) is built
//! once per node and kept; a request pays a head lookup and the steps.

use super::control::Published;
use super::guard::{self, FellBack};
use super::results::{CacheUse, Kept, input_hash};
use super::{Keys, Kind, Node, NodeError};
use crate::engine::{CallError, Grant, StageLimits, World};
use crate::inference::InferenceError;
use crate::observe::metrics::{Histogram, PipelineMetrics, metrics};
use crate::pipeline::{OnError, Pipeline, PipelineError, PipelineVersion, Step, StepKind, When};
use crate::registry::{FallbackTo, Name, RegistryError, Routed, Selector, now_rfc3339};
use crate::store::StoreError;
use crate::tensor::{Message, NamedTensor, Scalar, Signature, TensorSpec, shape_text};
use axum::http::HeaderMap;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Waits before the first retry of a step that names none.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(10);

/// A pipeline version ready to run.
pub struct Plan {
    /// Its record.
    pub record: PipelineVersion,
    /// `name@version`, as answers and errors name it.
    label: String,
    /// Per step: its function or model and what picks the version (the
    /// pinned one, or the alias a `follow` step tracks).
    targets: Vec<(Name, Selector)>,
    /// Graph steps (indices into the manifest's steps), parents first.
    order: Vec<usize>,
    /// Per step: the indices of its parents.
    parents: Vec<Vec<usize>>,
    /// Per step: how many steps take its output.
    consumers: Vec<usize>,
    /// Per step: its fallback's index.
    fallback: Vec<Option<usize>>,
    /// The steps whose merged outputs are the answer.
    sinks: Vec<usize>,
    /// Per step: what its stage may use (nothing beyond its grant, even
    /// when a followed alias moves to a stage of another world).
    grants: Vec<Arc<Grant>>,
    /// Per function step: the function's deploy config with the step's
    /// overrides, merged on first use.
    configs: Vec<OnceLock<Arc<BTreeMap<String, String>>>>,
    /// Where its requests and steps are counted.
    metrics: PipelineMetrics,
    /// Per step: its name, as the metrics label it.
    step_names: Vec<Arc<str>>,
    /// Per step: the duration histogram of its runs that `ran`.
    step_ran: Vec<Histogram>,
}

impl Plan {
    fn new(record: PipelineVersion) -> Result<Self, PipelineError> {
        let pipeline = &record.pipeline;
        let index: HashMap<&str, usize> = pipeline
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let at = |name: &str| index.get(name).copied().unwrap_or_default();
        let order = pipeline.order()?.iter().map(|s| at(&s.name)).collect();
        let parents: Vec<Vec<usize>> = pipeline
            .steps
            .iter()
            .map(|s| pipeline.parents(s).into_iter().map(at).collect())
            .collect();
        let mut consumers = vec![0; parents.len()];
        for p in parents.iter().flatten() {
            consumers[*p] += 1;
        }
        let sinks: Vec<usize> = pipeline.sinks().iter().map(|s| at(&s.name)).collect();
        for s in &sinks {
            consumers[*s] += 1;
        }
        let fallback = pipeline
            .steps
            .iter()
            .map(|s| match &s.on_error {
                OnError::Fallback(to) => Some(at(to)),
                _ => None,
            })
            .collect();
        let grants = pipeline
            .steps
            .iter()
            .map(|s| {
                Arc::new(Grant {
                    holder: format!("pipeline {}, step {}", record.name, s.name),
                    models: s.models.iter().cloned().collect(),
                    tables: s.tables.iter().cloned().collect(),
                })
            })
            .collect();
        let targets = pipeline
            .steps
            .iter()
            .map(|s| {
                let (name, selector) = s.name_and_selector();
                let pinned =
                    Selector::Version(record.pinned.get(&s.name).copied().unwrap_or_default());
                Ok((Name::parse(name)?, if s.follow { selector } else { pinned }))
            })
            .collect::<Result<_, crate::registry::InvalidName>>()
            .map_err(|e| PipelineError::Manifest(e.to_string()))?;
        let configs = pipeline.steps.iter().map(|_| OnceLock::new()).collect();
        let metrics = metrics().pipeline(&record.name, record.version);
        Ok(Self {
            step_ran: pipeline
                .steps
                .iter()
                .map(|s| metrics.step_histogram(&s.name, "ran"))
                .collect(),
            metrics,
            step_names: pipeline
                .steps
                .iter()
                .map(|s| s.name.as_str().into())
                .collect(),
            label: format!("{}@{}", record.name, record.version),
            targets,
            record,
            order,
            parents,
            consumers,
            fallback,
            sinks,
            grants,
            configs,
        })
    }
}

/// What one step did in a request.
#[derive(Debug, Clone)]
pub struct StepTiming {
    /// The step's name.
    pub step: String,
    /// How long it took, retries and fallback included.
    pub took: Duration,
    /// `ran`, `skipped` (its `when` did not hold), `failed-skipped`
    /// (`on_error = "skip"`) or `fallback` (its fallback answered).
    pub outcome: &'static str,
}

/// A pipeline request's answer.
#[derive(Debug)]
pub struct PipelineRun {
    /// `name@version` of the pipeline that ran.
    pub pipeline: String,
    /// The merged output of the last steps.
    pub output: Message,
    /// Per step, in the order they finished (none for a cached answer).
    pub timings: Vec<StepTiming>,
    /// How the result cache served it, for a pipeline that caches.
    pub cache: Option<CacheUse>,
    /// Set when the guard's fallback answered instead of the version
    /// called (such answers are never cached).
    pub fallback: Option<FellBack>,
}

/// Whether a request asks not to be answered from a cache
/// (`Cache-Control: no-cache` or `no-store`).
fn no_cache(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            matches!(
                d.trim().to_ascii_lowercase().as_str(),
                "no-cache" | "no-store"
            )
        })
}

impl Node {
    /// Check `manifest`, resolve its steps and store it as a new version.
    pub(super) async fn deploy_pipeline(
        &self,
        name: &Name,
        manifest: Pipeline,
        created_by: String,
    ) -> Result<Published, NodeError> {
        manifest.check()?;
        if let Some(step) = manifest.steps.iter().find(|s| s.file.is_some()) {
            return Err(PipelineError::Invalid {
                pipeline: manifest.name.clone(),
                step: Some(step.name.clone()),
                field: "file",
                reason: "a local file is uploaded by `sluice deploy FILE.toml`, which then pins the step to its version; a manifest sent to the API names functions and models that exist".into(),
            }
            .into());
        }
        if manifest.name != name.as_str() {
            return Err(NodeError::InvalidSetting(format!(
                "the manifest names pipeline `{}` but it is deployed as `{name}`; deploy it under its own name",
                manifest.name
            )));
        }
        let invalid = |step: &str, field: &'static str, reason: String| PipelineError::Invalid {
            pipeline: manifest.name.clone(),
            step: Some(step.to_string()),
            field,
            reason,
        };
        let ceiling = self.engine.config().max_memory_bytes >> 20;
        let mut pinned = BTreeMap::new();
        // Each model step's signature, its tensors renamed as the message
        // has them: what it is known to take and produce (for fan-in
        // clashes and the pipeline's own signature).
        let mut specs: HashMap<&str, Signature> = HashMap::new();
        for step in &manifest.steps {
            let (target, selector) = step.name_and_selector();
            let target = Name::parse(target)?;
            let (kind, _) = step.target();
            let field = match kind {
                StepKind::Function => "function",
                StepKind::Model => "model",
            };
            let unknown = |e: RegistryError| {
                invalid(&step.name, field, format!("`{}`: {e}", step.target().1))
            };
            match kind {
                StepKind::Function => {
                    let version = self
                        .functions
                        .resolve_number(&target, &selector)
                        .await
                        .map_err(unknown)?;
                    if let Some(mb) = step.memory_mb
                        && !(1..=ceiling).contains(&mb)
                    {
                        return Err(invalid(&step.name, "memory_mb", format!("must be between 1 and this node's ceiling of {ceiling} MiB, not {mb}")).into());
                    }
                    let fuel = StageLimits::fuel_range();
                    if let Some(f) = step.fuel
                        && !fuel.contains(&f)
                    {
                        return Err(invalid(
                            &step.name,
                            "fuel",
                            format!(
                                "must be between {} and {}, not {f}",
                                fuel.start(),
                                fuel.end()
                            ),
                        )
                        .into());
                    }
                    let world = self.functions.record_of(&target, version).await?.world;
                    self.check_grant(step, world)
                        .await
                        .map_err(|(field, reason)| invalid(&step.name, field, reason))?;
                    pinned.insert(step.name.clone(), version);
                }
                StepKind::Model => {
                    let registry = self.models.registry();
                    let version = registry
                        .resolve_number(&target, &selector)
                        .await
                        .map_err(unknown)?;
                    let record = registry.record_of(&target, version).await?;
                    let signature = &record.signature;
                    for (field, renamed, specs) in [
                        ("inputs", &step.inputs, &signature.inputs),
                        ("outputs", &step.outputs, &signature.outputs),
                    ] {
                        if let Some(unknown) = renamed
                            .keys()
                            .find(|n| !specs.iter().any(|s| &s.name == *n))
                        {
                            let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                            let noun = field.trim_end_matches('s');
                            return Err(invalid(&step.name, field, format!(
                                "model {target}@{version} has no {noun} `{unknown}`; its {field} are {}", known.join(", ")
                            )).into());
                        }
                    }
                    // The model's tensors as the message names them.
                    let renamed = |specs: &[TensorSpec], to: &BTreeMap<String, String>| {
                        specs
                            .iter()
                            .map(|s| TensorSpec {
                                name: to.get(&s.name).unwrap_or(&s.name).clone(),
                                ..s.clone()
                            })
                            .collect::<Vec<_>>()
                    };
                    specs.insert(
                        step.name.as_str(),
                        Signature {
                            inputs: renamed(&signature.inputs, &step.inputs),
                            outputs: renamed(&signature.outputs, &step.outputs),
                        },
                    );
                    pinned.insert(step.name.clone(), version);
                }
            }
        }
        for step in manifest.graph_steps() {
            let parents = manifest.parents(step);
            let mut from: HashMap<&str, &str> = HashMap::new();
            for parent in &parents {
                for tensor in specs.get(parent).into_iter().flat_map(|s| &s.outputs) {
                    let tensor = tensor.name.as_str();
                    if let Some(other) = from.insert(tensor, parent) {
                        return Err(invalid(&step.name, "after", format!(
                            "tensor `{tensor}` comes from both `{other}` and `{parent}`; rename one with `outputs = {{ {tensor} = \"...\" }}` on that step"
                        )).into());
                    }
                }
            }
            // Where every parent is a model step, its outputs are known:
            // a model step must find each of its inputs among them.
            let known = !parents.is_empty() && parents.iter().all(|p| specs.contains_key(p));
            if let (true, Some(own)) = (known, specs.get(step.name.as_str())) {
                let produced: Vec<&TensorSpec> =
                    parents.iter().flat_map(|p| &specs[p].outputs).collect();
                for input in &own.inputs {
                    let listed = || {
                        produced
                            .iter()
                            .map(|o| format!("{} {} {}", o.name, o.datatype, shape_text(&o.shape)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    match produced.iter().find(|o| o.name == input.name) {
                        None => {
                            return Err(invalid(&step.name, "inputs", format!(
                                "the model needs tensor `{}` and no step before it produces one (they produce {}); map it with `inputs = {{ MODEL_INPUT = \"TENSOR\" }}`",
                                input.name, listed()
                            )).into());
                        }
                        Some(o)
                            if o.datatype != input.datatype
                                || o.shape.len() != input.shape.len() =>
                        {
                            return Err(invalid(&step.name, "inputs", format!(
                                "the model takes `{}` as {} {} but the step before it produces {} {}",
                                input.name, input.datatype, shape_text(&input.shape), o.datatype, shape_text(&o.shape)
                            )).into());
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        let mut signature = Signature::default();
        for root in manifest
            .graph_steps()
            .filter(|s| manifest.parents(s).is_empty())
        {
            for spec in specs.get(root.name.as_str()).map_or(&[][..], |s| &s.inputs) {
                if !signature.inputs.iter().any(|s| s.name == spec.name) {
                    signature.inputs.push(spec.clone());
                }
            }
        }
        for sink in manifest.sinks() {
            for spec in specs
                .get(sink.name.as_str())
                .map_or(&[][..], |s| &s.outputs)
            {
                if !signature.outputs.iter().any(|s| s.name == spec.name) {
                    signature.outputs.push(spec.clone());
                }
            }
        }
        let record = PipelineVersion {
            name: name.to_string(),
            version: 0,
            pinned,
            signature,
            pipeline: manifest,
            created_at: now_rfc3339(),
            created_by,
        };
        let (version, created) = self.pipelines.record(name, record).await?;
        tracing::info!(pipeline = %name, version = version.version, created, "pipeline deployed");
        Ok(Published {
            version: version.into(),
            created,
        })
    }

    /// A function step's grant against what its stage's world reaches:
    /// a predictor must be granted the models it loads, a featurizer the
    /// tables it reads, and nothing else may be granted either. Granted
    /// models must exist.
    async fn check_grant(&self, step: &Step, world: World) -> Result<(), (&'static str, String)> {
        let function = step.target().1;
        if !world.is_stage() {
            return Err((
                "function",
                format!(
                    "`{function}` is an HTTP function (wasi:http/incoming-handler); a pipeline's steps are stages exporting sluice:pipeline/stage"
                ),
            ));
        }
        for (field, granted, reaches) in [
            ("models", &step.models, World::Predictor),
            ("tables", &step.tables, World::Featurizer),
        ] {
            match (world == reaches, granted.is_empty()) {
                (true, true) => {
                    return Err((
                        field,
                        format!(
                            "`{function}` is a {world} stage: list what it may use with `{field} = [\"NAME\", ...]` (it is refused everything else)"
                        ),
                    ));
                }
                (false, false) => {
                    return Err((
                        field,
                        format!(
                            "`{function}` is a {world} stage and cannot use {field}; remove `{field}`"
                        ),
                    ));
                }
                _ => {}
            }
        }
        for model in &step.models {
            let name = Name::parse(model).map_err(|e| ("models", e.to_string()))?;
            self.models
                .registry()
                .resolve_number(&name, &Selector::Default)
                .await
                .map_err(|e| ("models", format!("`{model}`: {e}")))?;
        }
        Ok(())
    }

    /// The version of pipeline `name` that `selector` picks, ready to run.
    pub async fn pipeline(&self, name: &str, selector: &Selector) -> Result<Arc<Plan>, NodeError> {
        let name = Name::parse(name)?;
        let version = self.pipelines.resolve_number(&name, selector).await?;
        self.plan(&name, version).await
    }

    /// The plan of `name`'s version `version`, built once per node.
    async fn plan(&self, name: &Name, version: u64) -> Result<Arc<Plan>, NodeError> {
        let key = (name.clone(), version);
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan.clone());
        }
        let record = self.pipelines.record_of(name, version).await?;
        let plan = Arc::new(Plan::new(record)?);
        self.plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// Forget the plan of a deleted pipeline version.
    pub(super) fn forget_plan(&self, name: &Name, version: u64) {
        self.plans.remove(&(name.clone(), version));
        self.results.retain(name, |v| v != version);
    }

    /// Run the version of pipeline `name` that `selector` picks on
    /// `input`. An unqualified call (`NAME`) goes where the pipeline's
    /// rollout sends it, read from `headers` and `input` when it is sticky.
    pub async fn run_pipeline(
        self: &Arc<Self>,
        name: &str,
        selector: &Selector,
        input: Message,
        request_id: Arc<str>,
        headers: Option<&HeaderMap>,
    ) -> Result<PipelineRun, NodeError> {
        let keys = Keys {
            headers,
            input: Some(&input),
        };
        let (plan, routed) = self.routed_pipeline(name, selector, keys).await?;
        let Some(ttl) = plan.record.pipeline.cache_ttl_secs else {
            return self.run_routed_plan(&plan, routed, input, request_id).await;
        };
        let bypass = headers.is_some_and(no_cache);
        let (name, version) = (Name::parse(&plan.record.name)?, plan.record.version);
        let hash = input_hash(&input);
        if !bypass
            && let Some(kept) = (self.results).get(&name, version, &hash, Duration::from_secs(ttl))
        {
            return Ok(PipelineRun {
                pipeline: kept.pipeline.clone(),
                output: kept.output.clone(),
                timings: Vec::new(),
                cache: Some(CacheUse::Hit),
                fallback: None,
            });
        }
        let mut run = self
            .run_routed_plan(&plan, routed, input, request_id)
            .await?;
        if run.fallback.is_some() {
            return Ok(run);
        }
        let kept = Kept {
            pipeline: run.pipeline.clone(),
            output: run.output.clone(),
        };
        self.results.put(&name, version, hash, kept);
        run.cache = Some(if bypass {
            CacheUse::Bypass
        } else {
            CacheUse::Miss
        });
        Ok(run)
    }

    /// The plan of pipeline `name` that `selector` picks, through its
    /// rollout when unqualified, and where the rollout sent the call.
    pub async fn routed_pipeline(
        &self,
        name: &str,
        selector: &Selector,
        keys: Keys<'_>,
    ) -> Result<(Arc<Plan>, Option<Routed>), NodeError> {
        let name = Name::parse(name)?;
        let (head, _) = self.pipelines.existing_head(&name).await?;
        let (version, routed) = self.route(Kind::Pipeline, &name, &head, selector, Some(keys))?;
        Ok((self.plan(&name, version).await?, routed))
    }

    /// Run `plan` on `input` (the other version of a rollout, if it sent
    /// the call there: see [`Self::routed_pipeline`]). A failure the
    /// pipeline's guard has a fallback for is answered by it (another
    /// version, another pipeline run as its stable version, or a fixed
    /// response; never a fallback's own fallback).
    pub async fn run_routed_plan(
        self: &Arc<Self>,
        plan: &Arc<Plan>,
        routed: Option<Routed>,
        input: Message,
        request_id: Arc<str>,
    ) -> Result<PipelineRun, NodeError> {
        let name = Name::parse(&plan.record.name)?;
        let (head, _) = self.pipelines.existing_head(&name).await?;
        let kept = (head.guard.as_ref())
            .is_some_and(|g| g.fallback.is_some())
            .then(|| input.clone());
        let (called, first, rid) = (name.clone(), plan.clone(), request_id.clone());
        let run = move |node: Arc<Self>, version, input| {
            let (name, first, request_id) = (called.clone(), first.clone(), rid.clone());
            async move {
                let plan = match version == first.record.version {
                    true => first,
                    false => node.plan(&name, version).await?,
                };
                node.run_version(&plan, input, request_id).await
            }
        };
        let version = plan.record.version;
        let result = self
            .run_routed(Kind::Pipeline, &name, version, routed, input, run, |run| {
                run.output.clone()
            })
            .await;
        let failure = match result {
            Ok(run) => return Ok(run),
            Err(e) => e,
        };
        let Some(((to, reason), input)) = guard::fallback_for(&head, &failure, version).zip(kept)
        else {
            return Err(failure);
        };
        let answered = match to {
            FallbackTo::Version { version } => match self.plan(&name, *version).await {
                Ok(plan) => self.run_version(&plan, input, request_id).await,
                Err(e) => Err(e),
            },
            FallbackTo::Pipeline { pipeline } => {
                match self
                    .routed_pipeline(pipeline, &Selector::Default, Keys::default())
                    .await
                {
                    Ok((plan, _)) => self.run_version(&plan, input, request_id).await,
                    Err(e) => Err(e),
                }
            }
            FallbackTo::Static { content_type, body } => Ok(PipelineRun {
                pipeline: "static".into(),
                output: guard::static_answer(content_type, body),
                timings: Vec::new(),
                cache: None,
                fallback: None,
            }),
        };
        match answered {
            Ok(mut run) => {
                run.fallback = Some(self.fell_back(Kind::Pipeline, &name, to, reason, &failure));
                Ok(run)
            }
            Err(e) => {
                tracing::warn!(%name, fallback = %to.label(), error = %e, "the fallback failed too");
                Err(failure)
            }
        }
    }

    /// Run `plan` on `input`, counted in its metrics.
    pub async fn run_version(
        &self,
        plan: &Plan,
        input: Message,
        request_id: Arc<str>,
    ) -> Result<PipelineRun, NodeError> {
        let started = Instant::now();
        let span = tracing::info_span!(target: crate::observe::trace::SPANS, "pipeline", pipeline = %plan.label);
        let run = self
            .run_plan(plan, input, request_id)
            .instrument(span)
            .await;
        let result = run.as_ref().map(|_| ()).map_err(NodeError::kind);
        plan.metrics.record(started.elapsed(), result);
        run
    }

    /// Run `plan`'s steps on `input`, each as soon as its parents are done.
    async fn run_plan(
        &self,
        plan: &Plan,
        input: Message,
        request_id: Arc<str>,
    ) -> Result<PipelineRun, NodeError> {
        let deadline = Instant::now() + Duration::from_millis(plan.record.pipeline.budget_ms());
        let steps = &plan.record.pipeline.steps;
        let count = steps.len();
        let mut outputs: Vec<Option<Message>> = vec![None; count];
        let mut finished = vec![false; count];
        let mut started = vec![false; count];
        let mut left = plan.consumers.clone();
        let mut timings = Vec::with_capacity(count);
        let mut input = Some(input);
        let mut roots_left = plan
            .order
            .iter()
            .filter(|i| plan.parents[**i].is_empty())
            .count();
        let request_id = &request_id;
        let mut running = FuturesUnordered::new();
        loop {
            for &i in &plan.order {
                if started[i] || !plan.parents[i].iter().all(|p| finished[*p]) {
                    continue;
                }
                started[i] = true;
                let message = if plan.parents[i].is_empty() {
                    // The request goes to every root; the last one takes it.
                    roots_left -= 1;
                    match (&input, roots_left > 0) {
                        (Some(m), true) => m.clone(),
                        _ => input.take().unwrap_or_default(),
                    }
                } else {
                    merge(plan, i, &mut outputs, &mut left)?
                };
                let span = tracing::info_span!(target: crate::observe::trace::SPANS, "step", step = %steps[i].name);
                running.push(async move {
                    let begun = Instant::now();
                    let result = self
                        .run_step(plan, i, message, deadline, request_id)
                        .instrument(span)
                        .await;
                    (i, begun.elapsed(), result)
                });
            }
            let Some((i, took, result)) = running.next().await else {
                break;
            };
            match result.as_ref().map_or("failed", |(_, outcome)| *outcome) {
                "ran" => plan.step_ran[i].observe(took.as_secs_f64()),
                outcome => plan.metrics.step(&plan.step_names[i], took, outcome),
            }
            let (output, outcome) = result?;
            timings.push(StepTiming {
                step: steps[i].name.clone(),
                took,
                outcome,
            });
            outputs[i] = Some(output);
            finished[i] = true;
        }
        let output = merge_all(plan, &plan.sinks, &mut outputs, &mut left, None)?;
        if tracing::enabled!(tracing::Level::INFO) {
            let steps: Vec<String> = timings
                .iter()
                .map(|t| {
                    format!(
                        "{}={:.3}ms/{}",
                        t.step,
                        t.took.as_secs_f64() * 1e3,
                        t.outcome
                    )
                })
                .collect();
            tracing::info!(pipeline = %plan.label, steps = %steps.join(" "), "pipeline ran");
        }
        Ok(PipelineRun {
            pipeline: plan.label.clone(),
            output,
            timings,
            cache: None,
            fallback: None,
        })
    }

    /// Run step `i` on `input`: its condition, retries and what a failure
    /// does.
    async fn run_step(
        &self,
        plan: &Plan,
        i: usize,
        input: Message,
        deadline: Instant,
        request_id: &Arc<str>,
    ) -> Result<(Message, &'static str), NodeError> {
        let step = &plan.record.pipeline.steps[i];
        if let Some(when) = &step.when
            && !holds(when, &input)
        {
            return Ok((input, "skipped"));
        }
        // The input is kept only when a retry, a skip or a fallback needs it.
        let keep = step.retries > 0 || step.on_error != OnError::Fail;
        let mut backoff = step
            .retry_backoff_ms
            .map_or(DEFAULT_BACKOFF, Duration::from_millis);
        let mut input = Some(input);
        let mut attempt = 0;
        let failure = loop {
            let given = match (&input, keep) {
                (Some(m), true) => m.clone(),
                _ => input.take().unwrap_or_default(),
            };
            match self.run_once(plan, i, given, deadline, request_id).await {
                Ok(output) => return Ok((output, "ran")),
                Err(e)
                    if attempt < step.retries
                        && retryable(&e)
                        && Instant::now() + backoff < deadline =>
                {
                    attempt += 1;
                    tracing::info!(pipeline = %plan.label, step = %step.name, attempt, error = %e, "retrying step");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => break e,
            }
        };
        match (&step.on_error, plan.fallback[i]) {
            (OnError::Skip, _) if !matches!(failure, NodeError::PipelineTimeout { .. }) => {
                tracing::warn!(pipeline = %plan.label, step = %step.name, error = %failure, "step failed; skipped (on_error = \"skip\")");
                Ok((input.unwrap_or_default(), "failed-skipped"))
            }
            (OnError::Fallback(_), Some(f)) if deadline > Instant::now() => {
                tracing::warn!(pipeline = %plan.label, step = %step.name, error = %failure, fallback = %plan.record.pipeline.steps[f].name, "step failed; running its fallback");
                let output = self
                    .run_once(plan, f, input.unwrap_or_default(), deadline, request_id)
                    .await?;
                Ok((output, "fallback"))
            }
            _ => Err(failure),
        }
    }

    /// One attempt at step `i`.
    async fn run_once(
        &self,
        plan: &Plan,
        i: usize,
        input: Message,
        deadline: Instant,
        request_id: &Arc<str>,
    ) -> Result<Message, NodeError> {
        let step = &plan.record.pipeline.steps[i];
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timed_out = || NodeError::PipelineTimeout {
            pipeline: plan.label.clone(),
            step: step.name.clone(),
            budget_ms: plan.record.pipeline.budget_ms(),
        };
        if remaining.is_zero() {
            return Err(timed_out());
        }
        let in_step = |e: NodeError| NodeError::Step {
            pipeline: plan.label.clone(),
            step: step.name.clone(),
            source: Box::new(e),
        };
        let (target, selector) = &plan.targets[i];
        match step.target().0 {
            StepKind::Model => {
                let own = step.timeout_ms.map_or(remaining, Duration::from_millis);
                let run = async {
                    let model = self.models.get(target, selector).await?;
                    let inputs = model
                        .signature()
                        .inputs
                        .iter()
                        .filter_map(|spec| {
                            let source = step.inputs.get(&spec.name).unwrap_or(&spec.name);
                            let tensor = input.tensors.iter().find(|t| &t.name == source)?;
                            Some(NamedTensor {
                                name: spec.name.clone(),
                                tensor: tensor.tensor.clone(),
                            })
                        })
                        .collect();
                    let breaker = self.breaker(Kind::Model, target).await;
                    let run = async { Ok(self.models.run(&model, inputs).await?) };
                    (self.breaking(Kind::Model, target, model.record.version, breaker, run)).await
                };
                let outputs = match tokio::time::timeout(own.min(remaining), run).await {
                    Ok(outputs) => outputs.map_err(in_step)?,
                    Err(_) if own >= remaining => return Err(timed_out()),
                    Err(_) => {
                        return Err(in_step(NodeError::Call(CallError::DeadlineExceeded(own))));
                    }
                };
                let tensors = outputs
                    .into_iter()
                    .map(|mut t| {
                        if let Some(name) = step.outputs.get(&t.name) {
                            t.name = name.clone();
                        }
                        t
                    })
                    .collect();
                Ok(Message {
                    body: None,
                    tensors,
                    fields: input.fields,
                })
            }
            StepKind::Function => {
                let version = match selector {
                    Selector::Version(v) => *v,
                    _ => self.pick(target, selector, None).await.map_err(in_step)?.1,
                };
                let loaded = self.load(target.clone(), version).await.map_err(in_step)?;
                let _slot = match loaded.record.concurrency {
                    Some(cap) => Some(
                        self.gate(&loaded.record, cap)?
                            .enter()
                            .await
                            .map_err(in_step)?,
                    ),
                    None => None,
                };
                let config = if step.config.is_empty() {
                    loaded.config.clone()
                } else if step.follow {
                    Arc::new(overridden(&loaded.config, &step.config))
                } else {
                    plan.configs[i]
                        .get_or_init(|| Arc::new(overridden(&loaded.config, &step.config)))
                        .clone()
                };
                let mut limits = loaded.record.limits;
                if let Some(t) = step.timeout_ms {
                    limits.timeout_ms = t;
                }
                if let Some(mb) = step.memory_mb {
                    limits.memory_bytes = mb << 20;
                }
                if let Some(fuel) = step.fuel {
                    limits.fuel = fuel;
                }
                let budget_bound = remaining < Duration::from_millis(limits.timeout_ms);
                limits.timeout_ms = limits.timeout_ms.min((remaining.as_millis() as u64).max(1));
                let identity = loaded.identity(request_id.clone());
                self.stats
                    .invocations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let reach = self.reach(&loaded, Some(plan.grants[i].clone()));
                let pre = loaded.stage().map_err(in_step)?;
                let breaker = self.breaker(Kind::Function, target).await;
                let call = async {
                    match (self.engine)
                        .call(pre, identity, config, limits, reach, input)
                        .await
                    {
                        Ok(output) => Ok(output),
                        Err(CallError::DeadlineExceeded(_)) if budget_bound => Err(timed_out()),
                        Err(e) => Err(e.into()),
                    }
                };
                (self.breaking(Kind::Function, target, version, breaker, call))
                    .await
                    .map_err(|e| match e {
                        NodeError::PipelineTimeout { .. } => e,
                        e => in_step(e),
                    })
            }
        }
    }
}

/// A function's deploy config with a step's overrides.
fn overridden(
    base: &BTreeMap<String, String>,
    step: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut config = base.clone();
    config.extend(step.iter().map(|(k, v)| (k.clone(), v.clone())));
    config
}

/// Whether a failure may pass on another attempt: not the caller's
/// mistakes, not a missing function or model.
fn retryable(e: &NodeError) -> bool {
    match e {
        NodeError::Step { source, .. } => retryable(source),
        NodeError::Call(call) => !matches!(call, CallError::InvalidInput(_)),
        NodeError::Inference(InferenceError::Internal(_) | InferenceError::QueueFull { .. })
        | NodeError::Busy { .. }
        | NodeError::Engine(_) => true,
        NodeError::Registry(
            RegistryError::Store(StoreError::Unavailable { .. }) | RegistryError::Contended(_),
        ) => true,
        _ => false,
    }
}

/// Whether `when` holds for `message`.
fn holds(when: &When, message: &Message) -> bool {
    if let Some(tensor) = &when.tensor {
        let present = message.tensors.iter().any(|t| &t.name == tensor);
        return when.exists.is_none_or(|e| e == present);
    }
    let Some(name) = &when.field else {
        return false;
    };
    let value = message
        .fields
        .iter()
        .find(|f| &f.name == name)
        .map(|f| &f.value);
    if let Some(exists) = when.exists {
        return exists == value.is_some();
    }
    let Some(value) = value else { return false };
    let equal = |want: &serde_json::Value| match (value, want) {
        (Scalar::Bool(b), serde_json::Value::Bool(w)) => b == w,
        (Scalar::Int(i), serde_json::Value::Number(w)) => {
            w.as_i64() == Some(*i) || w.as_f64() == Some(*i as f64)
        }
        (Scalar::Float(f), serde_json::Value::Number(w)) => w.as_f64() == Some(*f),
        (Scalar::Text(t), serde_json::Value::String(w)) => t == w,
        _ => false,
    };
    match (&when.equals, &when.one_of) {
        (Some(want), _) => equal(want),
        (None, Some(any)) => any.iter().any(equal),
        (None, None) => false,
    }
}

/// The input of step `i`: its parents' outputs merged.
fn merge(
    plan: &Plan,
    i: usize,
    outputs: &mut [Option<Message>],
    left: &mut [usize],
) -> Result<Message, NodeError> {
    let step = &plan.record.pipeline.steps[i].name;
    merge_all(plan, &plan.parents[i], outputs, left, Some(step))
}

/// The outputs of `from` merged into one message for step `into` (`None`:
/// the answer), each taken, not copied, by the last step that needs it. A
/// tensor or field that two of them carry with different values is a
/// clash.
fn merge_all(
    plan: &Plan,
    from: &[usize],
    outputs: &mut [Option<Message>],
    left: &mut [usize],
    into: Option<&str>,
) -> Result<Message, NodeError> {
    let mut take = |p: usize| -> Message {
        left[p] = left[p].saturating_sub(1);
        if left[p] == 0 {
            outputs[p].take().unwrap_or_default()
        } else {
            outputs[p].clone().unwrap_or_default()
        }
    };
    let Some((&first, rest)) = from.split_first() else {
        return Ok(Message::default());
    };
    let mut merged = take(first);
    for &p in rest {
        let other = take(p);
        let clash = |what: &str, name: &str| {
            let into = into.map_or_else(|| "the answer".to_string(), |step| format!("step {step}"));
            NodeError::InvalidSetting(format!(
                "pipeline {}: {into} receives {what} `{name}` from two steps with different values; rename one of them (`outputs` on a model step)",
                plan.record.name
            ))
        };
        for tensor in other.tensors {
            match merged.tensors.iter().find(|t| t.name == tensor.name) {
                Some(existing) if *existing != tensor => return Err(clash("tensor", &tensor.name)),
                Some(_) => {}
                None => merged.tensors.push(tensor),
            }
        }
        for field in other.fields {
            match merged.fields.iter().find(|f| f.name == field.name) {
                Some(existing) if *existing != field => return Err(clash("field", &field.name)),
                Some(_) => {}
                None => merged.fields.push(field),
            }
        }
        if merged.body.is_none() {
            merged.body = other.body;
        }
    }
    Ok(merged)
}
