//! Pipelines: deployed as one versioned object, run by the node with
//! messages passed in memory, under one request budget.

use crate::support::{Server, client, repo, sluice};
use serde_json::{Value, json};

const IRIS: &str = r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "model": "gbt"}"#;
const FIELDS: &str = "sepal_length,sepal_width,petal_length,petal_width";

/// A node with `iris-features` (json-to-tensor, keeping `model`), `echo`
/// (the misbehaving guest) and the models `iris` (logistic regression)
/// and `iris-gbt`.
async fn iris_node() -> Server {
    let server = Server::start();
    let keep = [("config.fields", FIELDS), ("config.keep", "model")];
    server
        .deploy("iris-features", "json-to-tensor", &keep)
        .await;
    server.deploy("echo", "guest-misbehave", &[]).await;
    for (name, file) in [("iris", "iris-logreg"), ("iris-gbt", "iris-gbt")] {
        let response = client()
            .put(server.url(&format!("/v1/models/{name}")))
            .body(std::fs::read(repo().join(format!("examples/models/{file}.onnx"))).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "push {name}");
    }
    server
}

/// PUT a pipeline manifest (TOML): (status, answer).
async fn deploy(server: &Server, name: &str, manifest: &str) -> (u16, Value) {
    let response = client()
        .put(server.url(&format!("/v1/pipelines/{name}")))
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POST a body to a pipeline: (status, Server-Timing, answer).
async fn call(
    server: &Server,
    target: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, Value) {
    let response = client()
        .post(server.url(&format!("/p/{target}")))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let timing = response
        .headers()
        .get("server-timing")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        timing,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn tensor<'a>(message: &'a Value, name: &str) -> &'a Value {
    message["tensors"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no tensor {name} in {message}"))
}

/// What the model answers over OIP for the iris row, output by output.
async fn direct(server: &Server, model: &str) -> Value {
    let request = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]});
    let response = client()
        .post(server.url(&format!("/v2/models/{model}/infer")))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn output<'a>(oip: &'a Value, name: &str) -> &'a Value {
    &oip["outputs"]
        .as_array()
        .and_then(|os| os.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no output {name} in {oip}"))["data"]
}

/// The iris pipeline (json-to-tensor, then the logistic regression) as a
/// manifest naming its component and model by local file, written into
/// `dir` with the files beside it; rewriting it with another budget makes
/// a new version of the same pipeline.
pub(crate) fn iris_with_files(dir: &std::path::Path, timeout_ms: u32) -> std::path::PathBuf {
    std::fs::copy(
        crate::support::component("json-to-tensor"),
        dir.join("features.wasm"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("examples/models/iris-logreg.onnx"),
        dir.join("iris.onnx"),
    )
    .unwrap();
    let manifest = dir.join("pipeline.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
            name = "iris"
            timeout_ms = {timeout_ms}
            [[step]]
            name = "parse"
            function = "iris-features"
            file = "features.wasm"
            config = {{ fields = "{FIELDS}" }}
            [[step]]
            name = "classify"
            model = "iris"
            file = "iris.onnx"
            inputs = {{ X = "features" }}
            "#
        ),
    )
    .unwrap();
    manifest
}

