//! The Open Inference Protocol v2 (REST, JSON tensor encoding), as KServe
//! and Triton define it, so standard clients (`tritonclient[http]`, the
//! KServe SDK, curl) call Sluice's models unchanged.
//!
//! `{version}` in a path is a version number or an alias; without it the
//! model's default alias (`stable`, else `latest`) is used. Errors are
//! `{"error": "..."}` with the matching 4xx/5xx.
//!
//! A name that is no model but a pipeline serves the pipeline as a model:
//! the request's tensors are its input message, the answer's tensors its
//! outputs, and its metadata the signature recorded at deploy (the inputs
//! of its first model steps, the outputs of its last). A model and a
//! pipeline of the same name: the model is served.

use super::message::{ScalarJson, ScalarMap};
use super::oip_binary;
use super::openapi::{ErrorBody, InferRequestJson, InferResponseJson};
use super::tensor_json::{self, DataIn, TensorIn, TensorJson, TensorList};
use super::{ApiError, AppState, RequestId, read_body};
use crate::inference::explain::{self, Explanation};
use crate::inference::{InferenceError, Model};
use crate::node::{Keys, NodeError, Plan};
use crate::registry::{RegistryError, Routed, Selector};
use crate::tensor::{Message, NamedTensor, Scalar, Signature};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// `GET /v2`: server metadata.
#[utoipa::path(
    get, path = "/v2", tag = "inference",
    summary = "Server metadata",
    responses((status = 200, description = "Name, version, extensions", body = Object))
)]
pub async fn server() -> Response {
    Json(json!({
        "name": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
    .into_response()
}

/// `GET /v2/health/live`: `{"live": true}` while the process answers.
#[utoipa::path(
    get, path = "/v2/health/live", tag = "inference",
    summary = "Liveness",
    responses((status = 200, description = "`{\"live\": true}`", body = Object))
)]
pub async fn live() -> Response {
    Json(json!({ "live": true })).into_response()
}

/// `GET /v2/health/ready`: `{"ready": true}` when the store answers, else
/// 503 with `{"ready": false, "error": ...}`.
#[utoipa::path(
    get, path = "/v2/health/ready", tag = "inference",
    summary = "Readiness: the store answers",
    responses(
        (status = 200, description = "`{\"ready\": true}`", body = Object),
        (status = 503, description = "`{\"ready\": false, \"error\": ...}`", body = Object),
    )
)]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.node.ready().await {
        Ok(()) => Json(json!({ "ready": true })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": format!("store unavailable: {e}") })),
        )
            .into_response(),
    }
}

/// What `/v2/models/{name}` serves.
enum Served {
    Model(Arc<Model>),
    Pipeline(Arc<Plan>),
}

impl Served {
    fn name(&self) -> &str {
        match self {
            Self::Model(m) => &m.record.name,
            Self::Pipeline(p) => &p.record.name,
        }
    }

    fn version(&self) -> u64 {
        match self {
            Self::Model(m) => m.record.version,
            Self::Pipeline(p) => p.record.version,
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Self::Model(_) => "model",
            Self::Pipeline(_) => "pipeline",
        }
    }

    fn signature(&self) -> &Signature {
        match self {
            Self::Model(m) => &m.record.signature,
            Self::Pipeline(p) => &p.record.signature,
        }
    }

    fn metadata(&self) -> Value {
        let platform = match self {
            Self::Model(m) => match m.record.engine {
                crate::inference::Engine::Tract => "onnx_tract",
                // Triton's name for the same engine.
                crate::inference::Engine::Onnxruntime => "onnxruntime_onnx",
            },
            Self::Pipeline(_) => "sluice_pipeline",
        };
        json!({
            "name": self.name(),
            "versions": [self.version().to_string()],
            "platform": platform,
            "inputs": self.signature().inputs,
            "outputs": self.signature().outputs,
        })
    }
}

/// The model `name` (at `version`), else the pipeline of that name.
async fn find(state: &AppState, name: &str, version: Option<&str>) -> Result<Served, ApiError> {
    Ok(find_routed(state, name, version, None).await?.0)
}

