//! Models: the example models (trained here, exported to ONNX) pushed to a
//! real node and called through the Open Inference Protocol and through a
//! predictor stage; their outputs must equal onnxruntime's references.

use crate::support::{Server, client, repo};
use serde_json::{Value, json};

/// The example models, and the input shapes to pin at push.
const MODELS: &[(&str, &[(&str, &str)])] = &[
    ("iris-logreg", &[]),
    ("iris-gbt", &[]),
    ("digits-mlp", &[]),
    ("iris-scaled-logreg", &[]),
    ("iris-normalized-logreg", &[]),
    ("diabetes-gbr", &[]),
    ("diabetes-gbr-double", &[]),
    ("diabetes-rf", &[]),
    ("iris-rf", &[]),
    ("cancer-gbt", &[]),
    ("cancer-rf", &[]),
    ("tabular-pipeline", &[]),
    ("xgb-iris", &[]),
    ("xgb-cancer", &[]),
    ("lgbm-iris", &[]),
    ("lgbm-diabetes", &[]),
    ("digits-mnb", &[]),
    ("diabetes-svr", &[]),
    ("diabetes-svr-poly", &[]),
    ("text-direction", &[("input_shape.x", "1,3,48,192")]),
];

/// Models whose floats differ from onnxruntime's by more than rounding
/// (matrix products summed in another order): compared within 1e-4.
const NEURAL: &[&str] = &["digits-mlp", "text-direction"];

fn model_file(name: &str) -> Vec<u8> {
    std::fs::read(repo().join(format!("examples/models/{name}.onnx"))).expect("model file")
}

pub(crate) fn reference(name: &str) -> Value {
    let text =
        std::fs::read_to_string(repo().join(format!("examples/models/{name}.reference.json")))
            .expect("reference file");
    serde_json::from_str(&text).expect("reference JSON")
}

/// Push the example model `name` under its own name.
pub(crate) async fn push(server: &Server, name: &str, query: &[(&str, &str)]) -> (u16, Value) {
    push_as(server, name, name, query).await
}

/// Push the example model `file` as model `name`.
async fn push_as(server: &Server, name: &str, file: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .put(server.url(&format!("/v1/models/{name}")))
        .query(query)
        .body(model_file(file))
        .send()
        .await
        .expect("push");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The reference's inputs as an OIP request.
pub(crate) fn infer_request(reference: &Value) -> Value {
    let inputs: Vec<Value> = reference["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(name, t)| {
            let datatype = match t["datatype"].as_str() {
                Some("float64") => "FP64",
                _ => "FP32",
            };
            json!({"name": name, "datatype": datatype, "shape": t["shape"], "data": t["data"]})
        })
        .collect();
    json!({ "id": "ref-1", "inputs": inputs })
}

/// Compare an output with onnxruntime's: integers equal, floats within
/// 1e-5 relative (with a 1e-7 floor for values at zero), or 1e-4 absolute
/// for the [`NEURAL`] models.
pub(crate) fn assert_matches(model: &str, name: &str, got: &Value, want: &Value) {
    let tolerance = match NEURAL.contains(&model) {
        true => Tolerance::absolute(1e-4),
        false => Tolerance::RELATIVE,
    };
    if let Err(e) = compare(got, want, tolerance) {
        panic!("{model}/{name}: {e}");
    }
}

/// How far a float may be from the reference's `w`:
/// `relative · |w| + absolute`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tolerance {
    pub relative: f64,
    pub absolute: f64,
}

impl Tolerance {
    /// 1e-5 relative, with a 1e-7 floor for values at zero.
    pub(crate) const RELATIVE: Self = Self {
        relative: 1e-5,
        absolute: 1e-7,
    };

    pub(crate) fn absolute(absolute: f64) -> Self {
        Self {
            relative: 0.0,
            absolute,
        }
    }
}

