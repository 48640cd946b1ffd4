//! A running node over HTTP: the control-plane service ([`ControlPlane`])
//! spoken remotely, in the shapes `control.rs` answers, and the data
//! plane's invocation. The CLI uses it with `--server`.

use super::query;
use crate::access::{AuditRecord, Broken, NewToken, Role, TokenInfo};
use crate::features::{Compacted, Format, Ingested};
use crate::inference::Baseline;
use crate::inference::drift::Report as DriftReport;
use crate::node::{
    ControlPlane, GuardStatus, Kind, Listing, Published, RolloutStatus, Settings, Summary, Version,
};
use crate::registry::rollout::RolloutChange;
use crate::registry::{Guard, Head, Invocation, Rollout};
use crate::store::{Digest, Progress};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer.
    #[error(
        "cannot reach {base}: {reason}; is `sluice serve` running there? (or drop --server to use the embedded store)"
    )]
    Unreachable {
        /// The node's URL.
        base: String,
        /// What the connection said.
        reason: String,
    },
    /// The node refused the request.
    #[error("{base} answered {status}: {message}")]
    Refused {
        /// The node's URL.
        base: String,
        /// The HTTP status.
        status: u16,
        /// The node's error message.
        message: String,
    },
    /// The answer is not what this client expects (another version?).
    #[error("{base} answered something this client cannot read: {reason}")]
    Unreadable {
        /// The node's URL.
        base: String,
        /// Why.
        reason: String,
    },
    /// The request cannot be made.
    #[error("{0}")]
    Invalid(String),
}

/// A node at a URL.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// How often an upload's progress is reported.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

