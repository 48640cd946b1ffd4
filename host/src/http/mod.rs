//! HTTP, on axum over hyper: two routers, one per plane.
//!
//! - The **data plane** ([`data_router`]): `POST /fn/{name}[@{version}|@{alias}]`
//!   invokes a function; the Open Inference Protocol (`/v2/...`: health,
//!   model metadata, readiness, inference, `message.rs` / `oip.rs`);
//!   feature lookups (`GET /v1/features/{table}/{entity}`, `POST
//!   /v1/features/{table}/lookup`, `features.rs`); `GET /healthz`,
//!   `GET /readyz`.
//! - The **control plane** ([`control_router`], `control.rs`): everything
//!   that changes or reveals what the node serves, `/v1/...` (publish,
//!   list, versions, aliases, rollback, delete, blobs, status, feature
//!   ingestion), a thin
//!   layer over the node's [`ControlPlane`](crate::node::ControlPlane).
//!
//! `sluice serve` serves both on one listener, or the control plane on its
//! own (`--admin-listen`). `client.rs` is the other end of the control
//! plane. Tensors travel as OIP JSON (`tensor_json.rs`) or binary
//! (`oip_binary.rs`); publish settings as query parameters (`query.rs`);
//! errors have one JSON shape (`error.rs`). Every listener serves
//! `GET /openapi.json`, the API's OpenAPI description (`openapi.rs`).
//!
//! Connections get a header-read timeout and bodies a size cap and a read
//! timeout, so a slow or oversized client only costs itself; bodies in
//! flight count against a node-wide budget (`hold_body`).

mod client;
mod control;
mod error;
mod features;
mod invoke;
pub mod message;
mod oip;
mod oip_binary;
mod openapi;
mod query;
mod route_metrics;
mod tensor_json;

pub use client::{Client, ClientError};
pub use error::ApiError;

use crate::node::{Kind, Node};
use crate::observe;
use crate::observe::metrics::{RouteMetrics, metrics};
use crate::store::{Digest, Spooled};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest as _, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tower::Layer as _;
use tracing::Instrument;

/// HTTP limits. Defaults suit inference payloads: a few MB of JSON per
/// call, a component of tens of MB.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest invocation body.
    pub max_body_bytes: usize,
    /// Largest component upload.
    pub max_component_bytes: usize,
    /// Largest model upload.
    pub max_model_bytes: usize,
    /// Time allowed to send request headers.
    pub header_timeout: Duration,
    /// Time allowed to send a request body.
    pub body_timeout: Duration,
    /// Bytes of request bodies the node holds at once, across requests
    /// (by declared length; a chunked body at its route's cap): past it a
    /// request gets 503 with `Retry-After`, its body read and dropped,
    /// never held.
    pub inflight_body_bytes: usize,
    /// A second prefix HTTP functions answer at besides `/fn` (`/api`:
    /// `/api/NAME/...`), checked by [`check_prefix`].
    pub functions_at: Option<String>,
}

/// Why `prefix` cannot be where HTTP functions answer, if it cannot: it is
/// `/` and lower-case segments, clear of the node's own routes.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let segments: Vec<&str> = prefix.strip_prefix('/').unwrap_or("").split('/').collect();
    let valid = prefix.starts_with('/')
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        });
    if !valid {
        return Err(format!(
            "`{prefix}` is not a route prefix: write /SEGMENT[/SEGMENT...] of a-z, 0-9, '-', '_', e.g. /api"
        ));
    }
    const TAKEN: [&str; 8] = [
        "fn",
        "p",
        "v1",
        "v2",
        "healthz",
        "readyz",
        "metrics",
        "openapi.json",
    ];
    match TAKEN.iter().find(|t| **t == segments[0]) {
        Some(taken) => Err(format!(
            "`{prefix}` would shadow the node's own /{taken} routes; choose another prefix"
        )),
        None => Ok(()),
    }
}

impl HttpConfig {
    /// The largest body a publish of `kind` reads: the artifact.
    pub fn upload_cap(&self, kind: Kind) -> usize {
        match kind {
            Kind::Function => self.max_component_bytes,
            Kind::Model => self.max_model_bytes,
            // A manifest or a schema: small.
            Kind::Pipeline | Kind::Table => self.max_body_bytes,
        }
    }

