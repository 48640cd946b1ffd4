//! Misbehaving stages fail only their own request.

use crate::support::Server;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_looping_stage_hits_its_deadline_while_others_are_served() {
    let server = Server::start();
    server
        .deploy("spin", "guest-misbehave", &[("timeout_ms", "1500")])
        .await;
    server.deploy("echo", "guest-misbehave", &[]).await;
    let started = Instant::now();
    let looping = server.invoke("spin", "text/plain", "loop");
    let others = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answered = Vec::new();
        for i in 0..5 {
            let (status, v) = server
                .invoke("echo", "text/plain", format!("meanwhile-{i}"))
                .await;
            answered.push((status, v["body"]["text"].clone(), started.elapsed()));
        }
        answered
    };
    let ((status, v), answered) = tokio::join!(looping, others);
    assert_eq!(status, 504, "{v}");
    assert_eq!(
        v["error"],
        "deadline exceeded: the stage ran longer than its 1500ms limit"
    );
    assert_eq!(v["stage"], "spin");
    let loop_ended = started.elapsed();
    assert!(loop_ended >= Duration::from_millis(1500));
    for (i, (status, text, at)) in answered.into_iter().enumerate() {
        assert_eq!(
            (status, text.as_str().unwrap_or_default()),
            (200, format!("meanwhile-{i}").as_str())
        );
        assert!(
            at < Duration::from_millis(1500),
            "request {i} waited for the loop ({at:?})"
        );
    }
}

#[tokio::test]
async fn a_stage_past_its_memory_cap_fails_alone() {
    let server = Server::start();
    server
        .deploy("hog", "guest-misbehave", &[("memory_mb", "16")])
        .await;
    let (status, v) = server.invoke("hog", "text/plain", "alloc").await;
    assert_eq!(status, 500, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.starts_with("memory limit exceeded"), "{error}");
    assert!(error.contains("its cap is 16777216 bytes"), "{error}");
    let (status, v) = server.invoke("hog", "text/plain", "still here").await;
    assert_eq!(
        (status, v["body"]["text"].as_str()),
        (200, Some("still here"))
    );
}

#[tokio::test]
async fn a_panicking_stage_returns_500_with_the_panic_message() {
    let server = Server::start();
    server.deploy("boom", "guest-misbehave", &[]).await;
    let (status, v) = server.invoke("boom", "text/plain", "panic").await;
    assert_eq!(status, 500, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("the stage trapped: panicked at"),
        "{error}"
    );
    assert!(error.contains("deliberate panic for testing"), "{error}");
    assert!(error.contains("unreachable"), "{error}");
    // The poisoned instance was thrown away: the next call is fine.
    let (status, _) = server.invoke("boom", "text/plain", "fine").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn limits_out_of_range_are_refused_at_deploy() {
    let server = Server::start();
    for (key, value, expected) in [
        ("timeout_ms", "0", "timeout_ms must be between 1 and 900000"),
        (
            "memory_mb",
            "100000",
            "memory must be between 1 MiB and this node's ceiling of 256 MiB",
        ),
        (
            "timeout_ms",
            "soon",
            "query parameter `timeout_ms` must be a whole number",
        ),
        ("colour", "blue", "unknown query parameter `colour`"),
        (
            "fuel",
            "5",
            "fuel must be between 1000000 and 10000000000000",
        ),
        ("fuel", "99999999999999999", "fuel must be between 1000000"),
    ] {
        let response = crate::support::client()
            .put(server.url("/v1/functions/x"))
            .query(&[(key, value)])
            .body(crate::support::component_bytes("guest-misbehave"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let v: serde_json::Value = response.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(expected), "{v}");
    }
}

/// What a stage sends back is bounded on the host: an output over the
/// node's per-call cap fails the call, and a log record's fields are
/// truncated and counted.
#[tokio::test]
async fn guest_output_and_log_fields_are_bounded_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(&dir.path().join("data"), &["--max-output-mb", "8"]);
    server.deploy("m", "guest-misbehave", &[]).await;
    // 9 MiB out of a 4-byte request.
    let (status, v) = server.invoke("m", "text/plain", "grow").await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(
        v["error"],
        "the stage returned 9437184 bytes, more than this node's per-call output cap of 8388608 bytes (--max-output-mb)"
    );
    // Within the cap, the same instance pool answers.
    let (status, v) = server.invoke("m", "text/plain", "fine").await;
    assert_eq!((status, v["body"]["text"].as_str()), (200, Some("fine")));

    // 100 fields, one of them 1 MiB: 32 kept, the big one cut at 1 KiB.
    let (status, _) = server.invoke("m", "text/plain", "noisy").await;
    assert_eq!(status, 200);
    let seen = crate::support::eventually(Duration::from_secs(5), || {
        server.log_text().contains("a noisy record")
    });
    assert!(seen, "log:\n{}", server.log_text());
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("a noisy record"))
        .expect("the record");
    assert!(line.contains("f31=v"), "{line}");
    assert!(!line.contains("f32=v"), "{line}");
    assert!(line.contains("…(+68 more fields)"), "{line}");
    assert!(line.len() < 4096, "a {}-byte log line", line.len());
}