impl Client {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:8080`),
    /// sending `token` (its control plane needs one; the data plane, for
    /// versions deployed to require it).
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    ClientError::Invalid("the API token is not valid header text".into())
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            base: self.base.clone(),
            reason: e.to_string(),
        }
    }

    fn unreadable(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Unreadable {
            base: self.base.clone(),
            reason: reason.to_string(),
        }
    }

    /// Send, and turn a non-2xx answer into [`ClientError::Refused`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        Err(ClientError::Refused {
            base: self.base.clone(),
            status,
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        response.json().await.map_err(|e| self.unreadable(e))
    }

    /// Send `body` as a streamed upload, reporting bytes sent to `progress`.
    async fn upload(
        &self,
        request: reqwest::RequestBuilder,
        body: Bytes,
        progress: Progress<'_>,
    ) -> Result<reqwest::Response, ClientError> {
        let size = body.len();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let chunks: Vec<Bytes> = (0..size)
            .step_by(64 << 10)
            .map(|start| body.slice(start..size.min(start + (64 << 10))))
            .collect();
        let stream = futures::stream::iter(chunks).map(move |chunk| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(chunk)
        });
        let request = request
            .header("content-length", size)
            .body(reqwest::Body::wrap_stream(stream));
        let sending = self.send(request);
        let Some(report) = progress else {
            return sending.await;
        };
        tokio::pin!(sending);
        loop {
            tokio::select! {
                response = &mut sending => {
                    report(sent.load(Ordering::Relaxed));
                    return response;
                }
                () = tokio::time::sleep(PROGRESS_TICK) => report(sent.load(Ordering::Relaxed)),
            }
        }
    }

    /// Store `bytes` as a blob on the node; its digest.
    async fn put_blob(&self, bytes: Bytes) -> Result<Digest, ClientError> {
        #[derive(Deserialize)]
        struct Stored {
            digest: Digest,
        }
        let stored: Stored = self
            .json(self.http.put(self.url("/v1/blobs")).body(bytes))
            .await?;
        Ok(stored.digest)
    }

    /// `POST /v1/features/{table}/lookup`: one JSON object per key.
    pub async fn lookup(
        &self,
        table: &str,
        keys: &[String],
        features: &[String],
    ) -> Result<Vec<Value>, ClientError> {
        #[derive(Deserialize)]
        struct Answer {
            results: Vec<Value>,
        }
        let request = self
            .http
            .post(self.url(&format!("/v1/features/{table}/lookup")))
            .json(&serde_json::json!({ "entities": keys, "features": features }));
        let answer: Answer = self.json(request).await?;
        Ok(answer.results)
    }

    /// `POST /fn/{target}` (or `/p/{target}`, a pipeline): whether the
    /// call succeeded, and the answer.
    pub async fn invoke(
        &self,
        pipeline: bool,
        target: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(bool, Vec<u8>), ClientError> {
        let route = if pipeline { "p" } else { "fn" };
        let response = self
            .http
            .post(self.url(&format!("/{route}/{target}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let ok = response.status().is_success();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok((ok, bytes.to_vec()))
    }
}

/// A head as `control.rs` writes it (`versions` may hold numbers or, in a
/// listing, records).
#[derive(Deserialize)]
struct HeadJson<V> {
    versions: Vec<V>,
    #[serde(default)]
    highest: u64,
    aliases: BTreeMap<String, u64>,
    #[serde(default)]
    history: BTreeMap<String, Vec<u64>>,
    #[serde(default)]
    invocation: Invocation,
    #[serde(default)]
    rollout: Option<Rollout>,
    #[serde(default)]
    guard: Option<Guard>,
}

impl From<HeadJson<u64>> for Head {
    fn from(h: HeadJson<u64>) -> Self {
        Self {
            versions: h.versions.into_iter().collect(),
            highest: h.highest,
            aliases: h.aliases,
            history: h.history,
            invocation: h.invocation,
            rollout: h.rollout,
            guard: h.guard,
        }
    }
}

#[async_trait::async_trait]
impl ControlPlane for Client {
    type Error = ClientError;

    async fn publish(
        &self,
        name: &str,
        artifact: Bytes,
        mut settings: Settings,
        progress: Progress<'_>,
    ) -> Result<Published, ClientError> {
        let kind = settings.kind();
        // The node reads a baseline by digest: upload it first.
        if let Settings::Model(push) = &mut settings
            && let Some(Baseline::Json(stats)) = &push.baseline
        {
            push.baseline = Some(Baseline::Stored(self.put_blob(stats.clone()).await?));
        }
        // Who publishes is the token's name, not something the request says.
        let content_type = match &settings {
            Settings::Function(_) => "application/wasm",
            Settings::Model(_) => "application/octet-stream",
            Settings::Pipeline { .. } | Settings::Table { .. } => "application/toml",
        };
        let query = query::write(&settings).map_err(ClientError::Invalid)?;
        let request = self
            .http
            .put(self.url(&format!("/v1/{}/{name}", kind.plural())))
            .query(&query)
            .header("content-type", content_type);
        let response = self.upload(request, artifact, progress).await?;
        let mut body: Value = response.json().await.map_err(|e| self.unreadable(e))?;
        let created = body["created"].as_bool().unwrap_or(true);
        let version =
            Version::from_json(kind, body[kind.noun()].take()).map_err(|e| self.unreadable(e))?;
        Ok(Published { version, created })
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Summary>, ClientError> {
        let mut body: Value = self
            .json(self.http.get(self.url(&format!("/v1/{}", kind.plural()))))
            .await?;
        serde_json::from_value(body[kind.plural()].take()).map_err(|e| self.unreadable(e))
    }

    async fn show(&self, kind: Kind, name: &str) -> Result<Listing, ClientError> {
        let body: HeadJson<Value> = self
            .json(
                self.http
                    .get(self.url(&format!("/v1/{}/{name}", kind.plural()))),
            )
            .await?;
        let versions = body
            .versions
            .into_iter()
            .map(|v| Version::from_json(kind, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.unreadable(e))?;
        let head = Head {
            versions: versions.iter().map(Version::number).collect(),
            highest: body.highest,
            aliases: body.aliases,
            history: body.history,
            invocation: body.invocation,
            rollout: body.rollout,
            guard: body.guard,
        };
        Ok(Listing { head, versions })
    }

    async fn version(&self, kind: Kind, name: &str, version: u64) -> Result<Version, ClientError> {
        let body: Value = self
            .json(
                self.http
                    .get(self.url(&format!("/v1/{}/{name}/versions/{version}", kind.plural()))),
            )
            .await?;
        Version::from_json(kind, body).map_err(|e| self.unreadable(e))
    }

    async fn drift(&self, model: &str, version: Option<u64>) -> Result<DriftReport, ClientError> {
        let mut request = self
            .http
            .get(self.url(&format!("/v1/models/{model}/drift")));
        if let Some(version) = version {
            request = request.query(&[("version", version)]);
        }
        self.json(request).await
    }

    async fn set_alias(
        &self,
        kind: Kind,
        name: &str,
        alias: &str,
        version: u64,
        expect: Option<Option<u64>>,
    ) -> Result<Head, ClientError> {
        let mut body = serde_json::json!({ "version": version });
        if let Some(expect) = expect {
            body["expect"] = serde_json::json!(expect);
        }
        let url = self.url(&format!("/v1/{}/{name}/aliases/{alias}", kind.plural()));
        let head: HeadJson<u64> = self.json(self.http.put(url).json(&body)).await?;
        Ok(head.into())
    }

    async fn remove_alias(&self, kind: Kind, name: &str, alias: &str) -> Result<Head, ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/aliases/{alias}", kind.plural()));
        let head: HeadJson<u64> = self.json(self.http.delete(url)).await?;
        Ok(head.into())
    }

    async fn rollout(
        &self,
        kind: Kind,
        name: &str,
        change: RolloutChange,
    ) -> Result<Head, ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/rollout", kind.plural()));
        let head: HeadJson<u64> = self.json(self.http.post(url).json(&change)).await?;
        Ok(head.into())
    }

    async fn rollout_status(&self, kind: Kind, name: &str) -> Result<RolloutStatus, ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/rollout", kind.plural()));
        self.json(self.http.get(url)).await
    }

    async fn set_guard(
        &self,
        kind: Kind,
        name: &str,
        guard: Option<Guard>,
    ) -> Result<Head, ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/guard", kind.plural()));
        let request = match &guard {
            Some(guard) => self.http.put(url).json(guard),
            None => self.http.delete(url),
        };
        let head: HeadJson<u64> = self.json(request).await?;
        Ok(head.into())
    }

    async fn guard_status(&self, kind: Kind, name: &str) -> Result<GuardStatus, ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/guard", kind.plural()));
        self.json(self.http.get(url)).await
    }

    async fn rollback(&self, kind: Kind, name: &str, alias: &str) -> Result<Head, ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/rollback", kind.plural()));
        let head: HeadJson<u64> = self
            .json(self.http.post(url).query(&[("alias", alias)]))
            .await?;
        Ok(head.into())
    }

    async fn set_invocation(
        &self,
        kind: Kind,
        name: &str,
        invocation: Invocation,
    ) -> Result<Head, ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/invocation", kind.plural()));
        let head: HeadJson<u64> = self
            .json(
                self.http
                    .put(url)
                    .json(&serde_json::json!({ "invocation": invocation })),
            )
            .await?;
        Ok(head.into())
    }

    async fn delete(&self, kind: Kind, name: &str, version: u64) -> Result<(), ClientError> {
        let url = self.url(&format!("/v1/{}/{name}/versions/{version}", kind.plural()));
        self.send(self.http.delete(url)).await?;
        Ok(())
    }

    async fn ingest(
        &self,
        table: &str,
        format: Format,
        file: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<Ingested, ClientError> {
        // Streamed: a file larger than memory goes through as it is read.
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let request = self
            .http
            .post(self.url(&format!("/v1/features/{table}/ingest")))
            .header("content-type", format.media_type())
            .body(body);
        self.json(request).await
    }

    async fn append(
        &self,
        table: &str,
        rows: Vec<serde_json::Value>,
    ) -> Result<Ingested, ClientError> {
        let request = self
            .http
            .post(self.url(&format!("/v1/features/{table}")))
            .json(&rows);
        self.json(request).await
    }

    async fn compact(&self, table: &str, grace: Duration) -> Result<Compacted, ClientError> {
        let request = self
            .http
            .post(self.url(&format!("/v1/features/{table}/compact")))
            .query(&[("grace", humantime::format_duration(grace).to_string())]);
        self.json(request).await
    }

    async fn create_token(
        &self,
        name: &str,
        role: Role,
        prefixes: Vec<String>,
    ) -> Result<NewToken, ClientError> {
        let body = serde_json::json!({ "name": name, "role": role, "prefixes": prefixes });
        self.json(self.http.post(self.url("/v1/tokens")).json(&body))
            .await
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        #[derive(Deserialize)]
        struct Answer {
            tokens: Vec<TokenInfo>,
        }
        let answer: Answer = self.json(self.http.get(self.url("/v1/tokens"))).await?;
        Ok(answer.tokens)
    }

    async fn revoke_token(&self, name: &str) -> Result<TokenInfo, ClientError> {
        self.json(self.http.delete(self.url(&format!("/v1/tokens/{name}"))))
            .await
    }

    async fn audit_log(&self, since: Option<&str>) -> Result<Vec<AuditRecord>, ClientError> {
        #[derive(Deserialize)]
        struct Answer {
            records: Vec<AuditRecord>,
        }
        let mut request = self.http.get(self.url("/v1/audit"));
        if let Some(since) = since {
            request = request.query(&[("since", since)]);
        }
        let answer: Answer = self.json(request).await?;
        Ok(answer.records)
    }

    async fn audit_verify(&self) -> Result<Result<u64, Broken>, ClientError> {
        let answer: VerifyJson = self
            .json(self.http.get(self.url("/v1/audit/verify")))
            .await?;
        Ok(answer.into())
    }
}

/// What `GET /v1/audit/verify` answers.
#[derive(Debug, serde::Serialize, Deserialize)]
pub(super) struct VerifyJson {
    /// Whether the whole chain is intact.
    pub intact: bool,
    /// Records intact (all of them, when `intact`).
    pub records: u64,
    /// Where it breaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<Broken>,
}

impl From<Result<u64, Broken>> for VerifyJson {
    fn from(result: Result<u64, Broken>) -> Self {
        match result {
            Ok(records) => Self {
                intact: true,
                records,
                broken: None,
            },
            Err(broken) => Self {
                intact: false,
                records: broken.seq.saturating_sub(1),
                broken: Some(broken),
            },
        }
    }
}

impl From<VerifyJson> for Result<u64, Broken> {
    fn from(v: VerifyJson) -> Self {
        match v.broken {
            Some(broken) => Err(broken),
            None => Ok(v.records),
        }
    }
}
