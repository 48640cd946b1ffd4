//! The control plane over HTTP. For every kind of registry object
//! (`/v1/functions/...`, `/v1/models/...`) the same routes:
//!
//! | route | operation |
//! |---|---|
//! | `PUT /v1/{kind}/{name}` | publish (body: the artifact; query: its settings, `query.rs`) |
//! | `GET /v1/{kind}` | list |
//! | `GET /v1/{kind}/{name}` | show: head and every version |
//! | `GET /v1/{kind}/{name}/versions/{n}` | one version |
//! | `DELETE /v1/{kind}/{name}/versions/{n}` | delete a version |
//! | `PUT` / `DELETE /v1/{kind}/{name}/aliases/{alias}` | move / remove an alias |
//! | `POST /v1/{kind}/{name}/rollback[?alias=A]` | roll an alias back |
//! | `GET` / `POST /v1/{kind}/{name}/rollout` | a rollout's status / start, set, promote, abort it |
//! | `GET` / `PUT` / `DELETE /v1/{kind}/{name}/guard` | a guard (fallback, breaker, rate limits) and this node's circuits / set / clear it |
//!
//! and `PUT /v1/blobs`, `GET /v1/status`, `GET /metrics` (Prometheus),
//! feature ingestion (`features.rs`),
//! tokens (`POST /v1/tokens`, `GET /v1/tokens`, `DELETE /v1/tokens/{name}`)
//! and the audit log (`GET /v1/audit[?since=]`, `GET /v1/audit/verify`).
//! Each handler parses, calls the node's [`ControlPlane`] acting for the
//! request's token and encodes; `client.rs` speaks the same shapes.
//!
//! Every route needs a token ([`authorize`]): reads a viewer's, changes a
//! deployer's, tokens and the audit log an admin's; a token limited to
//! name prefixes reaches only those names (and lists only them).

use super::client::VerifyJson;
use super::openapi::{
    AliasRequest, BlobStored, ErrorBody, InvocationRequest, NewTokenRequest, RolloutRequest,
};
use super::{ApiError, AppState, RequestId, query, read_body, spool_body};
use crate::access::{Identity, Need, Role};
use crate::node::{Acting, ControlPlane, Kind, Published, Settings};
use crate::registry::rollout::RolloutChange;
use crate::registry::{Guard, Head, Name, STABLE};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete as delete_route, get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Who sent a control-plane request: the identity of its token, set by
/// [`authorize`].
#[derive(Clone)]
pub(super) struct Caller(pub Arc<Identity>);

impl Caller {
    /// The node's control plane, acting for this caller.
    pub(super) fn on<'a>(&self, state: &'a AppState) -> Acting<'a> {
        state.node.acting(self.0.name.as_str())
    }
}

/// The control plane's routes, each behind [`authorize`].
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route("/v1/blobs", put(put_blob))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/models/{name}/drift", get(drift))
        .route("/v1/tokens", get(tokens).post(create_token))
        .route("/v1/tokens/{name}", delete_route(revoke_token))
        .route("/v1/audit", get(audit_log))
        .route("/v1/audit/verify", get(audit_verify))
        .merge(super::features::control_routes());
    for kind in Kind::ALL {
        let base = format!("/v1/{}", kind.plural());
        router = router.merge(
            Router::new()
                .route(&base, get(list))
                .route(&format!("{base}/{{name}}"), get(show).put(publish))
                .route(
                    &format!("{base}/{{name}}/versions/{{version}}"),
                    get(version).delete(delete),
                )
                .route(
                    &format!("{base}/{{name}}/aliases/{{alias}}"),
                    put(set_alias).delete(remove_alias),
                )
                .route(&format!("{base}/{{name}}/rollback"), post(rollback))
                .route(
                    &format!("{base}/{{name}}/rollout"),
                    get(rollout_status).post(rollout),
                )
                .route(
                    &format!("{base}/{{name}}/guard"),
                    get(guard_status).put(set_guard).delete(clear_guard),
                )
                .route(&format!("{base}/{{name}}/invocation"), put(set_invocation))
                .layer(Extension(kind)),
        );
    }
    router.route_layer(middleware::from_fn_with_state(state, authorize))
}