#[tokio::test]
async fn a_sequence_of_a_function_and_a_model_answers_as_the_model_does() {
    let server = iris_node().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pipeline.toml");
    std::fs::write(
        &manifest,
        r#"
            [[pipeline]]
            name = "iris"
            description = "features, then the classifier"
            timeout_ms = 5000

            [[pipeline.step]]
            name = "parse"
            function = "iris-features"
            config = { keep = "sepal_length" }

            [[pipeline.step]]
            name = "classify"
            model = "iris"
            inputs = { X = "features" }
            "#,
    )
    .unwrap();
    // Deployed with the CLI, as users do.
    let out = sluice()
        .arg("deploy")
        .arg(&manifest)
        .args(["--server", &server.url("")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("deployed pipeline iris version 1"),
        "{printed}"
    );
    assert!(
        printed.contains("classify") && printed.contains("iris@1"),
        "{printed}"
    );

    let (status, timing, answer) = call(&server, "iris", "application/json", IRIS).await;
    assert_eq!(status, 200, "{answer}");
    let want = direct(&server, "iris").await;
    assert_eq!(
        tensor(&answer, "label")["data"],
        *output(&want, "label"),
        "{answer}"
    );
    assert_eq!(
        tensor(&answer, "probabilities")["data"],
        *output(&want, "probabilities")
    );
    assert!(
        timing.contains("parse;dur=") && timing.contains("classify;dur="),
        "{timing}"
    );
    // The step's config overrides the deploy's `keep` (and keeps its
    // `fields`); fields travel through the model step.
    assert_eq!(answer["fields"], json!({"sepal_length": 5.1}), "{answer}");

    // Versions and listings as for functions and models.
    let (status, listed) = server.get("/v1/pipelines").await;
    assert_eq!(status, 200);
    assert_eq!(listed["pipelines"][0]["name"], "iris", "{listed}");
    assert_eq!(
        call(&server, "iris@1", "application/json", IRIS).await.0,
        200
    );
    let (status, _, answer) = call(&server, "nope", "application/json", IRIS).await;
    assert_eq!(status, 404, "{answer}");
    // A caller's mistake is a 400 naming the step.
    let (status, _, answer) =
        call(&server, "iris", "application/json", "{\"sepal_length\": 1}").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("pipeline iris@1, step parse"),
        "{answer}"
    );
}

#[tokio::test]
async fn branches_run_side_by_side_and_a_field_picks_which_runs() {
    let server = iris_node().await;
    let manifest = r#"
        name = "both"
        [[step]]
        name = "parse"
        function = "iris-features"
        [[step]]
        name = "logreg"
        model = "iris"
        inputs = { X = "features" }
        outputs = { label = "logreg_label", probabilities = "logreg_probabilities" }
        when = { field = "model", one_of = ["logreg", "both"] }
        [[step]]
        name = "gbt"
        model = "iris-gbt"
        after = ["parse"]
        inputs = { X = "features" }
        outputs = { label = "gbt_label", probabilities = "gbt_probabilities" }
        when = { field = "model", one_of = ["gbt", "both"] }
    "#;
    assert_eq!(deploy(&server, "both", manifest).await.0, 201);
    let (logreg, gbt) = (
        direct(&server, "iris").await,
        direct(&server, "iris-gbt").await,
    );

    let both = IRIS.replace("\"gbt\"", "\"both\"");
    let (status, timing, answer) = call(&server, "both", "application/json", &both).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        tensor(&answer, "logreg_label")["data"],
        *output(&logreg, "label")
    );
    assert_eq!(
        tensor(&answer, "gbt_probabilities")["data"],
        *output(&gbt, "probabilities")
    );
    assert!(timing.contains("desc=\"ran\""), "{timing}");

    // `model = "gbt"`: the logistic regression is skipped.
    let (status, timing, answer) = call(&server, "both", "application/json", IRIS).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(tensor(&answer, "gbt_label")["data"], *output(&gbt, "label"));
    let names: Vec<&str> = answer["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"logreg_label"), "{answer}");
    assert!(
        timing.contains("logreg;dur=") && timing.contains("desc=\"skipped\""),
        "{timing}"
    );
}

