//! Commands on what a node serves: deploy, functions, models, pipelines,
//! alias, rollback. Each is parsed into a [`Request`], which calls the
//! control-plane service, on the embedded store (an in-process node) or on
//! a running node (`--server`) alike, and prints the answer (`print.rs`).

use super::args::{Expect, TargetArgs, parse_expect, parse_input_shape, parse_key_value};
use super::print;
use super::serve::{cli_engine, local_node};
use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sluice::access::Role;
use sluice::features::Format;
use sluice::http::Client;
use sluice::inference::{Baseline, Batching, Engine, Push};
use sluice::node::{ControlPlane, Deploy, Kind, Published, Settings};
use sluice::pipeline::Pipeline;
use sluice::registry::Guard;
use sluice::registry::rollout::RolloutChange;
use sluice::registry::{Invocation, STABLE};
use sluice::store::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DeployArgs {
    /// The component (.wasm) to upload, or a pipeline manifest (.toml:
    /// every pipeline in it, each under its own name; a step's `file` is
    /// uploaded unless a version already holds it, and the step pinned).
    file: PathBuf,
    /// The function's name: 1-63 of a-z, 0-9, '.', '_', '-' (for a
    /// manifest: deploy only the pipeline of this name).
    #[arg(long)]
    name: Option<String>,
    /// A configuration entry the stage reads through `config` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// A JSON or TOML file of configuration entries (string values; --config wins).
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// A secret configuration entry: read by the stage like --config, never
    /// shown by the API (repeatable).
    #[arg(long = "secret", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    secrets: Vec<(String, String)>,
    /// Deadline of one call, in milliseconds (default 10000).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory cap of one call, in MiB (default 128).
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Instructions one call may execute, on nodes that run with --fuel
    /// (default 10000000000; 1000000 to 1000 times the default).
    #[arg(long)]
    fuel: Option<u64>,
    /// Most calls of this version running at once on a node (default: only
    /// the node's instance pool bounds it).
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Calls that wait for a slot when --max-concurrency are running
    /// (default 0); past it a call gets 503 with Retry-After.
    #[arg(long, requires = "max_concurrency")]
    max_queue: Option<u32>,
    /// Seconds without a call before a node unloads this version
    /// (overrides the node's --function-idle-secs; 0: never).
    #[arg(long)]
    idle_secs: Option<u64>,
    /// An origin (scheme://host[:port]) its outgoing HTTP requests may
    /// reach (repeatable); without it every outgoing request is denied.
    #[arg(long, value_name = "ORIGIN")]
    allow_outbound: Vec<sluice::engine::Origin>,
    /// A description recorded with the version.
    #[arg(long)]
    description: Option<String>,
    /// A label recorded with the version (repeatable), e.g. --label team=risk.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    /// Who may call it on the data plane: `open` (anyone; the default for a
    /// new name) or `token` (an invoker, deployer or admin token covering
    /// its name). A setting of the name: it stays until changed.
    #[arg(long, value_name = "open|token")]
    invoke: Option<Invocation>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Subcommand)]