/// An output against onnxruntime's: the same shape, integers (labels)
/// equal, floats within `tolerance`, and never a non-finite value (JSON
/// `null`) where the reference has a number. When it matches, the largest
/// error as a share of what was allowed.
pub(crate) fn compare(got: &Value, want: &Value, tolerance: Tolerance) -> Result<f64, String> {
    if got["shape"] != want["shape"] {
        return Err(format!(
            "shape {} against onnxruntime's {}",
            got["shape"], want["shape"]
        ));
    }
    let (got, want) = (
        got["data"].as_array().ok_or("no data")?,
        want["data"].as_array().ok_or("reference without data")?,
    );
    if got.len() != want.len() {
        return Err(format!(
            "{} values against onnxruntime's {}",
            got.len(),
            want.len()
        ));
    }
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_i64() || w.is_u64() || w.is_string() {
            if g != w {
                return Err(format!("[{i}] is {g}, onnxruntime's {w}"));
            }
            continue;
        }
        let w = w
            .as_f64()
            .ok_or_else(|| format!("[{i}]: reference {w} is not a number"))?;
        let g = g
            .as_f64()
            .ok_or_else(|| format!("[{i}] is {g} (non-finite) where onnxruntime has {w}"))?;
        let allowed = tolerance.relative * w.abs() + tolerance.absolute;
        if (g - w).abs() > allowed {
            return Err(format!("[{i}] is {g}, onnxruntime's {w}"));
        }
        worst = worst.max((g - w).abs() / allowed);
    }
    Ok(worst)
}

#[tokio::test]
async fn every_example_model_matches_onnxruntime_over_the_open_inference_protocol() {
    let server = Server::start();
    for (name, query) in MODELS {
        let (status, pushed) = push(&server, name, query).await;
        assert_eq!(status, 201, "{name}: {pushed}");
        assert_eq!(pushed["model"]["version"], 1);
    }
    for (name, _) in MODELS {
        let reference = reference(name);
        let (status, answer) = post(
            &server,
            &format!("/v2/models/{name}/infer"),
            &infer_request(&reference),
        )
        .await;
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(answer["model_name"], *name);
        assert_eq!(answer["model_version"], "1");
        assert_eq!(answer["id"], "ref-1");
        let outputs = answer["outputs"].as_array().expect("outputs");
        let want = reference["outputs"].as_object().expect("outputs");
        assert_eq!(outputs.len(), want.len(), "{name}: {answer}");
        for output in outputs {
            let output_name = output["name"].as_str().expect("name");
            assert_matches(name, output_name, output, &want[output_name]);
        }
    }
}

#[tokio::test]
async fn the_open_inference_protocol_answers_metadata_readiness_and_errors() {
    let server = Server::start();
    assert_eq!(push(&server, "iris-logreg", &[]).await.0, 201);

    let (status, v) = server.get("/v2").await;
    assert_eq!((status, v["name"].as_str()), (200, Some("sluice")));
    assert_eq!(server.get("/v2/health/live").await.0, 200);
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    let (status, meta) = server.get("/v2/models/iris-logreg").await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(
        meta["inputs"],
        json!([{"name": "X", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(
        meta["outputs"][1],
        json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]})
    );
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(server.get("/v2/models/iris-logreg/ready").await.0, 200);
    assert_eq!(
        server
            .get("/v2/models/iris-logreg/versions/1/ready")
            .await
            .0,
        200
    );
    assert_eq!(
        server.get("/v2/models/iris-logreg/versions/latest").await.0,
        200
    );

    // Output selection, nested data, a version in the path.
    let request = json!({
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4], "data": [[0, 0, 0, 0], [1, 1, 1, 1]]}],
        "outputs": [{"name": "label"}],
    });
    let (status, v) = post(&server, "/v2/models/iris-logreg/versions/1/infer", &request).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outputs"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["outputs"][0]["name"], "label");
    assert_eq!(v["outputs"][0]["datatype"], "INT64");
    assert_eq!(v["outputs"][0]["shape"], json!([2]));

    // Errors name what was wrong.
    let wrong_shape =
        json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]});
    let (status, v) = post(&server, "/v2/models/iris-logreg/infer", &wrong_shape).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        "input `X` has shape [1, 3]; the model expects FP32 of shape [N, 4]"
    );
    let wrong_name = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]});
    let (status, v) = post(&server, "/v2/models/iris-logreg/infer", &wrong_name).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("input `X` is missing"),
        "{v}"
    );
    let (status, v) = post(&server, "/v2/models/nope/infer", &wrong_shape).await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("model `nope` not found"),
        "{v}"
    );
    assert_eq!(server.get("/v2/models/iris-logreg/versions/9").await.0, 404);
    let unknown_output = json!({"inputs": wrong_name["inputs"], "outputs": [{"name": "scores"}]});
    let (status, v) = post(&server, "/v2/models/iris-logreg/infer", &unknown_output).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no output `scores`"),
        "{v}"
    );

    // A file tract cannot run is refused at push, naming the problem.
    let response = client()
        .put(server.url("/v1/models/broken"))
        .body(b"not an onnx file".to_vec())
        .send()
        .await
        .expect("push");
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.expect("json");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not a loadable ONNX model"),
        "{v}"
    );
    assert_eq!(server.get("/v2/models/broken").await.0, 404);
}

