//! The S3 backend (`--store s3://BUCKET/PREFIX`), on `aws-sdk-s3`.
//!
//! Configuration comes from the standard AWS chain: `AWS_REGION` /
//! profiles for the region; env vars, profiles, `credential_process`,
//! container and instance roles for credentials; `AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL` for S3-compatible servers, which are then addressed
//! path-style. Conditional writes map to `If-None-Match: *` and
//! `If-Match: <etag>`; objects past [`MULTIPART_THRESHOLD`] go up in
//! parts, several at once, and a failed upload is aborted so nothing
//! partial is ever visible.

use super::{ETag, Object, ObjectStore, Progress, PutMode, Revalidated, StoreError, check_key};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BROKE_OFF: &str = "the download broke off";

/// Objects at least this large are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of one part (S3's minimum is 5 MiB).
const PART_SIZE: usize = 16 << 20;
/// Parts in flight at once: enough to fill a link, few enough to keep
/// memory and connection use modest.
const PARTS_IN_FLIGHT: usize = 4;

/// What a write sends: bytes in memory, or a file read a part at a time.
#[derive(Clone, Copy)]
enum Source<'a> {
    Bytes(&'a Bytes),
    File(&'a Path, u64),
}

impl Source<'_> {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::File(_, len) => *len,
        }
    }

    /// `len` bytes from `offset`, as a request body.
    async fn part(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        match self {
            Self::Bytes(bytes) => Ok(ByteStream::from(
                bytes.slice(offset as usize..(offset + len) as usize),
            )),
            Self::File(path, _) => ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| StoreError::io(key, std::io::Error::other(e))),
        }
    }
}

/// Objects in an S3 bucket, under a key prefix.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
}

