//! AWS Lambda: the real `sluice` binary, started with no arguments as a
//! Lambda `bootstrap` would be, polling cargo-lambda's Runtime API
//! emulator (`cargo lambda watch --only-lambda-apis`), with events sent the
//! way Lambda's callers send them: the Invoke API with API Gateway, ALB and
//! direct payloads (fixtures in `tests/e2e/events/`), and Function URLs.

use crate::s3::S3Server;
use crate::support::{cargo_lambda, client, component, repo, sluice};
use base64::Engine;
use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The emulator's Runtime and Invoke APIs on one port; killed on drop.
struct Emulator {
    child: Child,
    port: u16,
}

impl Emulator {
    fn start(logs: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(logs.join("emulator.log")).expect("log");
        let child = Command::new(cargo_lambda())
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()])
            .current_dir(repo())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn cargo lambda watch");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the emulator did not listen within 60 s; log: {}",
                std::fs::read_to_string(logs.join("emulator.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Start `sluice` as the function, on the store `store` with `env`.
    fn function(&self, logs: &Path, store: &str, env: &[(&str, String)]) -> Child {
        let log = std::fs::File::create(logs.join("function.log")).expect("log");
        sluice()
            .env("AWS_LAMBDA_RUNTIME_API", self.url("/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("SLUICE_STORE", store)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice")
    }

    /// Send `payload` through the Invoke API: (status, function error
    /// header, body).
    async fn invoke(&self, payload: &Value) -> (u16, Option<String>, Value) {
        let response = client()
            .post(self.url("/2015-03-31/functions/_/invocations"))
            .json(payload)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("invoke");
        let status = response.status().as_u16();
        let error = response
            .headers()
            .get("x-amz-function-error")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        (status, error, response.json().await.expect("JSON answer"))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a function process on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn event(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(format!("tests/e2e/events/{name}.json")))
        .expect("event fixture");
    serde_json::from_str(&text).expect("event JSON")
}

/// Deploy the echo stage as `echo`, the iris model as `iris` and a
/// pipeline `relay` (echo, then a field test that skips) into `store`.
fn populate(store: &str, env: &[(&str, String)]) {
    let folder = tempfile::tempdir().expect("tempdir");
    let relay = folder.path().join("relay.toml");
    std::fs::write(
        &relay,
        r#"
name = "relay"
[[step]]
name = "echo"
function = "echo"
[[step]]
name = "never"
function = "echo"
when = { field = "calls", equals = 7 }
"#,
    )
    .expect("pipeline manifest");
    for args in [
        vec![
            "deploy".to_string(),
            component("guest-misbehave").display().to_string(),
            "--name".into(),
            "echo".into(),
        ],
        vec![
            "models".into(),
            "push".into(),
            repo()
                .join("examples/models/iris-logreg.onnx")
                .display()
                .to_string(),
            "--name".into(),
            "iris".into(),
        ],
        vec!["deploy".into(), relay.display().to_string()],
    ] {
        let output = sluice()
            .args(&args)
            .args(["--store", store])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("sluice");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The iris model's answer to [1, 2, 3, 4], as `sluice serve` gives it.
fn assert_iris(answer: &Value) {
    assert_eq!(answer["model_name"], "iris");
    assert_eq!(answer["outputs"][0]["name"], "label");
    assert_eq!(answer["outputs"][0]["data"], json!([2]));
    let p = answer["outputs"][1]["data"]
        .as_array()
        .expect("probabilities");
    assert_eq!(p.len(), 3);
    assert!((p[2].as_f64().unwrap() - 1.0).abs() < 1e-6, "{answer}");
}

/// What the echo stage answered (a message of its input's bytes and a
/// `calls` field): (text, calls).
fn echoed(message: &Value) -> (&str, i64) {
    (
        message["body"]["text"].as_str().expect("echoed text"),
        message["fields"]["calls"].as_i64().expect("calls"),
    )
}

fn decode(body: &Value, base64: bool) -> Vec<u8> {
    let text = body.as_str().expect("body");
    if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64")
    } else {
        text.as_bytes().to_vec()
    }
}

#[tokio::test]
async fn every_event_type_round_trips_through_the_binary_under_the_emulator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store").display().to_string();
    populate(&store, &[]);
    let emulator = Emulator::start(dir.path());
    let _function = Running(emulator.function(dir.path(), &store, &[]));

    // API Gateway REST API (payload v1): the stage is not part of the route;
    // the echo's message comes back as JSON text.
    let (status, error, answer) = emulator.invoke(&event("apigw-rest")).await;
    assert_eq!((status, error), (200, None), "{answer}");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["isBase64Encoded"], false);
    // REST API responses carry their headers as multi-value headers.
    let headers = &answer["multiValueHeaders"];
    assert_eq!(
        headers["content-type"],
        json!(["application/vnd.sluice.message+json"]),
        "{answer}"
    );
    assert_eq!(headers["x-sluice-stage"], json!(["echo@1"]));
    let message: Value = serde_json::from_slice(&decode(&answer["body"], false)).expect("JSON");
    assert_eq!(echoed(&message), ("hello from API Gateway", 1));
    // The Lambda request id names the request.
    assert!(
        headers["x-request-id"][0]
            .as_str()
            .is_some_and(|id| id.len() >= 32),
        "{answer}"
    );

    // A stage that traps is a 500 in API Gateway's shape, not a Lambda error.
    let mut panic = event("apigw-rest");
    panic["body"] = json!("panic");
    let (status, error, answer) = emulator.invoke(&panic).await;
    assert_eq!((status, error), (200, None), "{answer}");
    assert_eq!(answer["statusCode"], 500, "{answer}");
    let body: Value = serde_json::from_slice(&decode(&answer["body"], false)).expect("JSON");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("trap")
            || body["error"].as_str().unwrap_or_default().contains("panic"),
        "{body}"
    );
    // A missing function is a 404.
    let mut missing = event("apigw-rest");
    missing["path"] = json!("/fn/nope");
    let (_, _, answer) = emulator.invoke(&missing).await;
    assert_eq!(answer["statusCode"], 404, "{answer}");

    // API Gateway HTTP API (payload v2): a base64 body in, the OIP model
    // route, JSON out as text.
    let (status, _, answer) = emulator.invoke(&event("apigw-http")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["isBase64Encoded"], false);
    assert_eq!(answer["headers"]["content-type"], "application/json");
    let inference: Value =
        serde_json::from_slice(&decode(&answer["body"], false)).expect("JSON body");
    assert_iris(&inference);

    // ALB: a version pin in the path; ALB's own response shape.
    let (_, _, answer) = emulator.invoke(&event("alb")).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["statusDescription"], "200 OK");
    assert_eq!(answer["headers"]["x-sluice-stage"], "echo@1");
    let message: Value =
        serde_json::from_slice(&decode(&answer["body"], answer["isBase64Encoded"] == true))
            .expect("JSON");
    assert_eq!(echoed(&message).0, "hello from the load balancer");

    // A Function URL: a real HTTP request, translated by the emulator.
    let response = client()
        .post(emulator.url("/lambda-url/_/fn/echo"))
        .header("content-type", "text/plain")
        .body("hello from a function URL")
        .send()
        .await
        .expect("function URL");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-sluice-stage"], "echo@1");
    let message: Value = response.json().await.expect("JSON");
    assert_eq!(echoed(&message).0, "hello from a function URL");
    let response = client()
        .post(emulator.url("/lambda-url/_/v2/models/iris/infer"))
        .json(&json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}))
        .send()
        .await
        .expect("function URL");
    assert_eq!(response.status(), 200);
    assert_iris(&response.json().await.expect("JSON"));
    let response = client()
        .post(emulator.url("/lambda-url/_/p/relay"))
        .header("content-type", "text/plain")
        .body("through a pipeline")
        .send()
        .await
        .expect("function URL");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-sluice-pipeline"], "relay@1");
    let timing = response.headers()["server-timing"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(
        timing.contains("echo;dur=")
            && timing.contains(r#"never;dur="#)
            && timing.contains(r#"desc="skipped""#),
        "{timing}"
    );
    let message: Value = response.json().await.expect("JSON");
    assert_eq!(echoed(&message), ("through a pipeline", 1));

    // Direct invocations: a function's output, or an inference response.
    let (status, error, answer) = emulator
        .invoke(&json!({"function": "echo", "input": {"greeting": "hi"}}))
        .await;
    assert_eq!((status, error), (200, None));
    assert_eq!(echoed(&answer).0, r#"{"greeting":"hi"}"#);
    let (status, error, answer) = emulator
        .invoke(&json!({"pipeline": "relay", "input": {"greeting": "hi"}}))
        .await;
    assert_eq!((status, error), (200, None));
    assert_eq!(echoed(&answer), (r#"{"greeting":"hi"}"#, 1));
    let (_, _, answer) = emulator
        .invoke(&json!({"model": "iris", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}))
        .await;
    assert_iris(&answer);
    // ... and failures in Lambda's error shape.
    for (payload, error_type, message) in [
        (
            json!({"function": "nope", "input": 1}),
            "Sluice.NotFound",
            "function `nope` not found",
        ),
        (
            json!({"pipeline": "nope", "input": 1}),
            "Sluice.NotFound",
            "pipeline `nope` not found",
        ),
        (
            json!({"model": "iris", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}),
            "Sluice.BadRequest",
            "X",
        ),
        (
            json!({"hello": "world"}),
            "Sluice.InvalidEvent",
            "neither an HTTP event",
        ),
    ] {
        // The emulator answers a function error with a 500 (Lambda's
        // Invoke API: 200 and X-Amz-Function-Error); the body is the same.
        let (status, _, answer) = emulator.invoke(&payload).await;
        assert_eq!(status, 500, "{answer}");
        assert_eq!(answer["errorType"], error_type, "{answer}");
        assert!(
            answer["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{answer}"
        );
    }

    // Logs: JSON lines on stdout carrying the Lambda request id.
    let log = std::fs::read_to_string(dir.path().join("function.log")).expect("log");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["init_ms"].is_number()), "{log}");
    assert!(
        lines.iter().any(|l| l["first_request_ms"].is_number()),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "served" && l["span"]["request_id"].is_string()),
        "{log}"
    );
}

#[tokio::test]
async fn a_cold_start_from_s3_loads_precompiled_artifacts_and_a_bad_store_is_an_init_error() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = s3.location("lambda");
    populate(&store, &s3.env());
    let emulator = Emulator::start(dir.path());
    let function = Running(emulator.function(dir.path(), &store, &s3.env()));
    let (_, error, answer) = emulator
        .invoke(&json!({"function": "echo", "input": "cold"}))
        .await;
    assert_eq!(error, None, "{answer}");
    assert_eq!(echoed(&answer), ("\"cold\"", 1));
    // The deploy stored the compiled artifact; the cold function loaded it
    // from S3 instead of compiling.
    let status: Value = client()
        .get(emulator.url("/lambda-url/_/v1/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["counters"]["artifacts_loaded"], 1, "{status}");
    assert_eq!(status["counters"]["components_compiled"], 0, "{status}");
    drop(function);

    // A store that cannot open: Lambda hears it through /init/error, which
    // the emulator hands to the waiting caller.
    let waiting = tokio::spawn({
        let url = emulator.url("/2015-03-31/functions/_/invocations");
        async move {
            client()
                .post(url)
                .json(&json!({"function": "echo", "input": 1}))
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .expect("invoke")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    });
    // Let the invocation reach the emulator's queue first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bad = emulator.function(dir.path(), "s3://", &[]);
    let exit = bad.wait().expect("exit");
    assert!(!exit.success());
    let answer = waiting.await.expect("task");
    assert_eq!(answer["errorType"], "Runtime.InitError", "{answer}");
    assert!(
        answer["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("no bucket named")),
        "{answer}"
    );
}

#[tokio::test]
async fn the_image_pipeline_classifies_a_png_through_a_function_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store").display().to_string();
    crate::image::deploy(&["--store", &store]);
    let emulator = Emulator::start(dir.path());
    let _function = Running(emulator.function(dir.path(), &store, &[]));
    for image in ["upright.png", "flipped.png"] {
        let response = client()
            .post(emulator.url("/lambda-url/_/p/image-classify"))
            .header("content-type", "image/png")
            .body(std::fs::read(crate::image::image_path(image)).expect("image"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("function URL");
        assert_eq!(response.status(), 200, "{image}");
        assert_eq!(response.headers()["x-sluice-pipeline"], "image-classify@1");
        let answer: Value = response.json().await.expect("JSON");
        crate::image::assert_top_k(
            image,
            &crate::image::tensor(&answer, "labels")["data"],
            &crate::image::tensor(&answer, "scores")["data"],
        );
    }
}