#[tokio::test]
async fn concurrent_cold_requests_for_a_model_load_it_once() {
    let server = Server::start();
    assert_eq!(push(&server, "digits-mlp", &[]).await.0, 201);
    let reference = reference("digits-mlp");
    let request = infer_request(&reference);
    let calls = (0..64).map(|_| post(&server, "/v2/models/digits-mlp/infer", &request));
    for (status, v) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["outputs"][0]["data"],
            reference["outputs"]["label"]["data"]
        );
    }
    assert_eq!(server.status("models.loads").await, 1);
    assert_eq!(server.status("models.entries").await, 1);
}

#[tokio::test]
async fn a_predictor_stage_runs_a_registry_model_and_names_the_class() {
    let server = Server::start();
    assert_eq!(push(&server, "iris-logreg", &[]).await.0, 201);
    let deployed = server
        .deploy(
            "iris-predict",
            "onnx-predict",
            &[
                ("config.model", "iris-logreg"),
                ("config.classes", "setosa,versicolor,virginica"),
            ],
        )
        .await;
    assert_eq!(deployed["world"], "predictor");
    let reference = reference("iris-logreg");
    let row: Vec<Value> = reference["inputs"]["X"]["data"].as_array().unwrap()[..4].to_vec();
    let message = json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": row}]});
    let (status, v) = server
        .invoke(
            "iris-predict",
            "application/vnd.sluice.message+json",
            message.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let label = reference["outputs"]["label"]["data"][0].as_i64().unwrap();
    let tensors = v["tensors"].as_array().unwrap();
    let find = |n: &str| tensors.iter().find(|t| t["name"] == n).expect(n);
    assert_eq!(find("label")["data"], json!([label]));
    let probabilities = find("probabilities")["data"].as_array().unwrap();
    let want = &reference["outputs"]["probabilities"]["data"]
        .as_array()
        .unwrap()[..3];
    for (g, w) in probabilities.iter().zip(want) {
        assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= 1e-4);
    }
    let classes = ["setosa", "versicolor", "virginica"];
    assert_eq!(v["fields"]["class"], classes[label as usize]);

    // A model the stage names that does not exist is the stage's failure.
    let config = [("config.model", "missing")];
    stage_fails(
        &server,
        "onnx-predict",
        &config,
        &message.to_string(),
        "model `missing` not found",
    )
    .await;
}

/// Deploy `package` with `config` and call it with `message`: a 500 whose
/// error contains `expected`.
async fn stage_fails(
    server: &Server,
    package: &str,
    config: &[(&str, &str)],
    message: &str,
    expected: &str,
) {
    let deployed = server.deploy("failing", package, config).await;
    assert!(deployed["version"].is_u64(), "{deployed}");
    let (status, v) = server
        .invoke(
            "failing",
            "application/vnd.sluice.message+json",
            message.to_string(),
        )
        .await;
    assert_eq!(status, 500, "{v}");
    assert!(v["error"].as_str().unwrap().contains(expected), "{v}");
}

