//! The model admin API: push, list, inspect, move aliases, roll back.

use super::{ApiError, AppState, RequestId, read_body};
use crate::inference::{Baseline, Batching, Push};
use crate::node::NodeError;
use crate::registry::{Name, STABLE};
use crate::store::Digest;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::sync::Arc;

/// Batching settings a push starts from when it names only one of them.
const DEFAULT_BATCHING: Batching = Batching {
    max_batch_size: 32,
    max_queue_delay_us: 2000,
};

fn name(raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `PUT /v1/blobs`: store the body as a content-addressed blob (e.g. a
/// model's baseline statistics) → `{"digest": "sha256:..."}`.
pub async fn put_blob(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.http.max_model_bytes, state.http.body_timeout).await?;
    let digest = state
        .node
        .documents()
        .put_blob(bytes, None)
        .await
        .map_err(NodeError::from)?;
    Ok((StatusCode::CREATED, Json(json!({ "digest": digest }))).into_response())
}

/// `PUT /v1/models/{name}`: the body is the ONNX file; query `description`,
/// `label.KEY=VALUE` (repeatable), `input_shape.INPUT=DIMS`,
/// `baseline=sha256:...` (a blob from `PUT /v1/blobs`) and the batching
/// settings `max_batch_size`, `max_queue_delay_us`, and `idle_secs` (this
/// version's unload time); the `x-sluice-actor` header names
/// who pushes. The model must load and optimise in tract, or the push is
/// refused (400) naming the problem.
pub async fn push(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(raw): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError| e.with_request_id(&request_id);
    let model = name(&raw).map_err(fail)?;
    let mut request = Push {
        created_by: super::admin::actor(&headers),
        ..Push::default()
    };
    for (key, value) in params {
        match (key.as_str(), key.split_once('.')) {
            ("description", _) => request.description = Some(value),
            ("idle_secs", _) => {
                let secs = value.parse::<u64>().map_err(|_| {
                    fail(ApiError::bad_request(format!(
                        "idle_secs must be a whole number of seconds, got {value:?}"
                    )))
                })?;
                request.idle_secs = Some(secs);
            }
            ("baseline", _) => {
                let digest = Digest::try_from(value).map_err(|e| fail(ApiError::bad_request(e)))?;
                request.baseline = Some(Baseline::Stored(digest));
            }
            (_, Some(("label", k))) if !k.is_empty() => {
                request.labels.insert(k.to_string(), value);
            }
            ("max_batch_size", _) => {
                let size = value.parse::<u32>().map_err(|_| {
                    fail(ApiError::bad_request(format!(
                        "max_batch_size must be a whole number, got {value:?}"
                    )))
                })?;
                request
                    .batching
                    .get_or_insert(DEFAULT_BATCHING)
                    .max_batch_size = size;
            }
            ("max_queue_delay_us", _) => {
                let delay = value.parse::<u64>().map_err(|_| {
                    fail(ApiError::bad_request(format!(
                        "max_queue_delay_us must be a whole number, got {value:?}"
                    )))
                })?;
                request
                    .batching
                    .get_or_insert(DEFAULT_BATCHING)
                    .max_queue_delay_us = delay;
            }
            (_, Some(("input_shape", input))) if !input.is_empty() => {
                let dims = value
                    .split(',')
                    .map(|d| match d.trim() {
                        "N" | "-1" => Some(-1),
                        d => d.parse::<i64>().ok().filter(|d| *d > 0),
                    })
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| {
                        fail(ApiError::bad_request(format!(
                            "input_shape.{input} must be comma-separated positive numbers or N, got {value:?}"
                        )))
                    })?;
                request.input_shapes.insert(input.to_string(), dims);
            }
            _ => {
                return Err(fail(ApiError::bad_request(format!(
                    "unknown query parameter `{key}`; use description, label.KEY=VALUE, input_shape.INPUT=DIMS, baseline=sha256:..., max_batch_size, max_queue_delay_us or idle_secs"
                ))));
            }
        }
    }
    let bytes = read_body(body, state.http.max_model_bytes, state.http.body_timeout)
        .await
        .map_err(fail)?;
    let (record, created) = state
        .node
        .models()
        .push(&model, bytes, request, None)
        .await
        .map_err(|e| fail(NodeError::from(e).into()))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "created": created, "model": record }))).into_response())
}

/// `GET /v1/models`.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let registry = state.node.models().registry();
    let mut models = Vec::new();
    for (name, head) in registry.names().await.map_err(NodeError::from)? {
        models.push(super::admin::head_json(name.as_str(), &head));
    }
    Ok(Json(json!({ "models": models })).into_response())
}

/// `GET /v1/models/{name}`: every version with its signature, and the aliases.
pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let (head, versions) = state
        .node
        .models()
        .registry()
        .versions(&name(&raw)?)
        .await
        .map_err(NodeError::from)?;
    Ok(super::admin::versions_body(&raw, &head, versions))
}

/// `PUT /v1/models/{name}/aliases/{alias}` with `{"version": N}` (and
/// optionally `"expect"`), as for functions.
pub async fn set_alias(
    State(state): State<Arc<AppState>>,
    Path((raw, alias)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (version, expect) = super::admin::alias_request(&body)?;
    let head = state
        .node
        .models()
        .registry()
        .set_alias(&name(&raw)?, &name(&alias)?, version, expect)
        .await
        .map_err(NodeError::from)?;
    Ok(super::admin::aliases_body(&raw, &head))
}

/// `POST /v1/models/{name}/rollback[?alias=A]`.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let alias = super::admin::rollback_alias(params)?;
    let head = state
        .node
        .models()
        .registry()
        .rollback(&name(&raw)?, &name(alias.as_deref().unwrap_or(STABLE))?)
        .await
        .map_err(NodeError::from)?;
    Ok(super::admin::aliases_body(&raw, &head))
}

/// `DELETE /v1/models/{name}/aliases/{alias}`.
pub async fn remove_alias(
    State(state): State<Arc<AppState>>,
    Path((raw, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let head = state
        .node
        .models()
        .registry()
        .remove_alias(&name(&raw)?, &name(&alias)?)
        .await
        .map_err(NodeError::from)?;
    Ok(super::admin::aliases_body(&raw, &head))
}

/// `DELETE /v1/models/{name}/versions/{n}`: refused (409) while an alias
/// other than `latest` points at it.
pub async fn delete_version(
    State(state): State<Arc<AppState>>,
    Path((raw, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = version
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version must be a number, got {version:?}")))?;
    state
        .node
        .models()
        .delete(&name(&raw)?, version)
        .await
        .map_err(NodeError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
