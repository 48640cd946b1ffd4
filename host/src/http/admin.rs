//! The admin API: deploy, list, inspect and delete function versions.

use super::{ApiError, AppState, RequestId, read_body};
use crate::node::Deploy;
use crate::registry::Name;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::sync::Arc;

/// `PUT /v1/functions/{name}`: the body is the component; the query holds
/// the deployment's settings: `config.KEY=VALUE` (repeatable),
/// `timeout_ms`, `memory_mb`, `fuel` and `description`. The deployer is
/// named by the `x-sluice-actor` header.
pub async fn deploy(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError| e.with_request_id(&request_id);
    // Check the name before reading a possibly large body.
    Name::parse(&name).map_err(|e| fail(ApiError::bad_request(e.to_string())))?;
    let request = deploy_request(params, &headers).map_err(fail)?;
    let bytes = read_body(
        body,
        state.http.max_component_bytes,
        state.http.body_timeout,
    )
    .await
    .map_err(fail)?;
    let deployed = state
        .node
        .deploy(&name, bytes, request)
        .await
        .map_err(|e| fail(e.into()))?;
    let v = &deployed.version;
    let status = if deployed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "name": v.name, "version": v.version, "digest": v.digest, "world": v.world,
        "size": v.size, "created": deployed.created,
    });
    Ok((status, Json(body)).into_response())
}

fn deploy_request(params: Vec<(String, String)>, headers: &HeaderMap) -> Result<Deploy, ApiError> {
    let number = |key: &str, value: &str| {
        value.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter `{key}` must be a whole number, got {value:?}"
            ))
        })
    };
    let mut request = Deploy {
        created_by: headers
            .get("x-sluice-actor")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or("anonymous")
            .chars()
            .take(128)
            .collect(),
        ..Deploy::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "timeout_ms" => request.timeout_ms = Some(number(&key, &value)?),
            "memory_mb" => {
                request.memory_bytes = Some(number(&key, &value)?.saturating_mul(1 << 20))
            }
            "fuel" => request.fuel = Some(number(&key, &value)?),
            "description" => request.description = Some(value),
            _ => match key.strip_prefix("config.") {
                Some(config_key) if !config_key.is_empty() => {
                    request.config.insert(config_key.to_string(), value);
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{key}`; use config.KEY=VALUE, timeout_ms, memory_mb, fuel or description"
                    )));
                }
            },
        }
    }
    Ok(request)
}

/// `GET /v1/functions`.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let functions = state
        .node
        .registry()
        .list()
        .await
        .map_err(|e| ApiError::from(crate::node::NodeError::from(e)))?;
    Ok(Json(json!({ "functions": functions })).into_response())
}

/// `GET /v1/functions/{name}`: every version.
pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    // Resolving first turns "no versions" into a 404 naming the function.
    state.node.resolve(&name, None).await?;
    let parsed = Name::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let versions = state
        .node
        .registry()
        .versions(&parsed)
        .await
        .map_err(|e| ApiError::from(crate::node::NodeError::from(e)))?;
    Ok(Json(json!({ "name": name, "versions": versions })).into_response())
}

/// `GET /v1/functions/{name}/versions/{n}`.
pub async fn version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    Ok(Json(state.node.resolve(&name, Some(version)).await?).into_response())
}

/// `DELETE /v1/functions/{name}/versions/{n}`.
pub async fn delete_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    state.node.delete_version(&name, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn parse_version(version: &str) -> Result<u64, ApiError> {
    version
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version must be a number, got {version:?}")))
}

/// `GET /v1/status`: what this node is and what it has done.
pub async fn status(State(state): State<Arc<AppState>>) -> Response {
    let node = &state.node;
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "store": node.store().describe(),
        "engine": { "fingerprint": node.engine().fingerprint(), "pooling": node.engine().pooling() },
        "functions_loaded": node.loaded_count(),
        "counters": node.stats().snapshot(),
    }))
    .into_response()
}

/// `GET /readyz`: ready when the store answers.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.node.store().list("functions/").await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
        .into_response(),
    }
}
