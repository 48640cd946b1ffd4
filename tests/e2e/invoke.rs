//! Invoking the shipped functions over HTTP, with exact outputs.

use crate::support::{Server, first_tensor};
use serde_json::{Value, json};

const FIELDS: &str = "sepal_length,sepal_width,petal_length,petal_width";

#[tokio::test]
async fn json_to_tensor_then_standard_scaler_over_http() {
    let server = Server::start();
    let deployed = server
        .deploy(
            "iris-features",
            "json-to-tensor",
            &[("config.fields", FIELDS)],
        )
        .await;
    assert_eq!(deployed["version"], 1);
    assert_eq!(deployed["world"], "preprocessor");
    assert!(deployed["digest"].as_str().unwrap().starts_with("sha256:"));
    server
        .deploy(
            "iris-scaler",
            "standard-scaler",
            &[
                ("config.mean", "5.8,3.0,3.7,1.2"),
                ("config.std", "0.8,0.5,1.75,0.75"),
            ],
        )
        .await;

    let (status, features) = server
        .invoke(
            "iris-features",
            "application/json",
            r#"{"petal_width": 0.2, "sepal_length": 5.1, "petal_length": 1.4, "sepal_width": 3.5, "id": "x"}"#,
        )
        .await;
    assert_eq!(status, 200, "{features}");
    let (name, datatype, shape, data) = first_tensor(&features);
    assert_eq!((name, datatype, shape), ("features", "FP32", vec![1, 4]));
    let expected = [5.1f32, 3.5, 1.4, 0.2];
    for (got, want) in data.iter().zip(expected) {
        assert_eq!(*got as f32, want);
    }
    // As the README's quickstart shows: each FP32 as the shortest text that
    // reads back to it (5.1, not 5.099999904632568).
    assert_eq!(
        features["tensors"][0]["data"],
        json!([5.1, 3.5, 1.4, 0.2]),
        "{features}"
    );

    // The first stage's JSON answer is the second stage's input, as is.
    let (status, scaled) = server
        .invoke(
            "iris-scaler",
            "application/vnd.sluice.message+json",
            features.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{scaled}");
    let (_, datatype, shape, data) = first_tensor(&scaled);
    assert_eq!((datatype, shape), ("FP32", vec![1, 4]));
    let want = [
        (5.1 - 5.8) / 0.8,
        (3.5 - 3.0) / 0.5,
        (1.4 - 3.7) / 1.75,
        (0.2 - 1.2) / 0.75,
    ];
    for (got, want) in data.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[tokio::test]
async fn batches_keep_rows_in_order() {
    let server = Server::start();
    server
        .deploy(
            "f",
            "json-to-tensor",
            &[("config.fields", "a,b"), ("config.dtype", "f64")],
        )
        .await;
    let (status, v) = server
        .invoke("f", "application/json", r#"[{"a":1,"b":2},{"b":4,"a":3}]"#)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        first_tensor(&v),
        ("features", "FP64", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])
    );
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let server = Server::start();
    server
        .deploy("f", "json-to-tensor", &[("config.fields", "age,income")])
        .await;
    server
        .deploy(
            "s",
            "standard-scaler",
            &[("config.mean", "0,0,0"), ("config.std", "1,1,1")],
        )
        .await;
    let cases = [
        (
            r#"{"age": 3"#,
            "request body is not valid JSON: EOF while parsing an object at line 1 column 9",
        ),
        (r#"{"age": 3}"#, "missing field `income`"),
        (
            r#"{"age": "old", "income": 1}"#,
            "field `age` must be a number, got a string",
        ),
        (
            r#"{"age": 1, "income": 1e300}"#,
            "field `income` = 1e300 does not fit in f32",
        ),
        (
            r#"[{"age": 1, "income": 2}, {"age": 1}]"#,
            "missing field `income` in row 1",
        ),
        (
            r#""just a string""#,
            "expected a JSON object or an array of objects, got a string",
        ),
    ];
    for (body, expected) in cases {
        let (status, v) = server.invoke("f", "application/json", body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"], expected, "{body}");
        assert_eq!(v["stage"], "f");
        assert!(v["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    let tensor = json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]});
    let (status, v) = server
        .invoke(
            "s",
            "application/vnd.sluice.message+json",
            tensor.to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "expected a tensor of shape [3] or [rows, 3], got [1, 2]"
    );
}

#[tokio::test]
async fn unknown_functions_and_versions_are_404_naming_them() {
    let server = Server::start();
    server.deploy("known", "guest-misbehave", &[]).await;
    let (status, v) = server.invoke("nope", "text/plain", "x").await;
    assert_eq!(status, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("function `nope` not found"),
        "{v}"
    );
    let (status, v) = server.invoke("known@7", "text/plain", "x").await;
    assert_eq!(status, 404);
    assert!(
        v["error"].as_str().unwrap().contains("has no version 7"),
        "{v}"
    );
    let (status, v) = server.invoke("known@canary", "text/plain", "x").await;
    assert_eq!(status, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("has no alias `canary`; its aliases: latest → 1"),
        "{v}"
    );
    let (status, v) = server.invoke("known@_x", "text/plain", "x").await;
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("is not NAME, NAME@VERSION or NAME@ALIAS"),
        "{v}"
    );
    let (status, v) = server.invoke("known@1", "text/plain", "hi").await;
    assert_eq!((status, &v["body"]["text"]), (200, &Value::from("hi")));
}

#[tokio::test]
async fn two_hundred_concurrent_calls_get_their_own_instances() {
    let server = Server::start();
    server.deploy("echo", "guest-misbehave", &[]).await;
    let calls = (0..200).map(|i| {
        let server = &server;
        async move {
            let body = format!("request-{i}");
            let (status, v) = server.invoke("echo", "text/plain", body.clone()).await;
            (status, v, body)
        }
    });
    for (status, v, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["body"]["text"], body);
        // A per-instance counter that is always 1: no instance is reused.
        assert_eq!(v["fields"]["calls"], 1);
    }
}

#[tokio::test]
async fn missing_models_and_feature_tables_are_reported_to_the_stage() {
    let server = Server::start();
    let d = server.deploy("probe-model", "guest-model-probe", &[]).await;
    assert_eq!(d["world"], "predictor");
    let d = server
        .deploy("probe-features", "guest-feature-probe", &[])
        .await;
    assert_eq!(d["world"], "featurizer");
    let (status, v) = server.invoke("probe-model", "text/plain", "iris").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["fields"]["status"],
        "error: model not found: model `iris` not found; list them with `sluice models ls`"
    );
    let (status, v) = server
        .invoke("probe-features", "text/plain", "customer-1")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["fields"]["status"],
        "error: feature not found: table `customers` not found; list them with `sluice tables ls`"
    );
}

#[tokio::test]
async fn guest_logs_reach_the_node_log_tagged_with_function_and_version() {
    let server = Server::start();
    server.deploy("chatty", "guest-misbehave", &[]).await;
    let (status, v) = server.invoke("chatty", "text/plain", "log").await;
    assert_eq!((status, v), (200, Value::from("logged")));
    let seen = crate::support::eventually(std::time::Duration::from_secs(5), || {
        let log = server.log_text();
        [
            "hello from the guest",
            "printed to stdout",
            "printed to stderr",
        ]
        .iter()
        .all(|needle| {
            log.lines().any(|l| {
                l.contains(needle) && l.contains("function=chatty") && l.contains("version=1")
            })
        })
    });
    assert!(seen, "log:\n{}", server.log_text());
    assert!(server.log_text().contains("answer=42"));
}