/// Let a request through only with a live token whose role and name
/// prefixes cover it: 401 without one (or with a malformed, unknown or
/// revoked one), 403 with one that does not cover it. Both answer before
/// anything is looked up, so neither hints at what exists.
async fn authorize(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let need = if path.starts_with("/v1/tokens") || path.starts_with("/v1/audit") {
        Need::Admin
    } else if matches!(*request.method(), Method::GET | Method::HEAD) {
        Need::View
    } else {
        Need::Change
    };
    let name = named(path).map(str::to_string);
    let identity = match state
        .node
        .access()
        .identify(bearer(request.headers()))
        .await
    {
        Ok(identity) => identity,
        Err(e) => return refusal(e.into()),
    };
    if !identity.may(need, name.as_deref()) {
        let refused = crate::access::AccessError::Forbidden {
            token: identity.name.clone(),
            role: identity.role,
        };
        return refusal(refused.into());
    }
    request.extensions_mut().insert(Caller(identity));
    next.run(request).await
}

/// The answer to a request refused for its token: 401 with
/// `www-authenticate: Bearer`, or 403.
pub(super) fn refusal(e: crate::node::NodeError) -> Response {
    let mut response = ApiError::from(e).into_response();
    if response.status() == axum::http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// The token of `authorization: Bearer <token>`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The name a control-plane path is about: `/v1/{kind}/{name}/...`.
fn named(path: &str) -> Option<&str> {
    let mut segments = path.strip_prefix("/v1/")?.split('/');
    let kind = segments.next()?;
    let name = segments.next().filter(|n| !n.is_empty())?;
    let about_names = Kind::ALL.iter().any(|k| k.plural() == kind) || kind == "features";
    about_names.then_some(name)
}

/// `PUT /v1/{kind}/{name}`: the body is the artifact (a component, an ONNX
/// file), the query its settings; the token's name is who publishes.
/// `201` with the record, or `200` with `created: false` when identical to
/// the newest version.
#[utoipa::path(
    put, path = "/v1/{kind}/{name}", operation_id = "publish", tag = "registry",
    summary = "Publish a new version of an object",
    description = "The body is the artifact: a component, an ONNX model, a pipeline manifest or a table schema. Its settings (limits, config, `invocation`, a model's batching...) are query parameters; see the README. The token's name is recorded as `created_by`.",
    params(("kind" = String, Path), ("name" = String, Path)),
    request_body(content(("application/octet-stream")), description = "The artifact"),
    responses(
        (status = 201, description = "A new version: its record, with name, number, digest, size (and a function's world) at the top", body = Object),
        (status = 200, description = "Identical to the newest version: that version, `created: false`", body = Object),
        (status = 400, description = "A bad name, setting or artifact (the error says which)", body = ErrorBody),
        (status = 409, description = "Another publish of this name won the race; retry", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn publish(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError| e.with_request_id(&request_id);
    // Check the name and settings before reading a possibly large body.
    Name::parse(&name).map_err(|e| fail(ApiError::bad_request(e.to_string())))?;
    let created_by = caller.0.name.clone();
    let settings = match kind {
        Kind::Function => query::read_deploy(params, created_by).map(Settings::Function),
        Kind::Model => query::read_push(params, created_by).map(Settings::Model),
        Kind::Pipeline => query::read_pipeline(params, created_by),
        Kind::Table => query::read_table(params, created_by),
    };
    let limit = state.http.upload_cap(kind);
    let settings = settings.map_err(|e| fail(ApiError::bad_request(e)))?;
    let bytes = match kind {
        // A component or a model may be large: spooled to a file and
        // mapped, it is paged in as it is compiled or loaded and stored,
        // never copied whole into the heap.
        Kind::Function | Kind::Model => spool_body(body, limit, state.http.body_timeout)
            .await
            .and_then(|spooled| {
                spooled.into_bytes().map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot map the spooled upload: {e}"),
                    )
                })
            }),
        Kind::Pipeline | Kind::Table => read_body(body, limit, state.http.body_timeout).await,
    }
    .map_err(fail)?;
    let published = caller
        .on(&state)
        .publish(&name, bytes, settings, None)
        .await
        .map_err(|e| fail(e.into()))?;
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(published_json(&published))).into_response())
}

