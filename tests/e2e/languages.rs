//! Stages written in Python (componentize-py) and JavaScript
//! (componentize-js), built from the repository by `sluice build`'s
//! toolchain, deployed and called like Rust ones.

use crate::models::{push, reference};
use crate::support::Server;
use serde_json::{Value, json};

const MESSAGE: &str = "application/vnd.sluice.message+json";

#[tokio::test]
async fn python_and_javascript_stages_answer_and_fail_like_rust_ones() {
    let server = Server::start();
    for (package, lang, crash) in [
        (
            "py-stage",
            "python",
            "ValueError: the probe crashed on purpose",
        ),
        (
            "js-stage",
            "javascript",
            "TypeError: the probe crashed on purpose",
        ),
    ] {
        let deployed = server
            .deploy(package, package, &[("config.tag", "t1")])
            .await;
        assert_eq!(deployed["world"], "preprocessor", "{deployed}");

        let message = json!({
            "tensors": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.5, -2.0]}],
            "fields": {"id": "r1", "n": 7}
        });
        let (status, v) = server.invoke(package, MESSAGE, message.to_string()).await;
        assert_eq!(status, 200, "{package}: {v}");
        assert_eq!(
            v["tensors"],
            json!([{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [3.0, -4.0]}]),
            "{package}"
        );
        assert_eq!(
            v["fields"],
            json!({"id": "r1", "n": 7, "lang": lang, "tag": "t1"}),
            "{package}"
        );

        let (status, v) = server.invoke(package, "text/plain", "hello").await;
        assert_eq!((status, v.as_str()), (200, Some("HELLO")), "{package}");
        let (status, v) = server.invoke(package, "text/plain", "invalid").await;
        assert_eq!(status, 400, "{package}: {v}");
        assert_eq!(v["error"], "the probe refuses `invalid`", "{package}");
        let (status, v) = server.invoke(package, "text/plain", "crash").await;
        assert_eq!(status, 500, "{package}: {v}");
        assert_eq!(v["error"], crash, "{package}");
    }
    // Their log records reach the node's log, tagged with the function.
    let log = server.log_text();
    for package in ["py-stage", "js-stage"] {
        assert!(
            log.lines()
                .any(|l| l.contains("probe called") && l.contains(package)),
            "{log}"
        );
    }
}

#[tokio::test]
async fn python_and_javascript_predictors_give_the_rust_predictors_numbers() {
    let server = Server::start();
    assert_eq!(push(&server, "iris-logreg", &[]).await.0, 201);
    let config = [("config.model", "iris-logreg")];
    for package in ["onnx-predict", "py-predict", "js-predict"] {
        let deployed = server.deploy(package, package, &config).await;
        assert_eq!(deployed["world"], "predictor", "{deployed}");
    }
    let reference = reference("iris-logreg");
    let rows: Vec<Value> = reference["inputs"]["X"]["data"].as_array().unwrap()[..12].to_vec();
    let message = json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [3, 4], "data": rows}]});
    let answer = |package: &'static str| {
        let message = message.to_string();
        let server = &server;
        async move {
            let (status, v) = server.invoke(package, MESSAGE, message).await;
            assert_eq!(status, 200, "{package}: {v}");
            let mut tensors = v["tensors"].as_array().unwrap().clone();
            tensors.sort_by_key(|t| t["name"].as_str().unwrap().to_string());
            tensors
        }
    };
    let rust = answer("onnx-predict").await;
    let labels = &rust.iter().find(|t| t["name"] == "label").unwrap()["data"];
    let want = &reference["outputs"]["label"]["data"].as_array().unwrap()[..3];
    assert_eq!(labels.as_array().unwrap(), want);
    for package in ["py-predict", "js-predict"] {
        assert_eq!(answer(package).await, rust, "{package}");
    }
}
