//! The OpenAPI 3.1 description of the whole HTTP API, served at
//! `GET /openapi.json` on every listener. It is generated from the code:
//! each handler carries its `#[utoipa::path]`, the schemas below are the
//! wire shapes, and [`Kinds`] writes the registry routes out once per kind
//! of object, as the router does.
//!
//! The errors every route can meet because of the layers in front of it
//! (a token refused, a body over its limits, a malformed path parameter)
//! are added by [`Layers`], which also describes each path parameter once
//! by its name, so a handler lists only its own.

use super::{control, features, invoke, oip};
use crate::node::Kind;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

/// `GET /openapi.json`: this description (built once).
#[utoipa::path(get, path = "/openapi.json", tag = "node",
    summary = "This description of the HTTP API (OpenAPI 3.1)",
    responses((status = 200, description = "The document", body = Object)))]
pub async fn serve() -> Response {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        Bytes::from(serde_json::to_vec(&document()).unwrap_or_else(|e| {
            // A schema that cannot serialise is a bug in this file.
            unreachable!("the OpenAPI document serialises: {e}")
        }))
    });
    ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
}

/// The description, as a document.
pub fn document() -> Document {
    Api::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "A serverless runtime for ML inference pipelines whose stages are WebAssembly components. The data plane (invocation, inference, features, health) and the control plane (`/v1/...` registry, tokens, audit, feature writes) share one listener unless the node runs with `--admin-listen`.",
    ),
    paths(
        invoke::invoke,
        invoke::invoke_path,
        invoke::pipeline,
        oip::server,
        oip::live,
        oip::ready,
        oip::model_metadata,
        oip::version_metadata,
        oip::model_ready,
        oip::version_ready,
        oip::infer,
        oip::infer_version,
        features::one,
        features::many,
        super::healthz,
        super::ready,
        serve,
        control::publish,
        control::list,
        control::show,
        control::version,
        control::delete,
        control::set_alias,
        control::remove_alias,
        control::rollback,
        control::rollout,
        control::rollout_status,
        control::set_guard,
        control::clear_guard,
        control::guard_status,
        control::set_invocation,
        control::metrics,
        control::drift,
        control::put_blob,
        control::status,
        control::create_token,
        control::tokens,
        control::revoke_token,
        control::audit_log,
        control::audit_verify,
        features::ingest,
        features::append,
        features::compact,
    ),
    components(schemas(ErrorBody, MessageJson, TensorJson, InferRequestJson, InferResponseJson, AliasRequest, InvocationRequest, RolloutRequest, BlobStored, NewTokenRequest, LookupRequest)),
    modifiers(&Layers, &Kinds),
    tags(
        (name = "invoke", description = "Run a function or a pipeline"),
        (name = "inference", description = "The Open Inference Protocol (KServe v2)"),
        (name = "features", description = "Feature tables"),
        (name = "health", description = "Liveness and readiness"),
        (name = "functions", description = "The registry: WebAssembly components"),
        (name = "models", description = "The registry: ONNX models"),
        (name = "pipelines", description = "The registry: pipeline manifests"),
        (name = "tables", description = "The registry: feature table schemas"),
        (name = "node", description = "Blobs and the node's status"),
        (name = "access", description = "API tokens and the audit log"),
    ),
)]
struct Api;

/// Every error's body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What was wrong and what to do.
    error: String,
    /// The stage (`name@version`) the error came from.
    stage: Option<String>,
    /// The request's id (`x-request-id`).
    request_id: Option<String>,
    /// On a 409: the state the request lost to.
    current: Option<serde_json::Value>,
}

/// `application/vnd.sluice.message+json`: named tensors and scalar fields.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MessageJson {
    /// Named tensors.
    tensors: Option<Vec<TensorJson>>,
    /// Named scalars: booleans, numbers or strings.
    #[schema(value_type = Option<Object>)]
    fields: Option<BTreeMap<String, serde_json::Value>>,
}

/// A tensor in JSON: its elements row-major in `data` (flat or nested).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TensorJson {
    /// Its name.
    name: String,
    /// One of BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64, BYTES.
    #[schema(example = "FP32")]
    datatype: String,
    /// Its dimensions.
    #[schema(example = json!([1, 4]))]
    shape: Vec<u64>,
    /// Its elements (absent when sent in binary after the JSON).
    #[schema(value_type = Option<Vec<Value>>, example = json!([5.1, 3.5, 1.4, 0.2]))]
    data: Option<serde_json::Value>,
    /// E.g. `binary_data_size` (OIP binary extension).
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Value>,
}