pub enum FunctionsCommand {
    /// List functions and their newest versions.
    Ls(TargetArgs),
    /// List the versions and aliases of one function.
    Versions {
        /// The function.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete one version of a function (refused while an alias other than `latest` points at it).
    Rm {
        /// The function.
        name: String,
        /// The version to delete.
        version: u64,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Upload an ONNX model as a new version; refused if tract cannot run it.
    Push {
        /// The .onnx file.
        file: PathBuf,
        /// The model's name.
        #[arg(long)]
        name: String,
        /// Baseline statistics of the training data (a JSON file), for drift checks.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// A label recorded with the version (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        labels: Vec<(String, String)>,
        /// A description recorded with the version.
        #[arg(long)]
        description: Option<String>,
        /// The shape of an input the file leaves unknown, e.g. x=N,3,48,192
        /// (N or -1: dynamic) (repeatable).
        #[arg(long = "input-shape", value_name = "NAME=DIMS", value_parser = parse_input_shape)]
        input_shapes: Vec<(String, Vec<i64>)>,
        /// Join concurrent requests into runs of up to this many rows
        /// (dynamic batching; needs a batch dimension on every input and output).
        #[arg(long)]
        max_batch_size: Option<u32>,
        /// How long a request may wait for others to batch with, in microseconds.
        #[arg(long, default_value_t = 2000, requires = "max_batch_size")]
        max_queue_delay_us: u64,
        /// How many requests may wait for a batch; past that a request is
        /// refused at once with 503 and Retry-After.
        #[arg(long, default_value_t = Batching::DEFAULT_MAX_QUEUE_SIZE, requires = "max_batch_size")]
        max_queue_size: u32,
        /// Seconds without a run before a node unloads this version's plan
        /// (overrides the node's --model-idle-secs; 0: never).
        #[arg(long)]
        idle_secs: Option<u64>,
        /// The engine that runs it: tract (built in) or onnxruntime (on
        /// nodes started with --onnxruntime; faster on large matrix
        /// products and convolutions, see BENCHMARKS.md).
        #[arg(long, value_name = "tract|onnxruntime", default_value = "tract")]
        engine: Engine,
        /// Who may call it on the data plane: `open` (anyone; the default
        /// for a new name) or `token` (an invoker, deployer or admin token
        /// covering its name). A setting of the name: it stays until changed.
        #[arg(long, value_name = "open|token")]
        invoke: Option<Invocation>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Compute a model's baseline statistics (for --baseline) from a
    /// sample of its training data: per-feature histograms, the model's
    /// outputs on the sample, and background rows for explanations.
    Baseline(super::drift::BaselineArgs),
    /// List models.
    Ls(TargetArgs),
    /// List the versions (with signatures) and aliases of one model.
    Versions {
        /// The model.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete one version of a model (refused while an alias other than `latest` points at it).
    Rm {
        /// The model.
        name: String,
        /// The version to delete.
        version: u64,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Subcommand)]
pub enum PipelinesCommand {
    /// List pipelines.
    Ls(TargetArgs),
    /// List the versions and aliases of one pipeline.
    Versions {
        /// The pipeline.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show the steps of the version an unqualified call runs (or of VERSION).
    Show {
        /// The pipeline.
        name: String,
        /// A version number (default: `stable`, else `latest`).
        version: Option<u64>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete one version of a pipeline (refused while an alias other than `latest` points at it).
    Rm {
        /// The pipeline.
        name: String,
        /// The version to delete.
        version: u64,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Point ALIAS of NAME at VERSION, e.g. `sluice alias set scaler stable 3`.
    Set {
        /// The function.
        name: String,
        /// The alias (`latest` is maintained by Sluice and cannot be set).
        alias: String,
        /// The version to point at.
        version: u64,
        /// Move only if the alias points at this version now (`none`: only
        /// if it does not exist yet); otherwise fail with the current state.
        #[arg(long, value_parser = parse_expect)]
        expect: Option<Expect>,
        /// NAME is a model, not a function.
        #[arg(long, conflicts_with = "pipeline")]
        model: bool,
        /// NAME is a pipeline, not a function.
        #[arg(long)]
        pipeline: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show the aliases of NAME and where they pointed before.
    Ls {
        /// The function.
        name: String,
        /// NAME is a model, not a function.
        #[arg(long, conflicts_with = "pipeline")]
        model: bool,
        /// NAME is a pipeline, not a function.
        #[arg(long)]
        pipeline: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Remove ALIAS of NAME.
    Rm {
        /// The function.
        name: String,
        /// The alias.
        alias: String,
        /// NAME is a model, not a function.
        #[arg(long, conflicts_with = "pipeline")]
        model: bool,
        /// NAME is a pipeline, not a function.
        #[arg(long)]
        pipeline: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The function.
    name: String,
    /// The alias to move back.
    #[arg(long, default_value = STABLE)]
    alias: String,
    /// NAME is a model, not a function.
    #[arg(long, conflicts_with = "pipeline")]
    model: bool,
    /// NAME is a pipeline, not a function.
    #[arg(long)]
    pipeline: bool,
    #[command(flatten)]
    target: TargetArgs,
}

pub(super) fn kind(model: bool, pipeline: bool) -> Kind {
    match (model, pipeline) {
        (true, _) => Kind::Model,
        (_, true) => Kind::Pipeline,
        _ => Kind::Function,
    }
}

/// A parsed control-plane command.
pub enum Request {
    /// Upload a new version.
    Publish {
        name: String,
        artifact: Bytes,
        settings: Settings,
        invocation: Option<Invocation>,
    },
    /// Deploy pipelines, one after the other, after uploading the files
    /// their steps name (relative to the manifest's folder).
    Pipelines(Vec<Pipeline>, PathBuf, Option<Invocation>),
    /// One version's record (the default one without a number).
    Show(Kind, String, Option<u64>),
    /// Every name of a kind.
    List(Kind),
    /// The versions of one name.
    Versions(Kind, String),
    /// The aliases of one name.
    Aliases(Kind, String),
    /// Move an alias.
    SetAlias {
        kind: Kind,
        name: String,
        alias: String,
        version: u64,
        expect: Option<Expect>,
    },
    /// Remove an alias.
    RemoveAlias {
        kind: Kind,
        name: String,
        alias: String,
    },
    /// Roll an alias back.
    Rollback {
        kind: Kind,
        name: String,
        alias: String,
    },
    /// Delete a version.
    Delete {
        kind: Kind,
        name: String,
        version: u64,
    },
    /// Ingest a file into a feature table.
    Ingest {
        table: String,
        file: PathBuf,
        format: Format,
    },
    /// Compact a feature table.
    Compact {
        table: String,
        grace: std::time::Duration,
    },
    /// Create an API token.
    CreateToken {
        name: String,
        role: Role,
        prefixes: Vec<String>,
    },
    /// List tokens.
    Tokens,
    /// Revoke a token.
    RevokeToken(String),
    /// Print the audit log from a time on.
    AuditLog(Option<String>),
    /// Check the audit log's chain.
    AuditVerify,
    /// A model version's drift.
    Drift(String, Option<u64>),
    /// Change a rollout.
    Rollout(Kind, String, RolloutChange),
    /// A rollout's status.
    RolloutStatus(Kind, String),
    /// Set or clear a guard.
    SetGuard(Kind, String, Option<Guard>),
    /// A guard and this node's circuits.
    GuardStatus(Kind, String),
}

/// `sluice drift`.
#[derive(Args)]
pub struct DriftArgs {
    /// The model: NAME or NAME@VERSION (default: the version an
    /// unqualified call runs).
    pub model: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl DriftArgs {
    /// Where to look, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        let (name, version) = match self.model.split_once('@') {
            Some((name, version)) => {
                let version = version.parse().map_err(|_| {
                    anyhow::anyhow!("`{}`: the version after @ must be a number", self.model)
                })?;
                (name.to_string(), Some(version))
            }
            None => (self.model, None),
        };
        Ok((self.target, Request::Drift(name, version)))
    }
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a token with a role (admin, deployer, invoker, viewer),
    /// optionally limited to names starting with --prefix; prints the
    /// token once.
    Create {
        /// Its name: what the audit log and `created_by` record.
        name: String,
        /// What it may do.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Limit it to names starting with this (repeatable).
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List tokens (never their secrets).
    Ls(TargetArgs),
    /// Revoke a token: refused on every node within the poll interval.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    s.parse()
}

impl TokensCommand {
    /// Where to run, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Create {
                name,
                role,
                prefixes,
                target,
            } => (
                target,
                Request::CreateToken {
                    name,
                    role,
                    prefixes,
                },
            ),
            Self::Ls(target) => (target, Request::Tokens),
            Self::Revoke { name, target } => (target, Request::RevokeToken(name)),
        })
    }
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print the audit log, oldest first.
    Log {
        /// Only records from this time on: RFC 3339
        /// (2026-12-04T10:00:00Z) or a duration back from now (1h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Check that no record was edited, removed or reordered; fails
    /// naming the first broken one.
    Verify(TargetArgs),
}

impl AuditCommand {
    /// Where to run, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Log { since, target } => {
                let since = since.map(|s| since_time(&s)).transpose()?;
                (target, Request::AuditLog(since))
            }
            Self::Verify(target) => (target, Request::AuditVerify),
        })
    }
}

/// `--since` as RFC 3339: given so, or a duration back from now.
fn since_time(since: &str) -> Result<String> {
    if humantime::parse_rfc3339_weak(since).is_ok() {
        return Ok(since.to_string());
    }
    let back = humantime::parse_duration(since).map_err(|_| {
        anyhow::anyhow!(
            "--since `{since}` is neither a time (2026-12-04T10:00:00Z) nor a duration (1h, 7d)"
        )
    })?;
    let at = std::time::SystemTime::now()
        .checked_sub(back)
        .ok_or_else(|| anyhow::anyhow!("--since `{since}` reaches before 1970"))?;
    Ok(humantime::format_rfc3339_seconds(at).to_string())
}

/// Who the CLI acts as.
pub fn created_by() -> String {
    std::env::var("USER").unwrap_or_else(|_| "anonymous".into())
}

fn read(path: &PathBuf, what: &str) -> Result<Bytes> {
    std::fs::read(path)
        .map(Bytes::from)
        .with_context(|| format!("cannot read {what} {}", path.display()))
}

fn read_config_file(path: &PathBuf) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: BTreeMap<String, serde_json::Value> =
        if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", path.display()))?
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON object", path.display()))?
        };
    Ok(table
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

impl DeployArgs {
    /// Where to deploy, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        if self.file.extension().is_some_and(|e| e == "toml") {
            return self.pipelines();
        }
        let Some(name) = self.name else {
            anyhow::bail!(
                "deploying a component needs its function's name: add --name NAME (a .toml file deploys the pipelines it lists)"
            );
        };
        let artifact = read(&self.file, "the component")?;
        let mut config = match &self.config_file {
            Some(path) => read_config_file(path)?,
            None => BTreeMap::new(),
        };
        config.extend(self.config);
        let secrets = self.secrets.iter().map(|(k, _)| k.clone()).collect();
        config.extend(self.secrets);
        let settings = Settings::Function(Deploy {
            config,
            secrets,
            timeout_ms: self.timeout_ms,
            memory_bytes: self.memory_mb.map(|mb| mb << 20),
            fuel: self.fuel,
            max_concurrency: self.max_concurrency,
            max_queue: self.max_queue,
            idle_secs: self.idle_secs,
            allow_outbound: self.allow_outbound,
            description: self.description,
            labels: self.labels.into_iter().collect(),
            created_by: created_by(),
        });
        let request = Request::Publish {
            name,
            artifact,
            settings,
            invocation: self.invoke,
        };
        Ok((self.target, request))
    }

    /// The pipelines of a manifest, checked here so that mistakes show
    /// before anything is sent.
    fn pipelines(self) -> Result<(TargetArgs, Request)> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("cannot read the manifest {}", self.file.display()))?;
        let pipelines = sluice::pipeline::parse(&text)
            .with_context(|| format!("in {}", self.file.display()))?;
        let deploys: Vec<Pipeline> = pipelines
            .into_iter()
            .filter(|p| self.name.as_ref().is_none_or(|n| *n == p.name))
            .collect();
        let folder = self.file.parent().map(PathBuf::from).unwrap_or_default();
        match (&self.name, deploys.is_empty()) {
            (Some(name), true) => {
                anyhow::bail!("{} has no pipeline named {name}", self.file.display())
            }
            (None, true) => anyhow::bail!(
                "{} lists no [[pipeline]]; write one (see the README's Pipelines section)",
                self.file.display()
            ),
            _ => Ok((
                self.target,
                Request::Pipelines(deploys, folder, self.invoke),
            )),
        }
    }
}

