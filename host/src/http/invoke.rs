//! `POST /fn/{name}[@{version}|@{alias}]`: run a stage on the request
//! body; `ANY /fn/{name}[@...][/{path}]`: an HTTP function serves the
//! request itself; `POST /p/{name}[@...]`: run a pipeline on the body.

use super::message::{decode_request, encode_explained, encode_response, wants_explanation};
use super::openapi::{ErrorBody, MessageJson};
use super::{ApiError, AppState, RequestId, read_body};
use crate::inference::explain;
use crate::node::FellBack;
use crate::node::HttpCall;
use crate::registry::Selector;
use crate::tensor::Message;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::Full;
use std::fmt::Write as _;
use std::sync::Arc;

#[utoipa::path(
    post, path = "/fn/{target}", tag = "invoke",
    summary = "Run a function on the request body",
    params(("target" = String, Path), ("explain" = Option<bool>, Query, description = "Answer {output, explanations}: per-feature attributions of the model runs the call made")),
    request_body(content(
        (MessageJson = "application/vnd.sluice.message+json", example = json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})),
        ("application/json", example = json!({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2})),
        ("text/plain"),
        ("application/octet-stream"),
    ), description = "A message (tensors and fields), or any other media type, which reaches the stage as its body"),
    responses(
        (status = 200, description = "The stage's output: a message, or a body of the stage's media type", headers(("x-sluice-stage" = String, description = "name@version that answered")),
            content((MessageJson = "application/vnd.sluice.message+json"), ("*/*"))),
        (status = 204, description = "The stage returned nothing"),
        (status = 400, description = "A bad message, or the stage refused its input", body = ErrorBody),
        (status = 404, description = "No such function, version or alias", body = ErrorBody),
        (status = 500, description = "The stage failed (trapped, ran out of memory or fuel, or returned a bad tensor)", body = ErrorBody),
        (status = 504, description = "The stage passed its deadline", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn invoke(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(target): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError, stage: Option<String>| e.in_stage(stage).with_request_id(&request_id);
    let (name, selector) = split(&target).map_err(|e| fail(e, None))?;
    if let Some(call) = (state
        .node
        .http_function(name, &selector, request.headers())
        .await)
        .map_err(|e| fail(e.into(), Some(target.clone())))?
    {
        return serve_http(&state, call, &target, request_id, request).await;
    }
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if parts.method != Method::POST {
        return Err(fail(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("`{name}` is a stage: call it with POST"),
            ),
            Some(target),
        ));
    }
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map_err(|e| fail(ApiError::bad_request(e.body_text()), None))?;
    let explain = wants_explanation(&params).map_err(|e| fail(e, None))?;
    let stage_hint = Some(target.clone());
    let input = read_message(&state, &headers, body)
        .await
        .map_err(|e| fail(e, stage_hint.clone()))?;

    let call = state
        .node
        .invoke(name, &selector, input, request_id.clone(), Some(&headers));
    let (called, runs) = if explain {
        explain::recording(call).await
    } else {
        (call.await, Vec::new())
    };
    let answered = called.map_err(|e| fail(e.into(), stage_hint.clone()))?;
    let (stage, output) = (answered.by, answered.output);
    let mut response = if explain {
        let explanations = state
            .node
            .explain(runs)
            .await
            .map_err(|e| fail(e.into(), Some(stage.clone())))?;
        encode_explained(output, &explanations)
    } else {
        encode_response(output)
    }
    .map_err(|e| fail(e, Some(stage.clone())))?;
    if let Ok(value) = HeaderValue::from_str(&stage) {
        response.headers_mut().insert("x-sluice-stage", value);
    }
    mark_fallback(&mut response, answered.fallback.as_ref());
    Ok(response)
}

/// `ANY /fn/{name}[@...]/{path}`: an HTTP function serves the request,
/// which it sees at `/{path}` (as under `wasmtime serve`).
#[utoipa::path(
    get, path = "/fn/{target}/{path}", tag = "invoke",
    summary = "Call an HTTP function (any method) at a path of its own",
    description = "An HTTP function (a component exporting wasi:http/incoming-handler) answers every method at /fn/{target} and below; it sees the request at /{path}, query included. Stages answer only POST /fn/{target}.",
    params(("target" = String, Path), ("path" = String, Path)),
    responses(
        (status = 200, description = "The function's response, as it wrote it", headers(("x-sluice-stage" = String, description = "name@version that answered")), content(("*/*"))),
        (status = 400, description = "A bad target", body = ErrorBody),
        (status = 404, description = "No such function, version or alias, or a stage (stages have no paths)", body = ErrorBody),
        (status = 500, description = "The function failed before it answered (trapped, ran out of memory or fuel)", body = ErrorBody),
        (status = 504, description = "The function passed its deadline before it answered", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn invoke_path(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, ApiError> {
    // Also `{functions_at}/{target}[/{path}]` (`serve --http-prefix`).
    let target = params
        .into_iter()
        .find_map(|(key, value)| (key == "target").then_some(value))
        .unwrap_or_default();
    let fail = |e: ApiError| {
        e.in_stage(Some(target.clone()))
            .with_request_id(&request_id)
    };
    let (name, selector) = split(&target).map_err(fail)?;
    let found = state.node.http_function(name, &selector, request.headers());
    let Some(call) = found.await.map_err(|e| fail(e.into()))? else {
        return Err(fail(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("`{name}` is a stage and has no paths: call it with POST /fn/{target}"),
        )));
    };
    serve_http(&state, call, &target, request_id, request).await
}

/// Hand `request` to the HTTP function `call`, at its path below
/// `/fn/{target}`, its body read within the node's limits.
async fn serve_http(
    state: &AppState,
    call: HttpCall,
    target: &str,
    request_id: Arc<str>,
    request: Request,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError| {
        e.in_stage(Some(target.to_string()))
            .with_request_id(&request_id)
    };
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path();
    let at = match (path.starts_with("/fn/"), &state.http.functions_at) {
        (false, Some(prefix)) => prefix.as_str(),
        _ => "/fn",
    };
    let path = path
        .strip_prefix(at)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_prefix(target))
        .unwrap_or_default();
    let path_and_query = match (path, parts.uri.query()) {
        ("", None) => "/".to_string(),
        ("", Some(query)) => format!("/?{query}"),
        (path, None) => path.to_string(),
        (path, Some(query)) => format!("{path}?{query}"),
    };
    parts.uri = path_and_query
        .parse()
        .map_err(|e| fail(ApiError::bad_request(format!("bad request path: {e}"))))?;
    // The component resolves its URL against Host; HTTP/1.0 and some
    // Lambda events have none.
    if !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    // A Sluice token is the node's credential, not the component's.
    if call.takes_token() {
        parts.headers.remove(header::AUTHORIZATION);
    }
    let bytes = read_body(body, state.http.max_body_bytes, state.http.body_timeout)
        .await
        .map_err(fail)?;
    let request = Request::from_parts(parts, Full::new(bytes));
    let label = call.label();
    let served = state.node.serve_http(call, request_id.clone(), request);
    let mut response = served.await.map_err(|e| fail(e.into()))?;
    if let Ok(value) = HeaderValue::from_str(&label) {
        response.headers_mut().insert("x-sluice-stage", value);
    }
    Ok(response)
}

/// `POST /p/{name}[@{version}|@{alias}]`: the request body, decoded as for
/// `/fn`, goes to the pipeline's first steps; the answer is the last
/// steps' merged output, with per-step timings in `Server-Timing`.
#[utoipa::path(
    post, path = "/p/{target}", tag = "invoke",
    summary = "Run a pipeline on the request body",
    params(("target" = String, Path), ("explain" = Option<bool>, Query, description = "Answer {output, explanations}: per-feature attributions of the model runs the call made")),
    request_body(content(
        (MessageJson = "application/vnd.sluice.message+json", example = json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})),
        ("application/json", example = json!({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2})),
        ("text/plain"),
        ("application/octet-stream"),
    ), description = "As for /fn: the input of the pipeline's first steps"),
    responses(
        (status = 200, description = "The last steps' merged output", headers(("server-timing" = String, description = "Each step's duration and outcome"), ("x-sluice-pipeline" = String, description = "name@version that answered")),
            content((MessageJson = "application/vnd.sluice.message+json"), ("*/*"))),
        (status = 204, description = "The pipeline returned nothing"),
        (status = 400, description = "A bad message, or a step refused its input", body = ErrorBody),
        (status = 404, description = "No such pipeline, version or alias", body = ErrorBody),
        (status = 500, description = "A step failed", body = ErrorBody),
        (status = 503, description = "A model's queue is full; retry", body = ErrorBody),
        (status = 504, description = "The pipeline passed its deadline", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn pipeline(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(target): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fail = |e: ApiError| {
        e.in_stage(Some(target.clone()))
            .with_request_id(&request_id)
    };
    let (name, selector) = split(&target).map_err(fail)?;
    let explain = wants_explanation(&params).map_err(fail)?;
    let input = read_message(&state, &headers, body).await.map_err(fail)?;
    let work = state
        .node
        .run_pipeline(name, &selector, input, request_id.clone(), Some(&headers));
    let (ran, runs) = if explain {
        explain::recording(work).await
    } else {
        (work.await, Vec::new())
    };
    let mut run = ran.map_err(|e| fail(e.into()))?;
    let output = std::mem::take(&mut run.output);
    let mut response = if explain {
        let explanations = state.node.explain(runs).await.map_err(|e| fail(e.into()))?;
        encode_explained(output, &explanations)
    } else {
        encode_response(output)
    }
    .map_err(fail)?;
    let mut timing = String::new();
    for (i, t) in run.timings.iter().enumerate() {
        // Milliseconds to the microsecond, written as integers: float
        // formatting costs more than the rest of the header.
        let us = t.took.as_micros();
        let _ = write!(
            timing,
            "{}{};dur={}.{:03};desc=\"{}\"",
            if i == 0 { "" } else { ", " },
            t.step,
            us / 1000,
            us % 1000,
            t.outcome
        );
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", value);
    }
    if let Ok(value) = HeaderValue::from_str(&run.pipeline) {
        headers.insert("x-sluice-pipeline", value);
    }
    if let Some(cache) = run.cache {
        headers.insert("x-sluice-cache", HeaderValue::from_static(cache.as_str()));
    }
    mark_fallback(&mut response, run.fallback.as_ref());
    Ok(response)
}

/// Say in `x-sluice-fallback` that a guard's fallback answered, what it
/// was and why (`version:1; reason=deadline`).
pub(super) fn mark_fallback(response: &mut Response, fallback: Option<&FellBack>) {
    if let Some(value) = fallback.and_then(|f| HeaderValue::from_str(&f.header()).ok()) {
        response.headers_mut().insert("x-sluice-fallback", value);
    }
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
