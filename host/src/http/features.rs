//! Feature tables over HTTP.
//!
//! Data plane (reads of what the node serves, like inference):
//!
//! | route | |
//! |---|---|
//! | `GET /v1/features/{table}/{entity}[?features=a,b]` | one entity: `{"<key>": ..., "features": {...}, "<timestamp>": ...}` |
//! | `POST /v1/features/{table}/lookup` | many: `{"entities": [...], "features": [...]}` → `{"results": [...]}` |
//!
//! Control plane (writes; schemas are `PUT /v1/tables/{name}` like every
//! registry kind):
//!
//! | route | |
//! |---|---|
//! | `POST /v1/features/{table}/compact[?grace=1h]` | merge small history segments; sweep what no reader needs |
//! | `POST /v1/features/{table}/ingest` | a CSV, JSON-lines or Parquet file (by `Content-Type` or `?format=`), streamed; all rows or none |
//! | `POST /v1/features/{table}` | streaming rows: a JSON array of objects (or `{"rows": [...]}`), answered once durable |
//!
//! `{table}` may be `TABLE@VERSION` on reads. A key of a composite-keyed
//! table is its parts joined by `|`. Unknown entities answer with nulls,
//! never an error.

use super::control::Caller;
use super::openapi::{ErrorBody, LookupRequest};
use super::{ApiError, AppState, query, read_body};
use crate::features::{DEFAULT_GRACE, Format, MEDIA_TYPES};
use crate::node::ControlPlane;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::TryStreamExt;
use serde_json::Value;
use std::sync::Arc;

/// Most entities in one lookup.
const MAX_ENTITIES: usize = 10_000;

/// The data plane's feature routes.
pub fn data_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/features/{table}/{entity}", get(one))
        .route("/v1/features/{table}/lookup", post(many))
}

/// The control plane's feature routes.
pub fn control_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/features/{table}/ingest", post(ingest))
        .route("/v1/features/{table}", post(append))
        .route("/v1/features/{table}/compact", post(compact))
}

/// `?features=a,b` (absent: all).
fn requested(params: &[(String, String)]) -> Result<Vec<String>, ApiError> {
    let mut names = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "features" => names.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{key}`; a lookup takes `features=a,b`"
                )));
            }
        }
    }
    Ok(names)
}

/// `GET /v1/features/{table}/{entity}`.
#[utoipa::path(
    get, path = "/v1/features/{table}/{entity}", tag = "features",
    summary = "One entity's online features",
    params(("table" = String, Path), ("entity" = String, Path),
        ("features" = Option<String>, Query, description = "Comma-separated feature names (default: all)")),
    responses(
        (status = 200, description = "The key, the features (nulls for an unknown entity) and their timestamp", body = Object),
        (status = 400, description = "A bad table name, feature or query parameter", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
async fn one(
    State(state): State<Arc<AppState>>,
    Path((table, entity)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let names = requested(&params)?;
    let lookup = state.node.lookup(&table, &[entity], &names).await?;
    let entity = &lookup.entities[0];
    Ok(Json(lookup.json(entity)).into_response())
}

/// `POST /v1/features/{table}/lookup` with `{"entities": [...],
/// "features": [...]}`; integer keys may be numbers, composite keys arrays
/// of their parts.
#[utoipa::path(
    post, path = "/v1/features/{table}/lookup", tag = "features",
    summary = "Many entities' online features",
    params(("table" = String, Path)),
    request_body(content = inline(LookupRequest)),
    responses(
        (status = 200, description = "One result per entity, in order", body = Object),
        (status = 400, description = "A bad body, key or feature", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
async fn many(
    State(state): State<Arc<AppState>>,
    Path(table): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.http.max_body_bytes, state.http.body_timeout).await?;
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"entities\": [\"u1\", \"u2\"], \"features\": [\"a\"]}}: {e}"
        ))
    })?;
    let entities = request
        .get("entities")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("`entities` (an array of keys) is required"))?;
    if entities.len() > MAX_ENTITIES {
        return Err(ApiError::bad_request(format!(
            "{} entities in one lookup; send at most {MAX_ENTITIES}",
            entities.len()
        )));
    }
    let keys = entities
        .iter()
        .map(key_of)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let names: Vec<String> = match request.get("features") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_request("`features` must be an array of names"))?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`features` must be an array of names",
            ));
        }
    };
    let lookup = state.node.lookup(&table, &keys, &names).await?;
    #[derive(serde::Serialize)]
    struct Answer<'a, R> {
        table: &'a str,
        version: u64,
        results: R,
    }
    Ok(Json(Answer {
        table: &lookup.version.name,
        version: lookup.version.version,
        results: lookup.results(),
    })
    .into_response())
}