/// wasi-nn's `compute` is a synchronous host call the epoch check cannot
/// interrupt: it stops waiting at the call's deadline itself, so the
/// stage gets its 504 while the abandoned model run is still going.
#[tokio::test]
async fn a_wasi_nn_compute_stops_at_the_calls_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(&dir.path().join("data"), &["--max-body-bytes", "67108864"]);
    assert_eq!(push(&server, "gram", &[]).await.0, 201);
    server
        .deploy(
            "slow",
            "guest-wasi-nn-predict",
            &[
                ("config.model", "gram"),
                ("timeout_ms", "1200"),
                ("memory_mb", "256"),
            ],
        )
        .await;
    // X·Xᵀ of 4000 × 4000: several seconds of one core, far past the
    // deadline, which leaves the stage ample time (even on a loaded
    // machine) to pass the 64 MB tensor in and reach `compute`.
    let n = 4000;
    let ones = vec!["1"; n * n].join(",");
    let message = format!(
        r#"{{"tensors":[{{"name":"X","datatype":"FP32","shape":[{n},{n}],"data":[{ones}]}}]}}"#
    );
    let (status, v) = server
        .invoke("slow", "application/vnd.sluice.message+json", message)
        .await;
    assert_eq!(status, 504, "{v}");
    assert!(v["error"].as_str().unwrap().contains("deadline"), "{v}");
    // The answer did not wait for the run: it still holds its slot.
    let (_, now) = server.get("/v1/status").await;
    assert_eq!(now["model_runs"]["in_flight"], 1, "{now}");
}

#[tokio::test]
async fn a_wasi_nn_guest_gets_the_same_numbers_as_the_inference_interface() {
    let server = Server::start();
    assert_eq!(push(&server, "iris-logreg", &[]).await.0, 201);
    server
        .deploy(
            "via-inference",
            "onnx-predict",
            &[("config.model", "iris-logreg")],
        )
        .await;
    let deployed = server
        .deploy(
            "via-wasi-nn",
            "guest-wasi-nn-predict",
            &[("config.model", "iris-logreg@latest")],
        )
        .await;
    // wasi:nn imports put a stage in the predictor world.
    assert_eq!(deployed["world"], "predictor", "{deployed}");
    let reference = reference("iris-logreg");
    let x = &reference["inputs"]["X"];
    let message = json!({"tensors": [{"name": "X", "datatype": "FP32", "shape": x["shape"], "data": x["data"]}]})
        .to_string();
    let content_type = "application/vnd.sluice.message+json";
    let (status, via_inference) = server
        .invoke("via-inference", content_type, message.clone())
        .await;
    assert_eq!(status, 200, "{via_inference}");
    // Concurrent calls: each waits for the model engine from wasi-nn's
    // synchronous host calls without stalling the others.
    let calls = (0..16).map(|_| server.invoke("via-wasi-nn", content_type, message.clone()));
    for (status, via_wasi_nn) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{via_wasi_nn}");
        let tensor = |v: &Value, name: &str| -> Value {
            v["tensors"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["name"] == name))
                .unwrap_or_else(|| panic!("no tensor {name} in {v}"))
                .clone()
        };
        // Same engine, same plan: the same numbers, bit for bit.
        for name in ["label", "probabilities"] {
            assert_eq!(tensor(&via_wasi_nn, name), tensor(&via_inference, name));
        }
        assert_eq!(
            tensor(&via_wasi_nn, "label")["data"],
            reference["outputs"]["label"]["data"]
        );
        let got = tensor(&via_wasi_nn, "probabilities")["data"].clone();
        let want = &reference["outputs"]["probabilities"]["data"];
        for (g, w) in got.as_array().unwrap().iter().zip(want.as_array().unwrap()) {
            assert!(
                (g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= 1e-4,
                "{g} vs {w}"
            );
        }
    }

    // Failures come back as wasi-nn errors the guest can report.
    let missing = [("config.model", "missing")];
    let wrong_input = [("config.model", "iris-logreg"), ("config.input", "nope")];
    stage_fails(
        &server,
        "guest-wasi-nn-predict",
        &missing,
        &message,
        "load-by-name: ErrorCode::NotFound",
    )
    .await;
    stage_fails(
        &server,
        "guest-wasi-nn-predict",
        &wrong_input,
        &message,
        "wasi-nn compute",
    )
    .await;
}