impl PipelinesCommand {
    /// Where to look, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Ls(target) => (target, Request::List(Kind::Pipeline)),
            Self::Versions { name, target } => (target, Request::Versions(Kind::Pipeline, name)),
            Self::Show {
                name,
                version,
                target,
            } => (target, Request::Show(Kind::Pipeline, name, version)),
            Self::Rm {
                name,
                version,
                target,
            } => (
                target,
                Request::Delete {
                    kind: Kind::Pipeline,
                    name,
                    version,
                },
            ),
        })
    }
}

impl FunctionsCommand {
    /// Where to look, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Ls(target) => (target, Request::List(Kind::Function)),
            Self::Versions { name, target } => (target, Request::Versions(Kind::Function, name)),
            Self::Rm {
                name,
                version,
                target,
            } => (
                target,
                Request::Delete {
                    kind: Kind::Function,
                    name,
                    version,
                },
            ),
        })
    }
}

impl ModelsCommand {
    /// Where to look or push, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Push {
                file,
                name,
                baseline,
                labels,
                description,
                input_shapes,
                max_batch_size,
                max_queue_delay_us,
                max_queue_size,
                idle_secs,
                engine,
                invoke,
                target,
            } => {
                let artifact = read(&file, "the model")?;
                let baseline = baseline
                    .map(|path| read(&path, "the baseline"))
                    .transpose()?;
                let settings = Settings::Model(Push {
                    created_by: created_by(),
                    description,
                    labels: labels.into_iter().collect(),
                    baseline: baseline.map(Baseline::Json),
                    input_shapes: input_shapes.into_iter().collect(),
                    batching: max_batch_size.map(|max_batch_size| Batching {
                        max_batch_size,
                        max_queue_delay_us,
                        max_queue_size,
                    }),
                    idle_secs,
                    engine,
                });
                let request = Request::Publish {
                    name,
                    artifact,
                    settings,
                    invocation: invoke,
                };
                (target, request)
            }
            // Local work, run by `cli::run` before any request is made.
            Self::Baseline(_) => anyhow::bail!("`models baseline` sends no request"),
            Self::Ls(target) => (target, Request::List(Kind::Model)),
            Self::Versions { name, target } => (target, Request::Versions(Kind::Model, name)),
            Self::Rm {
                name,
                version,
                target,
            } => (
                target,
                Request::Delete {
                    kind: Kind::Model,
                    name,
                    version,
                },
            ),
        })
    }
}

