//! `sluice test`: build and deploy what a `sluice.toml` lists on a
//! throwaway node, send each `[[example]]` with an `expect` or a `status`
//! over real HTTP, and compare the answers.

use super::args::DataArgs;
use super::serve::local_node;
use super::up::{Example, apply, load};
use anyhow::{Context, Result, bail};
use clap::Args;
use sluice::engine::EngineConfig;
use sluice::http::{AppState, HttpConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct TestArgs {
    /// The manifest, or a directory holding `sluice.toml`.
    #[arg(default_value = ".")]
    manifest: PathBuf,
    /// onnxruntime's shared library, for models pushed with
    /// `engine = "onnxruntime"`; see `sluice serve --help`.
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "PATH")]
    onnxruntime: Option<PathBuf>,
}

pub async fn run(args: TestArgs) -> Result<ExitCode> {
    let (dir, manifest, pipelines) = load(&args.manifest)?;
    if !manifest.examples.iter().any(Example::is_test) {
        bail!(
            "{} has no [[example]] with `expect` or `status`: add one (e.g. expect = '{{\"label\": \"cat\"}}') to test against",
            args.manifest.display()
        );
    }
    let scratch = tempfile::tempdir().context("cannot make a scratch store")?;
    let data = DataArgs {
        data: scratch.path().to_path_buf(),
        store: None,
        signing_key: None,
        onnxruntime: args.onnxruntime,
    };
    let node = local_node(&data, EngineConfig::default(), Default::default()).await?;
    apply(&node, &dir, &manifest, pipelines).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let http = HttpConfig::default();
    let router = sluice::http::router(Arc::new(AppState::new(node, http.clone(), Some(true))));
    tokio::spawn(async move {
        sluice::http::serve(listener, router, &http, std::future::pending()).await
    });

    let client = reqwest::Client::new();
    let (mut passed, mut failed) = (0, 0);
    for example in manifest.examples.iter().filter(|e| e.is_test()) {
        let label = format!("{} {}", example.method, example.route());
        match check(&client, &base, &dir, example).await {
            Ok(()) => {
                passed += 1;
                println!("ok    {label}");
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {label}\n      {e:#}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Send `example` and compare its answer with what it expects.
async fn check(client: &reqwest::Client, base: &str, dir: &Path, example: &Example) -> Result<()> {
    let method: reqwest::Method = example
        .method
        .parse()
        .with_context(|| format!("`{}` is not an HTTP method", example.method))?;
    let response = client
        .request(method, format!("{base}/{}", example.route()))
        .header("content-type", &example.content_type)
        .body(example.body(dir)?)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let want = example.status.unwrap_or(200);
    if status != want {
        bail!("expected status {want}, got {status}: {text}");
    }
    let Some(expect) = example.expect.as_deref() else {
        return Ok(());
    };
    let same = match (
        serde_json::from_str::<serde_json::Value>(expect),
        serde_json::from_str::<serde_json::Value>(&text),
    ) {
        (Ok(want), Ok(got)) => within(&want, &got),
        _ => expect == text,
    };
    if !same {
        bail!("expected {expect}\n      got      {text}");
    }
    Ok(())
}

/// Whether `got` holds `want`: equal, except that an object may have keys
/// `want` does not name (a request id, say).
fn within(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(key, value)| got.get(key).is_some_and(|g| within(value, g))),
        (Value::Array(want), Value::Array(got)) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| within(w, g))
        }
        // 1 and 1.0 are the same number in an expectation.
        (Value::Number(want), Value::Number(got)) => want.as_f64() == got.as_f64(),
        _ => want == got,
    }
}

#[cfg(test)]
mod tests {
    use super::within;
    use serde_json::json;

    #[test]
    fn an_expectation_ignores_keys_it_does_not_name_and_nothing_else() {
        let got = json!({"error": "bad", "request_id": "r1", "data": [1.0, 2]});
        assert!(within(&json!({"error": "bad"}), &got));
        assert!(within(&json!({"data": [1, 2.0]}), &got));
        assert!(!within(&json!({"error": "good"}), &got));
        assert!(!within(&json!({"data": [1]}), &got));
        assert!(!within(&json!({"missing": null}), &got));
    }
}
