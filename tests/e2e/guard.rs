//! Guards over real nodes: fallbacks answering for a trap, a deadline and
//! an open circuit; a circuit that opens and closes again; rate limits
//! that turn a burst away with 429s while every admitted call succeeds,
//! on one node and shared by two.

use crate::support::{Server, client, sluice, succeeded};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// One call of `/fn/{name}` with a text body: (status, headers, body).
async fn call(
    server: &Server,
    name: &str,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client()
        .post(server.url(&format!("/fn/{name}")))
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `PUT /v1/{kind}/{name}/guard`: the answer, which must be a success.
async fn guard(server: &Server, kind: &str, name: &str, guard: Value) -> Value {
    let response = client()
        .put(server.url(&format!("/v1/{kind}/{name}/guard")))
        .json(&guard)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "guard of {name}: {status} {body}");
    body
}

/// The value of the counter line of `/metrics` naming `family` with all
/// of `labels` (0 when there is none).
async fn counter(server: &Server, family: &str, labels: &[&str]) -> f64 {
    let text = server.metrics().await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn fallbacks_answer_for_a_trap_a_deadline_and_an_open_circuit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(&dir.path().join("data"), &["--rollout-check-ms", "100"]);

    // A trap: version 2 panics on `panic`; version 1 (a plain echo) answers.
    server.deploy("trap", "guest-pass-through", &[]).await;
    server.deploy("trap", "guest-misbehave", &[]).await;
    let refused = client()
        .put(server.url("/v1/functions/trap/guard"))
        .json(&json!({"fallback": {"to": "pipeline", "pipeline": "other"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        400,
        "a function cannot fall back to a pipeline"
    );
    guard(
        &server,
        "functions",
        "trap",
        json!({"fallback": {"to": "version", "version": 1}}),
    )
    .await;
    let (status, headers, body) = call(&server, "trap", "panic").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "panic", "the echo of version 1");
    assert_eq!(header(&headers, "x-sluice-stage"), "trap@1");
    assert_eq!(
        header(&headers, "x-sluice-fallback"),
        "version:1; reason=error"
    );
    let (status, headers, body) = call(&server, "trap", "hello").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-sluice-stage"), "trap@2");
    assert_eq!(
        header(&headers, "x-sluice-fallback"),
        "",
        "no fallback when it answers"
    );
    // A fallback version cannot be deleted from under its guard.
    let delete = client()
        .delete(server.url("/v1/functions/trap/versions/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 409);

    // A deadline: every call runs past its 200 ms; a static answer stands in.
    server
        .deploy(
            "slow",
            "guest-misbehave",
            &[("config.sleep_ms", "3000"), ("timeout_ms", "200")],
        )
        .await;
    let out = sluice()
        .args([
            "guard",
            "set",
            "slow",
            "--fallback-static",
            r#"{"label": "unknown"}"#,
        ])
        .args(["--fallback-on", "deadline", "--server", &server.url("")])
        .output()
        .unwrap();
    let shown = succeeded(&out);
    assert!(
        shown.contains("fallback: a static application/json response"),
        "{shown}"
    );
    let started = Instant::now();
    let (status, headers, body) = call(&server, "slow", "hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the deadline, not after the sleep"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"label": "unknown"})
    );
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(
        header(&headers, "x-sluice-fallback"),
        "static; reason=deadline"
    );
    assert_eq!(header(&headers, "x-sluice-stage"), "static");

    // An open circuit: three traps in a row open version 2's; the fallback
    // answers only for the open circuit, so the traps themselves are 500s.
    server.deploy("flaky", "guest-pass-through", &[]).await;
    server.deploy("flaky", "guest-misbehave", &[]).await;
    let breaker = json!({"consecutive_failures": 3, "open_secs": 1, "probes": 1});
    guard(
        &server,
        "functions",
        "flaky",
        json!({"fallback": {"to": "version", "version": 1, "on": ["circuit"]}, "breaker": breaker}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(call(&server, "flaky", "panic").await.0, 500);
    }
    let (status, headers, body) = call(&server, "flaky", "hello").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&headers, "x-sluice-fallback"),
        "version:1; reason=circuit"
    );
    assert_eq!(header(&headers, "x-sluice-stage"), "flaky@1");
    assert_eq!(body, "hello");
    // (Version 1 answered through a circuit of its own, closed.)
    let (_, shown) = server.get("/v1/functions/flaky/guard").await;
    assert_eq!(shown["circuits"][1]["version"], 2, "{shown}");
    assert_eq!(shown["circuits"][1]["state"], "open", "{shown}");
    assert_eq!(shown["circuits"][0]["state"], "closed", "{shown}");

    // Once open_secs passed, a probe goes through; it succeeds and closes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, headers, _) = call(&server, "flaky", "hello").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-sluice-stage"), "flaky@2", "the probe");
    assert_eq!(header(&headers, "x-sluice-fallback"), "");
    let (_, shown) = server.get("/v1/functions/flaky/guard").await;
    assert_eq!(shown["circuits"][1]["state"], "closed", "{shown}");

    // Every fallback and circuit change is counted; the circuit's changes
    // are in the audit log as the node's own actions.
    for (name, reason) in [
        ("trap", "error"),
        ("slow", "deadline"),
        ("flaky", "circuit"),
    ] {
        let (name, reason) = (format!("name=\"{name}\""), format!("reason=\"{reason}\""));
        let n = counter(&server, "sluice_fallbacks_total", &[&name, &reason]).await;
        assert_eq!(n, 1.0, "{name} {reason}");
    }
    for state in ["open", "half_open", "closed"] {
        let to = format!("to=\"{state}\"");
        let n = counter(
            &server,
            "sluice_circuit_changes_total",
            &["name=\"flaky@2\"", &to],
        )
        .await;
        assert_eq!(n, 1.0, "{state}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.audited("circuit.closed").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened = server.audited("circuit.open").await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(
        opened[0]["actor"].as_str().unwrap().starts_with("node:"),
        "{opened:?}"
    );
    assert_eq!(server.audited("circuit.closed").await.len(), 1);
    assert_eq!(server.audited("guard.set").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_without_a_fallback_answers_503_with_retry_after() {
    let server = Server::start();
    server.deploy("bare", "guest-misbehave", &[]).await;
    guard(
        &server,
        "functions",
        "bare",
        json!({"breaker": {"consecutive_failures": 2, "open_secs": 30}}),
    )
    .await;
    assert_eq!(call(&server, "bare", "panic").await.0, 500);
    assert_eq!(call(&server, "bare", "panic").await.0, 500);
    let (status, headers, body) = call(&server, "bare", "hello").await;
    assert_eq!(status, 503, "{body}");
    let wait: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((29..=30).contains(&wait), "{wait}");
    assert!(
        body.contains("circuit opened after repeated failures"),
        "{body}"
    );
    // Calling a version by number goes through its circuit too.
    assert_eq!(call(&server, "bare@1", "hello").await.0, 503);
    // Clearing the guard removes the breaker.
    let cleared = client()
        .delete(server.url("/v1/functions/bare/guard"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(call(&server, "bare", "hello").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_falls_back_to_another_pipeline() {
    let server = Server::start();
    server.deploy("trap", "guest-misbehave", &[]).await;
    server.deploy("echo", "guest-pass-through", &[]).await;
    for (name, function) in [("main", "trap"), ("plain", "echo")] {
        let manifest =
            format!("name = \"{name}\"\n[[step]]\nname = \"only\"\nfunction = \"{function}\"\n");
        let response = client()
            .put(server.url(&format!("/v1/pipelines/{name}")))
            .body(manifest)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    guard(
        &server,
        "pipelines",
        "main",
        json!({"fallback": {"to": "pipeline", "pipeline": "plain"}}),
    )
    .await;
    let response = client()
        .post(server.url("/p/main"))
        .header("content-type", "text/plain")
        .body("panic")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "x-sluice-fallback"),
        "pipeline:plain; reason=error"
    );
    assert_eq!(header(response.headers(), "x-sluice-pipeline"), "plain@1");
    assert_eq!(response.text().await.unwrap(), "panic");
    let refused = client()
        .put(server.url("/v1/pipelines/main/guard"))
        .json(&json!({"breaker": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "breakers are per stage and model");
}

/// Send `n` calls of `name` at once: how many were admitted (each one
/// must have answered the echo) and how many were refused with 429 and a
/// `Retry-After`.
async fn burst(server: &Server, name: &str, n: usize, token: Option<&str>) -> (usize, usize) {
    // Without a token: a client without the support client's admin token.
    let anonymous = reqwest::Client::new();
    let calls = (0..n).map(|i| {
        let request = match token {
            Some(token) => client()
                .post(server.url(&format!("/fn/{name}")))
                .bearer_auth(token),
            None => anonymous.post(server.url(&format!("/fn/{name}"))),
        };
        let request = request
            .header("content-type", "text/plain")
            .body(format!("call {i}"));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry = header(response.headers(), "retry-after");
            (status, retry, response.text().await.unwrap(), i)
        }
    });
    let (mut admitted, mut limited) = (0, 0);
    for (status, retry, body, i) in futures::future::join_all(calls).await {
        match status {
            200 => {
                assert_eq!(body, format!("call {i}"), "an admitted call answered right");
                admitted += 1;
            }
            429 => {
                assert!(retry.parse::<u64>().unwrap() >= 1, "{retry}");
                assert!(body.contains("rate limited"), "{body}");
                limited += 1;
            }
            other => panic!("call {i}: {other} {body}"),
        }
    }
    (admitted, limited)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_beyond_the_rate_limit_gets_429s_while_every_admitted_call_succeeds() {
    let server = Server::start();
    server.deploy("limited", "guest-pass-through", &[]).await;
    guard(
        &server,
        "functions",
        "limited",
        json!({"rate_limit": {"route": {"per_second": 2, "burst": 10}}}),
    )
    .await;
    let (admitted, limited) = burst(&server, "limited", 40, None).await;
    // The bucket's 10, and at most the few the rate refilled meanwhile.
    assert!((10..=12).contains(&admitted), "{admitted} admitted");
    assert_eq!(admitted + limited, 40);
    let counted = counter(
        &server,
        "sluice_rate_limited_total",
        &["name=\"limited\"", "to=\"route\""],
    )
    .await;
    assert_eq!(counted, limited as f64);
    // Reading a function's metadata is not a call: nothing to limit.
    assert_eq!(server.get("/v1/functions/limited/guard").await.0, 200);

    // Per token: each token its own bucket.
    server.deploy("per-token", "guest-pass-through", &[]).await;
    guard(
        &server,
        "functions",
        "per-token",
        json!({"rate_limit": {"per_token": {"per_second": 0.5, "burst": 3}}}),
    )
    .await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let response = client()
            .post(server.url("/v1/tokens"))
            .json(&json!({"name": name, "role": "invoker"}))
            .send()
            .await
            .unwrap();
        let made: Value = response.json().await.unwrap();
        tokens.push(made["token"].as_str().expect("token").to_string());
    }
    assert_eq!(
        burst(&server, "per-token", 8, Some(&tokens[0])).await,
        (3, 5)
    );
    assert_eq!(
        burst(&server, "per-token", 8, Some(&tokens[1])).await,
        (3, 5)
    );
    assert_eq!(
        burst(&server, "per-token", 8, None).await,
        (3, 5),
        "anonymous callers share one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_a_rate_limit_out_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let data: &Path = &dir.path().join("data");
    let flags = ["--heartbeat-ms", "200", "--poll-interval-ms", "100"];
    let (a, b) = (
        Server::start_on(data, &flags),
        Server::start_on(data, &flags),
    );
    a.deploy("shared", "guest-pass-through", &[]).await;
    guard(
        &a,
        "functions",
        "shared",
        json!({"rate_limit": {"route": {"per_second": 1, "burst": 20}}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in [&a, &b] {
        loop {
            let (_, shown) = node.get("/v1/functions/shared/guard").await;
            if shown["live_nodes"] == 2 && shown["guard"]["rate_limit"].is_object() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes never saw each other: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Each node takes half the burst: 10 of 30 on each, 20 in all.
    let (on_a, _) = burst(&a, "shared", 30, None).await;
    let (on_b, _) = burst(&b, "shared", 30, None).await;
    assert!((10..=11).contains(&on_a), "{on_a}");
    assert!((10..=11).contains(&on_b), "{on_b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_models_circuit_opens_and_its_fallback_version_answers() {
    use crate::models::{post, push};
    let server = Server::start();
    // Two versions of one model (tract fails a run whose index is past the
    // table; the node answers 500 and serves on).
    for description in ["first", "second"] {
        let (status, v) = push(&server, "gather", &[("description", description)]).await;
        assert_eq!(status, 201, "{v}");
    }
    let refused = client()
        .put(server.url("/v1/models/gather/guard"))
        .json(&json!({"fallback": {"to": "static", "content_type": "application/json", "body": "{}"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "a model answers tensors, not a body");
    guard(
        &server,
        "models",
        "gather",
        json!({"fallback": {"to": "version", "version": 1, "on": ["circuit"]},
               "breaker": {"consecutive_failures": 2, "open_secs": 30}}),
    )
    .await;
    let gather = |index: i64| json!({"inputs": [{"name": "I", "datatype": "INT64", "shape": [1], "data": [index]}]});
    for _ in 0..2 {
        assert_eq!(
            post(&server, "/v2/models/gather/infer", &gather(100))
                .await
                .0,
            500
        );
    }
    let response = client()
        .post(server.url("/v2/models/gather/infer"))
        .json(&gather(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "x-sluice-fallback"),
        "version:1; reason=circuit"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["model_version"], "1", "{answer}");
    assert_eq!(answer["outputs"][0]["data"], json!([4.0, 5.0]), "{answer}");
    let (_, shown) = server.get("/v1/models/gather/guard").await;
    let open = shown["circuits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["version"] == 2);
    assert_eq!(
        open.expect("version 2's circuit")["state"],
        "open",
        "{shown}"
    );
}