impl AliasCommand {
    /// Where to look, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Set {
                name,
                alias,
                version,
                expect,
                model,
                pipeline,
                target,
            } => (
                target,
                Request::SetAlias {
                    kind: kind(model, pipeline),
                    name,
                    alias,
                    version,
                    expect,
                },
            ),
            Self::Ls {
                name,
                model,
                pipeline,
                target,
            } => (target, Request::Aliases(kind(model, pipeline), name)),
            Self::Rm {
                name,
                alias,
                model,
                pipeline,
                target,
            } => (
                target,
                Request::RemoveAlias {
                    kind: kind(model, pipeline),
                    name,
                    alias,
                },
            ),
        })
    }
}

impl RollbackArgs {
    /// Where to roll back, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        let request = Request::Rollback {
            kind: kind(self.model, self.pipeline),
            name: self.name,
            alias: self.alias,
        };
        Ok((self.target, request))
    }
}

/// Run `request` against the node `target` names: a running node over
/// HTTP, or the embedded store in process.
pub async fn run(target: TargetArgs, request: Request) -> Result<()> {
    match &target.server {
        Some(url) => execute(&Client::new(url, target.token()?.as_deref())?, request).await,
        None => {
            // On the store directly: its credentials are the access; the
            // audit log names the local user.
            let node = local_node(&target.data, cli_engine(), Default::default()).await?;
            execute(&node.acting(local_actor()), request).await
        }
    }
}

