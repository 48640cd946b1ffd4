//! `sluice invoke`: call a function or a pipeline once and print its
//! answer, through a running node (`--server`) or in process on the
//! embedded store.

use super::args::{DataArgs, TargetArgs};
use super::serve::{cli_engine, local_node};
use anyhow::{Context, Result};
use axum::response::IntoResponse;
use clap::Args;
use sluice::http::message::{decode_request, encode_response};
use sluice::http::{ApiError, Client};
use sluice::registry::Selector;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InvokeArgs {
    /// The function (or, with --pipeline, the pipeline): NAME (its
    /// `stable` alias if set, else `latest`), NAME@VERSION or NAME@ALIAS.
    target: String,
    /// TARGET is a pipeline (what `POST /p/NAME` runs), not a function.
    #[arg(long)]
    pipeline: bool,
    /// The request body: a literal string, @FILE, or - for stdin.
    #[arg(long, short = 'd', default_value = "")]
    data: String,
    /// The body's media type.
    #[arg(long, short = 't', default_value = "application/json")]
    content_type: String,
    /// A running node's URL; without it the call runs in-process on the embedded store.
    #[arg(long, env = "SLUICE_SERVER")]
    server: Option<String>,
    /// The API token sent to --server, for versions that require one
    /// (default: ~/.config/sluice/token).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The artifact signing secret (when no --server); see `sluice serve --help`.
    #[arg(long, env = "SLUICE_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    /// Directory of the embedded store (when no --server).
    #[arg(long, env = "SLUICE_DATA", default_value = ".sluice")]
    data_dir: PathBuf,
    /// The object store (when no --server); see `sluice serve --help`.
    #[arg(long, env = "SLUICE_STORE")]
    store: Option<String>,
}

/// The body `--data` names: a literal, `@FILE`, or `-` for stdin.
fn body(data: &str) -> Result<Vec<u8>> {
    match data {
        "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("cannot read the body from stdin")?;
            Ok(buf)
        }
        data => match data.strip_prefix('@') {
            Some(path) => {
                std::fs::read(path).with_context(|| format!("cannot read the body from {path}"))
            }
            None => Ok(data.as_bytes().to_vec()),
        },
    }
}

/// Make the call; the exit code says whether it succeeded.
pub async fn run(args: InvokeArgs) -> Result<ExitCode> {
    let body = body(&args.data)?;
    let target = TargetArgs {
        server: args.server.clone(),
        token: args.token.clone(),
        data: DataArgs {
            data: args.data_dir.clone(),
            store: args.store.clone(),
            signing_key: args.signing_key.clone(),
            // Stages that run models on onnxruntime find it as nodes do.
            onnxruntime: std::env::var_os("ORT_DYLIB_PATH").map(Into::into),
        },
    };
    let (ok, output) = match &target.server {
        Some(url) => {
            Client::new(url, target.token()?.as_deref())?
                .invoke(args.pipeline, &args.target, &args.content_type, body)
                .await?
        }
        None => in_process(&target, &args, body).await?,
    };
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

/// Make the call in this process, answering exactly what a node would.
async fn in_process(
    target: &TargetArgs,
    args: &InvokeArgs,
    body: Vec<u8>,
) -> Result<(bool, Vec<u8>)> {
    let node = local_node(&target.data, cli_engine(), Default::default()).await?;
    let request_id = sluice::observe::request_id(None);
    let (name, selector) = Selector::split(&args.target)
        .with_context(|| format!("`{}` is not NAME, NAME@VERSION or NAME@ALIAS", args.target))?;
    let result = async {
        let input = decode_request(Some(&args.content_type), body)?;
        let output = if args.pipeline {
            node.run_pipeline(name, &selector, input, request_id.clone(), None)
                .await?
                .output
        } else {
            node.invoke(name, &selector, input, request_id.clone(), None)
                .await?
                .output
        };
        encode_response(output)
    }
    .await;
    let (ok, response) = match result {
        Ok(response) => (true, response),
        Err(e) => (
            false,
            ApiError::with_request_id(e, &request_id).into_response(),
        ),
    };
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok((ok, bytes.to_vec()))
}