/// An OIP inference request (the JSON part, in the binary extension).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferRequestJson {
    /// Echoed in the response.
    #[schema(value_type = Option<String>)]
    id: Option<serde_json::Value>,
    /// E.g. `binary_data_output`.
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Value>,
    /// The model's inputs.
    inputs: Vec<TensorJson>,
    /// The outputs wanted (default: all), each `{name, parameters}`.
    #[schema(value_type = Option<Vec<Object>>)]
    outputs: Option<serde_json::Value>,
}

/// An OIP inference response (the JSON part, in the binary extension).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferResponseJson {
    /// The model (or pipeline) that answered.
    model_name: String,
    /// Its version.
    model_version: String,
    /// The request's `id`.
    #[schema(value_type = Option<String>)]
    id: Option<serde_json::Value>,
    /// Response parameters.
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Value>,
    /// The outputs.
    outputs: Vec<TensorJson>,
}

/// Writes the registry routes (`/v1/{kind}/...` in the handlers'
/// attributes) out once per kind, with the kind's tag, operation ids and
/// artifact media types.
struct Kinds;

impl Modify for Kinds {
    fn modify(&self, doc: &mut Document) {
        let templates: Vec<String> = doc
            .paths
            .paths
            .keys()
            .filter(|p| p.starts_with("/v1/{kind}"))
            .cloned()
            .collect();
        for template in templates {
            let Some(item) = doc.paths.paths.remove(&template) else {
                continue;
            };
            for kind in Kind::ALL {
                let mut item = item.clone();
                for op in operations(&mut item) {
                    specialise(op, kind);
                }
                let path = template.replace("{kind}", kind.plural());
                doc.paths.paths.insert(path, item);
            }
        }
    }
}

fn specialise(op: &mut Operation, kind: Kind) {
    // The quickstart's objects (`sluice up examples/quickstart`).
    let example = match kind {
        Kind::Function => "iris-features",
        Kind::Model | Kind::Pipeline => "iris",
        Kind::Table => "user_stats",
    };
    if let Some(params) = &mut op.parameters {
        params.retain(|p| !matches!(p, RefOr::T(p) if p.name == "kind"));
        for param in params.iter_mut() {
            if let RefOr::T(param) = param
                && param.name == "name"
            {
                *param = ParameterBuilder::from(param.clone())
                    .example(Some(example.into()))
                    .build();
            }
        }
    }
    op.tags = Some(vec![kind.plural().to_string()]);
    if let Some(id) = &mut op.operation_id {
        *id = format!("{id}_{}", kind.noun());
    }
    if let Some(summary) = &mut op.summary {
        *summary = summary.replace("an object", &format!("a {}", kind.noun()));
    }
    // A publish's body is the artifact itself, whatever its media type
    // says (octet-stream always does).
    if let Some(RefOr::T(body)) = &mut op.request_body
        && let Some(bytes) = body.content.get("application/octet-stream").cloned()
    {
        let named: &[&str] = match kind {
            Kind::Function => &["application/wasm"],
            Kind::Model => &[],
            Kind::Pipeline => &["application/toml", "application/json"],
            Kind::Table => &["application/toml"],
        };
        for media in named {
            let content = if *media == "application/json" {
                RefOr::T(Content::new(Some(Object::with_type(Type::Object))))
            } else {
                bytes.clone()
            };
            body.content.insert(media.to_string(), content);
        }
    }
}

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

/// What the layers in front of the handlers add: the bearer token scheme,
/// 401/403 on every route that takes a token, on every route with a body
/// the limits of [`hold_body`](super::hold_body) and
/// [`read_body`](super::read_body), and the path parameters' descriptions
/// and patterns (checked by the handlers; see [`describe`]).
struct Layers;

impl Modify for Layers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`sluice tokens create`); the control plane needs one with the route's role, the data plane one with `invoker` for names deployed with `invocation=token`.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            for op in operations(item) {
                for param in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(param) = param
                        && param.parameter_in == ParameterIn::Path
                    {
                        describe(path, param);
                    }
                }
                let in_path = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
                let responses = &mut op.responses.responses;
                if in_path && !responses.contains_key("400") {
                    responses.insert(
                        "400".into(),
                        error(
                            "a path parameter that is not a valid name, version or alias",
                            false,
                        ),
                    );
                }
                if op.security.is_some() {
                    responses.insert(
                        "401".into(),
                        error("no token, or a malformed, unknown or revoked one", true),
                    );
                    responses.insert(
                        "403".into(),
                        error("the token's role or name prefixes do not cover this", false),
                    );
                }
                if op.request_body.is_some() {
                    responses.insert(
                        "408".into(),
                        error("the body did not arrive in time", false),
                    );
                    responses.insert(
                        "413".into(),
                        error(
                            "the body is over its limit, or over all the node may hold at once",
                            false,
                        ),
                    );
                    responses.insert("503".into(), retry("the node is holding as many request bodies as it may; retry after `Retry-After` seconds"));
                }
            }
        }
    }
}