/// Who the CLI acts as on the store directly, in the audit log.
pub fn local_actor() -> String {
    format!("local:{}", created_by())
}

/// Upload the component or model each step's `file` holds, unless a
/// version of that function or model already holds it (same digest), and
/// pin the step to that version.
async fn upload_step_files<P: ControlPlane>(
    plane: &P,
    pipeline: &mut Pipeline,
    folder: &Path,
) -> Result<()> {
    for step in &mut pipeline.steps {
        let Some(file) = step.file.take() else {
            continue;
        };
        let path = folder.join(&file);
        let bytes = read(&path, &format!("step {}'s file", step.name))?;
        let digest = Digest::of(&bytes);
        let (kind, slot) = match (&mut step.function, &mut step.model) {
            (Some(function), _) => (Kind::Function, function),
            (None, Some(model)) => (Kind::Model, model),
            (None, None) => continue,
        };
        let name = slot.clone();
        let exists = plane.list(kind).await?.iter().any(|s| s.name == name);
        let held = match exists {
            true => plane
                .show(kind, &name)
                .await?
                .versions
                .iter()
                .rev()
                .find(|v| v.digest() == Some(&digest))
                .map(|v| v.number()),
            false => None,
        };
        let version = match held {
            Some(version) => version,
            None => {
                let settings = match kind {
                    Kind::Model => Settings::Model(Push {
                        created_by: created_by(),
                        ..Push::default()
                    }),
                    _ => Settings::Function(Deploy {
                        created_by: created_by(),
                        ..Deploy::default()
                    }),
                };
                let published = plane.publish(&name, bytes, settings, None).await?;
                print::published(&published);
                published.version.number()
            }
        };
        *slot = format!("{name}@{version}");
    }
    Ok(())
}