impl S3Store {
    /// Connect to `bucket` (keys under `prefix`) with the standard AWS
    /// configuration chain; [`check`](Self::check) it before serving, so a
    /// wrong name or missing credentials fail at start-up.
    pub async fn connect(bucket: &str, prefix: &str) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::v2026_01_12())
            // Credential providers (SSO-less profiles, STS web identity,
            // container and instance roles) share the one HTTP stack.
            .http_client(http_client());
        // On Lambda the execution role's credentials are always in the
        // environment: read them there, without building the rest of the
        // chain (its STS client alone is ~1 ms of a cold start).
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            && std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        {
            loader = loader.credentials_provider(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            );
        }
        let shared = loader.load().await;
        Self::from_config(&shared, bucket, prefix)
    }

    /// Connect with an explicit AWS configuration (tests, embedders); no
    /// request is sent until [`check`](Self::check) or the first use.
    pub fn from_config(
        shared: &aws_config::SdkConfig,
        bucket: &str,
        prefix: &str,
    ) -> Result<Self, StoreError> {
        if bucket.is_empty() {
            return Err(StoreError::Refused {
                key: format!("s3://{bucket}/{prefix}"),
                reason: "no bucket named; use s3://BUCKET or s3://BUCKET/PREFIX".into(),
            });
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        let endpoint = shared.endpoint_url().map(str::to_string);
        let mut config = aws_sdk_s3::config::Builder::from(shared)
            .http_client(http_client())
            // Three attempts with jittered backoff: rides out a throttle or
            // a dropped connection without holding a request for long.
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            // Fail fast on an unreachable endpoint; give slow bodies (large
            // artifacts) time, but never hang on a silent peer.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .read_timeout(Duration::from_secs(20))
                    .build(),
            );
        if endpoint.is_some() {
            // S3-compatible servers rarely resolve bucket subdomains.
            config = config.force_path_style(true);
            if shared.region().is_none() {
                config = config.region(aws_sdk_s3::config::Region::new("us-east-1"));
            }
        } else if shared.region().is_none() {
            return Err(StoreError::Refused {
                key: format!("s3://{bucket}"),
                reason: "no AWS region configured; set AWS_REGION (or a profile's region)".into(),
            });
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            endpoint,
        })
    }

    /// Check the bucket is reachable with these credentials (one round
    /// trip).
    pub async fn check(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|e| match failure(&format!("s3://{}", self.bucket), e) {
                StoreError::Refused { key, reason } => StoreError::Refused {
                    key,
                    reason: format!(
                        "{reason}; check the bucket exists and the credentials may read it"
                    ),
                },
                other => other,
            })
    }

    fn object_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    async fn current_etag(&self, key: &str) -> Option<ETag> {
        let object_key = self.object_key(key).ok()?;
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object_key)
            .send()
            .await
            .ok()?;
        head.e_tag.map(|t| ETag(t.into()))
    }

    async fn put_single(
        &self,
        key: &str,
        object_key: String,
        source: Source<'_>,
        mode: &PutMode,
    ) -> Result<Option<String>, StoreError> {
        let body = source.part(key, 0, source.len()).await?;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(object_key)
            .body(body);
        request = match mode {
            PutMode::Overwrite => request,
            PutMode::IfAbsent => request.if_none_match("*"),
            PutMode::IfMatch(etag) => request.if_match(&*etag.0),
        };
        match request.send().await {
            Ok(out) => Ok(out.e_tag),
            Err(e) => Err(self.write_failure(key, e).await),
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        object_key: String,
        source: Source<'_>,
        mode: &PutMode,
        progress: Progress<'_>,
    ) -> Result<Option<String>, StoreError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|e| failure(key, e))?;
        let upload_id = upload.upload_id.ok_or_else(|| StoreError::Unavailable {
            key: key.to_string(),
            reason: "the server returned no multipart upload id".into(),
        })?;
        let result = self
            .upload_parts(key, &object_key, &upload_id, source, mode, progress)
            .await;
        if result.is_err() {
            // Best effort: an unfinished upload is invisible anyway, and a
            // bucket lifecycle rule reclaims what an abort cannot.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&object_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        object_key: &str,
        upload_id: &str,
        source: Source<'_>,
        mode: &PutMode,
        progress: Progress<'_>,
    ) -> Result<Option<String>, StoreError> {
        let sent = AtomicU64::new(0);
        let part = PART_SIZE as u64;
        // (number, offset, length): a part is read only when it is sent,
        // so at most PARTS_IN_FLIGHT of a file are in memory at once.
        let chunks: Vec<(i32, u64, u64)> = (0..source.len().div_ceil(part))
            .map(|i| {
                let offset = i * part;
                (i as i32 + 1, offset, part.min(source.len() - offset))
            })
            .collect();
        let mut parts: Vec<CompletedPart> = futures::stream::iter(chunks)
            .map(|(number, offset, len)| {
                let sent = &sent;
                async move {
                    let chunk = source.part(key, offset, len).await?;
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(object_key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .body(chunk)
                        .send()
                        .await
                        .map_err(|e| failure(key, e))?;
                    let done = sent.fetch_add(len, Ordering::Relaxed) + len;
                    if let Some(report) = progress {
                        report(done);
                    }
                    Ok::<_, StoreError>(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(out.e_tag)
                            .build(),
                    )
                }
            })
            .buffer_unordered(PARTS_IN_FLIGHT)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number);
        let mut request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        request = match mode {
            PutMode::Overwrite => request,
            PutMode::IfAbsent => request.if_none_match("*"),
            PutMode::IfMatch(etag) => request.if_match(&*etag.0),
        };
        match request.send().await {
            Ok(out) => Ok(out.e_tag),
            Err(e) => Err(self.write_failure(key, e).await),
        }
    }

    /// Write `source` at `key`: in one request, or in parts past
    /// [`MULTIPART_THRESHOLD`].
    async fn send(
        &self,
        key: &str,
        source: Source<'_>,
        mode: &PutMode,
        progress: Progress<'_>,
    ) -> Result<ETag, StoreError> {
        let object_key = self.object_key(key)?;
        let etag = if source.len() >= MULTIPART_THRESHOLD as u64 {
            self.put_multipart(key, object_key, source, mode, progress)
                .await?
        } else {
            let etag = self.put_single(key, object_key, source, mode).await?;
            if let Some(report) = progress {
                report(source.len());
            }
            etag
        };
        etag.map(|t| ETag(t.into()))
            .ok_or_else(|| StoreError::Unavailable {
                key: key.to_string(),
                reason: "the server accepted the write but returned no ETag".into(),
            })
    }

    /// A failed conditional write is a conflict carrying what is there now.
    async fn write_failure<E>(
        &self,
        key: &str,
        error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        // 412: the condition failed; 409: a concurrent conditional write
        // to the same key is in progress (S3's ConditionalRequestConflict).
        if matches!(status, Some(412 | 409)) {
            return StoreError::Conflict {
                key: key.to_string(),
                current: self.current_etag(key).await,
            };
        }
        failure(key, error)
    }
}

/// One HTTP stack per process for S3 and the credential providers: hyper 1
/// with rustls on ring (the SDK default would add aws-lc and a second
/// build), its connections pooled across every store and provider.
fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    static CLIENT: LazyLock<aws_sdk_s3::config::SharedHttpClient> = LazyLock::new(|| {
        let sdk = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(
                tls::TlsContext::builder()
                    .with_trust_store(trust_store())
                    .build()
                    // Infallible today; the system's roots if it ever fails.
                    .unwrap_or_default(),
            )
            .build_https();
        aws_sdk_s3::config::SharedHttpClient::new(Unvalidated(sdk))
    });
    CLIENT.clone()
}

/// The SDK's HTTP client without its check at client construction: that
/// check builds a throwaway connector, parsing every trusted root
/// certificate (`Client::from_conf` took 0.75 ms with it, 0.15 without),
/// which the first request then builds again with its own settings; a
/// broken TLS set-up still fails that first request (the store check at
/// start-up).
#[derive(Debug)]
struct Unvalidated(aws_sdk_s3::config::SharedHttpClient);