/// A name as the registry takes it.
const NAME: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";
/// `NAME[@VERSION|@ALIAS]`.
const SELECTED: &str = "^[a-z0-9][a-z0-9._-]{0,62}(@[a-z0-9][a-z0-9._-]{0,62})?$";

/// Give a path parameter its description, example (the quickstart's
/// objects; [`Kinds`] sets each kind's) and pattern: a parameter name
/// means the same on every route.
fn describe(path: &str, param: &mut Parameter) {
    let (description, example, pattern) = match param.name.as_str() {
        "name" if path.starts_with("/v1/tokens") => ("The token's name", "ci", NAME),
        "name" => ("The object's name", "iris", NAME),
        "version" if path.starts_with("/v2/") => ("A version number or alias", "1", NAME),
        "version" => ("A version number", "1", "^[0-9]{1,19}$"),
        "alias" => ("An alias, e.g. stable", "stable", NAME),
        "target" if path.starts_with("/fn/") => (
            "NAME, NAME@VERSION or NAME@ALIAS",
            "iris-features",
            SELECTED,
        ),
        "target" => ("NAME, NAME@VERSION or NAME@ALIAS", "iris", SELECTED),
        "model" => ("A model, or a pipeline served through OIP", "iris", NAME),
        "table" => (
            "A feature table (TABLE@VERSION on reads)",
            "user_stats",
            SELECTED,
        ),
        "entity" => (
            "The key (a composite key's parts joined by `|`)",
            "u007",
            ".*",
        ),
        _ => return,
    };
    *param = ParameterBuilder::from(param.clone())
        .description(Some(description))
        .example(Some(example.into()))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        ))
        .build();
}

/// An error response with the [`ErrorBody`] schema.
pub fn error(description: &str, challenge: bool) -> RefOr<DocResponse> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    if challenge {
        response = response.header(
            "www-authenticate",
            HeaderBuilder::new().description(Some("`Bearer`")).build(),
        );
    }
    RefOr::T(response.build())
}

/// A 503 with `Retry-After`.
fn retry(description: &str) -> RefOr<DocResponse> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .header(
                "retry-after",
                HeaderBuilder::new().description(Some("seconds")).build(),
            )
            .build(),
    )
}

/// `PUT .../aliases/{alias}`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AliasRequest {
    /// The version the alias is to point at.
    version: u64,
    /// The version it must point at now (`null`: it must not exist);
    /// absent: no precondition.
    expect: Option<u64>,
}

/// `PUT .../invocation`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InvocationRequest {
    /// `open` (anyone who reaches the node) or `token` (an invoker token).
    #[schema(example = "token")]
    invocation: String,
}

/// `POST .../rollout`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RolloutRequest {
    /// `start`, `set`, `promote` or `abort`.
    #[schema(example = "start")]
    action: String,
    /// `start`: the version to roll out.
    #[schema(example = 4)]
    to: Option<u64>,
    /// `start` and `set`: percent of the unqualified calls it takes.
    #[schema(example = 10)]
    weight: Option<u8>,
    /// `start`: copies only; answers come from the stable version.
    shadow: Option<bool>,
    /// `start`: `header:NAME` or `field:NAME`; a caller's key keeps its
    /// version.
    #[schema(example = "header:x-user")]
    sticky: Option<String>,
    /// `start`: roll back automatically when the new version breaks this.
    #[schema(value_type = Option<Object>, example = json!({"max_error_rate": 0.05, "max_p95_ratio": 1.5, "window_secs": 60, "min_requests": 20}))]
    slo: Option<serde_json::Value>,
}

/// `PUT /v1/blobs`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BlobStored {
    /// `sha256:...`
    digest: String,
}

/// `POST /v1/tokens`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewTokenRequest {
    /// The token's name (recorded as `created_by`).
    #[schema(example = "ci")]
    name: String,
    /// admin, deployer, invoker or viewer.
    #[schema(example = "deployer")]
    role: String,
    /// Name prefixes the token is limited to (default: every name).
    prefixes: Option<Vec<String>>,
}

/// `POST /v1/features/{table}/lookup`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LookupRequest {
    /// Keys: strings, integers, or arrays of a composite key's parts.
    #[schema(value_type = Vec<Object>, example = json!(["u007", "u008"]))]
    entities: Vec<serde_json::Value>,
    /// Feature names (default: all).
    features: Option<Vec<String>>,
}
