//! Scale to zero on self-hosted nodes: idle functions and models are
//! unloaded (resident memory goes down, the next call is a cold start),
//! `--idle-exit` ends an idle node cleanly, and a node takes its listening
//! socket from systemd socket activation.

use crate::support::{Server, client, repo, sluice};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

async fn status(server: &Server) -> Value {
    server.get("/v1/status").await.1
}

/// `/v1/status` once `functions` functions and `models` models are loaded
/// (within `limit`).
async fn loaded(server: &Server, functions: u64, models: u64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let now = status(server).await;
        if now["functions_loaded"] == functions && now["models"]["entries"] == models {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "never {functions} functions and {models} models: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn idle_functions_and_models_are_unloaded_and_come_back_cold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_on(
        &dir.path().join("data"),
        &["--function-idle-secs", "2", "--model-idle-secs", "2"],
    );
    server.deploy("echo", "guest-misbehave", &[]).await;
    let models = [
        ("text-direction", "input_shape.x", "1,3,48,192"),
        ("digits-mlp", "", ""),
        ("diabetes-rf", "", ""),
    ];
    for (name, key, value) in models {
        let bytes = std::fs::read(repo().join(format!("examples/models/{name}.onnx"))).unwrap();
        let mut put = client().put(server.url(&format!("/v1/models/{name}")));
        if !key.is_empty() {
            put = put.query(&[(key, value)]);
        }
        let pushed = put.body(bytes).send().await.expect("push");
        assert_eq!(pushed.status(), 201);
    }
    // Warm: one call each.
    let (code, _) = server.invoke("echo", "text/plain", "warm").await;
    assert_eq!(code, 200);
    for (name, _, _) in models {
        let reference: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join(format!("examples/models/{name}.reference.json")))
                .unwrap(),
        )
        .unwrap();
        let (input, spec) = reference["inputs"]
            .as_object()
            .unwrap()
            .iter()
            .next()
            .unwrap();
        let request = json!({"inputs": [{"name": input, "datatype": "FP32", "shape": spec["shape"], "data": spec["data"]}]});
        let response = client()
            .post(server.url(&format!("/v2/models/{name}/infer")))
            .json(&request)
            .send()
            .await
            .expect("infer");
        assert_eq!(response.status(), 200, "{name}");
    }
    let warm = status(&server).await;
    assert_eq!(warm["functions_loaded"], 1, "{warm}");
    assert_eq!(warm["models"]["entries"], 3, "{warm}");
    let warm_rss = warm["resident_anonymous_bytes"]
        .as_u64()
        .expect("resident bytes");

    // Idle: everything unloaded within a few reaper ticks.
    let idle = loaded(&server, 0, 0, Duration::from_secs(20)).await;
    assert_eq!(idle["templates"]["idle_evictions"], 1, "{idle}");
    assert_eq!(idle["models"]["idle_evictions"], 3, "{idle}");
    // The node trims the allocator just after it reports the unload: give
    // it a moment to hand the pages back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let idle_rss = status(&server).await["resident_anonymous_bytes"]
            .as_u64()
            .expect("resident bytes");
        if idle_rss + (1 << 20) < warm_rss {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anonymous resident memory did not go down by 1 MiB: {warm_rss} warm, {idle_rss} after unloading"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server
            .log_text()
            .contains("unloaded idle functions and models")
    );

    // The next call works and is a cold start.
    let cold_before = idle["counters"]["cold_starts"].as_u64().unwrap();
    let (code, answer) = server.invoke("echo", "text/plain", "cold").await;
    assert_eq!(code, 200, "{answer}");
    let after = status(&server).await;
    assert_eq!(after["counters"]["cold_starts"], cold_before + 1, "{after}");
    assert_eq!(after["functions_loaded"], 1);
    assert!(server.log_text().contains("cold start: function loaded"));
}