/// The model `name` (at `version`), else the pipeline of that name; for a
/// call (`headers` given), through its rollout, and where that sent it.
async fn find_routed(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: Option<&HeaderMap>,
) -> Result<(Served, Option<Routed>), ApiError> {
    let selector = match version {
        Some(v) => Selector::parse(v).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Selector::Default,
    };
    let missing = |e: &NodeError| {
        matches!(
            e,
            NodeError::Inference(InferenceError::Registry(RegistryError::NotFound { .. }))
                | NodeError::Registry(RegistryError::NotFound { .. })
        )
    };
    // Metadata and readiness describe the stable version: only a call is
    // routed.
    let model = match headers {
        Some(headers) => {
            state
                .node
                .routed_model(name, &selector, Some(headers))
                .await
        }
        None => state.node.model(name, &selector).await.map(|m| (m, None)),
    };
    match model {
        Ok((model, routed)) => Ok((Served::Model(model), routed)),
        Err(no_model) if missing(&no_model) => {
            let plan = match headers {
                Some(headers) => {
                    let keys = Keys {
                        headers: Some(headers),
                        input: None,
                    };
                    state.node.routed_pipeline(name, &selector, keys).await
                }
                None => state
                    .node
                    .pipeline(name, &selector)
                    .await
                    .map(|p| (p, None)),
            };
            match plan {
                Ok((plan, routed)) => Ok((Served::Pipeline(plan), routed)),
                Err(e) if missing(&e) => Err(no_model.into()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v2/models/{model}`.
#[utoipa::path(
    get, path = "/v2/models/{model}", tag = "inference",
    summary = "A model's metadata: its inputs and outputs",
    params(("model" = String, Path)),
    responses(
        (status = 200, description = "Name, versions, platform, inputs, outputs", body = Object),
        (status = 404, description = "No such model or pipeline", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(find(&state, &name, None).await?.metadata()).into_response())
}

/// `GET /v2/models/{model}/versions/{version}`.
#[utoipa::path(
    get, path = "/v2/models/{model}/versions/{version}", tag = "inference",
    summary = "A model version's metadata",
    params(("model" = String, Path), ("version" = String, Path)),
    responses(
        (status = 200, description = "Name, versions, platform, inputs, outputs", body = Object),
        (status = 400, description = "A bad version", body = ErrorBody),
        (status = 404, description = "No such model, pipeline or version", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn version_metadata(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(find(&state, &name, Some(&version)).await?.metadata()).into_response())
}

fn model_ready_body(served: &Served) -> Response {
    Json(json!({ "name": served.name(), "ready": true })).into_response()
}

/// `GET /v2/models/{model}/ready`: loads the model (or the pipeline's
/// plan) if needed, then
/// `{"name": ..., "ready": true}`.
#[utoipa::path(
    get, path = "/v2/models/{model}/ready", tag = "inference",
    summary = "Load a model (if needed) and say it is ready",
    params(("model" = String, Path)),
    responses(
        (status = 200, description = "`{\"name\": ..., \"ready\": true}`", body = Object),
        (status = 404, description = "No such model or pipeline", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let model = find(&state, &name, None).await?;
    Ok(model_ready_body(&model))
}

/// `GET /v2/models/{model}/versions/{version}/ready`.
#[utoipa::path(
    get, path = "/v2/models/{model}/versions/{version}/ready", tag = "inference",
    summary = "Load a model version (if needed) and say it is ready",
    params(("model" = String, Path), ("version" = String, Path)),
    responses(
        (status = 200, description = "`{\"name\": ..., \"ready\": true}`", body = Object),
        (status = 400, description = "A bad version", body = ErrorBody),
        (status = 404, description = "No such model, pipeline or version", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn version_ready(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let model = find(&state, &name, Some(&version)).await?;
    Ok(model_ready_body(&model))
}

/// `POST /v2/models/{model}/infer`.
#[utoipa::path(
    post, path = "/v2/models/{model}/infer", tag = "inference",
    summary = "Run a model (or a pipeline) on tensors",
    params(("model" = String, Path)),
    request_body(content(
        (InferRequestJson = "application/json", example = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})),
        ("application/octet-stream"),
    ), description = "JSON, or the binary extension: JSON then raw tensor bytes, with `Inference-Header-Content-Length`"),
    responses(
        (status = 200, description = "The outputs, as JSON or (when asked) in the binary extension",
            content((InferResponseJson = "application/json"), ("application/octet-stream"))),
        (status = 400, description = "A bad request: names, datatypes, shapes or data that do not fit the model", body = ErrorBody),
        (status = 404, description = "No such model, pipeline or version", body = ErrorBody),
        (status = 500, description = "The model (or a pipeline step) failed", body = ErrorBody),
        (status = 504, description = "The request passed its deadline", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run(&state, request_id, &name, None, &headers, body).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`.
#[utoipa::path(
    post, path = "/v2/models/{model}/versions/{version}/infer", tag = "inference",
    summary = "Run a model version on tensors",
    params(("model" = String, Path), ("version" = String, Path)),
    request_body(content(
        (InferRequestJson = "application/json", example = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})),
        ("application/octet-stream"),
    ), description = "JSON, or the binary extension: JSON then raw tensor bytes, with `Inference-Header-Content-Length`"),
    responses(
        (status = 200, description = "The outputs, as JSON or (when asked) in the binary extension",
            content((InferResponseJson = "application/json"), ("application/octet-stream"))),
        (status = 400, description = "A bad request: names, datatypes, shapes or data that do not fit the model", body = ErrorBody),
        (status = 404, description = "No such model, pipeline or version", body = ErrorBody),
        (status = 500, description = "The model (or a pipeline step) failed", body = ErrorBody),
        (status = 504, description = "The request passed its deadline", body = ErrorBody),
    ),
    security((), ("token" = []))
)]
pub async fn infer_version(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run(&state, request_id, &name, Some(&version), &headers, body).await
}

/// Parse, run, encode.
async fn run(
    state: &AppState,
    request_id: Arc<str>,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.http.max_body_bytes, state.http.body_timeout).await?;
    let mut request = InferRequest::parse(headers, &bytes)?;
    // The inputs are decoded: the body's text need not live through the run.
    drop(bytes);
    let (served, routed) = find_routed(state, name, version, Some(headers)).await?;
    request.check_outputs(&served)?;
    let inputs = std::mem::take(&mut request.inputs);
    let explain = flag(&request.parameters, "explain").unwrap_or(false);
    // What answered (a fallback's model version, if one did), its
    // outputs, and the fallback.
    let work = async {
        Ok::<_, ApiError>(match &served {
            Served::Model(model) => {
                let inferred = state.node.infer_routed(model, routed, inputs).await?;
                (
                    Some(Served::Model(inferred.model)),
                    inferred.outputs,
                    inferred.fallback,
                )
            }
            Served::Pipeline(plan) => {
                let input = Message {
                    tensors: inputs,
                    ..Message::default()
                };
                let run = (state.node)
                    .run_routed_plan(plan, routed, input, request_id)
                    .await?;
                (None, run.output.tensors, run.fallback)
            }
        })
    };
    let ((answered, outputs, fallback), explanations) = if explain {
        let (outputs, runs) = explain::recording(work).await;
        let outputs = outputs?;
        (outputs, Some(state.node.explain(runs).await?))
    } else {
        (work.await?, None)
    };
    let mut response =
        request.answer(answered.as_ref().unwrap_or(&served), &outputs, explanations)?;
    super::invoke::mark_fallback(&mut response, fallback.as_ref());
    Ok(response)
}

/// An inference request, parsed: JSON header, inputs (JSON data or raw
/// bytes after the header), which outputs to answer and how.
struct InferRequest {
    inputs: Vec<NamedTensor>,
    /// Requested outputs, each with whether it wants binary data (`None`:
    /// every output).
    outputs: Option<Vec<(String, bool)>>,
    /// `parameters.binary_data_output`: the default for outputs.
    all_binary: bool,
    /// Echoed back.
    id: Option<String>,
    /// Passed back.
    parameters: Vec<(String, Scalar)>,
}

impl InferRequest {
    fn parse(headers: &HeaderMap, bytes: &Bytes) -> Result<Self, ApiError> {
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
        let request = tensor_json::read(
            json_part,
            |text_len| RequestSeed { text_len },
            "an inference request",
        )?;
        let inputs = request
            .inputs
            .ok_or_else(|| ApiError::bad_request("the request needs an `inputs` array"))?;
        let all_binary = flag(&request.parameters, "binary_data_output").unwrap_or(false);
        let outputs = request.outputs.map(|outputs| {
            outputs
                .into_iter()
                .map(|o| {
                    let binary = flag(&o.parameters, "binary_data").unwrap_or(all_binary);
                    (o.name, binary)
                })
                .collect()
        });
        Ok(Self {
            inputs: with_binary_data(inputs, binary_part)?,
            outputs,
            all_binary,
            id: request.id,
            parameters: request.parameters,
        })
    }

    /// Refuse outputs the model does not have, naming the ones it has (a
    /// pipeline ending in a function step declares none: not checked).
    fn check_outputs(&self, served: &Served) -> Result<(), ApiError> {
        let known = &served.signature().outputs;
        if known.is_empty() {
            return Ok(());
        }
        if let Some(wanted) = &self.outputs
            && let Some((unknown, _)) = wanted
                .iter()
                .find(|(w, _)| !known.iter().any(|o| &o.name == w))
        {
            let names: Vec<&str> = known.iter().map(|o| o.name.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "{} {} has no output `{unknown}`; its outputs are {}",
                served.noun(),
                served.name(),
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// The response: JSON, or a JSON header and the binary outputs.
    fn answer(
        self,
        served: &Served,
        outputs: &[NamedTensor],
        explanations: Option<Vec<Explanation>>,
    ) -> Result<Response, ApiError> {
        let mut binary = bytes::BytesMut::new();
        let mut encoded = Vec::with_capacity(outputs.len());
        for output in outputs {
            let as_binary = match &self.outputs {
                None => self.all_binary,
                Some(wanted) => match wanted.iter().find(|(n, _)| *n == output.name) {
                    Some((_, binary)) => *binary,
                    None => continue,
                },
            };
            let mut json = TensorJson::of(output);
            if as_binary {
                let raw = oip_binary::encode(&output.tensor.data);
                json.parameters = Some(json!({ "binary_data_size": raw.len() }));
                json.data = None;
                binary.extend_from_slice(&raw);
            }
            encoded.push(json);
        }
        let response = InferResponse {
            model_name: served.name(),
            model_version: served.version().to_string(),
            outputs: encoded,
            id: self.id.as_deref(),
            parameters: self
                .parameters
                .iter()
                .map(|(name, value)| (name.as_str(), ScalarJson(value)))
                .collect(),
            explanations,
        };
        let header = serde_json::to_vec(&response)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if binary.is_empty() {
            return Ok((
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                header,
            )
                .into_response());
        }
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
}

/// An inference response's JSON (header).
#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    outputs: Vec<TensorJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    parameters: BTreeMap<&'a str, ScalarJson<'a>>,
    /// With the `explain` parameter: each model run's attributions.
    #[serde(skip_serializing_if = "Option::is_none")]
    explanations: Option<Vec<Explanation>>,
}

/// The boolean parameter `name`, if given as one.
fn flag(parameters: &[(String, Scalar)], name: &str) -> Option<bool> {
    parameters.iter().rev().find_map(|(n, v)| match v {
        Scalar::Bool(b) if n == name => Some(*b),
        _ => None,
    })
}

/// An inference request's JSON (header), as read.
struct RequestJson {
    id: Option<String>,
    parameters: Vec<(String, Scalar)>,
    inputs: Option<Vec<TensorIn>>,
    outputs: Option<Vec<RequestedOutput>>,
}

/// One of `outputs`: `{name, parameters: {binary_data}}`.
#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default, deserialize_with = "parameters")]
    parameters: Vec<(String, Scalar)>,
}

fn parameters<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Scalar)>, D::Error> {
    ScalarMap("parameter").deserialize(d)
}

/// Reads a [`RequestJson`] from a JSON text of `text_len` bytes.
struct RequestSeed {
    text_len: usize,
}

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = RequestJson;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RequestJson, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed {
    type Value = RequestJson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an inference request object {id, parameters, inputs, outputs}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestJson, A::Error> {
        let mut request = RequestJson {
            id: None,
            parameters: Vec::new(),
            inputs: None,
            outputs: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => {
                    // The protocol's `id` is a string (and is echoed as one).
                    let id = map.next_value::<String>().map_err(|e| {
                        <A::Error as serde::de::Error>::custom(format!(
                            "the request `id` must be a string: {e}"
                        ))
                    })?;
                    request.id = Some(id);
                }
                "parameters" => request.parameters = map.next_value_seed(ScalarMap("parameter"))?,
                "inputs" => {
                    request.inputs = Some(map.next_value_seed(TensorList {
                        list: "inputs",
                        text_len: self.text_len,
                    })?)
                }
                "outputs" => request.outputs = map.next_value()?,
                // Extensions this node does not implement.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(request)
    }
}

/// The request's inputs, checked: JSON data, or their bytes from the
/// binary part after the JSON, in order.
fn with_binary_data(
    inputs: Vec<TensorIn>,
    mut binary: &[u8],
) -> Result<Vec<NamedTensor>, ApiError> {
    inputs
        .into_iter()
        .map(|input| {
            let DataIn::Binary(size) = input.data else {
                return input.inline();
            };
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > binary.len() {
                return Err(ApiError::bad_request(format!(
                    "input `{}`: announces {size} binary bytes; only {} follow the header",
                    input.name,
                    binary.len()
                )));
            }
            let (raw, rest) = binary.split_at(size);
            binary = rest;
            oip_binary::decode(&input.name, input.datatype, input.shape, raw)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::{JSON_TOKENS, iterations, run};

    #[test]
    fn a_request_id_is_a_string_and_is_echoed_as_one() {
        let input = r#""inputs":[{"name":"X","datatype":"FP32","shape":[1],"data":[1]}]"#;
        let parse = |body: String| InferRequest::parse(&HeaderMap::new(), &Bytes::from(body));
        assert_eq!(
            parse(format!(r#"{{"id":"r-1",{input}}}"#))
                .unwrap()
                .id
                .as_deref(),
            Some("r-1")
        );
        for id in ["7", "false", "null", "[]"] {
            let Err(e) = parse(format!(r#"{{"id":{id},{input}}}"#)) else {
                panic!("`id`: {id} accepted");
            };
            assert!(e.message().contains("`id` must be a string"), "{id}: {e:?}");
        }
    }

    #[test]
    fn fuzz_oip_json_and_binary_requests_parse_or_refuse_and_never_panic() {
        let json = br#"{"id":"r","parameters":{"binary_data_output":true},"inputs":[{"name":"X","datatype":"FP32","shape":[1,2],"data":[1,2]}],"outputs":[{"name":"label","parameters":{"binary_data":false}}]}"#;
        let header = br#"{"inputs":[{"name":"X","datatype":"INT32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":5}}]}"#;
        let mut binary = header.to_vec();
        binary.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, b'a']);
        // JSON and binary in turn; a binary body carries the JSON length.
        let seeds: [&[u8]; 2] = [json, &binary];
        let mut turn = 0;
        run(16, iterations(), &seeds, JSON_TOKENS, |rng, input| {
            turn += 1;
            let body = Bytes::copy_from_slice(input);
            let mut headers = HeaderMap::new();
            if turn % 2 == 0 {
                // The declared length: right, or off by a little.
                let len = match rng.below(4) {
                    0 => rng.below(body.len() + 8),
                    _ => header.len(),
                };
                headers.insert(oip_binary::HEADER_LENGTH, HeaderValue::from(len));
            }
            match InferRequest::parse(&headers, &body) {
                Ok(request) => {
                    for t in &request.inputs {
                        assert!(t.tensor.check(&t.name).is_ok());
                    }
                    true
                }
                Err(e) => {
                    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
                    false
                }
            }
        });
    }
}
