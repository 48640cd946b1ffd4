//! The admin API: deploy, list, inspect and delete function versions; move,
//! remove and roll back aliases; the node's status.

use super::{ApiError, AppState, RequestId, read_body};
use crate::node::Deploy;
use crate::registry::{Head, Name, Selector};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::sync::Arc;

/// `PUT /v1/functions/{name}`: the body is the component; the query holds
/// the deployment's settings: `config.KEY=VALUE` (repeatable),
/// `label.KEY=VALUE` (repeatable), `timeout_ms`, `memory_mb`, `fuel`,
/// `max_concurrency`, `max_queue`, `idle_secs` and
/// `description`. The deployer is named by the `x-sluice-actor` header.
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
        .deploy(&name, bytes, request, None)
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

/// Who makes a change: the `x-sluice-actor` header, else `anonymous`.
pub(super) fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-sluice-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("anonymous")
        .chars()
        .take(128)
        .collect()
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
        created_by: actor(headers),
        ..Deploy::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "timeout_ms" => request.timeout_ms = Some(number(&key, &value)?),
            "memory_mb" => {
                request.memory_bytes = Some(number(&key, &value)?.saturating_mul(1 << 20))
            }
            "fuel" => request.fuel = Some(number(&key, &value)?),
            "max_concurrency" => {
                request.max_concurrency = Some(number(&key, &value)?.min(u32::MAX.into()) as u32)
            }
            "max_queue" => {
                request.max_queue = Some(number(&key, &value)?.min(u32::MAX.into()) as u32)
            }
            "idle_secs" => request.idle_secs = Some(number(&key, &value)?),
            "description" => request.description = Some(value),
            _ => match key.split_once('.') {
                Some(("config", k)) if !k.is_empty() => {
                    request.config.insert(k.to_string(), value);
                }
                Some(("label", k)) if !k.is_empty() => {
                    request.labels.insert(k.to_string(), value);
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{key}`; use config.KEY=VALUE, label.KEY=VALUE, timeout_ms, memory_mb, fuel, max_concurrency, max_queue, idle_secs or description"
                    )));
                }
            },
        }
    }
    Ok(request)
}

/// `GET /v1/functions`.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let functions = state.node.list().await?;
    Ok(Json(json!({ "functions": functions })).into_response())
}

/// `GET /v1/functions/{name}`: every live version, the aliases and their
/// history.
pub async fn versions(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (head, versions) = state.node.versions(&name).await?;
    Ok(versions_body(&name, &head, versions))
}

/// `GET /v1/functions/{name}/versions/{n}`.
pub async fn version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    Ok(Json(
        state
            .node
            .resolve(&name, &Selector::Version(version))
            .await?,
    )
    .into_response())
}

/// `DELETE /v1/functions/{name}/versions/{n}`: refused (409) while an
/// alias other than `latest` points at it.
pub async fn delete_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    state.node.delete_version(&name, version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A name's head as JSON: its live versions, aliases and their history.
pub(super) fn head_json(name: &str, head: &Head) -> serde_json::Value {
    json!({
        "name": name,
        "default": head.default_version(),
        "versions": head.versions,
        "highest": head.highest,
        "aliases": head.aliases,
        "history": head.history,
    })
}

/// The answer to an alias change: the head after it.
pub(super) fn aliases_body(name: &str, head: &Head) -> Response {
    Json(head_json(name, head)).into_response()
}

/// `GET /v1/{kind}/{name}`: the head with the full version records.
pub(super) fn versions_body(name: &str, head: &Head, records: impl serde::Serialize) -> Response {
    let mut body = head_json(name, head);
    body["versions"] = json!(records);
    Json(body).into_response()
}

/// `PUT /v1/functions/{name}/aliases/{alias}` with `{"version": N}` and
/// optionally `"expect"`: the version the caller believes the alias points
/// at now (`null`: it must not exist). A stale `expect` is a 409 carrying
/// the current aliases.
pub async fn set_alias(
    State(state): State<Arc<AppState>>,
    Path((name, alias)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (version, expect) = alias_request(&body)?;
    let head = state.node.set_alias(&name, &alias, version, expect).await?;
    Ok(aliases_body(&name, &head))
}

/// `{"version": N, "expect": M|null}`: the target, and the precondition
/// (absent: none; `null`: the alias must not exist yet).
pub(super) fn alias_request(body: &[u8]) -> Result<(u64, Option<Option<u64>>), ApiError> {
    let request: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"version\": 3}}: {e}"
        ))
    })?;
    let version = request
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            ApiError::bad_request("`version` (a whole number) is required, as in {\"version\": 3}")
        })?;
    let expect = match request.get("expect") {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(v) => Some(Some(v.as_u64().ok_or_else(|| {
            ApiError::bad_request("`expect` must be a version number or null")
        })?)),
    };
    Ok((version, expect))
}

/// `DELETE /v1/functions/{name}/aliases/{alias}`.
pub async fn remove_alias(
    State(state): State<Arc<AppState>>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let head = state.node.remove_alias(&name, &alias).await?;
    Ok(aliases_body(&name, &head))
}

/// `POST /v1/functions/{name}/rollback[?alias=ALIAS]`: move the alias
/// (default `stable`) back to its previous version.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let alias = rollback_alias(params)?;
    let head = state.node.rollback(&name, alias.as_deref()).await?;
    Ok(aliases_body(&name, &head))
}

fn parse_version(version: &str) -> Result<u64, ApiError> {
    version
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version must be a number, got {version:?}")))
}

/// The `alias` query parameter of a rollback, the only one it takes.
pub(super) fn rollback_alias(params: Vec<(String, String)>) -> Result<Option<String>, ApiError> {
    let mut alias = None;
    for (key, value) in params {
        match key.as_str() {
            "alias" => alias = Some(value),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{key}`; rollback takes `alias`"
                )));
            }
        }
    }
    Ok(alias)
}

/// `GET /v1/status`: what this node is and what it has done.
pub async fn status(State(state): State<Arc<AppState>>) -> Response {
    let node = &state.node;
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "store": node.store().describe(),
        "conditional_writes": state.conditional_writes,
        "poll_interval_ms": node.poll_interval().as_millis() as u64,
        "engine": { "fingerprint": node.engine().fingerprint(), "pooling": node.engine().pooling() },
        "functions_loaded": node.template_stats().entries,
        "in_flight": node.stats().in_flight.load(std::sync::atomic::Ordering::Relaxed),
        "concurrency": node.concurrency_stats(),
        "resident_bytes": crate::observe::resident().map(|r| r.bytes),
        "resident_anonymous_bytes": crate::observe::resident().map(|r| r.anonymous_bytes),
        "counters": node.stats().snapshot(),
        "cache": node.document_stats().cache,
        "templates": node.template_stats(),
        "models": node.models().stats(),
        "batching": {
            "batches": node.models().batch_stats().0,
            "requests": node.models().batch_stats().1,
        },
        "store_requests": node.document_stats().store_requests,
    }))
    .into_response()
}

/// `GET /readyz`: ready when the store answers.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.node.store().exists("functions/ready-probe").await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
        .into_response(),
    }
}
