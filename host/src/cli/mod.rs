//! Command-line interface. Library errors get their context here, at the
//! edge, and every failure ends with what to do next.

mod client;
mod up;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use client::{Client, Kind};
use sluice::cache::CacheConfig;
use sluice::engine::{Engine, EngineConfig};
use sluice::http::{self, AppState, HttpConfig};
use sluice::node::{Deploy, IdlePolicy, Node};
use sluice::observe::{self, LogFormat};
use sluice::registry::{Head, LATEST, STABLE};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Sluice: serve ML inference pipelines as WebAssembly components.
#[derive(Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SLUICE_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: HTTP triggers (`POST /fn/NAME[@VERSION|@ALIAS]`) and the admin API (`/v1/...`).
    Serve(ServeArgs),
    /// Upload a component as a new version of a function.
    Deploy(DeployArgs),
    /// Call a function once and print its response.
    Invoke(InvokeArgs),
    /// List and inspect deployed functions.
    #[command(subcommand)]
    Functions(FunctionsCommand),
    /// Push, list and inspect ONNX models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Point, list or remove a function's (or with --model, a model's) aliases (`stable`, `canary`, ...).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Move a function's (or with --model, a model's) alias (default `stable`) back to its previous version.
    Rollback(RollbackArgs),
    /// Build stage crates into wasm32-wasip2 components.
    Build(BuildArgs),
    /// Build, deploy and serve everything a `sluice.toml` manifest lists.
    Up(up::UpArgs),
    /// Serve AWS Lambda events (API Gateway, Function URL, ALB, direct
    /// invoke) through the same router as `serve`; chosen automatically
    /// when AWS_LAMBDA_RUNTIME_API is set and no command is given (the
    /// binary as a `provided.al2023` bootstrap).
    Lambda(NodeArgs),
}

/// Where deployed functions live: a local directory (the embedded
/// default) or an S3 bucket.
#[derive(Args, Clone)]
struct DataArgs {
    /// Directory of the embedded store (used when --store is not given).
    #[arg(
        long = "data",
        visible_alias = "data-dir",
        env = "SLUICE_DATA",
        default_value = ".sluice"
    )]
    data: PathBuf,
    /// The object store: s3://BUCKET[/PREFIX] (region, credentials and
    /// endpoint from the standard AWS settings, e.g. AWS_REGION,
    /// AWS_PROFILE, AWS_ENDPOINT_URL_S3) or a directory. Overrides --data.
    #[arg(long, env = "SLUICE_STORE")]
    store: Option<String>,
}

impl DataArgs {
    fn location(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| self.data.display().to_string())
    }
}

/// Which node a client command talks to.
#[derive(Args, Clone)]
struct TargetArgs {
    /// A running node's URL (e.g. http://127.0.0.1:8080). Without it the
    /// command works directly on the embedded store given by --data.
    #[arg(long, env = "SLUICE_SERVER")]
    server: Option<String>,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct EngineArgs {
    /// Most stage instances alive at once (pooling allocator slots).
    #[arg(long, default_value_t = EngineConfig::default().max_instances)]
    max_instances: u32,
    /// Highest memory cap a function may be deployed with, in MiB.
    #[arg(long, default_value_t = EngineConfig::default().max_memory_bytes >> 20)]
    max_memory_mb: u64,
    /// Run stages under a fuel budget (deterministic, ~10-20% slower).
    #[arg(long)]
    fuel: bool,
    /// Pooling allocator: auto (use it when the address space allows), on or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pooling: String,
}

impl EngineArgs {
    fn config(&self) -> EngineConfig {
        EngineConfig {
            max_instances: self.max_instances,
            max_memory_bytes: self.max_memory_mb << 20,
            fuel: self.fuel,
            pooling: match self.pooling.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
        }
    }
}

/// A node serving HTTP (`serve` and `up`).
#[derive(Args)]
struct ServeArgs {
    /// Address to listen on. Under systemd socket activation (LISTEN_FDS,
    /// LISTEN_PID) the inherited socket is used instead.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Exit cleanly (status 0) after this many seconds with no request in
    /// flight or arriving, for nodes a supervisor starts on demand
    /// (Knative, KEDA, systemd socket activation). 0: never.
    #[arg(
        long,
        env = "SLUICE_IDLE_EXIT",
        value_name = "SECS",
        default_value_t = 0
    )]
    idle_exit: u64,
    #[command(flatten)]
    node: NodeArgs,
}