#[tokio::test]
async fn batched_results_equal_unbatched_results_request_by_request() {
    let server = Server::start();
    assert_eq!(push(&server, "digits-mlp", &[]).await.0, 201);
    let (status, pushed) = push_as(
        &server,
        "digits-batched",
        "digits-mlp",
        &[("max_batch_size", "16"), ("max_queue_delay_us", "50000")],
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        pushed["model"]["batching"],
        json!({"max_batch_size": 16, "max_queue_delay_us": 50000, "max_queue_size": 1024})
    );

    // 48 different requests of one or two rows, each sent to both models.
    let pixels = reference("digits-mlp")["inputs"]["X"]["data"].clone();
    let pixels = pixels.as_array().unwrap();
    let request = |i: usize| {
        let rows = 1 + i % 2;
        let data: Vec<Value> = (0..rows * 64)
            .map(|j| pixels[(i * 64 + j * 7) % pixels.len()].clone())
            .collect();
        json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [rows, 64], "data": data}]})
    };
    let calls = (0..48).map(|i| {
        let server = &server;
        async move {
            let body = request(i);
            let (plain, batched) = tokio::join!(
                post(server, "/v2/models/digits-mlp/infer", &body),
                post(server, "/v2/models/digits-batched/infer", &body)
            );
            (i, plain, batched)
        }
    });
    for (i, (s1, plain), (s2, batched)) in futures::future::join_all(calls).await {
        assert_eq!((s1, s2), (200, 200), "request {i}: {plain} {batched}");
        for (p, b) in plain["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(batched["outputs"].as_array().unwrap())
        {
            assert_eq!(p["shape"], b["shape"], "request {i}");
            assert_matches("digits-batched", p["name"].as_str().unwrap(), b, p);
        }
    }
    let (_, status) = server.get("/v1/status").await;
    let (batches, requests) = (
        status["batching"]["batches"].as_u64().unwrap(),
        status["batching"]["requests"].as_u64().unwrap(),
    );
    assert_eq!(requests, 48, "{status}");
    assert!(batches < requests, "no request was batched: {status}");

    // A model whose shapes are fixed cannot batch, and says why.
    let (status, v) = push(
        &server,
        "text-direction",
        &[("input_shape.x", "1,3,48,192"), ("max_batch_size", "8")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("dynamic batching needs a batch dimension: `x` has shape [1, 3, 48, 192]"),
        "{v}"
    );
}

/// Run one of the client scripts in `tests/e2e` against model `model` of
/// `server`; what it saw.
/// Run a Python client script against `served` (a model or a pipeline),
/// with the reference outputs of example model `reference`.
pub(crate) async fn client_script(
    script: &str,
    address: String,
    served: &str,
    reference: &str,
) -> Value {
    let output = tokio::process::Command::new(crate::support::python())
        .arg(repo().join("tests/e2e").join(script))
        .arg(address)
        .arg(served)
        .arg(repo().join(format!("examples/models/{reference}.reference.json")))
        .output()
        .await
        .expect("run the client");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("client output")
}

#[tokio::test]
async fn the_real_triton_client_reads_metadata_and_infers_in_json_and_binary() {
    let server = Server::start();
    assert_eq!(push(&server, "iris-gbt", &[]).await.0, 201);
    let seen = client_script(
        "oip_client.py",
        server.addr.to_string(),
        "iris-gbt",
        "iris-gbt",
    )
    .await;
    assert_eq!(
        (&seen["live"], &seen["ready"], &seen["model_ready"]),
        (&json!(true), &json!(true), &json!(true))
    );
    assert_eq!(seen["metadata"]["name"], "iris-gbt");
    assert_eq!(seen["metadata"]["inputs"][0]["shape"], json!([-1, 4]));
    let reference = reference("iris-gbt");
    for run in ["binary", "json", "defaults"] {
        for (name, want) in reference["outputs"].as_object().unwrap() {
            let got = json!({"shape": want["shape"], "data": seen["runs"][run]["outputs"][name]});
            assert_matches("iris-gbt", &format!("{run}/{name}"), &got, want);
        }
    }
    assert_eq!(seen["runs"]["binary"]["id"], "req-7");
    assert!(
        seen["wrong_shape"]
            .as_str()
            .unwrap()
            .contains("input `X` has shape [1, 3]"),
        "{seen}"
    );
    assert!(
        seen["unknown"].as_str().unwrap().contains("not found"),
        "{seen}"
    );
}

// The KServe SDK parses the health bodies (`{"live": true}`, `{"ready":
// true}`): an empty or plain-text body fails it where tritonclient, which
// reads only the status, passes.
#[tokio::test]
async fn the_kserve_sdk_reads_health_and_infers_in_json_and_binary() {
    let server = Server::start();
    assert_eq!(push(&server, "iris-gbt", &[]).await.0, 201);
    let seen = client_script("kserve_client.py", server.url(""), "iris-gbt", "iris-gbt").await;
    assert_eq!(
        [
            &seen["live"],
            &seen["ready"],
            &seen["model_ready"],
            &seen["unknown_ready"]
        ],
        [&json!(true), &json!(true), &json!(true), &json!(false)],
        "{seen}"
    );
    let reference = reference("iris-gbt");
    for run in ["binary", "json"] {
        assert_eq!(seen["runs"][run]["id"], "kserve-1", "{seen}");
        for (name, want) in reference["outputs"].as_object().unwrap() {
            let got = json!({"shape": want["shape"], "data": seen["runs"][run]["outputs"][name]});
            assert_matches("iris-gbt", &format!("kserve {run}/{name}"), &got, want);
        }
    }
}

#[tokio::test]
async fn model_aliases_decide_which_version_the_protocol_serves_and_roll_back() {
    let server = Server::start();
    assert_eq!(push_as(&server, "iris", "iris-logreg", &[]).await.0, 201);
    assert_eq!(push_as(&server, "iris", "iris-gbt", &[]).await.0, 201);
    let request = infer_request(&reference("iris-logreg"));
    let served = |path: &'static str| {
        let (server, request) = (&server, &request);
        async move { post(server, path, request).await.1["model_version"].clone() }
    };
    assert_eq!(served("/v2/models/iris/infer").await, "2");

    let cli = |args: &[&str]| {
        let output = crate::support::sluice()
            .args(args)
            .args(["--model", "--server", &server.url("")])
            .output()
            .expect("sluice");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    cli(&["alias", "set", "iris", "stable", "1"]);
    assert_eq!(served("/v2/models/iris/infer").await, "1");
    assert_eq!(served("/v2/models/iris/versions/latest/infer").await, "2");
    cli(&["alias", "set", "iris", "stable", "2"]);
    assert_eq!(served("/v2/models/iris/infer").await, "2");
    let out = cli(&["rollback", "iris"]);
    assert!(out.contains("iris stable → version 1"), "{out}");
    assert_eq!(served("/v2/models/iris/infer").await, "1");
    assert_eq!(served("/v2/models/iris/versions/stable/infer").await, "1");
}

#[tokio::test]
async fn models_tract_cannot_run_are_refused_naming_the_operator_or_the_fix() {
    let server = Server::start();
    let (status, v) = push(&server, "unknown-operator", &[]).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("the model cannot be served: operator `Frobnicate` is not implemented"),
        "{v}"
    );
    // ZipMap is refused with the export option that avoids it.
    let (status, v) = push(&server, "iris-zipmap", &[]).await;
    assert_eq!(status, 400, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("`ZipMap`") && error.contains("\"zipmap\": False"),
        "{v}"
    );
    // The CNN declares [N, 3, ?, ?]: it needs its input shape pinned.
    let (status, v) = push(&server, "text-direction", &[]).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--input-shape"),
        "{v}"
    );
    let (status, v) = push(
        &server,
        "text-direction",
        &[("input_shape.image", "1,3,48,192")],
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("its inputs are x"),
        "{v}"
    );
    for refused in ["unknown-operator", "iris-zipmap", "text-direction"] {
        assert_eq!(server.get(&format!("/v1/models/{refused}")).await.0, 404);
    }
}

