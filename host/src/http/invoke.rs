//! `POST /fn/{name}[@{version}|@{alias}]`: run a function on the request
//! body; `POST /p/{name}[@...]`: run a pipeline on it.

use super::message::{decode_request, encode_response};
use super::{ApiError, AppState, RequestId, read_body};
use crate::registry::Selector;
use crate::tensor::Message;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use std::sync::Arc;

pub async fn invoke(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError, stage: Option<String>| e.in_stage(stage).with_request_id(&request_id);
    let (name, selector) = split(&target).map_err(|e| fail(e, None))?;
    let stage_hint = Some(target.clone());
    let input = read_message(&state, &headers, body)
        .await
        .map_err(|e| fail(e, stage_hint.clone()))?;

    let (record, output) = state
        .node
        .invoke(name, &selector, input, request_id.clone())
        .await
        .map_err(|e| fail(e.into(), stage_hint.clone()))?;
    let stage = format!("{}@{}", record.name, record.version);
    let mut response = encode_response(output).map_err(|e| fail(e, Some(stage.clone())))?;
    if let Ok(value) = HeaderValue::from_str(&stage) {
        response.headers_mut().insert("x-sluice-stage", value);
    }
    Ok(response)
}

/// `POST /p/{name}[@{version}|@{alias}]`: the request body, decoded as for
/// `/fn`, goes to the pipeline's first steps; the answer is the last
/// steps' merged output, with per-step timings in `Server-Timing`.
pub async fn pipeline(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError| {
        e.in_stage(Some(target.clone()))
            .with_request_id(&request_id)
    };
    let (name, selector) = split(&target).map_err(fail)?;
    let input = read_message(&state, &headers, body).await.map_err(fail)?;
    let run = state
        .node
        .run_pipeline(name, &selector, input, request_id.clone())
        .await
        .map_err(|e| fail(e.into()))?;
    let mut response = encode_response(run.output).map_err(fail)?;
    let timing: Vec<String> = run
        .timings
        .iter()
        .map(|t| {
            format!(
                "{};dur={:.3};desc=\"{}\"",
                t.step,
                t.took.as_secs_f64() * 1e3,
                t.outcome
            )
        })
        .collect();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&timing.join(", ")) {
        headers.insert("server-timing", value);
    }
    if let Ok(value) = HeaderValue::from_str(&run.pipeline) {
        headers.insert("x-sluice-pipeline", value);
    }
    Ok(response)
}

/// `NAME[@VERSION|@ALIAS]` from the path.
fn split(target: &str) -> Result<(&str, Selector), ApiError> {
    Selector::split(target).map_err(|e| {
        ApiError::bad_request(format!(
            "`{target}` is not NAME, NAME@VERSION or NAME@ALIAS: {e}"
        ))
    })
}

/// The request body, within the node's size and time limits, as a message.
async fn read_message(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Message, ApiError> {
    let bytes = read_body(body, state.http.max_body_bytes, state.http.body_timeout).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    decode_request(content_type, Vec::from(bytes))
}