    /// The largest body the route of `method` `path` holds in memory, or
    /// `None` for a route that streams its body through (feature ingest).
    fn held_cap(&self, method: &Method, path: &str) -> Option<usize> {
        if path.starts_with("/v1/features/") && path.ends_with("/ingest") {
            return None;
        }
        if method == Method::PUT {
            if path == "/v1/blobs" {
                return Some(self.max_model_bytes);
            }
            // `PUT /v1/{kind}/{name}`: a publish.
            if let Some((plural, name)) = path.strip_prefix("/v1/").and_then(|p| p.split_once('/'))
                && !name.contains('/')
                && let Some(kind) = Kind::ALL.into_iter().find(|k| k.plural() == plural)
            {
                return Some(self.upload_cap(kind));
            }
        }
        Some(self.max_body_bytes)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_component_bytes: 64 << 20,
            max_model_bytes: 1 << 30,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            inflight_body_bytes: 2 << 30,
            functions_at: None,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The node.
    pub node: Arc<Node>,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Whether the store honours conditional writes (`None`: not checked,
    /// e.g. read-only credentials).
    pub conditional_writes: Option<bool>,
    /// What is left of `http.inflight_body_bytes`, in KiB.
    pub bodies: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The state handlers share; the body budget is set from `http`.
    pub fn new(node: Arc<Node>, http: HttpConfig, conditional_writes: Option<bool>) -> Self {
        let kib = http.inflight_body_bytes.div_ceil(1024);
        Self {
            node,
            bodies: Arc::new(tokio::sync::Semaphore::new(kib)),
            http,
            conditional_writes,
        }
    }
}

/// The request id of the request being handled, set by the middleware.
#[derive(Clone)]
pub struct RequestId(pub Arc<str>);

/// The data plane: invocation, inference, health.
pub fn data_router(state: Arc<AppState>) -> Router {
    finish(data_routes(&state.http), state)
}

/// The control plane: what changes or reveals what the node serves.
pub fn control_router(state: Arc<AppState>) -> Router {
    finish(control::routes(state.clone()), state)
}

/// Both planes on one router (one listener, Lambda).
pub fn router(state: Arc<AppState>) -> Router {
    finish(
        data_routes(&state.http).merge(control::routes(state.clone())),
        state,
    )
}

fn data_routes(http: &HttpConfig) -> Router<Arc<AppState>> {
    Router::new()
        .merge(called_routes(http.functions_at.as_deref()))
        .route("/v2", get(oip::server))
        .route("/v2/health/live", get(oip::live))
        .route("/v2/health/ready", get(oip::ready))
        .merge(features::data_routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
}

/// Routes that call a function, pipeline or model (see [`admit`]); HTTP
/// functions also at `functions_at`.
fn called_routes(functions_at: Option<&str>) -> Router<Arc<AppState>> {
    let mut routes = Router::new();
    if let Some(prefix) = functions_at {
        routes = routes
            .route(&format!("{prefix}/{{target}}"), any(invoke::invoke_path))
            .route(
                &format!("{prefix}/{{target}}/{{*path}}"),
                any(invoke::invoke_path),
            );
    }
    routes
        .route("/fn/{target}", any(invoke::invoke))
        .route("/fn/{target}/{*path}", any(invoke::invoke_path))
        .route("/p/{target}", post(invoke::pipeline))
        .route("/v2/models/{model}", get(oip::model_metadata))
        .route("/v2/models/{model}/ready", get(oip::model_ready))
        .route("/v2/models/{model}/infer", post(oip::infer))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(oip::version_metadata),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(oip::version_ready),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(oip::infer_version),
        )
}

/// Let a call (`/fn/`, `/p/`, `/v2/models/`) through if the name's
/// invocation allows it ([`Node::admit_call`](crate::node::Node::admit_call)),
/// before its body is read.
async fn admit(state: &AppState, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let functions_at = (state.http.functions_at.as_deref())
        .and_then(|prefix| path.strip_prefix(prefix)?.strip_prefix('/'));
    let called = if let Some(target) = path.strip_prefix("/fn/").or(functions_at) {
        Some((Kind::Function, target))
    } else if let Some(target) = path.strip_prefix("/p/") {
        Some((Kind::Pipeline, target))
    } else {
        path.strip_prefix("/v2/models/")
            .map(|rest| (Kind::Model, rest.split('/').next().unwrap_or(rest)))
    };
    if let Some((kind, target)) = called
        && !target.is_empty()
    {
        let name = target.split(['@', '/']).next().unwrap_or(target);
        let token = control::bearer(request.headers());
        // An HTTP function is called with any method.
        let call = kind == Kind::Function || request.method() == axum::http::Method::POST;
        if let Err(e) = state.node.admit_call(kind, name, token, call).await {
            return control::refusal(e);
        }
    }
    next.run(request).await
}

/// Fallbacks, request tracking, body budget, admission and state for a
/// plane's routes. The middleware wraps the routed plane once: a layer
/// added with `Router::layer` wraps every route's boxed service instead,
/// and each request would clone the whole nest.
fn finish(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    let routed = routes
        .route("/openapi.json", get(openapi::serve))
        .route_layer(route_metrics::RouteMetricsLayer)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route; see the README for the API",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here; functions are invoked with POST",
            )
        })
        .with_state(state.clone());
    let front = middleware::from_fn_with_state(state, front_door).layer(routed);
    Router::new().fallback_service(front)
}