#[tokio::test]
async fn deploys_are_refused_naming_the_step_and_the_field() {
    let server = iris_node().await;
    for (manifest, expected) in [
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"missing\"\n",
            "pipeline p, step a: `function` `missing`: function `missing` not found",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nmodel = \"iris@9\"\n",
            "step a: `model` `iris@9`",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nmodel = \"iris\"\ninputs = { Y = \"features\" }\n",
            "step a: `inputs` model iris@1 has no input `Y`; its inputs are X",
        ),
        (
            r#"
            name = "p"
            [[step]]
            name = "parse"
            function = "iris-features"
            [[step]]
            name = "one"
            model = "iris"
            inputs = { X = "features" }
            [[step]]
            name = "two"
            model = "iris-gbt"
            after = ["parse"]
            inputs = { X = "features" }
            [[step]]
            name = "join"
            function = "echo"
            after = ["one", "two"]
            "#,
            "step join: `after` tensor `label` comes from both `one` and `two`",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"echo\"\nafter = [\"b\"]\n[[step]]\nname = \"b\"\nfunction = \"echo\"\nafter = [\"a\"]\n",
            "the steps a, b wait on each other in a cycle",
        ),
        (
            "name = \"other\"\n[[step]]\nname = \"a\"\nfunction = \"echo\"\n",
            "deployed as `p`",
        ),
        (
            "name = \"p\"\ncache_ttl_secs = 0\n[[step]]\nname = \"a\"\nfunction = \"echo\"\n",
            "`cache_ttl_secs` must be between 1 and 86400",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"echo\"\nfuel = 5\n",
            "step a: `fuel` must be between 1000000 and 10000000000000, not 5",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"echo\"\nmemory_mb = 100000\n",
            "step a: `memory_mb` must be between 1 and this node's ceiling of 256 MiB",
        ),
    ] {
        let (status, answer) = deploy(&server, "p", manifest).await;
        assert_eq!(status, 400, "{manifest}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{manifest}\n→ {error}\nexpected: {expected}"
        );
    }
    assert_eq!(server.get("/v1/pipelines").await.1["pipelines"], json!([]));
}

