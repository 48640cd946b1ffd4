//! Rollouts over real nodes: weighted and sticky splits, shadows, and the
//! automatic rollback of a version that breaks its SLO, on two nodes
//! sharing a store.

use crate::support::{Server, client, only_alert, sluice, succeeded, webhook};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Poll interval of these tests' nodes: how soon one sees another's change.
const POLL_MS: &str = "100";

/// Deploy `guest-misbehave` as version after version of `name`, each with
/// its own config (`config.tag`, `config.fail`, `config.sleep_ms`).
async fn versions(server: &Server, name: &str, configs: &[&[(&str, &str)]]) {
    for (i, config) in configs.iter().enumerate() {
        let deployed = server.deploy(name, "guest-misbehave", config).await;
        assert_eq!(deployed["version"], i as u64 + 1, "{deployed}");
    }
}

/// `sluice rollout ARGS --server` against `server`: its output.
fn rollout(server: &Server, args: &[&str]) -> String {
    let output = sluice()
        .arg("rollout")
        .args(args)
        .args(["--server", &server.url("")])
        .output()
        .unwrap();
    succeeded(&output)
}

/// One call of function `name`: (status, its `tag` field, `x-sluice-stage`).
async fn call(server: &Server, name: &str, user: Option<&str>) -> (u16, String, String) {
    let mut request = client()
        .post(server.url(&format!("/fn/{name}")))
        .header("content-type", "text/plain")
        .body("hello");
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let stage = response
        .headers()
        .get("x-sluice-stage")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let tag = body["fields"]["tag"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, tag, stage)
}

/// `n` calls of `name`, 16 at a time: how many each tag answered.
async fn tally(server: &Server, name: &str, n: usize) -> HashMap<String, usize> {
    let mut tags = HashMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let calls = chunk.iter().map(|_| call(server, name, None));
        for (status, tag, stage) in futures::future::join_all(calls).await {
            assert_eq!(status, 200, "{tag}");
            let expected = if tag == "one" { "@1" } else { "@2" };
            assert!(stage.ends_with(expected), "{stage} answered tag {tag}");
            *tags.entry(tag).or_default() += 1;
        }
    }
    tags
}

async fn rollout_state(server: &Server, name: &str) -> Value {
    server.get(&format!("/v1/functions/{name}/rollout")).await.1
}