impl aws_sdk_s3::config::HttpClient for Unvalidated {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &aws_sdk_s3::config::RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The certificate authorities an S3 connection trusts: Mozilla's, compiled
/// in, so a process does not read and parse the system's store before its
/// first request (about 4 ms, most of a Lambda's init); plus those in the
/// files `SSL_CERT_FILE` / `SSL_CERT_DIR` name, for a private CA (an
/// in-house MinIO or Ceph).
fn trust_store() -> tls::TrustStore {
    let named = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    // The SDK takes roots as PEM only.
    let mut pem = String::new();
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let base64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in base64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    tls::TrustStore::empty()
        .with_native_roots(named)
        .with_pem_certificate(pem)
}

/// Sort an SDK failure into what a caller can act on.
fn failure<E>(key: &str, error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let key = key.to_string();
    let status = error.raw_response().map(|r| r.status().as_u16());
    let reason = match (&error, status) {
        (SdkError::ServiceError(service), Some(status)) => format!(
            "{} (HTTP {status}{})",
            service.err().message().unwrap_or("no message"),
            service
                .err()
                .code()
                .map(|c| format!(", {c}"))
                .unwrap_or_default()
        ),
        _ => DisplayErrorContext(&error).to_string(),
    };
    let reason = match reason.contains("invalid peer certificate") {
        true => format!(
            "{reason}; the endpoint's certificate is not signed by a CA this node trusts (Mozilla's roots are compiled in): for a private CA, name its PEM file in SSL_CERT_FILE (or a directory in SSL_CERT_DIR)"
        ),
        false => reason,
    };
    match (&error, status) {
        (SdkError::ServiceError(_), Some(status)) if status != 429 && status < 500 => {
            StoreError::Refused { key, reason }
        }
        (SdkError::ConstructionFailure(_), _) => StoreError::Refused { key, reason },
        _ => StoreError::Unavailable { key, reason },
    }
}

fn is_not_found<E>(error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    error.raw_response().map(|r| r.status().as_u16()) == Some(404)
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.fetch(key, None).await.map(|r| match r {
            Revalidated::Changed(object) => Some(object),
            Revalidated::Missing | Revalidated::Unchanged => None,
        })
    }

    async fn get_if_changed(&self, key: &str, etag: &ETag) -> Result<Revalidated, StoreError> {
        self.fetch(key, Some(etag)).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(failure(key, e)),
        }
    }

    async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
        progress: Progress<'_>,
    ) -> Result<ETag, StoreError> {
        self.send(key, Source::Bytes(&bytes), &mode, progress).await
    }

    async fn write_file(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        progress: Progress<'_>,
    ) -> Result<(), StoreError> {
        self.send(key, Source::File(path, len), &PutMode::Overwrite, progress)
            .await
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?)
            .send()
            .await
            .map_err(|e| failure(key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_key(prefix.trim_end_matches('/'))?;
        let full = format!("{}{prefix}", self.prefix);
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| failure(prefix, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&self.prefix))
                    .filter(|k| check_key(k).is_ok())
                    .map(str::to_string),
            );
            match page.next_continuation_token {
                Some(next) if page.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        let location = format!("s3://{}/{}", self.bucket, self.prefix);
        match &self.endpoint {
            Some(endpoint) => format!("{location} at {endpoint}"),
            None => location,
        }
    }
}

impl S3Store {
    /// GET, conditional on `etag` when given. A body that breaks off
    /// mid-stream (a dropped connection, an object replaced while read) is
    /// fetched again, a few times, before giving up.
    async fn fetch(&self, key: &str, etag: Option<&ETag>) -> Result<Revalidated, StoreError> {
        let mut attempt = 1;
        loop {
            match self.fetch_once(key, etag).await {
                Err(StoreError::Unavailable { reason, .. })
                    if attempt < 3 && reason.starts_with(BROKE_OFF) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                result => return result,
            }
        }
    }

    /// One GET; the body is streamed into one buffer sized from
    /// `Content-Length`.
    async fn fetch_once(&self, key: &str, etag: Option<&ETag>) -> Result<Revalidated, StoreError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?);
        if let Some(etag) = etag {
            request = request.if_none_match(&*etag.0);
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) if is_not_found(&e) => return Ok(Revalidated::Missing),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(304) => {
                return Ok(Revalidated::Unchanged);
            }
            Err(e) => return Err(failure(key, e)),
        };
        let new_etag = ETag(output.e_tag.clone().unwrap_or_default().into());
        if etag == Some(&new_etag) {
            // Servers without conditional GET answer 200 with the same tag.
            return Ok(Revalidated::Unchanged);
        }
        let capacity = output
            .content_length
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let mut buffer = BytesMut::with_capacity(capacity);
        let mut body = output.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| StoreError::Unavailable {
            key: key.to_string(),
            reason: format!("{BROKE_OFF}: {e}"),
        })? {
            buffer.extend_from_slice(&chunk);
        }
        Ok(Revalidated::Changed(Object {
            bytes: buffer.freeze(),
            etag: new_etag,
        }))
    }
}