/// A key as JSON: a string, an integer, or the parts of a composite key.
fn key_of(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() => Ok(n.to_string()),
        Value::Array(parts) => parts
            .iter()
            .map(key_of)
            .collect::<Result<Vec<_>, _>>()
            .map(|p| p.join("|")),
        other => Err(format!(
            "the entity {other} is not a key: use a string, an integer, or an array of a composite key's parts"
        )),
    }
}

/// `POST /v1/features/{table}/ingest`: the body streams through the node
/// (never held whole), and the answer comes once every row is committed.
#[utoipa::path(
    post, path = "/v1/features/{table}/ingest", tag = "features",
    summary = "Ingest a CSV, JSON-lines or Parquet file into a table: all rows or none",
    params(("table" = String, Path), ("format" = Option<String>, Query, description = "csv, jsonl or parquet (default: by Content-Type)")),
    request_body(content(("text/csv"), ("application/jsonl"), ("application/vnd.apache.parquet"))),
    responses(
        (status = 201, description = "Committed: rows and segments written", body = Object),
        (status = 400, description = "A bad row, format or query parameter (nothing was written)", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
        (status = 415, description = "The format is not given by Content-Type or `format`", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn ingest(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(table): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut format = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::of_media_type);
    for (key, value) in &params {
        match key.as_str() {
            "format" => {
                format = Some(match value.as_str() {
                    "csv" => Format::Csv,
                    "jsonl" => Format::Jsonl,
                    "parquet" => Format::Parquet,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "`format` is csv, jsonl or parquet, not `{value}`"
                        )));
                    }
                })
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{key}`; an ingest takes `format`"
                )));
            }
        }
    }
    let format = format.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send the file with Content-Type {MEDIA_TYPES}, or say ?format=csv|jsonl|parquet"
            ),
        )
    })?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let ingested = caller
        .on(&state)
        .ingest(&table, format, Box::new(reader))
        .await?;
    Ok((StatusCode::CREATED, Json(ingested)).into_response())
}

/// `POST /v1/features/{table}`: rows as JSON objects; `201` once durable.
#[utoipa::path(
    post, path = "/v1/features/{table}", tag = "features",
    summary = "Append rows to a table, answered once durable",
    params(("table" = String, Path)),
    request_body(content = Vec<Object>, description = "An array of row objects (or `{\"rows\": [...]}`)"),
    responses(
        (status = 201, description = "Committed", body = Object),
        (status = 400, description = "A bad row (nothing was written)", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn append(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(table): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.http.max_body_bytes, state.http.body_timeout).await?;
    let rows = match serde_json::from_slice(&bytes) {
        Ok(Value::Array(rows)) => rows,
        Ok(Value::Object(mut object)) => match object.remove("rows") {
            Some(Value::Array(rows)) => rows,
            _ => {
                return Err(ApiError::bad_request(
                    "the body's `rows` must be an array of row objects",
                ));
            }
        },
        Ok(_) => {
            return Err(ApiError::bad_request(
                "the body must be an array of row objects",
            ));
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "the body must be JSON (an array of row objects): {e}"
            )));
        }
    };
    if rows.is_empty() {
        return Err(ApiError::bad_request("no rows to append"));
    }
    let ingested = caller.on(&state).append(&table, rows).await?;
    Ok((StatusCode::CREATED, Json(ingested)).into_response())
}

/// `POST /v1/features/{table}/compact[?grace=1h]`: merge small segments
/// and sweep objects no reader needs; replaced ones are kept for `grace`.
#[utoipa::path(
    post, path = "/v1/features/{table}/compact", tag = "features",
    summary = "Merge a table's small history segments and sweep what no reader needs",
    params(("table" = String, Path), ("grace" = Option<String>, Query, description = "How long replaced segments are kept, e.g. 1h")),
    responses(
        (status = 200, description = "What was merged and swept", body = Object),
        (status = 400, description = "A bad `grace` or query parameter", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
    ),
    security(("token" = []))
)]
async fn compact(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(table): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let grace =
        match query::only(&params, "grace", "a compaction").map_err(ApiError::bad_request)? {
            Some(value) => humantime::parse_duration(value).map_err(|e| {
                ApiError::bad_request(format!("`grace` = `{value}`: {e} (write e.g. 1h, 10m)"))
            })?,
            None => DEFAULT_GRACE,
        };
    let compacted = caller.on(&state).compact(&table, grace).await?;
    Ok(Json(compacted).into_response())
}
