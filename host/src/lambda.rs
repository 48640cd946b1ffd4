//! AWS Lambda as a front door: the node's own router answers Lambda
//! events, so a function or model behaves the same behind `sluice serve`,
//! API Gateway, a Function URL or an ALB.
//!
//! - HTTP events (API Gateway REST API payload v1, HTTP API payload v2,
//!   Function URLs, ALB target groups) become HTTP requests to the router
//!   and its response goes back in the shape that event source expects.
//! - A direct `Invoke` carries JSON naming what to run:
//!   `{"function": "NAME[@VERSION|@ALIAS]", "input": ...}` answers with the
//!   function's output, `{"pipeline": "NAME[@VERSION|@ALIAS]", "input":
//!   ...}` with the pipeline's, and `{"model": "NAME", "version": "N"?, "inputs":
//!   [...], ...}` (an Open Inference Protocol request plus the model's
//!   name) with the inference response. A failure is a Lambda error
//!   (`errorType` `Sluice.NotFound`, `Sluice.BadRequest`, ...).
//!
//! Every request carries the Lambda request id as its `x-request-id`, so
//! the node's log lines name it.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use lambda_http::lambda_runtime::{self, Diagnostic, LambdaEvent};
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, RequestExt, Service, service_fn};
use serde_json::{Map, Value};
use std::time::Instant;
use tower::ServiceExt;

/// The environment the Lambda runtime API client needs; Lambda sets all of
/// them, and a missing one means this is not running under Lambda.
const LAMBDA_ENV: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// Whether this process was started by Lambda (or its emulator).
pub fn under_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// The function's memory in bytes, as Lambda configured it.
pub fn function_memory_bytes() -> Option<u64> {
    std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()?
        .parse::<u64>()
        .ok()
        .map(|mb| mb << 20)
}

/// Events one environment handles at once: `AWS_LAMBDA_MAX_CONCURRENCY`
/// (Lambda Managed Instances), else 1.
pub fn max_concurrency() -> u32 {
    std::env::var("AWS_LAMBDA_MAX_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Why the Lambda loop could not run.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// A variable Lambda always sets is missing.
    #[error(
        "{0} is not set: `sluice lambda` runs under AWS Lambda (or an emulator such as `cargo lambda watch`), which sets {LAMBDA_ENV:?}"
    )]
    NotUnderLambda(&'static str),
    /// The runtime API failed.
    #[error("the Lambda runtime API failed: {0}")]
    Runtime(String),
}

/// Serve Lambda events with `router` until the runtime API goes away.
/// `init_started` is when the process started, for the cold-start log.
pub async fn run(router: Router, init_started: Instant) -> Result<(), LambdaError> {
    if let Some(missing) = LAMBDA_ENV.iter().find(|v| std::env::var_os(v).is_none()) {
        return Err(LambdaError::NotUnderLambda(missing));
    }
    tracing::info!(
        init_ms = init_started.elapsed().as_secs_f64() * 1e3,
        "sluice lambda: init done, polling for events"
    );
    let first = std::sync::Arc::new(std::sync::Once::new());
    let handler = service_fn(move |event: LambdaEvent<Value>| {
        let (router, first) = (router.clone(), first.clone());
        async move {
            let started = Instant::now();
            let result = handle(router, event).await;
            first.call_once(|| {
                tracing::info!(
                    first_request_ms = started.elapsed().as_secs_f64() * 1e3,
                    since_start_ms = init_started.elapsed().as_secs_f64() * 1e3,
                    "sluice lambda: first event answered"
                )
            });
            result
        }
    });
    lambda_runtime::run_concurrent(handler)
        .await
        .map_err(|e| LambdaError::Runtime(e.to_string()))
}

