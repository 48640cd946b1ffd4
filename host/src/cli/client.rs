//! What client commands talk to: a running node over HTTP, or the embedded
//! store directly (an in-process node), with the same results.

use super::TargetArgs;
use anyhow::{Context, Result, anyhow, bail};
use axum::response::IntoResponse;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use sluice::http::ApiError;
use sluice::http::codec::{decode_request, encode_response};
use sluice::inference::{Baseline, Push};
use sluice::node::{Deploy, Node};
use sluice::registry::{
    FunctionSummary, FunctionVersion, Head, ModelVersion, Name, Record, Selector,
};
use std::fmt;
use std::sync::Arc;

/// What a name refers to: alias commands work on both.
#[derive(Clone, Copy)]
pub enum Kind {
    Function,
    Model,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Self::Function => "functions",
            Self::Model => "models",
        }
    }
}

pub enum Client {
    Remote { base: String, http: reqwest::Client },
    Local(Arc<Node>),
}

/// What a deploy reports.
#[derive(Deserialize)]
pub struct Deployed {
    name: String,
    version: u64,
    digest: String,
    world: String,
    size: u64,
    created: bool,
}

impl fmt::Display for Deployed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.created {
            "deployed"
        } else {
            "unchanged:"
        };
        write!(
            f,
            "{what} {} version {} ({}, {} bytes, {})",
            self.name, self.version, self.world, self.size, self.digest
        )
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Uploads above this size show a progress bar.
const PROGRESS_THRESHOLD: usize = 1 << 20;

fn progress_bar(size: usize, verb: &str) -> ProgressBar {
    if size < PROGRESS_THRESHOLD {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size as u64);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{verb} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
    )) {
        bar.set_style(style);
    }
    bar
}

impl Client {
    pub async fn new(target: &TargetArgs) -> Result<Self> {
        match &target.server {
            Some(url) => Ok(Self::Remote {
                base: url.trim_end_matches('/').to_string(),
                http: reqwest::Client::builder()
                    .build()
                    .context("cannot build the HTTP client")?,
            }),
            None => Ok(Self::Local(
                super::local_node(&target.data, super::cli_engine(), Default::default()).await?,
            )),
        }
    }

