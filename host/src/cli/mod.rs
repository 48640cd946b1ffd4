//! Command-line interface: parse the arguments, call the library, print.
//! Library errors get their context here, at the edge, and every failure
//! ends with what to do next.
//!
//! - `args.rs`: arguments shared by several commands.
//! - `control.rs`: commands on what a node serves (deploy, functions,
//!   models, alias, rollback, tokens, audit), printed by `print.rs`.
//! - `invoke.rs`, `build.rs`, `up.rs`: one command each; `drift.rs`:
//!   `models baseline` and the drift report's printing.
//! - `serve.rs`: running a node (`serve`, `up`, `lambda`).

mod args;
mod build;
mod control;
mod drift;
mod features;
mod guard;
mod invoke;
mod new;
mod print;
mod rollout;
mod serve;
mod test;
mod up;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sluice::observe::{self, LogFormat};
use std::process::ExitCode;

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

/// `sluice lambda` as Lambda starts a bootstrap (no arguments, settings
/// from the environment), parsed without building the whole command tree:
/// that alone took ~0.6 ms of a cold start.
#[derive(Parser)]
struct LambdaBootstrap {
    #[command(flatten)]
    node: args::NodeArgs,
}

impl From<LambdaBootstrap> for Cli {
    fn from(bootstrap: LambdaBootstrap) -> Self {
        Self {
            command: Command::Lambda(bootstrap.node),
            // Lambda logs JSON whatever SLUICE_LOG_FORMAT says (see `main`).
            log_format: LogFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: the data plane (`POST /fn/NAME[@VERSION|@ALIAS]`, `POST /p/PIPELINE`, `/v2/...` inference) and the control plane (`/v1/...`), together or apart (--admin-listen).
    Serve(args::ServeArgs),
    /// Upload a component as a new version of a function, or deploy the pipelines of a manifest (.toml), uploading the files its steps name.
    Deploy(control::DeployArgs),
    /// Call a function (or, with --pipeline, a pipeline) once and print its response.
    Invoke(invoke::InvokeArgs),
    /// List and inspect deployed functions.
    #[command(subcommand)]
    Functions(control::FunctionsCommand),
    /// Push, list and inspect ONNX models.
    #[command(subcommand)]
    Models(control::ModelsCommand),
    /// A model's drift: per feature, PSI, Kolmogorov-Smirnov and
    /// Wasserstein distance of the rows served in the window (every node's)
    /// against its baseline, with histograms of both.
    Drift(control::DriftArgs),
    /// List and inspect deployed pipelines (deploy them with `sluice deploy pipeline.toml`).
    #[command(subcommand)]
    Pipelines(control::PipelinesCommand),
    /// Feature tables: apply schemas, ingest rows, read online values,
    /// export point-in-time training sets.
    #[command(subcommand, visible_alias = "tables")]
    Features(features::FeaturesCommand),
    /// Point, list or remove a function's (or with --model a model's, --pipeline a pipeline's) aliases (`stable`, `canary`, ...).
    #[command(subcommand)]
    Alias(control::AliasCommand),
    /// Move a function's (or with --model a model's, --pipeline a pipeline's) alias (default `stable`) back to its previous version.
    Rollback(control::RollbackArgs),
    /// Roll a new version out gradually: a canary share, sticky A/B by a request key, or a shadow; promoted, aborted, or rolled back automatically when it breaks its SLO.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Protect a function's (or with --model a model's, --pipeline a pipeline's) callers: a fallback (another version, another pipeline, a static response) on errors, deadlines or an open circuit; a circuit breaker per version; rate limits per route and per API token.
    #[command(subcommand)]
    Guard(guard::GuardCommand),
    /// API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Tokens(control::TokensCommand),
    /// The audit log of every change: print it, verify its chain.
    #[command(subcommand)]
    Audit(control::AuditCommand),
    /// A ready stage from a template: preprocessor, featurizer, predictor
    /// or http, in Rust, Python or JavaScript, with examples to test.
    New(new::NewArgs),
    /// Build stages (Rust, Python, JavaScript) into components.
    Build(build::BuildArgs),
    /// Build and deploy a `sluice.toml` on a throwaway node and check its
    /// examples' answers (`expect`, `status`).
    Test(test::TestArgs),
    /// Build, deploy and serve everything a `sluice.toml` manifest lists.
    Up(up::UpArgs),
    /// Serve AWS Lambda events (API Gateway, Function URL, ALB, direct
    /// invoke) through the same router as `serve`; chosen automatically
    /// when AWS_LAMBDA_RUNTIME_API is set and no command is given (the
    /// binary as a `provided.al2023` bootstrap).
    Lambda(args::NodeArgs),
}

pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    // Lambda starts a custom runtime's `bootstrap` with no arguments.
    let cli = if std::env::args_os().len() == 1 && sluice::lambda::under_lambda() {
        LambdaBootstrap::parse_from(["sluice"]).into()
    } else {
        Cli::parse()
    };
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
    let traces = {
        // The trace exporter sends with the runtime's client.
        let _runtime = runtime.enter();
        if matches!(cli.command, Command::Lambda(_)) {
            // CloudWatch reads stdout; JSON lines carry the Lambda request id.
            observe::init_logging(LogFormat::Json, observe::LogTarget::Stdout)
        } else {
            observe::init_logging(cli.log_format, observe::LogTarget::Stderr)
        }
    };
    let ran = runtime.block_on(run(cli.command, started));
    // Spans still buffered go out before the process ends.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match ran {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, started: std::time::Instant) -> Result<ExitCode> {
    let (target, request) = match command {
        Command::Serve(args) => return serve::serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Invoke(args) => return invoke::run(args).await,
        Command::Build(args) => return build::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::New(args) => return new::run(args).map(|()| ExitCode::SUCCESS),
        Command::Test(args) => return test::run(args).await,
        Command::Up(args) => return up::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Features(command) => return command.run().await.map(|()| ExitCode::SUCCESS),
        Command::Lambda(args) => {
            return serve::lambda(args, started)
                .await
                .map(|()| ExitCode::SUCCESS);
        }
        Command::Deploy(args) => args.request()?,
        Command::Functions(command) => command.request()?,
        Command::Models(control::ModelsCommand::Baseline(args)) => {
            return drift::baseline(args).map(|()| ExitCode::SUCCESS);
        }
        Command::Models(command) => command.request()?,
        Command::Drift(args) => args.request()?,
        Command::Pipelines(command) => command.request()?,
        Command::Alias(command) => command.request()?,
        Command::Rollback(args) => args.request()?,
        Command::Rollout(command) => command.request()?,
        Command::Guard(command) => command.request()?,
        Command::Tokens(command) => command.request()?,
        Command::Audit(command) => command.request()?,
    };
    control::run(target, request).await?;
    Ok(ExitCode::SUCCESS)
}