/// Report an error that stopped initialisation to the runtime API's
/// `/init/error`, so Lambda shows it (and does not retry blindly).
pub async fn report_init_error(message: &str) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let base = if api.starts_with("http://") || api.starts_with("https://") {
        api
    } else {
        format!("http://{api}")
    };
    let body = serde_json::json!({"errorType": "Runtime.InitError", "errorMessage": message});
    let sent = reqwest::Client::new()
        .post(format!("{base}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
        .json(&body)
        .send()
        .await;
    if let Err(e) = sent {
        tracing::error!(error = %e, "could not report the init error to the runtime API");
    }
}

/// One event: an HTTP event through the router, or a direct invocation.
async fn handle(router: Router, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let LambdaEvent { payload, context } = event;
    let request_id = context.request_id.clone();
    if is_http_event(&payload) {
        let request: LambdaRequest = serde_json::from_value(payload).map_err(|e| {
            diagnostic(
                "Sluice.InvalidEvent",
                format!("this HTTP event does not parse: {e}"),
            )
        })?;
        let service = router.map_request(prepare);
        // The adapter itself is not `Send`; only its future crosses the await.
        let future = Adapter::from(service).call(LambdaEvent::new(request, context));
        let Ok(response) = future.await;
        return serde_json::to_value(response)
            .map_err(|e| diagnostic("Sluice.Internal", e.to_string()));
    }
    let (uri, body) = direct_target(payload)?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(Body::from(body))
        .map_err(|e| diagnostic("Sluice.InvalidEvent", e.to_string()))?;
    let Ok(response) = router.oneshot(request).await;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| diagnostic("Sluice.Internal", e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(diagnostic(error_type(status), message));
    }
    if let Ok(json) = serde_json::from_slice(&bytes) {
        return Ok(json);
    }
    String::from_utf8(bytes.to_vec()).map(Value::String).map_err(|_| {
        diagnostic(
            "Sluice.BinaryOutput",
            "the function answered with bytes that are not text; invoke it through a Function URL or API Gateway, which carry binary bodies",
        )
    })
}

/// Fit an HTTP event's request to the router: the Lambda request id
/// becomes its `x-request-id` (unless the caller sent one), so the node's
/// log lines name it; the API Gateway stage (`/prod/...`), which lambda_http
/// puts in front of the path, is not part of a route.
fn prepare(mut request: lambda_http::Request) -> lambda_http::Request {
    if let Some(id) = request
        .lambda_context_ref()
        .and_then(|c| c.request_id.parse().ok())
    {
        request.headers_mut().entry("x-request-id").or_insert(id);
    }
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    if let Some(stage) = stage.filter(|s| s != "$default") {
        let prefix = format!("/{stage}");
        let uri = request.uri();
        if let Some(rest) = uri
            .path()
            .strip_prefix(&prefix)
            .filter(|r| r.starts_with('/'))
        {
            let path_and_query = match uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_string(),
            };
            if let Ok(stripped) = path_and_query.parse() {
                *request.uri_mut() = stripped;
            }
        }
    }
    request
}

/// API Gateway (REST: `httpMethod`; HTTP API and Function URLs:
/// `requestContext.http`) and ALB (`requestContext.elb`) events.
fn is_http_event(payload: &Value) -> bool {
    let context = &payload["requestContext"];
    (payload.get("httpMethod").is_some() && payload.get("requestContext").is_some())
        || context.get("http").is_some()
        || context.get("elb").is_some()
}