/// What every request of a plane passes before routing, in one middleware
/// (each of its own would box the request's future again): tracked
/// ([`track`]), its body held against the node's budget ([`hold_body`]),
/// admitted if it calls something ([`admit`]).
async fn front_door(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let state = &*state;
    track(state, request, |request| {
        hold_body(state, request, |request| admit(state, request, next))
    })
    .await
}

/// `GET /healthz`: `ok` while the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: ready when the store answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    summary = "Readiness: the store answers",
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "The store does not answer", body = openapi::ErrorBody),
    ))]
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.node.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
        .into_response(),
    }
}

/// The method of a request, as a metrics label.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Give every request an id (the caller's `x-request-id` or a new one), a
/// span, a log line with status and duration, metrics by route, and echo
/// the id back.
async fn track<F: Future<Output = Response>>(
    state: &AppState,
    mut request: Request,
    then: impl FnOnce(Request) -> F,
) -> Response {
    let id = observe::request_id(
        request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    request.extensions_mut().insert(RequestId(id.clone()));
    let stats = state.node.stats().clone();
    stats.http_requests.fetch_add(1, Ordering::Relaxed);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    // Counted down however the request ends (even if the client goes away).
    let _in_flight = scopeguard(move || {
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    });
    let method = method_label(request.method());
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    observe::trace::continue_trace(&span, request.headers());
    let started = Instant::now();
    let mut response = then(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    // The route's handles, unless no route matched (or a GET route
    // answered a HEAD).
    match response.extensions_mut().remove::<Arc<RouteMetrics>>() {
        Some(route) if route.method() == method => route.record(status, elapsed),
        route => {
            let pattern = route.as_deref().map_or("unmatched", RouteMetrics::route);
            metrics()
                .http_route(pattern, method)
                .record(status, elapsed);
        }
    }
    span.in_scope(|| tracing::info!(status, elapsed_us = elapsed.as_micros() as u64, "served"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some(value) =
        observe::trace::trace_response(&span).and_then(|t| HeaderValue::from_str(&t).ok())
    {
        response.headers_mut().insert("traceresponse", value);
    }
    response
}

/// Hold a request's body size against the node's budget until its answer
/// is ready: the declared length, or for a chunked body (no length
/// declared) its route's cap, since it may be that large. 503 with
/// `Retry-After` when the bodies in flight would pass the budget, before a
/// byte is read, so that concurrent large uploads are turned away rather
/// than exhaust memory. Routes that stream their body through hold none.
async fn hold_body<F: Future<Output = Response>>(
    state: &AppState,
    request: Request,
    then: impl FnOnce(Request) -> F,
) -> Response {
    let headers = request.headers();
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = headers.contains_key(axum::http::header::TRANSFER_ENCODING);
    let Some(cap) = state.http.held_cap(request.method(), request.uri().path()) else {
        return then(request).await;
    };
    let budget = state.http.inflight_body_bytes;
    let held = match declared {
        Some(declared) if declared > budget as u64 => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body ({declared} bytes) is larger than all this node may hold at once ({} MiB, --max-inflight-body-mb)",
                    budget >> 20
                ),
            )
            .into_response();
        }
        Some(declared) => declared,
        None if chunked && cap > budget => {
            return ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                format!(
                    "this route takes bodies of up to {} MiB, more than all this node may hold at once ({} MiB, --max-inflight-body-mb); send the body with a Content-Length",
                    cap >> 20,
                    budget >> 20
                ),
            )
            .into_response();
        }
        None if chunked => cap as u64,
        None => 0,
    };
    let kib = held.div_ceil(1024);
    if kib == 0 {
        return then(request).await;
    }
    let held = u32::try_from(kib)
        .ok()
        .and_then(|kib| state.bodies.clone().try_acquire_many_owned(kib).ok());
    match held {
        Some(_held) => then(request).await,
        None => {
            // Read and dropped, not held: a client that is still sending
            // (most do not wait for an early answer) then reads the 503
            // instead of a broken connection.
            let mut body = request.into_body();
            let drain = async { while let Some(Ok(_)) = body.frame().await {} };
            let _ = tokio::time::timeout(state.http.body_timeout, drain).await;
            over_budget(state)
        }
    }
}

