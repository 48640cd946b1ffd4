//! `pipeline.toml`: what a user writes, parsed and checked before anything
//! is resolved against the registry. Everything found wrong here is named
//! by step and field.
//!
//! ```toml
//! [[pipeline]]
//! name = "iris"
//! timeout_ms = 1000
//!
//! [[pipeline.step]]
//! name = "parse"
//! function = "iris-features"          # NAME, NAME@N or NAME@ALIAS
//! config = { fields = "sepal_length,sepal_width,petal_length,petal_width" }
//!
//! [[pipeline.step]]
//! name = "classify"
//! model = "iris"                      # a model step: no component needed
//! inputs = { X = "features" }         # model input X ← the message's tensor `features`
//! ```
//!
//! A file holds `[[pipeline]]` tables (as here, or inside `sluice.toml`), or
//! one pipeline at the top level (`name = ...` and `[[step]]`s).

use super::PipelineError;
use crate::registry::{Name, Selector};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A whole-request budget for a pipeline that names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The longest budget a pipeline may ask for (the same as a stage's).
pub const MAX_TIMEOUT_MS: u64 = 900_000;
/// The longest a pipeline's answers may be kept.
pub const MAX_CACHE_TTL_SECS: u64 = 86_400;
/// Retries one step may ask for.
pub const MAX_RETRIES: u32 = 10;

/// One pipeline as written, after the checks that need no registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The pipeline's name (its route: `/p/{name}`).
    pub name: String,
    /// A free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The budget of one request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Keep each answer this many seconds and answer the same input (of
    /// the same version) from memory; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_secs: Option<u64>,
    /// The steps, in the order written.
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
}

/// One step: a function or a model, where it sits in the graph and what
/// happens when it fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The step's name, unique in its pipeline.
    pub name: String,
    /// A function: `NAME`, `NAME@N` or `NAME@ALIAS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// A model, run on the message's tensors: `NAME`, `NAME@N` or
    /// `NAME@ALIAS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A local file with the step's component (`.wasm`) or model
    /// (`.onnx`), relative to the manifest: `sluice deploy` uploads it when
    /// no version of the function or model holds it yet, and pins the step
    /// to the version that does. Read only by the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Config values that override the function's deploy config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The models this step's stage may load (a predictor function's
    /// grant; any version of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// The feature tables this step's stage may read (a featurizer's grant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Model input ← the message's tensor, where names differ.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// Model output → the name later steps see it by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// The steps whose output this one takes (default: the step written
    /// before it; `[]`: the request itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
    /// Run only when this holds (otherwise the step passes its input on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// Deadline of this step, in milliseconds (never past what remains of
    /// the request's budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Memory cap of this step's stage, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Fuel of this step's stage, when the node runs with fuel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// The step may run again with the same input (model steps always may).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// Further attempts after a failure that is not the caller's fault.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<u64>,
    /// What a failure (after retries) does to the request.
    #[serde(default, skip_serializing_if = "OnError::is_fail")]
    pub on_error: OnError,
    /// Follow the alias named in `function`/`model` as it moves, instead
    /// of the version it pointed at when the pipeline was deployed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A condition on the step's input message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// A field (a scalar of the message) to test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A tensor of the message to test (only `exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    /// The field equals this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// The field equals one of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The field or tensor is present (`true`) or absent (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// What a failed step does to the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnError {
    /// The request fails, naming the step.
    #[default]
    Fail,
    /// The step passes its input on, as if it had been skipped.
    Skip,
    /// Another step of the pipeline runs in its place on the same input.
    Fallback(String),
}

impl OnError {
    fn is_fail(&self) -> bool {
        *self == Self::Fail
    }
}

impl Serialize for OnError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fail => s.serialize_str("fail"),
            Self::Skip => s.serialize_str("skip"),
            Self::Fallback(step) => s.serialize_str(step),
        }
    }
}