    async fn check(response: reqwest::Response, base: &str) -> Result<reqwest::Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        bail!("{base} answered {status}: {message}")
    }

    fn unreachable(base: &str, e: reqwest::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach {base}: {e}; is `sluice serve` running there? (or drop --server to use the embedded store)"
        )
    }

    pub async fn deploy(&self, name: &str, bytes: Vec<u8>, request: Deploy) -> Result<Deployed> {
        match self {
            Self::Local(node) => {
                let bar = progress_bar(bytes.len(), "storing");
                let report = |done: u64| bar.set_position(done);
                let d = node
                    .deploy(name, bytes.into(), request, Some(&report))
                    .await;
                bar.finish_and_clear();
                let d = d?;
                let v = d.version;
                Ok(Deployed {
                    name: v.name,
                    version: v.version,
                    digest: v.digest.to_string(),
                    world: v.world.to_string(),
                    size: v.size,
                    created: d.created,
                })
            }
            Self::Remote { base, http } => {
                let mut query: Vec<(String, String)> = request
                    .config
                    .into_iter()
                    .map(|(k, v)| (format!("config.{k}"), v))
                    .collect();
                if let Some(t) = request.timeout_ms {
                    query.push(("timeout_ms".into(), t.to_string()));
                }
                if let Some(m) = request.memory_bytes {
                    query.push(("memory_mb".into(), (m >> 20).to_string()));
                }
                if let Some(c) = request.max_concurrency {
                    query.push(("max_concurrency".into(), c.to_string()));
                }
                if let Some(q) = request.max_queue {
                    query.push(("max_queue".into(), q.to_string()));
                }
                if let Some(s) = request.idle_secs {
                    query.push(("idle_secs".into(), s.to_string()));
                }
                if let Some(d) = request.description {
                    query.push(("description".into(), d));
                }
                query.extend(
                    request
                        .labels
                        .into_iter()
                        .map(|(k, v)| (format!("label.{k}"), v)),
                );
                let size = bytes.len();
                let bar = progress_bar(size, "uploading");
                let progress = bar.clone();
                let chunks: Vec<bytes::Bytes> = bytes::Bytes::from(bytes)
                    .chunks(64 * 1024)
                    .map(bytes::Bytes::copy_from_slice)
                    .collect();
                let stream = futures::stream::iter(chunks).map(move |chunk| {
                    progress.inc(chunk.len() as u64);
                    Ok::<_, std::io::Error>(chunk)
                });
                let response = http
                    .put(format!("{base}/v1/functions/{name}"))
                    .query(&query)
                    .header("content-type", "application/wasm")
                    .header("content-length", size)
                    .header("x-sluice-actor", request.created_by)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                bar.finish_and_clear();
                Ok(Self::check(response, base).await?.json().await?)
            }
        }
    }

    /// Returns whether the call succeeded, and the response body.
    pub async fn invoke(
        &self,
        target: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(bool, Vec<u8>)> {
        match self {
            Self::Remote { base, http } => {
                let response = http
                    .post(format!("{base}/fn/{target}"))
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                let ok = response.status().is_success();
                Ok((ok, response.bytes().await?.to_vec()))
            }
            Self::Local(node) => {
                let request_id = sluice::observe::request_id(None);
                let (name, selector) = Selector::split(target).with_context(|| {
                    format!("`{target}` is not NAME, NAME@VERSION or NAME@ALIAS")
                })?;
                let result = async {
                    let input = decode_request(Some(content_type), body)?;
                    let (_, output) = node
                        .invoke(name, &selector, input, request_id.clone())
                        .await?;
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
        }
    }

    pub async fn list(&self) -> Result<Vec<FunctionSummary>> {
        match self {
            Self::Local(node) => Ok(node.list().await?),
            Self::Remote { base, http } => {
                #[derive(Deserialize)]
                struct List {
                    functions: Vec<FunctionSummary>,
                }
                let response = http
                    .get(format!("{base}/v1/functions"))
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                Ok(Self::check(response, base)
                    .await?
                    .json::<List>()
                    .await?
                    .functions)
            }
        }
    }

    pub async fn versions(&self, name: &str) -> Result<(Head, Vec<FunctionVersion>)> {
        match self {
            Self::Local(node) => Ok(node.versions(name).await?),
            Self::Remote { base, http } => {
                Self::remote_versions(base, http, Kind::Function, name).await
            }
        }
    }

    pub async fn push_model(
        &self,
        name: &str,
        bytes: Vec<u8>,
        push: Push,
    ) -> Result<(ModelVersion, bool)> {
        match self {
            Self::Local(node) => {
                let name = Name::parse(name)?;
                let bar = progress_bar(bytes.len(), "storing");
                let report = |done: u64| bar.set_position(done);
                let pushed = node
                    .models()
                    .push(&name, bytes.into(), push, Some(&report))
                    .await;
                bar.finish_and_clear();
                Ok(pushed?)
            }
            Self::Remote { base, http } => {
                let mut query: Vec<(String, String)> = push
                    .labels
                    .into_iter()
                    .map(|(k, v)| (format!("label.{k}"), v))
                    .collect();
                if let Some(d) = push.description {
                    query.push(("description".into(), d));
                }
                if let Some(s) = push.idle_secs {
                    query.push(("idle_secs".into(), s.to_string()));
                }
                if let Some(b) = push.batching {
                    query.push(("max_batch_size".into(), b.max_batch_size.to_string()));
                    query.push((
                        "max_queue_delay_us".into(),
                        b.max_queue_delay_us.to_string(),
                    ));
                }
                if let Some(baseline) = push.baseline {
                    let digest = match baseline {
                        Baseline::Stored(digest) => digest.to_string(),
                        Baseline::Json(stats) => {
                            #[derive(Deserialize)]
                            struct Stored {
                                digest: String,
                            }
                            let response = http
                                .put(format!("{base}/v1/blobs"))
                                .body(stats)
                                .send()
                                .await
                                .map_err(|e| Self::unreachable(base, e))?;
                            Self::check(response, base)
                                .await?
                                .json::<Stored>()
                                .await?
                                .digest
                        }
                    };
                    query.push(("baseline".into(), digest));
                }
                for (input, dims) in push.input_shapes {
                    let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
                    query.push((format!("input_shape.{input}"), dims.join(",")));
                }
                let response = http
                    .put(format!("{base}/v1/models/{name}"))
                    .query(&query)
                    .header("content-type", "application/octet-stream")
                    .header("x-sluice-actor", push.created_by)
                    .body(bytes)
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                #[derive(Deserialize)]
                struct Pushed {
                    created: bool,
                    model: ModelVersion,
                }
                let pushed: Pushed = Self::check(response, base).await?.json().await?;
                Ok((pushed.model, pushed.created))
            }
        }
    }

    pub async fn models(&self) -> Result<Vec<(String, Head)>> {
        match self {
            Self::Local(node) => Ok(node
                .models()
                .registry()
                .names()
                .await?
                .into_iter()
                .map(|(n, h)| (n.to_string(), h))
                .collect()),
            Self::Remote { base, http } => {
                #[derive(Deserialize)]
                struct Entry {
                    name: String,
                    #[serde(flatten)]
                    head: Head,
                }
                #[derive(Deserialize)]
                struct List {
                    models: Vec<Entry>,
                }
                let response = http
                    .get(format!("{base}/v1/models"))
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                let list: List = Self::check(response, base).await?.json().await?;
                Ok(list.models.into_iter().map(|e| (e.name, e.head)).collect())
            }
        }
    }

    pub async fn model_versions(&self, name: &str) -> Result<(Head, Vec<ModelVersion>)> {
        match self {
            Self::Local(node) => Ok(node
                .models()
                .registry()
                .versions(&Name::parse(name)?)
                .await?),
            Self::Remote { base, http } => {
                Self::remote_versions(base, http, Kind::Model, name).await
            }
        }
    }

    /// `GET /v1/{functions|models}/{name}`: the head and every record.
    async fn remote_versions<R: Record>(
        base: &str,
        http: &reqwest::Client,
        kind: Kind,
        name: &str,
    ) -> Result<(Head, Vec<R>)> {
        #[derive(Deserialize)]
        #[serde(bound = "R: Record")]
        struct Versions<R> {
            aliases: std::collections::BTreeMap<String, u64>,
            history: std::collections::BTreeMap<String, Vec<u64>>,
            versions: Vec<R>,
        }
        let response = http
            .get(format!("{base}/v1/{}/{name}", kind.path()))
            .send()
            .await
            .map_err(|e| Self::unreachable(base, e))?;
        let body: Versions<R> = Self::check(response, base).await?.json().await?;
        let head = Head {
            versions: body.versions.iter().map(Record::version).collect(),
            highest: body.versions.iter().map(Record::version).max().unwrap_or(0),
            aliases: body.aliases,
            history: body.history,
        };
        Ok((head, body.versions))
    }

    /// Point an alias at a version; `expect` guards against a concurrent move.
    pub async fn set_alias(
        &self,
        kind: Kind,
        name: &str,
        alias: &str,
        version: u64,
        expect: Option<Option<u64>>,
    ) -> Result<Head> {
        match self {
            Self::Local(node) => match kind {
                Kind::Function => Ok(node.set_alias(name, alias, version, expect).await?),
                Kind::Model => Ok(node
                    .models()
                    .registry()
                    .set_alias(&Name::parse(name)?, &Name::parse(alias)?, version, expect)
                    .await?),
            },
            Self::Remote { base, http } => {
                let mut body = serde_json::json!({ "version": version });
                if let Some(expect) = expect {
                    body["expect"] = serde_json::json!(expect);
                }
                let response = http
                    .put(format!("{base}/v1/{}/{name}/aliases/{alias}", kind.path()))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                Ok(Self::check(response, base).await?.json().await?)
            }
        }
    }

    pub async fn remove_alias(&self, kind: Kind, name: &str, alias: &str) -> Result<Head> {
        match self {
            Self::Local(node) => match kind {
                Kind::Function => Ok(node.remove_alias(name, alias).await?),
                Kind::Model => Ok(node
                    .models()
                    .registry()
                    .remove_alias(&Name::parse(name)?, &Name::parse(alias)?)
                    .await?),
            },
            Self::Remote { base, http } => {
                let response = http
                    .delete(format!("{base}/v1/{}/{name}/aliases/{alias}", kind.path()))
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                Ok(Self::check(response, base).await?.json().await?)
            }
        }
    }

    pub async fn rollback(&self, kind: Kind, name: &str, alias: &str) -> Result<Head> {
        match self {
            Self::Local(node) => match kind {
                Kind::Function => Ok(node.rollback(name, Some(alias)).await?),
                Kind::Model => Ok(node
                    .models()
                    .registry()
                    .rollback(&Name::parse(name)?, &Name::parse(alias)?)
                    .await?),
            },
            Self::Remote { base, http } => {
                let response = http
                    .post(format!("{base}/v1/{}/{name}/rollback", kind.path()))
                    .query(&[("alias", alias)])
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                Ok(Self::check(response, base).await?.json().await?)
            }
        }
    }

    pub async fn delete(&self, kind: Kind, name: &str, version: u64) -> Result<()> {
        match self {
            Self::Local(node) => {
                match kind {
                    Kind::Function => {
                        node.delete_version(name, version).await?;
                    }
                    Kind::Model => node.models().delete(&Name::parse(name)?, version).await?,
                }
                Ok(())
            }
            Self::Remote { base, http } => {
                let response = http
                    .delete(format!(
                        "{base}/v1/{}/{name}/versions/{version}",
                        kind.path()
                    ))
                    .send()
                    .await
                    .map_err(|e| Self::unreachable(base, e))?;
                Self::check(response, base).await?;
                Ok(())
            }
        }
    }
}