#[tokio::test]
async fn idle_exit_ends_an_idle_node_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_on(&dir.path().join("data"), &["--idle-exit", "1"]);
    // Requests keep it alive ...
    for _ in 0..4 {
        assert_eq!(server.get("/healthz").await.0, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // ... and a second without one ends it, with status 0.
    let started = Instant::now();
    let exit = server
        .wait_exit(Duration::from_secs(15))
        .expect("the node did not exit");
    assert!(exit.success(), "{exit}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        server.log_text().contains("--idle-exit"),
        "{}",
        server.log_text()
    );
}

#[tokio::test]
async fn a_node_serves_on_the_socket_systemd_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().unwrap();
    let fd = socket.as_raw_fd();
    // As systemd does: the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID set
    // to the server's own pid (the shell's, which exec keeps). --listen
    // names the same, already bound, address: binding it would fail.
    let command = sluice();
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve --data "$1" --listen "$2""#)
        .arg(command.get_program())
        .arg(dir.path().join("data"))
        .arg(addr.to_string())
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; it runs in the child before exec.
    unsafe {
        shell.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = shell.spawn().expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("line");
    assert_eq!(line.trim(), format!("listening on http://{addr}"));
    drop(socket);
    let answer = client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(answer.text().await.unwrap(), "ok");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn at_the_concurrency_cap_calls_queue_and_past_the_queue_get_503_with_retry_after() {
    let server = Server::start();
    server
        .deploy(
            "capped",
            "guest-misbehave",
            &[
                ("max_concurrency", "2"),
                ("max_queue", "2"),
                ("timeout_ms", "6000"),
            ],
        )
        .await;
    let server = std::sync::Arc::new(server);
    let call = |body: &'static str| {
        let server = server.clone();
        tokio::spawn(async move {
            let response = client()
                .post(server.url("/fn/capped"))
                .body(body)
                .send()
                .await
                .expect("call");
            (
                response.status().as_u16(),
                response.headers().get("retry-after").cloned(),
            )
        })
    };
    let until = |want_running: u64, want_queued: u64| {
        let server = server.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let now = status(&server).await;
                let gate = &now["concurrency"][0];
                if gate["running"] == want_running && gate["queued"] == want_queued {
                    return now;
                }
                assert!(
                    Instant::now() < deadline,
                    "never {want_running}/{want_queued}: {now}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Two calls hold both slots until their 6 s deadline (long, so that a
    // loaded machine still sees the next ones queue behind them) ...
    let busy = [call("loop"), call("loop")];
    until(2, 0).await;
    // ... two more wait in the queue ...
    let queued = [call("first in line"), call("second in line")];
    let now = until(2, 2).await;
    assert_eq!(now["concurrency"][0]["function"], "capped@1");
    assert_eq!(now["concurrency"][0]["max_concurrency"], 2);
    assert!(now["in_flight"].as_u64().unwrap() >= 4, "{now}");
    // ... and the next is turned away at once, told when to come back.
    let started = Instant::now();
    let (code, retry) = call("one too many").await.expect("task");
    assert_eq!(code, 503);
    assert_eq!(retry.expect("Retry-After"), "1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a call past the queue waited"
    );
    for task in busy {
        assert_eq!(task.await.expect("task").0, 504);
    }
    // The queued calls ran once slots freed.
    for task in queued {
        assert_eq!(task.await.expect("task").0, 200);
    }
    until(0, 0).await;

    // Settings that make no sense are refused, saying why.
    for (query, message) in [
        (
            vec![("max_concurrency", "0")],
            "max_concurrency must be between 1 and",
        ),
        (vec![("max_queue", "3")], "max_queue needs max_concurrency"),
    ] {
        let response = client()
            .put(server.url("/v1/functions/capped"))
            .query(&query)
            .body(crate::support::component_bytes("guest-misbehave"))
            .send()
            .await
            .expect("deploy");
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("JSON");
        assert!(body["error"].as_str().unwrap().contains(message), "{body}");
    }
}

#[tokio::test]
async fn a_version_can_set_its_own_idle_time() {
    // The node keeps things for its default 300 s; one function and one
    // model ask to go after 1 s, another function never to go.
    let server = Server::start();
    server
        .deploy("brief", "guest-misbehave", &[("idle_secs", "1")])
        .await;
    server
        .deploy("pinned", "guest-feature-probe", &[("idle_secs", "0")])
        .await;
    let bytes = std::fs::read(repo().join("examples/models/iris-logreg.onnx")).unwrap();
    let pushed = client()
        .put(server.url("/v1/models/iris"))
        .query(&[("idle_secs", "1")])
        .body(bytes)
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 201);
    let (_, record) = server.get("/v1/models/iris").await;
    assert_eq!(record["versions"][0]["idle_secs"], 1, "{record}");
    assert_eq!(server.invoke("brief", "text/plain", "hi").await.0, 200);
    server.invoke("pinned", "text/plain", "hi").await;
    let infer = client()
        .post(server.url("/v2/models/iris/infer"))
        .json(&json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}))
        .send()
        .await
        .expect("infer");
    assert_eq!(infer.status(), 200);
    assert_eq!(status(&server).await["functions_loaded"], 2);

    let now = loaded(&server, 1, 0, Duration::from_secs(15)).await;
    assert_eq!(now["templates"]["idle_evictions"], 1, "{now}");
    // Still there a while later: only `brief` went.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(&server).await["functions_loaded"], 1);
}

/// `/v1/status` once `check` holds for it (within 10 s).
async fn status_when(server: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(server).await;
        if check(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "never {what}: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_template_budget_bounds_loaded_functions_and_their_gates_go_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let capped = [("max_concurrency", "4")];
    // Two functions, both loaded: what one template weighs.
    let weight = {
        let server = Server::start_on(&data, &[]);
        for name in ["a", "b"] {
            server.deploy(name, "guest-misbehave", &capped).await;
            assert_eq!(server.invoke(name, "text/plain", "x").await.0, 200);
        }
        let now = status(&server).await;
        assert_eq!(now["templates"]["entries"], 2, "{now}");
        now["templates"]["bytes"].as_u64().unwrap() / 2
    };

    // A budget for one and a half: calling both keeps one loaded.
    let budget = weight * 3 / 2;
    let server = Server::start_on(&data, &["--template-cache-bytes", &budget.to_string()]);
    for name in ["a", "b", "a", "b"] {
        assert_eq!(server.invoke(name, "text/plain", "x").await.0, 200);
    }
    let now = status(&server).await;
    assert_eq!(now["templates"]["entries"], 1, "{now}");
    assert_eq!(now["templates"]["budget"], budget, "{now}");
    assert!(
        now["templates"]["bytes"].as_u64().unwrap() <= budget,
        "{now}"
    );
    assert!(
        now["templates"]["evictions"].as_u64().unwrap() >= 3,
        "{now}"
    );
    // The evicted version's gate goes too (the idle reaper prunes it).
    let now = status_when(&server, "one gate", |s| {
        s["concurrency"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(now["concurrency"][0]["function"], "b@1", "{now}");

    // Deleting the loaded version drops its template and its gate at once.
    let deleted = client()
        .delete(server.url("/v1/functions/b/versions/1"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let now = status(&server).await;
    assert_eq!(now["templates"]["entries"], 0, "{now}");
    assert_eq!(now["concurrency"], json!([]), "{now}");
}