impl<'de> Deserialize<'de> for OnError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "fail" => Self::Fail,
            "skip" => Self::Skip,
            step => Self::Fallback(step.to_string()),
        })
    }
}

/// What kind of thing a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A function (a stage component).
    Function,
    /// A model, run on the host.
    Model,
}

impl Step {
    /// What the step runs: its kind and `NAME[@VERSION|@ALIAS]` as written.
    pub fn target(&self) -> (StepKind, &str) {
        match (&self.function, &self.model) {
            (Some(f), _) => (StepKind::Function, f),
            (None, Some(m)) => (StepKind::Model, m),
            (None, None) => (StepKind::Function, ""),
        }
    }

    /// The target's name and selector (checked by [`Pipeline::check`]).
    pub fn name_and_selector(&self) -> (&str, Selector) {
        let (_, text) = self.target();
        Selector::split(text).unwrap_or((text, Selector::Default))
    }
}

/// Parse a manifest file's text: every pipeline in it, each checked.
pub fn parse(text: &str) -> Result<Vec<Pipeline>, PipelineError> {
    #[derive(Deserialize)]
    struct Tables {
        #[serde(default)]
        pipeline: Vec<Pipeline>,
    }
    let table: toml::Table =
        toml::from_str(text).map_err(|e| PipelineError::Manifest(e.to_string()))?;
    let pipelines = if table.contains_key("pipeline") {
        // Other tables ([[function]], [[example]]) belong to `sluice up`.
        let only = toml::Table::from_iter(table.into_iter().filter(|(k, _)| k == "pipeline"));
        only.try_into::<Tables>()
            .map_err(|e| PipelineError::Manifest(e.to_string()))?
            .pipeline
    } else {
        vec![
            table
                .try_into::<Pipeline>()
                .map_err(|e| PipelineError::Manifest(e.to_string()))?,
        ]
    };
    for pipeline in &pipelines {
        pipeline.check()?;
    }
    Ok(pipelines)
}

/// Parse one pipeline sent for deploy: its manifest as TOML (one
/// pipeline, at the top level or as the only `[[pipeline]]`) or as JSON.
pub fn parse_one(bytes: &[u8]) -> Result<Pipeline, PipelineError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| PipelineError::Manifest(format!("not UTF-8 text: {e}")))?;
    if text.trim_start().starts_with('{') {
        let pipeline: Pipeline =
            serde_json::from_str(text).map_err(|e| PipelineError::Manifest(e.to_string()))?;
        pipeline.check()?;
        return Ok(pipeline);
    }
    let mut pipelines = parse(text)?;
    match pipelines.len() {
        1 => Ok(pipelines.remove(0)),
        n => Err(PipelineError::Manifest(format!(
            "a deploy takes one pipeline; this manifest has {n} (`sluice deploy FILE` deploys each)"
        ))),
    }
}