/// Everything that configures a serving node (`serve`, `up`, `lambda`).
#[derive(Args)]
struct NodeArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Largest invocation request body, in bytes.
    #[arg(long, default_value_t = HttpConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest component upload, in MiB.
    #[arg(long, default_value_t = HttpConfig::default().max_component_bytes >> 20)]
    max_component_mb: usize,
    /// Largest model upload, in MiB.
    #[arg(long, default_value_t = HttpConfig::default().max_model_bytes >> 20)]
    max_model_mb: usize,
    /// Time a client has to send its request headers, in milliseconds.
    #[arg(long, default_value_t = HttpConfig::default().header_timeout.as_millis() as u64)]
    header_timeout_ms: u64,
    /// Time a client has to send its request body, in milliseconds.
    #[arg(long, default_value_t = HttpConfig::default().body_timeout.as_millis() as u64)]
    body_timeout_ms: u64,
    /// Bytes of store documents (version records, aliases) kept in memory.
    #[arg(long, default_value_t = CacheConfig::default().max_bytes)]
    cache_bytes: u64,
    /// How often this node re-checks aliases in the store, in milliseconds:
    /// a deploy, alias move or rollback made through another node is
    /// served here within this interval.
    #[arg(long, env = "SLUICE_POLL_INTERVAL_MS", default_value_t = CacheConfig::default().poll_interval.as_millis() as u64)]
    poll_interval_ms: u64,
    /// Scale to zero: unload a function (its compiled code and instances)
    /// after this many seconds without a call; the next call is a cold
    /// start. 0 keeps functions loaded. A version's own `idle_secs`
    /// (deploy --idle-secs) overrides it.
    // Five minutes: a function called every few minutes stays warm, while a
    // node's memory still follows its traffic; the cold start it costs is
    // a few milliseconds (BENCHMARKS.md).
    #[arg(long, env = "SLUICE_FUNCTION_IDLE_SECS", default_value_t = 300)]
    function_idle_secs: u64,
    /// Scale to zero: unload a model's plan after this many seconds without
    /// a run. 0 keeps models loaded. A version's own `idle_secs` (models
    /// push --idle-secs) overrides it.
    #[arg(long, env = "SLUICE_MODEL_IDLE_SECS", default_value_t = 300)]
    model_idle_secs: u64,
}

