//! Watching a node: `/metrics` read by a real Prometheus text parser
//! (the `prometheus_client` package, in the test tools' venv); traces
//! received over OTLP/HTTP by a receiver in the test.

use crate::support::{ADMIN_TOKEN, Up, client, python};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One sample of a scrape.
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// `GET /metrics` with `token`, parsed by `prometheus_client`'s parser
/// (which refuses anything that is not the text format).
async fn scrape(base: &str) -> Vec<Sample> {
    let response = client()
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.expect("text");
    let mut parser = Command::new(python())
        .args([
            "-c",
            "import json, sys\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             print(json.dumps([[s.name, s.labels, s.value] \
               for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    parser
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = parser.wait_with_output().expect("parser");
    assert!(output.status.success(), "the parser refused:\n{text}");
    let parsed: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&output.stdout).expect("JSON");
    parsed
        .into_iter()
        .map(|(name, labels, value)| Sample {
            name,
            labels,
            value,
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn metrics_count_what_the_node_served() {
    let up = Up::start("examples/quickstart");
    let base = up.base();
    let iris =
        json!({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2});
    let post = |path: &str, body: &Value| client().post(format!("{base}{path}")).json(body).send();
    let (good, bad, direct, infer) = (37, 5, 11, 7);
    for _ in 0..good {
        assert_eq!(post("/p/iris", &iris).await.unwrap().status(), 200);
    }
    for _ in 0..bad {
        let response = post("/p/iris", &json!({"sepal_length": "tall"}))
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
    for _ in 0..direct {
        assert_eq!(
            post("/fn/iris-features", &iris).await.unwrap().status(),
            200
        );
    }
    let tensor = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]});
    for _ in 0..infer {
        let response = post("/v2/models/iris/infer", &tensor).await.unwrap();
        assert_eq!(response.status(), 200);
    }

    let m = scrape(&base).await;
    let iris_pipeline = [("pipeline", "iris"), ("version", "1")];
    let ok = |labels: &[(&'static str, &'static str)]| {
        let mut l = labels.to_vec();
        l.push(("result", "ok"));
        l
    };
    assert_eq!(
        value(&m, "sluice_pipeline_requests_total", &ok(&iris_pipeline)),
        good as f64
    );
    assert_eq!(
        value(
            &m,
            "sluice_pipeline_requests_total",
            &[("pipeline", "iris"), ("result", "invalid_input")]
        ),
        bad as f64
    );
    let count = value(
        &m,
        "sluice_pipeline_request_duration_seconds_count",
        &iris_pipeline,
    );
    let inf = value(
        &m,
        "sluice_pipeline_request_duration_seconds_bucket",
        &[("pipeline", "iris"), ("le", "+Inf")],
    );
    assert_eq!((count, inf), ((good + bad) as f64, (good + bad) as f64));
    assert!(
        value(
            &m,
            "sluice_pipeline_request_duration_seconds_sum",
            &iris_pipeline
        ) > 0.0
    );
    // Steps: the parser ran every request and refused the bad ones, the
    // model ran the good ones.
    let step = |name: &'static str, outcome: &'static str| {
        value(
            &m,
            "sluice_pipeline_step_duration_seconds_count",
            &[("pipeline", "iris"), ("step", name), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (
            step("parse", "ran"),
            step("parse", "failed"),
            step("classify", "ran")
        ),
        (good as f64, bad as f64, good as f64)
    );
    // The stage ran for the pipeline and for direct calls alike.
    let features = [("function", "iris-features"), ("version", "1")];
    assert_eq!(
        value(&m, "sluice_function_calls_total", &ok(&features)),
        (good + direct) as f64
    );
    assert_eq!(
        value(
            &m,
            "sluice_function_calls_total",
            &[("function", "iris-features"), ("result", "invalid_input")]
        ),
        bad as f64
    );
    assert_eq!(
        value(
            &m,
            "sluice_function_instantiation_duration_seconds_count",
            &features
        ),
        (good + bad + direct) as f64
    );
    assert!(value(&m, "sluice_function_memory_peak_bytes_sum", &features) > 0.0);
    assert_eq!(
        value(&m, "sluice_function_instances_active", &features),
        0.0
    );
    assert!(
        value(
            &m,
            "sluice_function_cold_start_duration_seconds_count",
            &features
        ) >= 1.0
    );
    let model = [("model", "iris"), ("version", "1")];
    assert_eq!(
        value(&m, "sluice_model_runs_total", &ok(&model)),
        (good + infer) as f64
    );
    // HTTP, by route pattern (not by name) and status.
    let route = |path: &'static str, status: &'static str| {
        value(
            &m,
            "sluice_http_requests_total",
            &[("route", path), ("method", "POST"), ("status", status)],
        )
    };
    assert_eq!(
        (route("/p/{target}", "200"), route("/p/{target}", "400")),
        (good as f64, bad as f64)
    );
    assert_eq!(route("/fn/{target}", "200"), direct as f64);
    assert_eq!(route("/v2/models/{model}/infer", "200"), infer as f64);
    assert_eq!(
        value(
            &m,
            "sluice_http_request_duration_seconds_count",
            &[("route", "/p/{target}"), ("method", "POST")]
        ),
        (good + bad) as f64
    );
    // The store was read (deploys, heads) and the caches were used.
    assert!(
        value(
            &m,
            "sluice_store_requests_total",
            &[("operation", "get"), ("result", "ok")]
        ) > 0.0
    );
    assert!(
        value(
            &m,
            "sluice_store_request_duration_seconds_count",
            &[("operation", "write")]
        ) > 0.0
    );
    assert!(
        value(&m, "sluice_cache_hits_total", &[("cache", "templates")])
            >= (good + direct) as f64 - 2.0
    );
    assert!(value(&m, "sluice_resident_memory_bytes", &[]) > 1e6);
    // The scrape itself is in flight while it is answered.
    assert_eq!(value(&m, "sluice_http_requests_in_flight", &[]), 1.0);

    // A second scrape sees the first one counted, by its route.
    let again = scrape(&base).await;
    assert_eq!(
        value(
            &again,
            "sluice_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
}

/// A span as an OTLP receiver got it.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    trace: String,
    id: String,
    parent: String,
}

/// A minimal OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, every span kept.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = kept.lock().unwrap();
                for span in request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                {
                    kept.push(Received {
                        name: span.name.clone(),
                        trace: hex(&span.trace_id),
                        id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                    });
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Multi-threaded: the receiver answers while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_the_callers_trace_through_pipeline_steps_and_host_calls() {
    let (endpoint, spans) = otlp_receiver().await;
    let up = Up::start_with(
        "examples/quickstart",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let base = up.base();
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = client()
        .post(format!("{base}/p/iris"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .header("tracestate", "vendor=opaque")
        .json(&json!({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The answer names the node's span in the caller's trace.
    let answered = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(answered.starts_with(&format!("00-{trace}-")), "{answered}");
    // A call without a traceparent starts a trace of its own.
    let alone = client()
        .post(format!("{base}/fn/iris-features"))
        .json(&json!({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}))
        .send()
        .await
        .unwrap();
    let own = alone.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!own.contains(trace), "{own}");

    let in_trace = |name: &str| -> Vec<Received> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace == trace && s.name == name)
            .cloned()
            .collect()
    };
    let arrived = crate::support::eventually(Duration::from_secs(20), || {
        ["request", "pipeline", "step", "stage", "inference"]
            .iter()
            .all(|n| !in_trace(n).is_empty())
            && in_trace("step").len() == 2
    });
    assert!(arrived, "spans received: {:?}", spans.lock().unwrap());
    let one = |name: &str| {
        let found = in_trace(name);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        found[0].clone()
    };
    let request = one("request");
    assert_eq!(request.parent, caller);
    assert_eq!(answered, format!("00-{trace}-{}-01", request.id));
    let pipeline = one("pipeline");
    assert_eq!(pipeline.parent, request.id);
    let steps = in_trace("step");
    assert!(steps.iter().all(|s| s.parent == pipeline.id), "{steps:?}");
    // The parse step ran the stage; the classify step ran the model.
    let stage = one("stage");
    let inference = one("inference");
    assert!(steps.iter().any(|s| s.id == stage.parent), "{stage:?}");
    assert!(
        steps.iter().any(|s| s.id == inference.parent),
        "{inference:?}"
    );
    assert_ne!(stage.parent, inference.parent);
    // The call without a traceparent: a root span in a trace of its own.
    let own_trace = own.split('-').nth(1).unwrap().to_string();
    let roots = crate::support::eventually(Duration::from_secs(20), || {
        spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.trace == own_trace && s.name == "request" && s.parent.is_empty())
    });
    assert!(roots);
}