impl Pipeline {
    /// The budget of one request.
    pub fn budget_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// Check everything that needs no registry: names, targets, the graph
    /// (no unknown parent, no cycle), fallbacks, conditions, retries.
    pub fn check(&self) -> Result<(), PipelineError> {
        Name::parse(&self.name).map_err(|e| self.invalid(None, "name", e.to_string()))?;
        if self.steps.is_empty() {
            return Err(self.invalid(
                None,
                "step",
                "a pipeline needs at least one [[pipeline.step]]".into(),
            ));
        }
        if let Some(t) = self.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(self.invalid(
                None,
                "timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}, not {t}"),
            ));
        }
        if let Some(ttl) = self.cache_ttl_secs
            && !(1..=MAX_CACHE_TTL_SECS).contains(&ttl)
        {
            return Err(self.invalid(
                None,
                "cache_ttl_secs",
                format!("must be between 1 and {MAX_CACHE_TTL_SECS} (a day), not {ttl}; leave it out to cache nothing"),
            ));
        }
        let mut seen = BTreeSet::new();
        for step in &self.steps {
            if !seen.insert(step.name.as_str()) {
                return Err(self.invalid(
                    Some(step),
                    "name",
                    "another step has this name; step names must be unique".into(),
                ));
            }
            Name::parse(&step.name).map_err(|e| self.invalid(Some(step), "name", e.to_string()))?;
            self.check_step(step)?;
        }
        let fallbacks = self.fallbacks();
        for step in &self.steps {
            if let OnError::Fallback(to) = &step.on_error {
                let Some(fallback) = self.step(to) else {
                    return Err(self.invalid(
                        Some(step),
                        "on_error",
                        format!("`{to}` is neither \"fail\", \"skip\" nor a step of this pipeline"),
                    ));
                };
                if to == &step.name {
                    return Err(self.invalid(
                        Some(step),
                        "on_error",
                        "a step cannot be its own fallback".into(),
                    ));
                }
                if fallback.after.is_some() || fallback.when.is_some() {
                    return Err(self.invalid(Some(fallback), "after", format!(
                        "a fallback step runs in place of `{}`, on its input: it takes no `after` or `when`",
                        step.name
                    )));
                }
                if !matches!(fallback.on_error, OnError::Fail) {
                    return Err(self.invalid(
                        Some(fallback),
                        "on_error",
                        "a fallback step cannot have a fallback or be skipped itself".into(),
                    ));
                }
            }
        }
        for step in self.graph_steps() {
            for parent in self.parents(step) {
                if self.step(parent).is_none() {
                    return Err(self.invalid(
                        Some(step),
                        "after",
                        format!("no step named `{parent}` in this pipeline"),
                    ));
                }
                if fallbacks.contains(parent) {
                    return Err(self.invalid(Some(step), "after", format!(
                        "`{parent}` is a fallback step (it runs only in place of another): depend on the step it stands in for"
                    )));
                }
                if parent == step.name {
                    return Err(self.invalid(
                        Some(step),
                        "after",
                        "a step cannot come after itself".into(),
                    ));
                }
            }
        }
        self.order().map(|_| ())
    }

    fn check_step(&self, step: &Step) -> Result<(), PipelineError> {
        let field = match (&step.function, &step.model) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    Some(step),
                    "function",
                    "a step runs a function or a model, not both".into(),
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    Some(step),
                    "function",
                    "a step needs `function = \"NAME\"` or `model = \"NAME\"`".into(),
                ));
            }
            (Some(_), None) => "function",
            (None, Some(_)) => "model",
        };
        let (_, text) = step.target();
        let (name, selector) =
            Selector::split(text).map_err(|e| self.invalid(Some(step), field, e.to_string()))?;
        Name::parse(name).map_err(|e| self.invalid(Some(step), field, e.to_string()))?;
        if step.follow && !matches!(selector, Selector::Alias(_)) {
            return Err(self.invalid(
                Some(step),
                "follow",
                format!(
                    "follow needs an alias to follow: `{text}` names none (write {name}@ALIAS)"
                ),
            ));
        }
        if step.file.is_some() && (selector != Selector::Default || step.follow) {
            return Err(self.invalid(
                Some(step),
                "file",
                format!("the step runs the version holding this file: name the {field} without a version or alias (`{name}`), and no `follow`"),
            ));
        }
        let is_model = step.model.is_some();
        if is_model {
            for (field, set) in [
                ("config", !step.config.is_empty()),
                ("memory_mb", step.memory_mb.is_some()),
                ("fuel", step.fuel.is_some()),
                ("models", !step.models.is_empty()),
                ("tables", !step.tables.is_empty()),
            ] {
                if set {
                    return Err(self.invalid(
                        Some(step),
                        field,
                        "applies to function steps; a model step runs on the host".into(),
                    ));
                }
            }
        } else {
            for (field, set) in [
                ("inputs", !step.inputs.is_empty()),
                ("outputs", !step.outputs.is_empty()),
            ] {
                if set {
                    return Err(self.invalid(Some(step), field, "renames a model's tensors; a function step reads and writes the message itself".into()));
                }
            }
        }
        for (field, names) in [("models", &step.models), ("tables", &step.tables)] {
            for granted in names {
                Name::parse(granted).map_err(|e| {
                    self.invalid(
                        Some(step),
                        field,
                        format!(
                            "`{granted}`: {e} (grant plain names; the stage picks the version)"
                        ),
                    )
                })?;
            }
        }
        if step.retries > MAX_RETRIES {
            return Err(self.invalid(
                Some(step),
                "retries",
                format!("at most {MAX_RETRIES}, not {}", step.retries),
            ));
        }
        if step.retries > 0 && !is_model && !step.idempotent {
            return Err(self.invalid(Some(step), "retries", "retrying runs the stage again on the same input: mark the step `idempotent = true` if that is safe".into()));
        }
        if let Some(t) = step.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(self.invalid(
                Some(step),
                "timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}, not {t}"),
            ));
        }
        if let Some(when) = &step.when {
            self.check_when(step, when)?;
        }
        Ok(())
    }

    fn check_when(&self, step: &Step, when: &When) -> Result<(), PipelineError> {
        let bad = |m: &str| self.invalid(Some(step), "when", m.into());
        let tests = [
            when.equals.is_some(),
            when.one_of.is_some(),
            when.exists.is_some(),
        ];
        match (&when.field, &when.tensor) {
            (Some(_), Some(_)) | (None, None) => {
                Err(bad("names one `field` or one `tensor` to test"))
            }
            _ if tests.iter().filter(|t| **t).count() != 1 => Err(bad(
                "takes exactly one test: `equals`, `one_of` or `exists`",
            )),
            (None, Some(_)) if when.exists.is_none() => {
                Err(bad("a tensor can only be tested with `exists`"))
            }
            _ => Ok(()),
        }
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Names of the steps that only run in place of another.
    pub fn fallbacks(&self) -> BTreeSet<&str> {
        self.steps
            .iter()
            .filter_map(|s| match &s.on_error {
                OnError::Fallback(to) => Some(to.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The steps of the graph (every step but the fallbacks), as written.
    pub fn graph_steps(&self) -> impl Iterator<Item = &Step> {
        let fallbacks = self.fallbacks();
        self.steps
            .iter()
            .filter(move |s| !fallbacks.contains(s.name.as_str()))
    }

    /// The steps whose output `step` takes: its `after`, else the graph
    /// step written before it (none for the first: the request).
    pub fn parents<'a>(&'a self, step: &'a Step) -> Vec<&'a str> {
        if let Some(after) = &step.after {
            return after.iter().map(String::as_str).collect();
        }
        let mut previous = None;
        for s in self.graph_steps() {
            if s.name == step.name {
                break;
            }
            previous = Some(s.name.as_str());
        }
        previous.into_iter().collect()
    }

    /// The graph steps in an order where every step comes after its
    /// parents (written order among independent steps).
    pub fn order(&self) -> Result<Vec<&Step>, PipelineError> {
        let steps: Vec<&Step> = self.graph_steps().collect();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::with_capacity(steps.len());
        while order.len() < steps.len() {
            let ready = steps.iter().find(|s| {
                !done.contains(s.name.as_str()) && self.parents(s).iter().all(|p| done.contains(p))
            });
            match ready {
                Some(step) => {
                    done.insert(step.name.as_str());
                    order.push(*step);
                }
                None => {
                    let stuck: Vec<&str> = steps
                        .iter()
                        .map(|s| s.name.as_str())
                        .filter(|s| !done.contains(s))
                        .collect();
                    return Err(PipelineError::Invalid {
                        pipeline: self.name.clone(),
                        step: stuck.first().map(|s| s.to_string()),
                        field: "after",
                        reason: format!(
                            "the steps {} wait on each other in a cycle",
                            stuck.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(order)
    }

    /// The graph steps no other step takes output from: their merged
    /// outputs are the answer.
    pub fn sinks(&self) -> Vec<&Step> {
        let used: BTreeSet<&str> = self.graph_steps().flat_map(|s| self.parents(s)).collect();
        self.graph_steps()
            .filter(|s| !used.contains(s.name.as_str()))
            .collect()
    }

    fn invalid(&self, step: Option<&Step>, field: &'static str, reason: String) -> PipelineError {
        PipelineError::Invalid {
            pipeline: self.name.clone(),
            step: step.map(|s| s.name.clone()),
            field,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_manifests_parse_into_checked_pipelines_or_are_refused_and_never_panic() {
        use crate::fuzz::{TOML_TOKENS, iterations, run};
        let graph: &[u8] = br#"
            [[pipeline]]
            name = "iris"
            timeout_ms = 1000
            [[pipeline.step]]
            name = "parse"
            function = "iris-features"
            config = { fields = "a,b" }
            [[pipeline.step]]
            name = "classify"
            model = "iris@stable"
            inputs = { X = "features" }
            retries = 2
            idempotent = true
            [[pipeline.step]]
            name = "explain"
            model = "iris-explainer@3"
            after = ["parse"]
            when = { field = "explain", equals = true }
            [[pipeline.step]]
            name = "join"
            function = "post"
            after = ["classify", "explain"]
            fallback = "parse"
            "#;
        let json: &[u8] = br#"{"name":"p","step":[{"name":"a","function":"f@2"},{"name":"b","model":"m","after":["a"]}]}"#;
        let top: &[u8] = b"name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"f@2\"\n";
        run(
            17,
            iterations(),
            &[graph, json, top],
            TOML_TOKENS,
            |_, input| {
                match parse_one(input) {
                    Ok(pipeline) => {
                        // What is accepted is whole: checked, and ordered.
                        assert!(pipeline.check().is_ok());
                        assert_eq!(
                            pipeline.order().map(|o| o.len()).ok(),
                            Some(pipeline.graph_steps().count())
                        );
                        true
                    }
                    Err(e) => {
                        assert!(
                            matches!(
                                e,
                                PipelineError::Manifest(_) | PipelineError::Invalid { .. }
                            ),
                            "{e:?}"
                        );
                        false
                    }
                }
            },
        );
    }

    fn one(text: &str) -> Result<Pipeline, PipelineError> {
        parse(text).map(|mut p| p.remove(0))
    }

    fn refusal(text: &str) -> String {
        one(text).expect_err("refused").to_string()
    }

    #[test]
    fn a_list_of_steps_is_a_sequence_and_after_makes_a_graph() {
        let pipeline = one(r#"
            [[pipeline]]
            name = "iris"
            timeout_ms = 1000
            [[pipeline.step]]
            name = "parse"
            function = "iris-features"
            config = { fields = "a,b" }
            [[pipeline.step]]
            name = "classify"
            model = "iris@stable"
            inputs = { X = "features" }
            [[pipeline.step]]
            name = "explain"
            model = "iris-explainer@3"
            after = ["parse"]
            [[pipeline.step]]
            name = "join"
            function = "post"
            after = ["classify", "explain"]
            "#)
        .unwrap();
        assert_eq!(pipeline.budget_ms(), 1000);
        let parents = |name: &str| pipeline.parents(pipeline.step(name).unwrap());
        assert_eq!(parents("parse"), Vec::<&str>::new());
        assert_eq!(parents("classify"), vec!["parse"]);
        assert_eq!(parents("explain"), vec!["parse"]);
        assert_eq!(parents("join"), vec!["classify", "explain"]);
        let order: Vec<&str> = pipeline
            .order()
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, ["parse", "classify", "explain", "join"]);
        assert_eq!(pipeline.sinks().len(), 1);
        let classify = pipeline.step("classify").unwrap();
        assert_eq!(classify.target(), (StepKind::Model, "iris@stable"));
        assert_eq!(
            classify.name_and_selector(),
            ("iris", Selector::Alias("stable".into()))
        );
    }

    #[test]
    fn one_pipeline_may_be_written_at_the_top_level() {
        let pipeline = one("name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"f@2\"\n").unwrap();
        assert_eq!(
            pipeline.steps[0].name_and_selector(),
            ("f", Selector::Version(2))
        );
        assert_eq!(pipeline.budget_ms(), DEFAULT_TIMEOUT_MS);
    }

    #[test]
    fn fallback_steps_run_only_in_place_of_another() {
        let pipeline = one(r#"
            name = "p"
            [[step]]
            name = "score"
            model = "big"
            on_error = "rules"
            [[step]]
            name = "rules"
            function = "default-score"
            [[step]]
            name = "post"
            function = "post"
            "#)
        .unwrap();
        assert_eq!(
            pipeline.parents(pipeline.step("post").unwrap()),
            vec!["score"]
        );
        let order: Vec<&str> = pipeline
            .order()
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, ["score", "post"]);
        assert_eq!(
            pipeline.step("score").unwrap().on_error,
            OnError::Fallback("rules".into())
        );
    }

    #[test]
    fn mistakes_are_refused_naming_the_step_and_the_field() {
        let step = |body: &str| format!("name = \"p\"\n[[step]]\nname = \"a\"\n{body}\n");
        for (text, expected) in [
            (
                step("function = \"f\"\nmodel = \"m\""),
                "pipeline p, step a: `function` a step runs a function or a model, not both",
            ),
            (step(""), "step a: `function` a step needs"),
            (step("function = \"F!\""), "step a: `function` invalid name"),
            (
                step("function = \"f\"\nretries = 2"),
                "step a: `retries` retrying runs the stage again",
            ),
            (
                step("model = \"m\"\nconfig = { k = \"v\" }"),
                "step a: `config` applies to function steps",
            ),
            (
                step("function = \"f\"\ninputs = { X = \"x\" }"),
                "step a: `inputs` renames a model's tensors",
            ),
            (
                step("function = \"f\"\nafter = [\"nope\"]"),
                "step a: `after` no step named `nope`",
            ),
            (
                step("function = \"f\"\nafter = [\"a\"]"),
                "step a: `after` a step cannot come after itself",
            ),
            (
                step("function = \"f\"\nfollow = true"),
                "step a: `follow` follow needs an alias",
            ),
            (
                step("function = \"f\"\non_error = \"b\""),
                "step a: `on_error` `b` is neither",
            ),
            (
                step("function = \"f\"\nwhen = { field = \"k\" }"),
                "step a: `when` takes exactly one test",
            ),
            (
                step("function = \"f\"\nwhen = { tensor = \"t\", equals = 1 }"),
                "step a: `when` a tensor can only be tested with `exists`",
            ),
            (
                step("function = \"f\"\ntimeout_ms = 0"),
                "step a: `timeout_ms` must be between 1",
            ),
            (step("function = \"f\"\nspeed = 3"), "unknown field `speed`"),
            (
                "name = \"p\"\n".to_string(),
                "pipeline p: `step` a pipeline needs at least one",
            ),
            (
                format!(
                    "{}[[step]]\nname = \"a\"\nfunction = \"g\"\n",
                    step("function = \"f\"")
                ),
                "step a: `name` another step has this name",
            ),
        ] {
            let got = refusal(&text);
            assert!(
                got.contains(expected),
                "{text}\n→ {got}\nexpected: {expected}"
            );
        }
    }

    #[test]
    fn cycles_are_refused_naming_their_steps() {
        let got = refusal(
            r#"
            name = "p"
            [[step]]
            name = "a"
            function = "f"
            after = ["b"]
            [[step]]
            name = "b"
            function = "f"
            after = ["a"]
            "#,
        );
        assert!(
            got.contains("the steps a, b wait on each other in a cycle"),
            "{got}"
        );
    }
}