#[derive(Args)]
struct DeployArgs {
    /// The component (.wasm) to upload.
    file: PathBuf,
    /// The function's name: 1-63 of a-z, 0-9, '.', '_', '-'.
    #[arg(long)]
    name: String,
    /// A configuration entry the stage reads through `config` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// A JSON or TOML file of configuration entries (string values; --config wins).
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Deadline of one call, in milliseconds (default 10000).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory cap of one call, in MiB (default 128).
    #[arg(long)]
    memory_mb: Option<u64>,
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
    /// A description recorded with the version.
    #[arg(long)]
    description: Option<String>,
    /// A label recorded with the version (repeatable), e.g. --label team=risk.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
struct InvokeArgs {
    /// The function: NAME (its `stable` alias if set, else `latest`),
    /// NAME@VERSION or NAME@ALIAS.
    target_function: String,
    /// The request body: a literal string, @FILE, or - for stdin.
    #[arg(long, short = 'd', default_value = "")]
    data: String,
    /// The body's media type.
    #[arg(long, short = 't', default_value = "application/json")]
    content_type: String,
    /// A running node's URL; without it the function runs in-process on the embedded store.
    #[arg(long, env = "SLUICE_SERVER")]
    server: Option<String>,
    /// Directory of the embedded store (when no --server).
    #[arg(long, env = "SLUICE_DATA", default_value = ".sluice")]
    data_dir: PathBuf,
    /// The object store (when no --server); see `sluice serve --help`.
    #[arg(long, env = "SLUICE_STORE")]
    store: Option<String>,
}

#[derive(Subcommand)]
enum FunctionsCommand {
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
enum ModelsCommand {
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
        /// Seconds without a run before a node unloads this version's plan
        /// (overrides the node's --model-idle-secs; 0: never).
        #[arg(long)]
        idle_secs: Option<u64>,
        #[command(flatten)]
        target: TargetArgs,
    },
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
enum AliasCommand {
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
        #[arg(long)]
        model: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show the aliases of NAME and where they pointed before.
    Ls {
        /// The function.
        name: String,
        /// NAME is a model, not a function.
        #[arg(long)]
        model: bool,
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
        #[arg(long)]
        model: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// What `--expect` says the alias points at now.
#[derive(Clone, Copy)]
struct Expect(Option<u64>);

fn parse_expect(s: &str) -> Result<Expect, String> {
    match s {
        "none" => Ok(Expect(None)),
        n => n
            .parse()
            .map(|v| Expect(Some(v)))
            .map_err(|_| format!("expected a version number or `none`, got {s:?}")),
    }
}

#[derive(Args)]
struct RollbackArgs {
    /// The function.
    name: String,
    /// The alias to move back.
    #[arg(long, default_value = STABLE)]
    alias: String,
    /// NAME is a model, not a function.
    #[arg(long)]
    model: bool,
    #[command(flatten)]
    target: TargetArgs,
}

fn kind(model: bool) -> Kind {
    if model { Kind::Model } else { Kind::Function }
}

#[derive(Args)]
struct BuildArgs {
    /// Stage crate directories (default: the current directory).
    paths: Vec<PathBuf>,
}

fn parse_input_shape(s: &str) -> Result<(String, Vec<i64>), String> {
    let (name, dims) = parse_key_value(s)?;
    let dims = dims
        .split(',')
        .map(|d| match d.trim() {
            "N" | "-1" => Ok(-1),
            d => d.parse::<i64>().ok().filter(|d| *d > 0).ok_or_else(|| {
                format!("dimension {d:?} of `{name}` must be a positive number, N or -1")
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok((name, dims))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    // Lambda starts a custom runtime's `bootstrap` with no arguments.
    let cli = if std::env::args_os().len() == 1 && sluice::lambda::under_lambda() {
        Cli::parse_from(["sluice", "lambda"])
    } else {
        Cli::parse()
    };
    if matches!(cli.command, Command::Lambda(_)) {
        // CloudWatch reads stdout; JSON lines carry the Lambda request id.
        observe::init_logging(LogFormat::Json, observe::LogTarget::Stdout);
    } else {
        observe::init_logging(cli.log_format, observe::LogTarget::Stderr);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, started)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, started: std::time::Instant) -> Result<ExitCode> {
    match command {
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Deploy(args) => deploy(args).await.map(|()| ExitCode::SUCCESS),
        Command::Invoke(args) => invoke(args).await,
        Command::Functions(command) => functions(command).await.map(|()| ExitCode::SUCCESS),
        Command::Alias(command) => alias(command).await.map(|()| ExitCode::SUCCESS),
        Command::Models(command) => models(command).await.map(|()| ExitCode::SUCCESS),
        Command::Rollback(args) => {
            let head = Client::new(&args.target)
                .await?
                .rollback(kind(args.model), &args.name, &args.alias)
                .await?;
            println!(
                "{} {} → version {}",
                args.name,
                args.alias,
                head.aliases.get(&args.alias).copied().unwrap_or_default()
            );
            print_aliases(&head);
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => build(args).await.map(|()| ExitCode::SUCCESS),
        Command::Up(args) => up::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Lambda(args) => lambda(args, started).await.map(|()| ExitCode::SUCCESS),
    }
}

/// A node over the store `data` names.
async fn local_node(
    data: &DataArgs,
    engine: EngineConfig,
    cache: CacheConfig,
) -> Result<Arc<Node>> {
    let location = data.location();
    // Both take milliseconds (the store's client and bucket check, the
    // engine's pool): side by side, for a shorter cold start.
    let (store, engine) = tokio::join!(
        sluice::store::open(&location),
        tokio::task::spawn_blocking(move || Engine::new(engine))
    );
    let store = store.with_context(|| format!("cannot open the store at {location}"))?;
    let engine = engine
        .context("the engine's start-up task failed")?
        .context("cannot start the wasmtime engine")?;
    Ok(Arc::new(Node::new(engine, store, cache)))
}

/// Engine settings for one-shot CLI work: no need to reserve a pool.
fn cli_engine() -> EngineConfig {
    EngineConfig {
        pooling: Some(false),
        ..EngineConfig::default()
    }
}

impl NodeArgs {
    fn idle(&self) -> IdlePolicy {
        let after = |secs| (secs > 0).then(|| std::time::Duration::from_secs(secs));
        IdlePolicy {
            functions: after(self.function_idle_secs),
            models: after(self.model_idle_secs),
        }
    }

    fn cache(&self) -> CacheConfig {
        CacheConfig {
            max_bytes: self.cache_bytes,
            poll_interval: std::time::Duration::from_millis(self.poll_interval_ms),
            ..CacheConfig::default()
        }
    }

    fn http(&self) -> HttpConfig {
        HttpConfig {
            max_body_bytes: self.max_body_bytes,
            max_component_bytes: self.max_component_mb << 20,
            max_model_bytes: self.max_model_mb << 20,
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.body_timeout_ms),
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let node = &args.node;
    let node = local_node(&node.data, node.engine.config(), node.cache()).await?;
    node.spawn_idle_reaper(args.node.idle());
    serve_node(node, &args, |_| {}).await
}

/// Serve Lambda events. An init failure (a bad SLUICE_STORE, say) is
/// reported to the runtime API's `/init/error` as well as returned.
async fn lambda(args: NodeArgs, started: std::time::Instant) -> Result<()> {
    let mut engine = args.engine.config();
    // The pool sized to the function: stage memory caps cannot exceed what
    // Lambda gave it, and an environment runs one event at a time (or
    // AWS_LAMBDA_MAX_CONCURRENCY), so a few slots each will do.
    if let Some(memory) = sluice::lambda::function_memory_bytes() {
        engine.max_memory_bytes = engine.max_memory_bytes.min(memory);
    }
    engine.max_instances = engine
        .max_instances
        .min(4 * sluice::lambda::max_concurrency());
    let node = match local_node(&args.data, engine, args.cache()).await {
        Ok(node) => node,
        Err(e) if args.data.store.is_none() => {
            let e = e.context(
                "no SLUICE_STORE is set: point it at the store, e.g. s3://BUCKET/PREFIX (a directory works too, but Lambda's file system is read-only outside /tmp)",
            );
            sluice::lambda::report_init_error(&format!("{e:#}")).await;
            return Err(e);
        }
        Err(e) => {
            sluice::lambda::report_init_error(&format!("{e:#}")).await;
            return Err(e);
        }
    };
    let state = Arc::new(AppState {
        node,
        http: args.http(),
        conditional_writes: None,
    });
    sluice::lambda::run(http::router(state), started).await?;
    Ok(())
}

/// Check the store honours conditional writes, and say so loudly if not:
/// without them two nodes moving one alias could overwrite each other.
async fn check_conditional_writes(node: &Node) -> Option<bool> {
    match node.store().check_conditional_writes().await {
        Ok(true) => Some(true),
        Ok(false) => {
            tracing::error!(
                store = %node.store().describe(),
                "this store ignores conditional writes (If-None-Match / If-Match): concurrent alias moves and deploys through different nodes may overwrite each other; use a store that supports them (AWS S3 does)"
            );
            Some(false)
        }
        Err(e) => {
            // Read-only credentials (a serving role) cannot probe; that is fine.
            tracing::info!(error = %e, "could not check the store for conditional writes");
            None
        }
    }
}

/// Bind (or take systemd's socket), report, and serve until Ctrl-C,
/// SIGTERM or `--idle-exit`.
async fn serve_node(
    node: Arc<Node>,
    args: &ServeArgs,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let http = args.node.http();
    let listen = args.listen;
    let listener = match inherited_listener()? {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {listen}; is another process using it? pick another with --listen"
                )
            })?,
    };
    let addr = listener.local_addr()?;
    let conditional_writes = check_conditional_writes(&node).await;
    tracing::info!(%addr, store = %node.store().describe(), "sluice listening");
    // Tests and scripts wait for this exact line on stdout.
    println!("listening on http://{addr}");
    on_ready(addr);
    let state = Arc::new(AppState {
        node,
        http: http.clone(),
        conditional_writes,
    });
    let stats = state.node.stats().clone();
    let idle_exit = (args.idle_exit > 0).then(|| std::time::Duration::from_secs(args.idle_exit));
    let stop = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            () = idle_for(&stats, idle_exit) => {
                tracing::info!(idle_secs = args.idle_exit, "no requests for the idle time: exiting (--idle-exit)");
            }
        }
    };
    http::serve(listener, http::router(state), &http, stop).await?;
    Ok(())
}

/// The listening socket systemd passed (socket activation: fd 3, with
/// LISTEN_FDS=1 and LISTEN_PID naming this process), if any.
fn inherited_listener() -> Result<Option<tokio::net::TcpListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS").ok();
    if !for_us || fds.is_none() {
        return Ok(None);
    }
    anyhow::ensure!(
        fds.as_deref() == Some("1"),
        "LISTEN_FDS={}: sluice takes exactly one socket from systemd (one ListenStream= in the .socket unit)",
        fds.unwrap_or_default()
    );
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: systemd's protocol hands this process fd 3 as an open
        // listening socket (checked by LISTEN_PID above); nothing else here
        // owns it.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
        listener
            .set_nonblocking(true)
            .context("the socket from systemd (fd 3) is not usable")?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("the socket from systemd (fd 3) is not a TCP listening socket")?;
        tracing::info!("serving on the socket systemd passed (socket activation)");
        Ok(Some(listener))
    }
    #[cfg(not(unix))]
    Ok(None)
}

/// Resolves once no request has been in flight or arrived for `idle`
/// (never when `idle` is `None`).
async fn idle_for(stats: &sluice::observe::Stats, idle: Option<std::time::Duration>) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    let tick = (idle / 10).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(1),
    );
    let mut seen = stats.http_requests.load(Relaxed);
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let requests = stats.http_requests.load(Relaxed);
        if requests != seen || stats.in_flight.load(Relaxed) > 0 {
            (seen, quiet_since) = (requests, tokio::time::Instant::now());
        } else if quiet_since.elapsed() >= idle {
            return;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
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

async fn deploy(args: DeployArgs) -> Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut config = match &args.config_file {
        Some(path) => read_config_file(path)?,
        None => BTreeMap::new(),
    };
    config.extend(args.config);
    let request = Deploy {
        config,
        timeout_ms: args.timeout_ms,
        memory_bytes: args.memory_mb.map(|mb| mb << 20),
        fuel: None,
        max_concurrency: args.max_concurrency,
        max_queue: args.max_queue,
        idle_secs: args.idle_secs,
        description: args.description,
        labels: args.labels.into_iter().collect(),
        created_by: std::env::var("USER").unwrap_or_else(|_| "anonymous".into()),
    };
    let client = Client::new(&args.target).await?;
    let deployed = client.deploy(&args.name, bytes, request).await?;
    println!("{deployed}");
    Ok(())
}

async fn invoke(args: InvokeArgs) -> Result<ExitCode> {
    let body = match args.data.as_str() {
        "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("cannot read the body from stdin")?;
            buf
        }
        data => match data.strip_prefix('@') {
            Some(path) => {
                std::fs::read(path).with_context(|| format!("cannot read the body from {path}"))?
            }
            None => data.as_bytes().to_vec(),
        },
    };
    let target = TargetArgs {
        server: args.server,
        data: DataArgs {
            data: args.data_dir,
            store: args.store,
        },
    };
    let client = Client::new(&target).await?;
    let (ok, output) = client
        .invoke(&args.target_function, &args.content_type, body)
        .await?;
    use std::io::Write;
    let mut stdout = std::io::stdout();
    stdout.write_all(&output)?;
    if !output.ends_with(b"\n") {
        writeln!(stdout)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn functions(command: FunctionsCommand) -> Result<()> {
    match command {
        FunctionsCommand::Ls(target) => {
            let list = Client::new(&target).await?.list().await?;
            if list.is_empty() {
                println!(
                    "no functions deployed; deploy one with `sluice deploy FILE.wasm --name NAME`"
                );
            }
            for f in list {
                let aliases: Vec<String> = f
                    .aliases
                    .iter()
                    .filter(|(a, _)| a.as_str() != LATEST)
                    .map(|(a, v)| format!("{a}→{v}"))
                    .collect();
                println!(
                    "{:<32} latest v{:<5} serves v{:<5} {:<13} {} version(s)  {}",
                    f.name,
                    f.latest,
                    f.default,
                    f.world,
                    f.versions,
                    aliases.join(" ")
                );
            }
        }
        FunctionsCommand::Versions { name, target } => {
            let (head, versions) = Client::new(&target).await?.versions(&name).await?;
            for v in versions {
                let aliases: Vec<&str> = head
                    .aliases
                    .iter()
                    .filter(|(_, n)| **n == v.version)
                    .map(|(a, _)| a.as_str())
                    .collect();
                println!(
                    "{:<5} {:<16} {}  {:<13} {:>9} B  {}  by {}{}",
                    v.version,
                    aliases.join(","),
                    v.created_at,
                    v.world,
                    v.size,
                    v.digest,
                    v.created_by,
                    v.description
                        .map(|d| format!("  — {d}"))
                        .unwrap_or_default()
                );
            }
        }
        FunctionsCommand::Rm {
            name,
            version,
            target,
        } => {
            Client::new(&target)
                .await?
                .delete(Kind::Function, &name, version)
                .await?;
            println!("deleted {name} version {version}");
        }
    }
    Ok(())
}

async fn models(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::Push {
            file,
            name,
            baseline,
            labels,
            description,
            input_shapes,
            max_batch_size,
            max_queue_delay_us,
            idle_secs,
            target,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let baseline = baseline
                .map(|path| {
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read the baseline {}", path.display()))
                })
                .transpose()?;
            let push = sluice::inference::Push {
                created_by: std::env::var("USER").unwrap_or_else(|_| "anonymous".into()),
                description,
                labels: labels.into_iter().collect(),
                baseline: baseline.map(|b| sluice::inference::Baseline::Json(b.into())),
                input_shapes: input_shapes.into_iter().collect(),
                batching: max_batch_size.map(|max_batch_size| sluice::inference::Batching {
                    max_batch_size,
                    max_queue_delay_us,
                }),
                idle_secs,
            };
            let (record, created) = Client::new(&target)
                .await?
                .push_model(&name, bytes, push)
                .await?;
            let what = if created { "pushed" } else { "unchanged:" };
            println!(
                "{what} {} version {} ({} bytes, {})",
                record.name, record.version, record.size, record.digest
            );
            for (kind, specs) in [
                ("input", &record.signature.inputs),
                ("output", &record.signature.outputs),
            ] {
                for s in specs {
                    println!(
                        "  {kind:<6} {:<32} {:<6} {}",
                        s.name,
                        s.datatype,
                        sluice::inference::shape_text(&s.shape)
                    );
                }
            }
        }
        ModelsCommand::Ls(target) => {
            for (name, head) in Client::new(&target).await?.models().await? {
                println!(
                    "{name:<32} latest v{:<5} serves v{:<5} {} version(s)",
                    head.aliases.get(LATEST).copied().unwrap_or_default(),
                    head.default_version().unwrap_or_default(),
                    head.versions.len()
                );
            }
        }
        ModelsCommand::Versions { name, target } => {
            let (head, versions) = Client::new(&target).await?.model_versions(&name).await?;
            for v in versions {
                let inputs: Vec<String> = v
                    .signature
                    .inputs
                    .iter()
                    .map(|s| {
                        format!(
                            "{}:{}{}",
                            s.name,
                            s.datatype,
                            sluice::inference::shape_text(&s.shape)
                        )
                    })
                    .collect();
                println!(
                    "{:<5} {}  {:>9} B  {}  by {}  inputs {}",
                    v.version,
                    v.created_at,
                    v.size,
                    v.digest,
                    v.created_by,
                    inputs.join(" ")
                );
            }
            print_aliases(&head);
        }
        ModelsCommand::Rm {
            name,
            version,
            target,
        } => {
            Client::new(&target)
                .await?
                .delete(Kind::Model, &name, version)
                .await?;
            println!("deleted model {name} version {version}");
        }
    }
    Ok(())
}

async fn alias(command: AliasCommand) -> Result<()> {
    let head = match command {
        AliasCommand::Set {
            name,
            alias,
            version,
            expect,
            model,
            target,
        } => {
            let head = Client::new(&target)
                .await?
                .set_alias(kind(model), &name, &alias, version, expect.map(|e| e.0))
                .await?;
            println!("{name} {alias} → version {version}");
            head
        }
        AliasCommand::Ls {
            name,
            model,
            target,
        } => {
            let client = Client::new(&target).await?;
            if model {
                client.model_versions(&name).await?.0
            } else {
                client.versions(&name).await?.0
            }
        }
        AliasCommand::Rm {
            name,
            alias,
            model,
            target,
        } => {
            let head = Client::new(&target)
                .await?
                .remove_alias(kind(model), &name, &alias)
                .await?;
            println!("removed alias {alias} of {name}");
            head
        }
    };
    print_aliases(&head);
    Ok(())
}

fn print_aliases(head: &Head) {
    for (alias, version) in &head.aliases {
        let earlier = head
            .history
            .get(alias)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let list: Vec<String> = h.iter().rev().map(u64::to_string).collect();
                format!("  (before: {})", list.join(", "))
            })
            .unwrap_or_default();
        println!("  {alias:<16} → {version}{earlier}");
    }
}

async fn build(args: BuildArgs) -> Result<()> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths
    };
    let built = tokio::task::spawn_blocking(move || sluice::toolchain::build(&paths)).await??;
    let engine = Engine::new(cli_engine())?;
    for stage in built {
        let bytes = std::fs::read(&stage.wasm)?;
        let (_, world) = engine.compile(&bytes).with_context(|| {
            format!("{} built, but Sluice would refuse it", stage.wasm.display())
        })?;
        println!(
            "{}\t{}\t{} bytes\t{world}",
            stage.package,
            stage.wasm.display(),
            bytes.len()
        );
    }
    Ok(())
}