#[tokio::test]
async fn a_push_over_http_records_labels_and_the_baseline_statistics() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    std::fs::copy(
        repo().join("examples/models/iris-scaled-logreg.baseline.json"),
        &stats,
    )
    .unwrap();
    let model = repo().join("examples/models/iris-logreg.onnx");
    let push = |baseline: &std::path::Path| {
        crate::support::sluice()
            .args(["models", "push"])
            .arg(&model)
            .args(["--name", "iris", "--label", "dataset=iris", "--baseline"])
            .arg(baseline)
            .args(["--server", &server.url("")])
            .output()
            .expect("sluice")
    };
    let output = push(&stats);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.starts_with("pushed iris version 1"), "{text}");
    assert!(
        text.contains("input  X") && text.contains("FP32   [N, 4]"),
        "{text}"
    );
    let (_, v) = server.get("/v1/models/iris").await;
    let record = &v["versions"][0];
    assert_eq!(record["labels"], json!({"dataset": "iris"}));
    let digest = record["baseline"].as_str().expect("baseline digest");
    let stored = std::fs::read(
        server_data(&server).join(format!("blobs/sha256/{}", &digest["sha256:".len()..])),
    )
    .expect("baseline blob");
    assert_eq!(stored, std::fs::read(&stats).unwrap());

    // Statistics this node cannot judge drift by are refused, saying why.
    for (stats_text, says) in [
        ("not json", "is not a Sluice baseline"),
        (
            r#"{"X": {"mean": [0, 0, 0, 0], "std": [1, 1, 1, 1]}}"#,
            "missing field `format`",
        ),
    ] {
        std::fs::write(&stats, stats_text).unwrap();
        let output = push(&stats);
        assert!(!output.status.success());
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            err.contains(says) && err.contains("sluice models baseline"),
            "{err}"
        );
    }
    let mut baseline: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("examples/models/iris-scaled-logreg.baseline.json")).unwrap(),
    )
    .unwrap();
    baseline["input"] = json!("pixels");
    std::fs::write(&stats, baseline.to_string()).unwrap();
    let err = String::from_utf8_lossy(&push(&stats).stderr).to_string();
    assert!(
        err.contains(
            "the baseline describes input `pixels`, which the model does not have; its inputs are X"
        ),
        "{err}"
    );
}