/// What a publish answers: the record under its noun, with its name,
/// number, digest, size (and a function's world) at the top for scripts.
pub(super) fn published_json(published: &Published) -> Value {
    let v = &published.version.clone().redacted();
    let mut body = json!({
        "name": v.name(),
        "version": v.number(),
        "created": published.created,
    });
    if let (Some(digest), Some(size)) = (v.digest(), v.size()) {
        body["digest"] = json!(digest);
        body["size"] = json!(size);
    }
    body[v.kind().noun()] = json!(v);
    if let Some(world) = v.world() {
        body["world"] = json!(world);
    }
    body
}

/// `GET /v1/{kind}`: the names the caller's token reaches.
#[utoipa::path(
    get, path = "/v1/{kind}", operation_id = "list", tag = "registry",
    summary = "List an object kind's names the token reaches",
    params(("kind" = String, Path)),
    responses((status = 200, description = "The names with their latest versions, under the kind's plural", body = Object)),
    security(("token" = []))
)]
async fn list(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let mut summaries = caller.on(&state).list(kind).await?;
    summaries.retain(|s| caller.0.covers(&s.name));
    let mut body = json!({});
    body[kind.plural()] = json!(summaries);
    Ok(Json(body).into_response())
}

/// A name's head as JSON: its live versions, aliases and their history.
pub(super) fn head_json(name: &str, head: &Head) -> Value {
    json!({
        "name": name,
        "default": head.default_version(),
        "versions": head.versions,
        "highest": head.highest,
        "aliases": head.aliases,
        "history": head.history,
        "invocation": head.invocation,
        "rollout": head.rollout,
        "guard": head.guard,
    })
}

