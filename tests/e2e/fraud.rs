//! The fraud example end to end: `sluice up examples/fraud` (its stages
//! built from the repo, its model, its feature table ingested), then each
//! transaction of expected.json scored through the pipeline against
//! onnxruntime's score on the same features, and through `fraud-py`, its
//! decision stage in Python, to the same answer.

use crate::support::{Up, client, repo};
use serde_json::Value;

#[tokio::test]
async fn the_fraud_pipeline_scores_transactions_as_onnxruntime_does_with_reasons() {
    let up = Up::start("examples/fraud");
    let curl = up
        .curls
        .iter()
        .find(|c| c.contains("/p/fraud"))
        .expect("a curl line for the pipeline");
    let addr = curl
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("an address")
        .to_string();
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/fraud/expected.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(expected.len(), 5);
    for case in &expected {
        let response = client()
            .post(format!("http://{addr}/p/fraud"))
            .json(&case["request"])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        // The decision stage in Python answers the same bytes.
        let python = client()
            .post(format!("http://{addr}/p/fraud-py"))
            .json(&case["request"])
            .send()
            .await
            .unwrap();
        assert_eq!(python.status(), 200);
        let python: Value = python.json().await.unwrap();
        assert_eq!(python, answer);
        let id = &case["request"]["transaction_id"];
        assert_eq!(&answer["transaction_id"], id, "{answer}");
        assert_eq!(answer["decision"], case["decision"], "{id}: {answer}");
        assert_eq!(answer["reasons"], case["reasons"], "{id}: {answer}");
        let (got, want) = (
            answer["score"].as_f64().unwrap(),
            case["score"].as_f64().unwrap(),
        );
        // Both compute in f32: a probability agrees to a few of its ulps at 1.
        assert!(
            (got - want).abs() <= 1e-6,
            "{id}: score {got}, onnxruntime {want}"
        );
    }
    // The decisions cover both ends.
    let decisions: Vec<&str> = expected
        .iter()
        .map(|c| c["decision"].as_str().unwrap())
        .collect();
    assert!(decisions.contains(&"approve") && decisions.contains(&"decline"));

    // A malformed transaction is the caller's error, naming the field.
    let response = client()
        .post(format!("http://{addr}/p/fraud"))
        .body(r#"{"transaction_id": "x", "user_id": "u007", "amount": -5, "country": "FR", "timestamp": "2026-03-02T12:15:00Z"}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("`amount` must be a positive number"),
        "{text}"
    );
}