/// The data directory of a server started with `Server::start`.
fn server_data(server: &Server) -> std::path::PathBuf {
    server.log.parent().expect("log dir").join("data")
}

// tract panics on an index past a Gather's table. Run inline (small inputs
// after a fast run) or on the pool, the panic fails that request with a
// 500 and the node goes on serving.
#[tokio::test]
async fn a_panic_inside_the_model_engine_answers_500_and_the_node_serves_on() {
    let server = Server::start();
    assert_eq!(push(&server, "gather", &[]).await.0, 201);
    let gather = |index: i64| json!({"inputs": [{"name": "I", "datatype": "INT64", "shape": [1], "data": [index]}]});
    for _ in 0..20 {
        let (status, v) = post(&server, "/v2/models/gather/infer", &gather(2)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["outputs"][0]["data"], json!([4.0, 5.0]), "{v}");
    }
    let (_, now) = server.get("/v1/status").await;
    assert!(now["model_runs"]["inline"].as_u64().unwrap() > 0, "{now}");
    for _ in 0..3 {
        let (status, v) = post(&server, "/v2/models/gather/infer", &gather(100)).await;
        assert_eq!(status, 500, "{v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains("the model engine (tract) panicked"), "{v}");
    }
    let (status, v) = post(&server, "/v2/models/gather/infer", &gather(0)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outputs"][0]["data"], json!([0.0, 1.0]), "{v}");
}

/// The second engine runs what tract cannot: the CNN without its shape
/// pinned, several images per request and batched across requests, with
/// onnxruntime's numbers; a node without the library refuses such a push
/// saying how to give it one.
#[tokio::test]
async fn the_onnxruntime_engine_runs_the_cnn_with_a_free_batch_and_batches_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let library = crate::support::onnxruntime_library();
    let server = Server::start_on(
        &dir.path().join("data"),
        &["--onnxruntime", library.to_str().expect("path")],
    );
    let engine = ("engine", "onnxruntime");
    let (status, pushed) = push(&server, "text-direction", &[engine]).await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(pushed["model"]["engine"], "onnxruntime");
    assert_eq!(
        pushed["model"]["signature"]["inputs"][0]["shape"],
        json!([-1, 3, -1, -1])
    );
    let (status, pushed) = push_as(
        &server,
        "text-direction-batched",
        "text-direction",
        &[
            engine,
            ("max_batch_size", "8"),
            ("max_queue_delay_us", "20000"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{pushed}");
    let (_, metadata) = server.get("/v2/models/text-direction").await;
    assert_eq!(metadata["platform"], "onnxruntime_onnx");

    // The reference image, alone and as two rows of one request.
    let reference = reference("text-direction");
    let output = "save_infer_model/scale_0.tmp_1";
    let want = &reference["outputs"][output];
    let (status, answer) = post(
        &server,
        "/v2/models/text-direction/infer",
        &infer_request(&reference),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_matches("text-direction", output, &answer["outputs"][0], want);
    let image = reference["inputs"]["x"]["data"].as_array().unwrap().clone();
    let two = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 48, 192],
        "data": image.iter().chain(&image).collect::<Vec<_>>()}]});
    let (status, answer) = post(&server, "/v2/models/text-direction/infer", &two).await;
    assert_eq!(status, 200, "{answer}");
    let rows = answer["outputs"][0]["data"].as_array().unwrap();
    let pair = json!({"shape": [1, 2], "data": rows[..2]});
    assert_matches("text-direction", output, &pair, want);
    assert_eq!(rows[..2], rows[2..]);

    // Sixteen different images at once: batched answers equal lone ones.
    let request = |i: usize| {
        let scale = 1.0 + i as f64 * 0.05;
        let data: Vec<f64> = image.iter().map(|v| v.as_f64().unwrap() * scale).collect();
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 48, 192], "data": data}]})
    };
    let calls = (0..16).map(|i| {
        let server = &server;
        async move {
            let body = request(i);
            let (alone, batched) = tokio::join!(
                post(server, "/v2/models/text-direction/infer", &body),
                post(server, "/v2/models/text-direction-batched/infer", &body)
            );
            (i, alone, batched)
        }
    });
    let mut distinct = std::collections::BTreeSet::new();
    for (i, (s1, alone), (s2, batched)) in futures::future::join_all(calls).await {
        assert_eq!((s1, s2), (200, 200), "image {i}: {alone} {batched}");
        let (alone, batched) = (&alone["outputs"][0], &batched["outputs"][0]);
        if let Err(e) = compare(batched, alone, Tolerance::absolute(1e-5)) {
            panic!("image {i}: {e}");
        }
        distinct.insert(alone["data"].to_string());
    }
    assert!(distinct.len() > 1, "every image got the same answer");
    let (_, status) = server.get("/v1/status").await;
    assert!(
        status["batching"]["batches"].as_u64().unwrap()
            < status["batching"]["requests"].as_u64().unwrap(),
        "no request was batched: {status}"
    );

    // Outputs onnxruntime has but Sluice cannot carry are refused at push.
    let (status, v) = push(&server, "iris-zipmap", &[engine]).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("zipmap=False"), "{v}");

    // A node without the library says how to give it one.
    let plain = Server::start();
    let (status, v) = push(&plain, "text-direction", &[engine]).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--onnxruntime"),
        "{v}"
    );
}
