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
//!
//! and `PUT /v1/blobs`, `GET /v1/status`, feature ingestion (`features.rs`). Each handler parses, calls the
//! node's [`ControlPlane`] and encodes; `client.rs` speaks the same shapes.

use super::{ApiError, AppState, RequestId, query, read_body};
use crate::node::{ControlPlane, Kind, Published, Settings};
use crate::registry::{Head, Name, STABLE};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

/// The control plane's routes.
pub fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route("/v1/blobs", put(put_blob))
        .route("/v1/status", get(status))
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
                .layer(Extension(kind)),
        );
    }
    router
}

/// Who makes a change: the `x-sluice-actor` header, else `anonymous`.
fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-sluice-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("anonymous")
        .chars()
        .take(128)
        .collect()
}

/// `PUT /v1/{kind}/{name}`: the body is the artifact (a component, an ONNX
/// file), the query its settings, the `x-sluice-actor` header who
/// publishes. `201` with the record, or `200` with `created: false` when
/// identical to the newest version.
async fn publish(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError| e.with_request_id(&request_id);
    // Check the name and settings before reading a possibly large body.
    Name::parse(&name).map_err(|e| fail(ApiError::bad_request(e.to_string())))?;
    let created_by = actor(&headers);
    let (settings, limit) = match kind {
        Kind::Function => (
            query::read_deploy(params, created_by).map(Settings::Function),
            state.http.max_component_bytes,
        ),
        Kind::Model => (
            query::read_push(params, created_by).map(Settings::Model),
            state.http.max_model_bytes,
        ),
        // A manifest: small, and no settings beside it.
        Kind::Pipeline => (
            query::read_pipeline(params, created_by),
            state.http.max_body_bytes,
        ),
        Kind::Table => (
            query::read_table(params, created_by),
            state.http.max_body_bytes,
        ),
    };
    let settings = settings.map_err(|e| fail(ApiError::bad_request(e)))?;
    let bytes = read_body(body, limit, state.http.body_timeout)
        .await
        .map_err(fail)?;
    let published = state
        .node
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
    let v = &published.version;
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

/// `GET /v1/{kind}`.
async fn list(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
) -> Result<Response, ApiError> {
    let mut body = json!({});
    body[kind.plural()] = json!(state.node.list(kind).await?);
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
    })
}

/// `GET /v1/{kind}/{name}`: the head with every live version's record.
async fn show(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let listing = state.node.show(kind, &name).await?;
    let mut body = head_json(&name, &listing.head);
    body["versions"] = json!(listing.versions);
    Ok(Json(body).into_response())
}

/// `GET /v1/{kind}/{name}/versions/{n}`.
async fn version(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = query::read_version(&version).map_err(ApiError::bad_request)?;
    Ok(Json(state.node.version(kind, &name, version).await?).into_response())
}

/// `DELETE /v1/{kind}/{name}/versions/{n}`: refused (409) while an alias
/// other than `latest` points at it.
async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = query::read_version(&version).map_err(ApiError::bad_request)?;
    state.node.delete(kind, &name, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/{kind}/{name}/aliases/{alias}` with `{"version": N}` and
/// optionally `"expect"`: the version the caller believes the alias points
/// at now (`null`: it must not exist). A stale `expect` is a 409 carrying
/// the current aliases.
async fn set_alias(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Path((name, alias)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (version, expect) = alias_request(&body)?;
    let head = state
        .node
        .set_alias(kind, &name, &alias, version, expect)
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
async fn remove_alias(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let head = state.node.remove_alias(kind, &name, &alias).await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `POST /v1/{kind}/{name}/rollback[?alias=ALIAS]`: move the alias
/// (default `stable`) back to its previous version.
async fn rollback(
    State(state): State<Arc<AppState>>,
    Extension(kind): Extension<Kind>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut alias = STABLE.to_string();
    for (key, value) in params {
        match key.as_str() {
            "alias" => alias = value,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{key}`; rollback takes `alias`"
                )));
            }
        }
    }
    let head = state.node.rollback(kind, &name, &alias).await?;
    Ok(Json(head_json(&name, &head)).into_response())
}

/// `PUT /v1/blobs`: store the body as a content-addressed blob (e.g. a
/// model's baseline statistics) → `201 {"digest": "sha256:..."}`.
async fn put_blob(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.http.max_model_bytes, state.http.body_timeout).await?;
    let digest = state.node.put_blob(bytes).await?;
    Ok((StatusCode::CREATED, Json(json!({ "digest": digest }))).into_response())
}

/// `GET /v1/status`: what this node is and what it has done.
async fn status(State(state): State<Arc<AppState>>) -> Response {
    Json(state.node.status(state.conditional_writes).await).into_response()
}
