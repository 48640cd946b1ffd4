//! The Open Inference Protocol v2 (REST, JSON tensor encoding), as KServe
//! and Triton define it, so standard clients (`tritonclient[http]`, the
//! KServe SDK, curl) call Sluice's models unchanged.
//!
//! `{version}` in a path is a version number or an alias; without it the
//! model's default alias (`stable`, else `latest`) is used. Errors are
//! `{"error": "..."}` with the matching 4xx/5xx.

use super::codec::{decode_tensor, encode_tensor};
use super::oip_binary;
use super::{ApiError, AppState, read_body};
use crate::engine::wit::NamedTensor;
use crate::inference::Model;
use crate::node::NodeError;
use crate::registry::{Name, Selector};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run(&state, &name, None, &headers, body).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`.
pub async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run(&state, &name, Some(&version), &headers, body).await
}

fn binary_size(tensor: &Value) -> Option<u64> {
    tensor.get("parameters")?.get("binary_data_size")?.as_u64()
}

/// The request's inputs: JSON data, or raw bytes after the JSON header.
fn inputs(list: Vec<Value>, mut binary: &[u8]) -> Result<Vec<NamedTensor>, ApiError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        let Some(size) = binary_size(&t) else {
            out.push(decode_tensor("inputs", i, t)?);
            continue;
        };
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        let datatype = t
            .get("datatype")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let shape: Vec<u64> = t
            .get("shape")
            .and_then(Value::as_array)
            .map(|dims| dims.iter().filter_map(Value::as_u64).collect())
            .ok_or_else(|| ApiError::bad_request(format!("inputs[{i}] needs a `shape`")))?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > binary.len() {
            return Err(ApiError::bad_request(format!(
                "input `{name}` announces {size} binary bytes; only {} follow the header",
                binary.len()
            )));
        }
        let (raw, rest) = binary.split_at(size);
        out.push(oip_binary::decode(name, datatype, shape, raw)?);
        binary = rest;
    }
    Ok(out)
}

async fn run(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.http.max_body_bytes, state.http.body_timeout).await?;
    let json_len = match headers.get(oip_binary::HEADER_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n <= bytes.len())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{} must be a length within the body",
                    oip_binary::HEADER_LENGTH
                ))
            })?,
        None => bytes.len(),
    };
    let (json_part, binary_part) = bytes.split_at(json_len);
    let mut request: serde_json::Map<String, Value> =
        serde_json::from_slice(json_part).map_err(|e| {
            ApiError::bad_request(format!("the body must be an inference request object: {e}"))
        })?;
    let inputs = match request.remove("inputs") {
        Some(Value::Array(list)) => inputs(list, binary_part)?,
        _ => return Err(ApiError::bad_request("the request needs an `inputs` array")),
    };
    let all_binary = request
        .get("parameters")
        .and_then(|p| p.get("binary_data_output"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Requested outputs, each with whether it wants binary data.
    let wanted: Option<Vec<(String, bool)>> = match request.remove("outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(outputs)) => Some(
            outputs
                .iter()
                .map(|o| {
                    let binary = o
                        .get("parameters")
                        .and_then(|p| p.get("binary_data"))
                        .and_then(Value::as_bool)
                        .unwrap_or(all_binary);
                    o.get("name")
                        .and_then(Value::as_str)
                        .map(|n| (n.to_string(), binary))
                        .ok_or_else(|| ApiError::bad_request("each of `outputs` needs a `name`"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("`outputs` must be an array")),
    };
    let model = find(state, name, version).await?;
    if let Some(wanted) = &wanted
        && let Some((unknown, _)) = wanted
            .iter()
            .find(|(w, _)| !model.signature().outputs.iter().any(|o| &o.name == w))
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
    let mut binary = bytes::BytesMut::new();
    let outputs: Vec<Value> = outputs
        .iter()
        .filter_map(|o| {
            let as_binary = match &wanted {
                None => all_binary,
                Some(w) => w.iter().find(|(n, _)| *n == o.name)?.1,
            };
            let mut value = encode_tensor(o);
            if as_binary {
                let raw = oip_binary::encode(&o.tensor.data);
                value["parameters"] = json!({ "binary_data_size": raw.len() });
                if let Some(fields) = value.as_object_mut() {
                    fields.remove("data");
                }
                binary.extend_from_slice(&raw);
            }
            Some(value)
        })
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
    if binary.is_empty() {
        return Ok(Json(response).into_response());
    }
    let header = serde_json::to_vec(&response)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let length = HeaderValue::from(header.len());
    let mut body = header;
    body.extend_from_slice(&binary);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(oip_binary::HEADER_LENGTH),
                length,
            ),
        ],
        body,
    )
        .into_response())
}