/// `GET /v1/{kind}/{name}`: the head with every live version's record.
#[utoipa::path(
    get, path = "/v1/{kind}/{name}", operation_id = "show", tag = "registry",
    summary = "Show an object: its aliases, history and every live version",
    params(("kind" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, description = "The head and every live version's record", body = Object),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 404, description = "No such name", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn show(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let listing = caller.on(&state).show(kind, &name).await?;
    let mut body = head_json(&name, &listing.head);
    let versions: Vec<_> = listing.versions.into_iter().map(|v| v.redacted()).collect();
    body["versions"] = json!(versions);
    Ok(Json(body).into_response())
}

/// `GET /v1/{kind}/{name}/versions/{n}`.
#[utoipa::path(
    get, path = "/v1/{kind}/{name}/versions/{version}", operation_id = "version", tag = "registry",
    summary = "Show one version of an object",
    params(("kind" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses(
        (status = 200, description = "The version's record (secret config redacted)", body = Object),
        (status = 400, description = "A bad name or version number", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn version(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = query::read_version(&version).map_err(ApiError::bad_request)?;
    let record = caller.on(&state).version(kind, &name, version).await?;
    Ok(Json(record.redacted()).into_response())
}

/// `DELETE /v1/{kind}/{name}/versions/{n}`: refused (409) while an alias
/// other than `latest` points at it.
#[utoipa::path(
    delete, path = "/v1/{kind}/{name}/versions/{version}", operation_id = "delete", tag = "registry",
    summary = "Delete a version of an object",
    params(("kind" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad name or version number", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 409, description = "An alias other than `latest` points at it, or a concurrent change won", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = query::read_version(&version).map_err(ApiError::bad_request)?;
    caller.on(&state).delete(kind, &name, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/{kind}/{name}/aliases/{alias}` with `{"version": N}` and
/// optionally `"expect"`: the version the caller believes the alias points
/// at now (`null`: it must not exist). A stale `expect` is a 409 carrying
/// the current aliases.
#[utoipa::path(
    put, path = "/v1/{kind}/{name}/aliases/{alias}", operation_id = "set_alias", tag = "registry",
    summary = "Point an alias of an object at a version",
    params(("kind" = String, Path), ("name" = String, Path), ("alias" = String, Path)),
    request_body(content = inline(AliasRequest), description = "The target, and optionally the version the alias must point at now"),
    responses(
        (status = 200, description = "The object's head", body = Object),
        (status = 400, description = "A bad body, name or alias", body = ErrorBody),
        (status = 404, description = "No such name or version", body = ErrorBody),
        (status = 409, description = "`expect` is stale: the current aliases are in `current`", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn set_alias(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path((name, alias)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (version, expect) = alias_request(&body)?;
    let head = caller
        .on(&state)
        .set_alias(kind, &name, &alias, version, expect)
        .await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `POST /v1/{kind}/{name}/rollout` with `{"action": "start", "to": N,
/// "weight": W, ...}`, `{"action": "set", "weight": W}`, `{"action":
/// "promote"}` or `{"action": "abort"}`.
#[utoipa::path(
    post, path = "/v1/{kind}/{name}/rollout", operation_id = "rollout", tag = "registry",
    summary = "Start, move, promote or abort the rollout of an object",
    description = "`start` sends `weight` percent of the unqualified calls (`NAME`, not `NAME@N`) to version `to` and the rest to the stable version (the `stable` alias, pinned now; else the version unqualified calls run). Optional: `shadow` (the new version gets copies; answers come from the stable one), `sticky` (`header:NAME` or `field:NAME`: a caller's key keeps its version), `slo` (`max_error_rate`, `max_p95_ratio`, `window_secs`, `min_requests`: rolled back automatically on every node when the new version breaks it). `set` changes the weight, `promote` points `stable` at the new version, `abort` returns every call to the stable one.",
    params(("kind" = String, Path), ("name" = String, Path)),
    request_body(content = inline(RolloutRequest)),
    responses(
        (status = 200, description = "The object's head, with its rollout", body = Object),
        (status = 400, description = "A bad body, weight or SLO", body = ErrorBody),
        (status = 404, description = "No such name or version", body = ErrorBody),
        (status = 409, description = "A rollout is already active (start), or none is (set, promote, abort)", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn rollout(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let change: RolloutChange = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"action\": \"start\", \"to\": 4, \"weight\": 10}}, {{\"action\": \"set\", \"weight\": 25}}, {{\"action\": \"promote\"}} or {{\"action\": \"abort\"}}: {e}"
        ))
    })?;
    let head = caller.on(&state).rollout(kind, &name, change).await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `GET /v1/{kind}/{name}/rollout`.
#[utoipa::path(
    get, path = "/v1/{kind}/{name}/rollout", operation_id = "rollout_status", tag = "registry",
    summary = "The rollout of an object and what this node saw of it",
    params(("kind" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, description = "`stable`, `rollout` (active, or how the last one ended) and `node`: this node's calls per side over the SLO window", body = Object),
        (status = 404, description = "No such name", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn rollout_status(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(caller.on(&state).rollout_status(kind, &name).await?).into_response())
}

/// `PUT /v1/{kind}/{name}/guard` with `{"fallback": ..., "breaker": ...,
/// "rate_limit": ...}`.
#[utoipa::path(
    put, path = "/v1/{kind}/{name}/guard", operation_id = "set_guard", tag = "registry",
    summary = "Set the guard of a function, model or pipeline: fallback, circuit breaker, rate limits",
    description = "Replaces the guard. `fallback`: `{\"to\": \"version\", \"version\": N}`, `{\"to\": \"pipeline\", \"pipeline\": NAME}` (pipelines) or `{\"to\": \"static\", \"content_type\": T, \"body\": TEXT}` (functions and pipelines), with `on`: any of `error`, `deadline`, `circuit` (default all). `breaker` (functions and models, each version its own circuit on each node): `consecutive_failures` (5), `error_ratio` (0.5) over `window_secs` (30) once `min_requests` (20), `open_secs` (10), `probes` (3). `rate_limit`: `route` and/or `per_token`, each `{\"per_second\": R, \"burst\": B}`, shared out evenly over the live nodes.",
    params(("kind" = String, Path), ("name" = String, Path)),
    request_body(content = inline(Object)),
    responses(
        (status = 200, description = "The object's head, with its guard", body = Object),
        (status = 400, description = "A bad body or setting", body = ErrorBody),
        (status = 404, description = "No such name", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn set_guard(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let guard: Guard = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a guard like {{\"fallback\": {{\"to\": \"version\", \"version\": 1}}, \"breaker\": {{\"consecutive_failures\": 5}}, \"rate_limit\": {{\"route\": {{\"per_second\": 100, \"burst\": 20}}}}}}: {e}"
        ))
    })?;
    let head = caller
        .on(&state)
        .set_guard(kind, &name, Some(guard))
        .await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `DELETE /v1/{kind}/{name}/guard`.
#[utoipa::path(
    delete, path = "/v1/{kind}/{name}/guard", operation_id = "clear_guard", tag = "registry",
    summary = "Clear the guard of a function, model or pipeline",
    params(("kind" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, description = "The object's head, without a guard", body = Object),
        (status = 404, description = "No such name", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn clear_guard(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let head = caller.on(&state).set_guard(kind, &name, None).await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `GET /v1/{kind}/{name}/guard`.
#[utoipa::path(
    get, path = "/v1/{kind}/{name}/guard", operation_id = "guard_status", tag = "registry",
    summary = "The guard of an object and this node's circuits of its versions",
    params(("kind" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, description = "`guard`, `node`, `live_nodes` (rate limits are divided by it) and `circuits`: this node's, per version (`closed`, `open`, `half_open`)", body = Object),
        (status = 404, description = "No such name", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn guard_status(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(caller.on(&state).guard_status(kind, &name).await?).into_response())
}

/// `PUT /v1/{kind}/{name}/invocation` with `{"invocation": "open"|"token"}`.
#[utoipa::path(
    put, path = "/v1/{kind}/{name}/invocation", operation_id = "set_invocation", tag = "registry",
    summary = "Say whether calling an object needs an invoker token",
    params(("kind" = String, Path), ("name" = String, Path)),
    request_body(content = inline(InvocationRequest)),
    responses(
        (status = 200, description = "The object's head", body = Object),
        (status = 400, description = "A bad body or name", body = ErrorBody),
        (status = 404, description = "No such name", body = ErrorBody),
        (status = 409, description = "A concurrent change won; retry", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn set_invocation(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let wrong = |e: String| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"invocation\": \"token\"}} (or \"open\"): {e}"
        ))
    };
    let request: Value = serde_json::from_slice(&body).map_err(|e| wrong(e.to_string()))?;
    let invocation = request
        .get("invocation")
        .and_then(Value::as_str)
        .ok_or_else(|| wrong("`invocation` is missing".into()))?
        .parse()
        .map_err(wrong)?;
    let head = caller
        .on(&state)
        .set_invocation(kind, &name, invocation)
        .await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `{"version": N, "expect": M|null}`: the target, and the precondition
/// (absent: none; `null`: the alias must not exist yet).
fn alias_request(body: &[u8]) -> Result<(u64, Option<Option<u64>>), ApiError> {
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"version\": 3}}: {e}"
        ))
    })?;
    let version = request
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            ApiError::bad_request("`version` (a whole number) is required, as in {\"version\": 3}")
        })?;
    let expect = match request.get("expect") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(v.as_u64().ok_or_else(|| {
            ApiError::bad_request("`expect` must be a version number or null")
        })?)),
    };
    Ok((version, expect))
}

/// `DELETE /v1/{kind}/{name}/aliases/{alias}`.
#[utoipa::path(
    delete, path = "/v1/{kind}/{name}/aliases/{alias}", operation_id = "remove_alias", tag = "registry",
    summary = "Remove an alias of an object",
    params(("kind" = String, Path), ("name" = String, Path), ("alias" = String, Path)),
    responses(
        (status = 200, description = "The object's head", body = Object),
        (status = 400, description = "A bad name or alias", body = ErrorBody),
        (status = 404, description = "No such name or alias", body = ErrorBody),
        (status = 409, description = "A concurrent change won; retry", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn remove_alias(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let head = caller.on(&state).remove_alias(kind, &name, &alias).await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `POST /v1/{kind}/{name}/rollback[?alias=ALIAS]`: move the alias
/// (default `stable`) back to its previous version.
#[utoipa::path(
    post, path = "/v1/{kind}/{name}/rollback", operation_id = "rollback", tag = "registry",
    summary = "Roll an alias of an object back to its previous version",
    params(("kind" = String, Path), ("name" = String, Path), ("alias" = Option<String>, Query, description = "The alias (default `stable`)")),
    responses(
        (status = 200, description = "The object's head", body = Object),
        (status = 400, description = "A bad name, alias or query parameter", body = ErrorBody),
        (status = 404, description = "No such name or alias", body = ErrorBody),
        (status = 409, description = "The alias has no earlier version, or a concurrent change won", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn rollback(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let alias = query::only(&params, "alias", "rollback").map_err(ApiError::bad_request)?;
    let head = caller
        .on(&state)
        .rollback(kind, &name, alias.unwrap_or(STABLE))
        .await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `PUT /v1/blobs`: store the body as a content-addressed blob (e.g. a
/// model's baseline statistics) → `201 {"digest": "sha256:..."}`.
#[utoipa::path(
    put, path = "/v1/blobs", tag = "node",
    summary = "Store a content-addressed blob (e.g. a model's baseline statistics)",
    request_body(content(("application/octet-stream"))),
    responses((status = 201, description = "Stored", body = inline(BlobStored))),
    security(("token" = []))
)]
async fn put_blob(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let spooled = spool_body(body, state.http.max_model_bytes, state.http.body_timeout).await?;
    let digest = state.node.put_blob(&spooled).await?;
    Ok((StatusCode::CREATED, Json(json!({ "digest": digest }))).into_response())
}

/// `GET /v1/models/{name}/drift[?version=N]`: a model version's drift
/// over the window, every node's rows merged.
#[utoipa::path(
    get, path = "/v1/models/{name}/drift", operation_id = "drift", tag = "registry",
    summary = "A model version's drift against its baseline",
    description = "Per feature (and the output): PSI, the Kolmogorov-Smirnov statistic and the Wasserstein distance of the rows served in the window (every node's merged) against the baseline pushed with the version, the shares per bin on both sides, and the level (`insufficient`, `ok`, `warn`, `alert`). Without `version`: the version an unqualified call runs.",
    params(("name" = String, Path), ("version" = Option<u64>, Query, description = "A version number")),
    responses(
        (status = 200, description = "The report", body = Object),
        (status = 400, description = "The version has no baseline, or a bad version number", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn drift(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let version = query::only(&params, "version", "drift")
        .and_then(|v| v.map(query::read_version).transpose())
        .map_err(ApiError::bad_request)?;
    let report = caller.on(&state).drift(&name, version).await?;
    Ok(Json(report).into_response())
}

/// `GET /v1/status`: what this node is and what it has done.
#[utoipa::path(
    get, path = "/v1/status", tag = "node",
    summary = "What this node is and what it has done",
    responses((status = 200, description = "Counters, caches, store and engine", body = Object)),
    security(("token" = []))
)]
async fn status(State(state): State<Arc<AppState>>) -> Response {
    Json(state.node.status(state.conditional_writes).await).into_response()
}

/// `GET /metrics`: the node's metrics in the Prometheus text format. They
/// name every function, model and pipeline, so a token limited to name
/// prefixes may not read them.
#[utoipa::path(
    get, path = "/metrics", tag = "node",
    summary = "Metrics in the Prometheus text format (version 0.0.4)",
    description = "Requests and latency per route, function, pipeline, step and model version; errors by kind; cold starts; caches; store requests; queues and in-flight work. A viewer's token without name prefixes; see the README for every family.",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 403, description = "The token is limited to name prefixes", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn metrics(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !caller.0.prefixes.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token `{}` is limited to name prefixes and the metrics name everything this node serves; scrape with a viewer token without prefixes",
                caller.0.name
            ),
        ));
    }
    let node = state.node.clone();
    // Reading /proc and encoding: off the async workers.
    let text = tokio::task::spawn_blocking(move || crate::observe::metrics::scrape(node))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::observe::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// `POST /v1/tokens` with `{"name": N, "role": R, "prefixes": [...]}`:
/// `201` with the token, shown this once.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "access",
    summary = "Create an API token (admin)",
    request_body(content = inline(NewTokenRequest)),
    responses(
        (status = 201, description = "The token, shown this once", body = Object),
        (status = 400, description = "A bad name, role or prefix", body = ErrorBody),
        (status = 409, description = "A token of that name exists", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewToken {
        name: String,
        role: String,
        #[serde(default)]
        prefixes: Vec<String>,
    }
    let request: NewToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"name\": \"ci\", \"role\": \"deployer\", \"prefixes\": [\"fraud-\"]}}: {e}"
        ))
    })?;
    let role: Role = request.role.parse().map_err(ApiError::bad_request)?;
    let made = caller
        .on(&state)
        .create_token(&request.name, role, request.prefixes)
        .await?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

/// `GET /v1/tokens`: every token, without secrets.
#[utoipa::path(
    get, path = "/v1/tokens", tag = "access",
    summary = "List the API tokens, without secrets (admin)",
    responses((status = 200, description = "Every token", body = Object)),
    security(("token" = []))
)]
async fn tokens(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let tokens = caller.on(&state).tokens().await?;
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

/// `DELETE /v1/tokens/{name}`: revoke it, on every node within the poll
/// interval.
#[utoipa::path(
    delete, path = "/v1/tokens/{name}", tag = "access",
    summary = "Revoke an API token, on every node within the poll interval (admin)",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The revoked token", body = Object),
        (status = 400, description = "A bad name, or the node's own admin token", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "A concurrent change won; retry", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(caller.on(&state).revoke_token(&name).await?).into_response())
}

/// `GET /v1/audit[?since=RFC3339]`: the audit records, oldest first.
#[utoipa::path(
    get, path = "/v1/audit", tag = "access",
    summary = "The audit log, oldest first (admin)",
    params(("since" = Option<String>, Query, description = "Only records at or after this RFC 3339 time")),
    responses(
        (status = 200, description = "The records", body = Object),
        (status = 400, description = "A bad `since` or query parameter", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn audit_log(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let since = query::only(&params, "since", "the audit log").map_err(ApiError::bad_request)?;
    let records = caller.on(&state).audit_log(since).await?;
    Ok(Json(json!({ "records": records })).into_response())
}

/// `GET /v1/audit/verify`: `{"intact": true, "records": n}`, or where the
/// chain breaks.
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "access",
    summary = "Check the audit log's hash chain (admin)",
    responses((status = 200, description = "`intact`, the record count, or where the chain breaks", body = Object)),
    security(("token" = []))
)]
async fn audit_verify(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let verified = caller.on(&state).audit_verify().await?;
    Ok(Json(VerifyJson::from(verified)).into_response())
}