/// Publish with `publish`, setting `invocation` too: a closing one
/// before, so that no version is ever open that should not be; an opening
/// one after.
async fn with_invocation<P: ControlPlane>(
    plane: &P,
    kind: Kind,
    name: &str,
    invocation: Option<Invocation>,
    publish: impl Future<Output = Result<Published, P::Error>>,
) -> Result<Published> {
    let set = async |invocation: Invocation| -> Result<()> {
        plane.set_invocation(kind, name, invocation).await?;
        println!("{} {name}: invocation {invocation}", kind.noun());
        Ok(())
    };
    if invocation == Some(Invocation::Token) {
        set(Invocation::Token).await?;
    }
    let published = publish.await?;
    if invocation == Some(Invocation::Open) {
        set(Invocation::Open).await?;
    }
    Ok(published)
}

/// Call the control plane and print what it answers.
async fn execute<P: ControlPlane>(plane: &P, request: Request) -> Result<()> {
    match request {
        Request::Publish {
            name,
            artifact,
            settings,
            invocation,
        } => {
            let kind = settings.kind();
            let bar = progress_bar(artifact.len());
            let report = |done: u64| bar.set_position(done);
            let published = with_invocation(plane, kind, &name, invocation, async {
                plane
                    .publish(&name, artifact, settings, Some(&report))
                    .await
            })
            .await;
            bar.finish_and_clear();
            print::published(&published?);
        }
        Request::Pipelines(deploys, folder, invocation) => {
            for mut pipeline in deploys {
                upload_step_files(plane, &mut pipeline, &folder).await?;
                let manifest =
                    serde_json::to_vec(&pipeline).context("cannot encode the pipeline")?;
                let settings = Settings::Pipeline {
                    created_by: created_by(),
                };
                let name = pipeline.name.clone();
                let publish = plane.publish(&name, manifest.into(), settings, None);
                let published =
                    with_invocation(plane, Kind::Pipeline, &name, invocation, publish).await?;
                print::published(&published);
            }
        }
        Request::Show(kind, name, version) => {
            let number = match version {
                Some(n) => n,
                None => {
                    let listing = plane.show(kind, &name).await?;
                    listing.head.default_version().unwrap_or_default()
                }
            };
            match plane.version(kind, &name, number).await? {
                sluice::node::Version::Pipeline(p) => {
                    println!(
                        "{} version {} (budget {} ms)",
                        p.name,
                        p.version,
                        p.pipeline.budget_ms()
                    );
                    print::steps(&p);
                }
                other => print::published(&sluice::node::Published {
                    version: other,
                    created: false,
                }),
            }
        }
        Request::List(kind) => print::summaries(kind, &plane.list(kind).await?),
        Request::Versions(kind, name) => print::versions(&plane.show(kind, &name).await?),
        Request::Aliases(kind, name) => print::aliases(&plane.show(kind, &name).await?.head),
        Request::SetAlias {
            kind,
            name,
            alias,
            version,
            expect,
        } => {
            let head = plane
                .set_alias(kind, &name, &alias, version, expect.map(|e| e.0))
                .await?;
            println!("{name} {alias} → version {version}");
            print::aliases(&head);
        }
        Request::RemoveAlias { kind, name, alias } => {
            let head = plane.remove_alias(kind, &name, &alias).await?;
            println!("removed alias {alias} of {name}");
            print::aliases(&head);
        }
        Request::Rollback { kind, name, alias } => {
            let head = plane.rollback(kind, &name, &alias).await?;
            let now = head.aliases.get(&alias).copied().unwrap_or_default();
            println!("{name} {alias} → version {now}");
            print::aliases(&head);
        }
        Request::Delete {
            kind,
            name,
            version,
        } => {
            plane.delete(kind, &name, version).await?;
            println!("deleted {} {name} version {version}", kind.noun());
        }
        Request::Ingest {
            table,
            file,
            format,
        } => {
            let opened = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let size = opened.metadata().await.map(|m| m.len()).unwrap_or_default();
            let bar = progress_bar(size as usize);
            if let Ok(style) = ProgressStyle::with_template(
                "ingesting {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                bar.set_style(style);
            }
            let reader = bar.wrap_async_read(opened);
            let ingested = plane
                .ingest(
                    &table,
                    format,
                    // Large reads: each one is a hop to tokio's blocking pool.
                    Box::new(tokio::io::BufReader::with_capacity(1 << 20, reader)),
                )
                .await;
            bar.finish_and_clear();
            let ingested = ingested.with_context(|| format!("ingesting {}", file.display()))?;
            print::ingested(&ingested);
        }
        Request::Compact { table, grace } => {
            let compacted = plane.compact(&table, grace).await?;
            print::compacted(&compacted);
        }
        Request::CreateToken {
            name,
            role,
            prefixes,
        } => {
            let made = plane.create_token(&name, role, prefixes).await?;
            eprintln!(
                "token {} ({}) created; it is shown this once:",
                made.info.name, made.info.role
            );
            println!("{}", made.token);
        }
        Request::Tokens => print::tokens(&plane.tokens().await?),
        Request::RevokeToken(name) => {
            let revoked = plane.revoke_token(&name).await?;
            println!("revoked token {} ({})", revoked.name, revoked.role);
        }
        Request::AuditLog(since) => print::audit(&plane.audit_log(since.as_deref()).await?),
        Request::Drift(name, version) => {
            super::drift::print(&plane.drift(&name, version).await?);
        }
        Request::Rollout(kind, name, change) => {
            plane.rollout(kind, &name, change).await?;
            super::rollout::print(kind, &plane.rollout_status(kind, &name).await?);
        }
        Request::RolloutStatus(kind, name) => {
            super::rollout::print(kind, &plane.rollout_status(kind, &name).await?);
        }
        Request::SetGuard(kind, name, guard) => {
            plane.set_guard(kind, &name, guard).await?;
            super::guard::print(kind, &plane.guard_status(kind, &name).await?);
        }
        Request::GuardStatus(kind, name) => {
            super::guard::print(kind, &plane.guard_status(kind, &name).await?);
        }
        Request::AuditVerify => match plane.audit_verify().await? {
            Ok(1) => println!("audit log intact: 1 record"),
            Ok(records) => println!("audit log intact: {records} records"),
            Err(broken) => anyhow::bail!(
                "the audit log is broken at record {}: it {}",
                broken.seq,
                broken.reason
            ),
        },
    }
    Ok(())
}

/// Uploads above this size show a progress bar.
const PROGRESS_THRESHOLD: usize = 1 << 20;

fn progress_bar(size: usize) -> ProgressBar {
    if size < PROGRESS_THRESHOLD {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size as u64);
    if let Ok(style) =
        ProgressStyle::with_template("uploading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style);
    }
    bar
}