/// The router path and JSON body of a direct invocation.
fn direct_target(payload: Value) -> Result<(String, Vec<u8>), Diagnostic> {
    let Value::Object(mut fields) = payload else {
        return Err(invalid_direct());
    };
    let text = |fields: &mut Map<String, Value>, key: &str| match fields.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(diagnostic(
            "Sluice.InvalidEvent",
            format!("`{key}` must be a string, not {other}"),
        )),
    };
    for (key, route) in [("function", "fn"), ("pipeline", "p")] {
        let Some(target) = text(&mut fields, key)? else {
            continue;
        };
        let input = fields.remove("input").unwrap_or(Value::Null);
        if let Some(extra) = fields.keys().next() {
            return Err(diagnostic(
                "Sluice.InvalidEvent",
                format!(
                    "unexpected field `{extra}`: a {key} invocation is {{\"{key}\": \"NAME\", \"input\": ...}}"
                ),
            ));
        }
        let body = serde_json::to_vec(&input).unwrap_or_default();
        return Ok((format!("/{route}/{}", escape(&target)), body));
    }
    if let Some(model) = text(&mut fields, "model")? {
        let path = match text(&mut fields, "version")? {
            Some(v) => format!(
                "/v2/models/{}/versions/{}/infer",
                escape(&model),
                escape(&v)
            ),
            None => format!("/v2/models/{}/infer", escape(&model)),
        };
        let body = serde_json::to_vec(&Value::Object(fields)).unwrap_or_default();
        return Ok((path, body));
    }
    Err(invalid_direct())
}

fn invalid_direct() -> Diagnostic {
    diagnostic(
        "Sluice.InvalidEvent",
        "this event is neither an HTTP event (API Gateway REST or HTTP API, Function URL, ALB) nor a direct invocation; invoke with {\"function\": \"NAME\", \"input\": ...}, {\"pipeline\": \"NAME\", \"input\": ...} or {\"model\": \"NAME\", \"inputs\": [...]}",
    )
}

/// A name as one path segment (names are restricted, but an event is
/// user input: nothing in it may reach another route).
fn escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Lambda's `errorType` for a failed call's status.
fn error_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "Sluice.BadRequest",
        StatusCode::NOT_FOUND => "Sluice.NotFound",
        StatusCode::PAYLOAD_TOO_LARGE => "Sluice.PayloadTooLarge",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "Sluice.Timeout",
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "Sluice.Unavailable",
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => "Sluice.Forbidden",
        s if s.is_client_error() => "Sluice.BadRequest",
        _ => "Sluice.FunctionError",
    }
}

fn diagnostic(error_type: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        error_type: error_type.into(),
        error_message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_told_apart_by_their_markers() {
        assert!(is_http_event(
            &json!({"httpMethod": "POST", "requestContext": {"stage": "prod"}})
        ));
        assert!(is_http_event(
            &json!({"requestContext": {"http": {"method": "POST"}}})
        ));
        assert!(is_http_event(
            &json!({"httpMethod": "POST", "requestContext": {"elb": {}}})
        ));
        assert!(!is_http_event(&json!({"function": "f", "input": {}})));
        assert!(!is_http_event(&json!({"httpMethod": "POST"})));
    }

    #[test]
    fn direct_invocations_name_a_function_a_pipeline_or_a_model() {
        let (path, body) =
            direct_target(json!({"function": "iris@stable", "input": {"x": 1}})).expect("function");
        assert_eq!(path, "/fn/iris@stable");
        assert_eq!(body, br#"{"x":1}"#);
        let (path, body) =
            direct_target(json!({"pipeline": "iris@2", "input": {"y": 2}})).expect("pipeline");
        assert_eq!(path, "/p/iris@2");
        assert_eq!(body, br#"{"y":2}"#);
        let (path, body) =
            direct_target(json!({"model": "iris", "version": "2", "inputs": []})).expect("model");
        assert_eq!(path, "/v2/models/iris/versions/2/infer");
        assert_eq!(body, br#"{"inputs":[]}"#);
        // Nothing in an event reaches another route.
        let (path, _) = direct_target(json!({"function": "../v1/functions?x"})).unwrap();
        assert_eq!(path, "/fn/..%2Fv1%2Ffunctions%3Fx");
        for bad in [
            json!([1, 2]),
            json!({"input": 1}),
            json!({"function": 7}),
            json!({"function": "f", "inptu": 1}),
            json!({"pipeline": "p", "function": "f"}),
        ] {
            let error = direct_target(bad.clone()).expect_err("refused");
            assert_eq!(error.error_type, "Sluice.InvalidEvent", "{bad}");
        }
    }
}