#[tokio::test]
async fn failures_skip_fall_back_or_end_the_request_within_its_budget() {
    let server = iris_node().await;
    // on_error = "skip": the step's input goes on.
    let skip = "name = \"skip\"\n[[step]]\nname = \"parse\"\nfunction = \"iris-features\"\non_error = \"skip\"\n[[step]]\nname = \"echo\"\nfunction = \"echo\"\n";
    assert_eq!(deploy(&server, "skip", skip).await.0, 201);
    // (The echo stage answers its body with a `calls` field.)
    let (status, timing, answer) = call(&server, "skip", "text/plain", "not json").await;
    assert_eq!(
        (status, &answer["fields"]),
        (200, &json!({"calls": 1})),
        "{answer}"
    );
    assert!(
        timing.contains("parse;dur=") && timing.contains("failed-skipped"),
        "{timing}"
    );

    // A fallback step answers in place of the one that failed.
    let fallback = "name = \"fb\"\n[[step]]\nname = \"parse\"\nfunction = \"iris-features\"\non_error = \"rescue\"\n[[step]]\nname = \"rescue\"\nfunction = \"echo\"\n";
    assert_eq!(deploy(&server, "fb", fallback).await.0, 201);
    let (status, timing, answer) = call(&server, "fb", "text/plain", "not json").await;
    assert_eq!(
        (status, &answer["fields"]),
        (200, &json!({"calls": 1})),
        "{answer}"
    );
    assert!(timing.contains("desc=\"fallback\""), "{timing}");

    // The whole request has one budget: a step that runs past it ends the
    // request with a 504 naming the step.
    let budget =
        "name = \"budget\"\ntimeout_ms = 300\n[[step]]\nname = \"spin\"\nfunction = \"echo\"\n";
    assert_eq!(deploy(&server, "budget", budget).await.0, 201);
    let started = std::time::Instant::now();
    let (status, _, answer) = call(&server, "budget", "text/plain", "loop").await;
    assert_eq!(status, 504, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("pipeline budget@1 ran out of its 300 ms budget (timeout_ms) in step spin"),
        "{error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_pipeline_keeps_the_versions_it_was_deployed_with_unless_a_step_follows_its_alias() {
    let server = iris_node().await;
    server.deploy("f", "guest-misbehave", &[]).await;
    let set_stable = |version: u64| {
        let server = &server;
        async move {
            let response = client()
                .put(server.url("/v1/functions/f/aliases/stable"))
                .json(&json!({"version": version}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    };
    set_stable(1).await;
    let pinned = "name = \"pinned\"\n[[step]]\nname = \"f\"\nfunction = \"f@stable\"\n";
    let follows =
        "name = \"follows\"\n[[step]]\nname = \"f\"\nfunction = \"f@stable\"\nfollow = true\n";
    assert_eq!(deploy(&server, "pinned", pinned).await.0, 201);
    assert_eq!(deploy(&server, "follows", follows).await.0, 201);
    // Version 2 of f turns JSON into a tensor instead of echoing it.
    server
        .deploy("f", "json-to-tensor", &[("config.fields", "a")])
        .await;
    set_stable(2).await;
    let body = r#"{"a": 1}"#;
    let (_, _, answer) = call(&server, "pinned", "application/json", body).await;
    assert_eq!(
        answer["fields"],
        json!({"calls": 1}),
        "the pinned step moved with the alias: {answer}"
    );
    assert_eq!(answer["tensors"], json!([]), "{answer}");
    let (_, _, answer) = call(&server, "follows", "application/json", body).await;
    assert_eq!(
        tensor(&answer, "features")["data"],
        json!([1.0]),
        "{answer}"
    );
}

#[tokio::test]
async fn a_join_step_receives_both_branches_merged() {
    let server = iris_node().await;
    // The join scales one branch's tensor (identity) and passes the rest on.
    let identity = [
        ("config.input", "logreg_probabilities"),
        ("config.mean", "0,0,0"),
        ("config.std", "1,1,1"),
    ];
    server.deploy("join", "standard-scaler", &identity).await;
    let manifest = r#"
        name = "joined"
        [[step]]
        name = "parse"
        function = "iris-features"
        [[step]]
        name = "logreg"
        model = "iris"
        inputs = { X = "features" }
        outputs = { label = "logreg_label", probabilities = "logreg_probabilities" }
        [[step]]
        name = "gbt"
        model = "iris-gbt"
        after = ["parse"]
        inputs = { X = "features" }
        outputs = { label = "gbt_label", probabilities = "gbt_probabilities" }
        [[step]]
        name = "join"
        function = "join"
        after = ["logreg", "gbt"]
    "#;
    let (status, answer) = deploy(&server, "joined", manifest).await;
    assert_eq!(status, 201, "{answer}");
    let (logreg, gbt) = (
        direct(&server, "iris").await,
        direct(&server, "iris-gbt").await,
    );
    let (status, timing, answer) = call(&server, "joined", "application/json", IRIS).await;
    assert_eq!(status, 200, "{answer}");
    for (tensor_name, want) in [
        ("logreg_label", output(&logreg, "label")),
        ("logreg_probabilities", output(&logreg, "probabilities")),
        ("gbt_label", output(&gbt, "label")),
        ("gbt_probabilities", output(&gbt, "probabilities")),
    ] {
        assert_eq!(tensor(&answer, tensor_name)["data"], *want, "{tensor_name}");
    }
    // The request's fields reach the join through both branches.
    assert_eq!(answer["fields"]["model"], "gbt", "{answer}");
    for step in ["parse", "logreg", "gbt", "join"] {
        assert!(timing.contains(&format!("{step};dur=")), "{timing}");
    }
}

#[tokio::test]
async fn an_idempotent_step_retries_until_its_function_has_room() {
    let server = iris_node().await;
    // One slot, no queue: while a call holds it, others are turned away.
    let cap = [("max_concurrency", "1"), ("timeout_ms", "1500")];
    server.deploy("narrow", "guest-misbehave", &cap).await;
    for (name, retries) in [
        (
            "patient",
            "retries = 4\nretry_backoff_ms = 300\nidempotent = true",
        ),
        ("hasty", ""),
    ] {
        let manifest = format!(
            "name = \"{name}\"\n[[step]]\nname = \"echo\"\nfunction = \"narrow\"\n{retries}\n"
        );
        assert_eq!(deploy(&server, name, &manifest).await.0, 201, "{name}");
    }
    let hold = || {
        let url = server.url("/fn/narrow");
        tokio::spawn(async move {
            // Spins until its 1.5 s deadline, holding the only slot.
            let _ = client().post(url).body("loop").send().await;
        })
    };
    let holding = |server: &Server| {
        let url = server.url("/v1/status");
        async move {
            let start = std::time::Instant::now();
            loop {
                let status: Value = client()
                    .get(&url)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let running = status["concurrency"]
                    .as_array()
                    .and_then(|g| g.iter().find(|g| g["function"] == "narrow@1"))
                    .map(|g| g["running"].as_u64().unwrap_or(0));
                if running == Some(1) {
                    break;
                }
                assert!(
                    start.elapsed().as_secs() < 10,
                    "the slot was never taken: {status}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };

    // Without retries the step fails at once, naming itself.
    let held = hold();
    holding(&server).await;
    let (status, _, answer) = call(&server, "hasty", "text/plain", "again").await;
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("pipeline hasty@1, step echo"), "{answer}");
    held.await.unwrap();

    // With retries and backoff it waits the holder out and answers.
    let held = hold();
    holding(&server).await;
    let (status, timing, answer) = call(&server, "patient", "text/plain", "again").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["body"]["text"], "again", "{answer}");
    assert!(
        timing.contains("echo;dur=") && timing.contains("desc=\"ran\""),
        "{timing}"
    );
    held.await.unwrap();
    let log = server.log_text();
    assert!(log.contains("retrying step"), "{log}");
}

#[tokio::test]
async fn a_stage_reaches_only_the_models_its_step_is_granted() {
    let server = iris_node().await;
    server.deploy("probe", "guest-model-probe", &[]).await;
    let manifest = r#"
        name = "probe"
        [[step]]
        name = "look"
        function = "probe"
        models = ["iris"]
    "#;
    let (status, answer) = deploy(&server, "probe", manifest).await;
    assert_eq!(status, 201, "{answer}");
    let (status, _, answer) = call(&server, "probe", "text/plain", "iris").await;
    assert_eq!(
        (status, &answer["fields"]["status"]),
        (200, &json!("loaded")),
        "{answer}"
    );
    let (status, _, answer) = call(&server, "probe", "text/plain", "iris-gbt").await;
    assert_eq!(status, 200, "{answer}");
    let seen = answer["fields"]["status"].as_str().unwrap();
    assert!(
        seen.contains("model `iris-gbt` is not granted to pipeline probe, step look")
            && seen.contains("it may use: iris"),
        "{seen}"
    );
    // Called on its own, the function's world decides: every model.
    let response = client()
        .post(server.url("/fn/probe"))
        .body("iris-gbt")
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["fields"]["status"], "loaded", "{answer}");

    // What a step's world needs, and only that, is granted at deploy.
    for (manifest, expected) in [
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"probe\"\n",
            "step a: `models` `probe` is a predictor stage: list what it may use with `models = [\"NAME\", ...]`",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"echo\"\nmodels = [\"iris\"]\n",
            "step a: `models` `echo` is a preprocessor stage and cannot use models",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"probe\"\nmodels = [\"iris\"]\ntables = [\"users\"]\n",
            "step a: `tables` `probe` is a predictor stage and cannot use tables",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"probe\"\nmodels = [\"nope\"]\n",
            "step a: `models` `nope`: model `nope` not found",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nmodel = \"iris\"\nmodels = [\"iris\"]\n",
            "step a: `models` applies to function steps",
        ),
        (
            // A model step's inputs must come from its parents where they are known.
            "name = \"p\"\n[[step]]\nname = \"a\"\nmodel = \"iris\"\n[[step]]\nname = \"b\"\nmodel = \"iris-gbt\"\n",
            "step b: `inputs` the model needs tensor `X` and no step before it produces one",
        ),
        (
            "name = \"p\"\n[[step]]\nname = \"a\"\nfunction = \"echo\"\nfile = \"echo.wasm\"\n",
            "step a: `file` a local file is uploaded by `sluice deploy FILE.toml`",
        ),
    ] {
        let (status, answer) = deploy(&server, "p", manifest).await;
        assert_eq!(status, 400, "{manifest}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{manifest}\n→ {error}\nexpected: {expected}"
        );
    }
}

#[tokio::test]
async fn tritonclient_calls_a_pipeline_like_a_model() {
    let server = iris_node().await;
    // Identity scaling in front of the classifier: the answers are the
    // model's own, so its onnxruntime reference holds.
    let identity = [
        ("config.input", "X"),
        ("config.mean", "0,0,0,0"),
        ("config.std", "1,1,1,1"),
    ];
    server.deploy("scale", "standard-scaler", &identity).await;
    let manifest = r#"
        name = "scaled-gbt"
        [[step]]
        name = "scale"
        function = "scale"
        [[step]]
        name = "classify"
        model = "iris-gbt"
    "#;
    assert_eq!(deploy(&server, "scaled-gbt", manifest).await.0, 201);
    let seen = crate::models::client_script(
        "oip_client.py",
        server.addr.to_string(),
        "scaled-gbt",
        "iris-gbt",
    )
    .await;
    assert_eq!(seen["model_ready"], true, "{seen}");
    assert_eq!(seen["metadata"]["name"], "scaled-gbt");
    assert_eq!(seen["metadata"]["platform"], "sluice_pipeline");
    // The last step is a model: its outputs are the pipeline's.
    assert_eq!(seen["metadata"]["outputs"][0]["name"], "label", "{seen}");
    let reference = crate::models::reference("iris-gbt");
    for run in ["binary", "json", "defaults"] {
        for (name, want) in reference["outputs"].as_object().unwrap() {
            let got = json!({"shape": want["shape"], "data": seen["runs"][run]["outputs"][name]});
            crate::models::assert_matches("iris-gbt", &format!("{run}/{name}"), &got, want);
        }
    }
    assert_eq!(seen["runs"]["binary"]["id"], "req-7");
    let wrong = seen["wrong_shape"].as_str().unwrap();
    assert!(wrong.contains("step scale"), "{wrong}");

    // A pipeline that starts with a model step has that model's inputs.
    let manifest = "name = \"gbt-only\"\n[[step]]\nname = \"m\"\nmodel = \"iris-gbt\"\n";
    assert_eq!(deploy(&server, "gbt-only", manifest).await.0, 201);
    let (status, metadata) = server.get("/v2/models/gbt-only").await;
    assert_eq!(status, 200);
    assert_eq!(metadata["inputs"][0]["name"], "X", "{metadata}");
    assert_eq!(metadata["inputs"][0]["shape"], json!([-1, 4]), "{metadata}");
    assert_eq!(metadata["versions"], json!(["1"]));
    // A model of that name wins over the pipeline.
    let (_, metadata) = server.get("/v2/models/iris").await;
    assert_eq!(metadata["platform"], "onnx_tract");
}

#[tokio::test]
async fn sluice_invoke_runs_a_pipeline_in_process_after_deploying_its_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = iris_with_files(dir.path(), 10_000);
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = sluice()
            .args(args)
            .env("SLUICE_DATA", &data)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["deploy", manifest.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("parse") && out.contains("iris-features@1"),
        "{out}"
    );
    let (ok, out, err) = run(&["invoke", "--pipeline", "iris", "-d", IRIS]);
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).expect("JSON answer");
    // The logistic regression (trained on scaled rows) calls this raw row
    // versicolor; what the OIP tests see for the same model and row.
    assert_eq!(tensor(&answer, "label")["data"], json!([1]), "{answer}");
    let p = tensor(&answer, "probabilities")["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(p.len(), 3);
    assert!(
        (p[1].as_f64().unwrap() - 0.828_689_6).abs() < 1e-6,
        "{answer}"
    );
    // Without --pipeline the name is a function's.
    let (ok, out, _) = run(&["invoke", "iris", "-d", IRIS]);
    assert!(!ok && out.contains("function `iris` not found"), "{out}");
}

#[tokio::test]
async fn a_step_past_its_own_deadline_falls_back_within_the_budget() {
    let server = iris_node().await;
    server.deploy("pass", "guest-pass-through", &[]).await;
    // `spin` has 200 ms of the request's 5 s; past them its fallback answers.
    let manifest = r#"
        name = "slow"
        timeout_ms = 5000
        [[step]]
        name = "spin"
        function = "echo"
        timeout_ms = 200
        on_error = "rescue"
        [[step]]
        name = "rescue"
        function = "pass"
    "#;
    assert_eq!(deploy(&server, "slow", manifest).await.0, 201);
    let (status, timing, answer) = call(&server, "slow", "text/plain", "loop").await;
    assert_eq!(status, 200, "{answer}");
    // Its own deadline ended `spin` (the budget running out would be a
    // 504); the pass-through answers the request's own body.
    assert_eq!(answer, Value::String("loop".into()), "{answer}");
    assert!(
        timing.contains("spin;dur=") && timing.contains("desc=\"fallback\""),
        "{timing}"
    );
}

/// One call of pipeline `name`: (status, `x-sluice-cache`,
/// `x-sluice-pipeline`, body bytes).
async fn cached_call(
    server: &Server,
    name: &str,
    body: &str,
    no_cache: bool,
) -> (u16, String, String, Vec<u8>) {
    let mut request = client()
        .post(server.url(&format!("/p/{name}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if no_cache {
        request = request.header("cache-control", "no-cache");
    }
    let response = request.send().await.unwrap();
    let header = |h: &str| {
        (response.headers().get(h))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (cache, pipeline) = (header("x-sluice-cache"), header("x-sluice-pipeline"));
    let status = response.status().as_u16();
    (
        status,
        cache,
        pipeline,
        response.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test]
async fn a_cached_pipeline_answers_the_same_input_from_memory_and_a_new_version_runs_again() {
    let server = iris_node().await;
    let manifest = |description: &str| {
        format!(
            "name = \"cached\"\ndescription = \"{description}\"\ncache_ttl_secs = 60\n[[step]]\nname = \"parse\"\nfunction = \"iris-features\"\n[[step]]\nname = \"predict\"\nmodel = \"iris\"\ninputs = {{ X = \"features\" }}\n"
        )
    };
    assert_eq!(deploy(&server, "cached", &manifest("one")).await.0, 201);
    let (status, cache, pipeline, first) = cached_call(&server, "cached", IRIS, false).await;
    assert_eq!(
        (status, cache.as_str(), pipeline.as_str()),
        (200, "miss", "cached@1")
    );
    // The same input, its keys in another order and spaced otherwise.
    let reordered = r#"{"model":"gbt","petal_width":0.2,"petal_length":1.4,"sepal_width":3.5,"sepal_length":5.1}"#;
    let (status, cache, _, again) = cached_call(&server, "cached", reordered, false).await;
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert_eq!(again, first, "a hit answers the identical body");
    let (_, cache, _, bypassed) = cached_call(&server, "cached", IRIS, true).await;
    assert_eq!((cache.as_str(), &bypassed), ("bypass", &first));
    // Another input runs.
    let other = IRIS.replace("1.4", "4.4");
    let (_, cache, _, answer) = cached_call(&server, "cached", &other, false).await;
    assert_eq!(cache, "miss");
    assert_ne!(answer, first);
    // A new version never gets the old one's answers.
    assert_eq!(deploy(&server, "cached", &manifest("two")).await.0, 201);
    let (status, cache, pipeline, _) = cached_call(&server, "cached", IRIS, false).await;
    assert_eq!(
        (status, cache.as_str(), pipeline.as_str()),
        (200, "miss", "cached@2")
    );
    let (_, cache, _, _) = cached_call(&server, "cached", IRIS, false).await;
    assert_eq!(cache, "hit");
    assert_eq!(server.status("results.hits").await, 2);
    // A pipeline that does not ask for a cache never answers from one.
    let plain = "name = \"plain\"\n[[step]]\nname = \"parse\"\nfunction = \"iris-features\"\n";
    assert_eq!(deploy(&server, "plain", plain).await.0, 201);
    for _ in 0..2 {
        let (status, cache, _, _) = cached_call(&server, "plain", IRIS, false).await;
        assert_eq!((status, cache.as_str()), (200, ""));
    }
}
