//! The Open Inference Protocol v2 (REST, JSON tensor encoding), as KServe
//! and Triton define it, so standard clients (`tritonclient[http]`, the
//! KServe SDK, curl) call Sluice's models unchanged.
//!
//! `{version}` in a path is a version number or an alias; without it the
//! model's default alias (`stable`, else `latest`) is used. Errors are
//! `{"error": "..."}` with the matching 4xx/5xx.

use super::codec::{decode_tensor, encode_tensor};
use super::{ApiError, AppState, read_body};
use crate::engine::wit::NamedTensor;
use crate::inference::Model;
use crate::node::NodeError;
use crate::registry::{Name, Selector};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// `GET /v2`: server metadata.
pub async fn server() -> Response {
    Json(json!({
        "name": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
    .into_response()
}

/// `GET /v2/health/live`.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: ready when the store answers.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    super::admin::ready(State(state)).await
}

async fn find(state: &AppState, name: &str, version: Option<&str>) -> Result<Arc<Model>, ApiError> {
    let name = Name::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let selector = match version {
        Some(v) => Selector::parse(v).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Selector::Default,
    };
    Ok(state
        .node
        .models()
        .get(&name, &selector)
        .await
        .map_err(NodeError::from)?)
}

fn metadata(model: &Model) -> Value {
    let r = &model.record;
    json!({
        "name": r.name,
        "versions": [r.version.to_string()],
        "platform": "onnx_tract",
        "inputs": r.signature.inputs,
        "outputs": r.signature.outputs,
    })
}

/// `GET /v2/models/{model}`.
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let model = find(&state, &name, None).await?;
    Ok(Json(metadata(&model)).into_response())
}

/// `GET /v2/models/{model}/versions/{version}`.
pub async fn version_metadata(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let model = find(&state, &name, Some(&version)).await?;
    Ok(Json(metadata(&model)).into_response())
}

/// `GET /v2/models/{model}/ready`: loads the model if needed.
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    find(&state, &name, None).await.map(|_| StatusCode::OK)
}

/// `GET /v2/models/{model}/versions/{version}/ready`.
pub async fn version_ready(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    find(&state, &name, Some(&version))
        .await
        .map(|_| StatusCode::OK)
}

/// `POST /v2/models/{model}/infer`.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    run(&state, &name, None, body).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`.
pub async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    run(&state, &name, Some(&version), body).await
}

async fn run(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.http.max_body_bytes, state.http.body_timeout).await?;
    let mut request: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the body must be an inference request object: {e}"))
        })?;
    let inputs = match request.remove("inputs") {
        Some(Value::Array(inputs)) => inputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| decode_tensor("inputs", i, t))
            .collect::<Result<Vec<NamedTensor>, _>>()?,
        _ => return Err(ApiError::bad_request("the request needs an `inputs` array")),
    };
    let wanted: Option<Vec<String>> = match request.remove("outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(outputs)) => Some(
            outputs
                .iter()
                .map(|o| {
                    o.get("name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::bad_request("each of `outputs` needs a `name`"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("`outputs` must be an array")),
    };
    let model = find(state, name, version).await?;
    if let Some(wanted) = &wanted
        && let Some(unknown) = wanted
            .iter()
            .find(|w| !model.signature().outputs.iter().any(|o| &o.name == *w))
    {
        let known: Vec<&str> = model
            .signature()
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        return Err(ApiError::bad_request(format!(
            "the model has no output `{unknown}`; its outputs are {}",
            known.join(", ")
        )));
    }
    let outputs = state
        .node
        .models()
        .run(&model, inputs)
        .await
        .map_err(NodeError::from)?;
    let outputs: Vec<Value> = outputs
        .iter()
        .filter(|o| wanted.as_ref().is_none_or(|w| w.contains(&o.name)))
        .map(encode_tensor)
        .collect();
    let mut response = json!({
        "model_name": model.record.name,
        "model_version": model.record.version.to_string(),
        "outputs": outputs,
    });
    if let Some(id) = request.remove("id") {
        response["id"] = id;
    }
    if let Some(parameters) = request.remove("parameters") {
        response["parameters"] = parameters;
    }
    Ok(Json(response).into_response())
}