fn over_budget(state: &AppState) -> Response {
    ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this node is holding as many request bodies as it may ({} MiB, --max-inflight-body-mb); retry shortly",
                state.http.inflight_body_bytes >> 20
            ),
        )
    .retry_after(1)
    .into_response()
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    Guard(Some(f))
}

/// Read a body under a size cap and a timeout: 413 past the cap, 408 when
/// the client is too slow.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let mut limited = Limited::new(body, limit);
    // Frames are appended to one buffer sized by the declared length: a
    // body is held once, not once in frames and again joined.
    let hint = axum::body::HttpBody::size_hint(&limited);
    let size = hint.lower() as usize;
    let collect = async move {
        let mut buffer = bytes::BytesMut::with_capacity(size.min(limit));
        while let Some(frame) = limited.frame().await {
            if let Ok(data) = frame?.into_data() {
                // One frame holding the whole declared body: no copy at
                // all. (A chunked body declares nothing: read to its end.)
                if buffer.is_empty() && hint.exact().is_some_and(|n| data.len() as u64 >= n) {
                    return Ok(data);
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok::<_, BoxError>(buffer.freeze())
    };
    within(limit, timeout, collect).await
}

/// Spool a body to a temporary file (in `TMPDIR`) under a size cap and a
/// timeout, hashing it as it is written, so an upload is never held
/// whole in memory: 413 past the cap, 408 when the client is too slow.
pub async fn spool_body(body: Body, limit: usize, timeout: Duration) -> Result<Spooled, ApiError> {
    let spool_failed = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot spool the upload to a temporary file (TMPDIR): {e}"),
        )
    };
    let file = tempfile::NamedTempFile::new().map_err(spool_failed)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(spool_failed)?);
    let mut limited = Limited::new(body, limit);
    let copy = async move {
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        while let Some(frame) = limited.frame().await {
            if let Ok(data) = frame?.into_data() {
                hasher.update(&data);
                len += data.len() as u64;
                out.write_all(&data).await?;
            }
        }
        out.flush().await?;
        Ok::<_, BoxError>((len, Digest::finish(hasher)))
    };
    let (len, digest) = within(limit, timeout, copy).await?;
    Ok(Spooled { file, len, digest })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Run a body read under `timeout`, with its errors as answers.
async fn within<T>(
    limit: usize,
    timeout: Duration,
    read: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}s",
                timeout.as_secs()
            ),
        )),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than this node's limit of {limit} bytes"),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// Serve `router` on `listener` until `shutdown` resolves, then let
/// in-flight requests finish (for up to 30 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Usually out of file descriptors: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection closed with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("in-flight requests still running after 30s; exiting"),
    }
    Ok(())
}