/// Wait until `server` reports the rollout of `name` in `state` (with
/// `weight`, if given).
async fn wait_for(server: &Server, name: &str, state: &str, weight: Option<u64>) -> Value {
    let start = Instant::now();
    loop {
        let status = rollout_state(server, name).await;
        let r = &status["rollout"];
        if r["state"] == state && weight.is_none_or(|w| r["weight"] == w) {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "rollout of {name} never reached {state} ({weight:?}): {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn two_nodes(data: &Path, extra: &[&str]) -> (Server, Server) {
    let mut flags = vec!["--poll-interval-ms", POLL_MS];
    flags.extend_from_slice(extra);
    (
        Server::start_on(data, &flags),
        Server::start_on(data, &flags),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_and_sticky_splits_route_every_node_alike_until_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(&dir.path().join("data"), &[]);
    versions(
        &a,
        "split",
        &[&[("config.tag", "one")], &[("config.tag", "two")]],
    )
    .await;
    // Without a rollout the newest version answers.
    assert_eq!(call(&a, "split", None).await.1, "two");

    let started = rollout(&a, &["start", "split", "--to", "2", "--weight", "10"]);
    assert!(
        started.contains("rollout 1 → 2: active (taking 10% of the calls)"),
        "{started}"
    );
    // `stable` is pinned to the version rolled out from.
    let (_, head) = a.get("/v1/functions/split").await;
    assert_eq!(head["aliases"]["stable"], 1, "{head}");
    let tags = tally(&a, "split", 2000).await;
    let canary = tags.get("two").copied().unwrap_or_default();
    // Binomial(2000, 0.1): 200 ± 40 is three standard deviations.
    assert!((160..=240).contains(&canary), "{tags:?}");

    rollout(&a, &["set", "split", "25"]);
    wait_for(&b, "split", "active", Some(25)).await;
    let tags = tally(&b, "split", 2000).await;
    let canary = tags.get("two").copied().unwrap_or_default();
    // Binomial(2000, 0.25): 500 ± 58. On failure, b's routed-call counters
    // tell calls routed on a stale head from a skewed split.
    if !(442..=558).contains(&canary) {
        let seen = rollout_state(&b, "split").await;
        let metrics = b.metrics().await;
        let routed: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains("rollout_calls"))
            .collect();
        panic!("node b split {tags:?} at weight 25; b reports {seen}; routed {routed:?}");
    }

    // A second rollout cannot start over an active one.
    let refused = sluice()
        .args(["rollout", "start", "split", "--to", "1", "--weight", "5"])
        .args(["--server", &a.url("")])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("already rolling out version 2"), "{error}");

    // Sticky: a caller keeps its version on either node, and raising the
    // weight only moves callers onto the new version.
    rollout(&a, &["abort", "split"]);
    rollout(
        &a,
        &[
            "start",
            "split",
            "--to",
            "2",
            "--weight",
            "30",
            "--sticky-key",
            "header:x-user",
        ],
    );
    wait_for(&b, "split", "active", Some(30)).await;
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut first = HashMap::new();
    for user in &users {
        let mut seen = Vec::new();
        for node in [&a, &b, &a, &b] {
            let (status, tag, _) = call(node, "split", Some(user)).await;
            assert_eq!(status, 200);
            seen.push(tag);
        }
        assert!(seen.iter().all(|t| *t == seen[0]), "{user}: {seen:?}");
        first.insert(user.clone(), seen[0].clone());
    }
    let on_two = first.values().filter(|t| *t == "two").count();
    // Binomial(200, 0.3): 60 ± 20.
    assert!(
        (40..=80).contains(&on_two),
        "{on_two} of 200 users on version 2"
    );
    rollout(&a, &["set", "split", "60"]);
    wait_for(&b, "split", "active", Some(60)).await;
    for user in &users {
        let (_, tag, _) = call(&b, "split", Some(user)).await;
        if first[user] == "two" {
            assert_eq!(tag, "two", "{user} left the new version as its weight rose");
        }
    }
    // A call without the key stays on the stable version.
    assert_eq!(call(&a, "split", None).await.1, "one");
    // A call naming a version is not routed.
    assert_eq!(call(&a, "split@2", None).await.1, "two");

    let promoted = rollout(&a, &["promote", "split"]);
    assert!(promoted.contains("stable version 2"), "{promoted}");
    wait_for(&b, "split", "promoted", None).await;
    for node in [&a, &b] {
        let tags = tally(node, "split", 50).await;
        assert_eq!(tags.get("two"), Some(&50), "{tags:?}");
    }
    let actions: Vec<String> = [
        "rollout.start",
        "rollout.set",
        "rollout.abort",
        "rollout.promote",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for action in &actions {
        assert!(!a.audited(action).await.is_empty(), "no {action} record");
    }
    let status = rollout(&b, &["status", "split"]);
    assert!(status.contains("stable version 2"), "{status}");
    assert!(status.contains("rollout 1 → 2: promoted"), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_never_changes_an_answer_nor_makes_it_wait() {
    let server = Server::start();
    versions(
        &server,
        "mirror",
        &[
            &[("config.tag", "one")],
            &[("config.tag", "two"), ("config.sleep_ms", "400")],
        ],
    )
    .await;
    rollout(
        &server,
        &[
            "start", "mirror", "--to", "2", "--weight", "100", "--shadow",
        ],
    );
    for _ in 0..20 {
        let started = Instant::now();
        let (status, tag, stage) = call(&server, "mirror", None).await;
        // The shadow sleeps 400 ms; the answer does not wait for it.
        assert!(
            started.elapsed() < Duration::from_millis(350),
            "{:?}",
            started.elapsed()
        );
        assert_eq!((status, tag.as_str()), (200, "one"));
        assert!(stage.ends_with("@1"), "{stage}");
    }
    // Every copy ran and its answer (tag two) was found to differ.
    let start = Instant::now();
    let node = loop {
        let status = rollout_state(&server, "mirror").await;
        if status["node"]["shadow_differ"] == 20 {
            break status["node"].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(node["shadow_same"], 0, "{node}");
    assert_eq!(node["canary"]["calls"], 20, "{node}");
    assert!(
        node["canary"]["p95_ms"].as_f64().unwrap() >= 400.0,
        "{node}"
    );
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sluice_shadow_calls_total{") && l.contains("result=\"differ\""))
        .unwrap_or_else(|| panic!("no shadow counter in {metrics}"));
    assert!(line.ends_with(" 20"), "{line}");
}

// Multi-threaded: the webhook answers while the test waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_version_rolls_back_on_both_nodes_with_one_audit_record_and_one_alert() {
    let (hook, received) = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(
        &dir.path().join("data"),
        &["--alert-webhook", &hook, "--rollout-check-ms", "200"],
    );
    versions(
        &a,
        "brittle",
        &[
            &[("config.tag", "one")],
            &[("config.tag", "two"), ("config.fail", "1")],
        ],
    )
    .await;
    rollout(
        &a,
        &[
            "start",
            "brittle",
            "--to",
            "2",
            "--weight",
            "50",
            "--min-requests",
            "10",
        ],
    );
    wait_for(&b, "brittle", "active", None).await;
    // Both nodes route half the calls to the failing version until one of
    // them judges it; then every call on both answers from version 1.
    let mut failed = 0;
    for _ in 0..40 {
        for node in [&a, &b] {
            let (status, tag, _) = call(node, "brittle", None).await;
            match status {
                200 => assert_eq!(tag, "one"),
                500 => failed += 1,
                other => panic!("status {other}"),
            }
        }
    }
    assert!(failed >= 10, "{failed} calls failed");
    let rolled_back = wait_for(&a, "brittle", "rolled_back", None).await;
    wait_for(&b, "brittle", "rolled_back", None).await;
    let reason = rolled_back["rollout"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("error rate 100.0%"), "{reason}");
    for node in [&a, &b] {
        for _ in 0..40 {
            let (status, tag, _) = call(node, "brittle", None).await;
            assert_eq!((status, tag.as_str()), (200, "one"));
        }
    }
    let records = a.audited("rollout.rollback").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0]["actor"].as_str().unwrap().starts_with("node:"),
        "{records:?}"
    );
    let alert = only_alert(&received, Duration::from_secs(1)).await;
    assert_eq!(
        (&alert["event"], &alert["from"], &alert["to"]),
        (&json!("rollback"), &json!(1), &json!(2))
    );
    assert_eq!(alert["reason"], reason);
}
