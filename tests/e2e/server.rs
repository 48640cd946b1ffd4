//! The HTTP server under hostile or careless clients.

use crate::support::Server;
use futures::StreamExt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[tokio::test]
async fn oversized_bodies_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(
        &dir.path().join("data"),
        &["--max-body-bytes", "1024", "--max-component-mb", "1"],
    );
    server.deploy("echo", "guest-misbehave", &[]).await;
    let (status, v) = server.invoke("echo", "text/plain", vec![b'x'; 2048]).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("limit of 1024 bytes"));
    let (status, _) = server.invoke("echo", "text/plain", vec![b'x'; 1000]).await;
    assert_eq!(status, 200);
    let big = vec![0u8; 2 << 20];
    let response = crate::support::client()
        .put(server.url("/v1/functions/big"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn concurrent_uploads_past_the_in_flight_budget_get_503_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(
        &dir.path().join("data"),
        &["--max-inflight-body-mb", "1024"],
    );
    let base = server.peak_rss();
    // 20 uploads of 200 MiB at once against a 1 GiB budget: at most five
    // bodies fit at a time. Each differs in its first chunk (a blob of its
    // own) and is sent in 1 MiB chunks with its length declared.
    const MIB: usize = 1 << 20;
    let chunk = bytes::Bytes::from(vec![7u8; MIB]);
    let sends = (0..20u8).map(|i| {
        let mut first = vec![7u8; MIB];
        first[0] = i;
        let chunks = std::iter::once(bytes::Bytes::from(first))
            .chain(std::iter::repeat_n(chunk.clone(), 199))
            .map(Ok::<_, std::io::Error>);
        let request = crate::support::client()
            .put(server.url("/v1/blobs"))
            .header("content-length", 200 * MIB)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
        async move {
            let response = request.send().await.expect("an answer");
            let retry = response.headers().get("retry-after").cloned();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, retry, body)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let refused = answers.iter().filter(|(s, ..)| *s == 503).count();
    assert!(refused >= 1, "{answers:?}");
    for (status, retry, body) in &answers {
        match status {
            503 => {
                assert_eq!(retry.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
                let error = body["error"].as_str().unwrap_or_default();
                assert!(error.contains("--max-inflight-body-mb"), "{body}");
            }
            201 => assert!(body["digest"].is_string(), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let peak = server.peak_rss();
    let held = peak.saturating_sub(base);
    eprintln!(
        "peak RSS {} MiB (at start {} MiB), {refused} of 20 uploads refused",
        peak >> 20,
        base >> 20
    );
    // Blobs are spooled to a file and streamed to the store: none is held
    // whole, so the node grows by far less than the budget it admits.
    assert!(
        held < 256 << 20,
        "the node grew by {} MiB while taking five 200 MiB blobs",
        held >> 20
    );
    // Up, and exactly the accepted uploads are stored, whole.
    let (status, _) = server.get("/v1/status").await;
    assert_eq!(status, 200);
    let stored: Vec<u64> = walk(&dir.path().join("data"))
        .into_iter()
        .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
        .filter(|len| *len >= MIB as u64)
        .collect();
    assert_eq!(stored.len(), 20 - refused, "{stored:?}");
    assert!(
        stored.iter().all(|len| *len == 200 * MIB as u64),
        "{stored:?}"
    );
    // A body larger than the whole budget can never fit: 413 at once, not
    // 503 (no body is sent at all).
    let (answer, _) = raw_exchange(
        &server,
        format!(
            "PUT /v1/models/huge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            crate::support::ADMIN_TOKEN,
            2u64 << 30
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than all this node may hold"),
        "{answer}"
    );
}

/// A chunked body declares no length: it is held against the budget at its
/// route's cap (it may grow that large), so chunked uploads past the budget
/// get 503 like declared ones, and a route whose cap passes the whole
/// budget asks for a length.
#[tokio::test]
async fn chunked_bodies_are_held_at_their_routes_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(
        &dir.path().join("data"),
        &[
            "--max-inflight-body-mb",
            "64",
            "--max-body-bytes",
            "16777216",
        ],
    );
    server.deploy("echo", "guest-misbehave", &[]).await;
    // Eight slow 4 MiB bodies at once, each held at the 16 MiB cap: four
    // fit in 64 MiB.
    let sends = (0..8u8).map(|i| {
        let chunks = (0..16).map(move |_| {
            let chunk = bytes::Bytes::from(vec![b'a' + i; 256 << 10]);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::io::Error>(chunk)
            }
        });
        let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks).then(|c| c));
        let request = crate::support::client()
            .post(server.url("/fn/echo"))
            .header("content-type", "text/plain")
            .body(body);
        async move {
            let response = request.send().await.expect("an answer");
            let retry = response.headers().get("retry-after").cloned();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            (i, status, retry, body)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let refused = answers.iter().filter(|(_, s, ..)| *s == 503).count();
    assert!((4..8).contains(&refused), "{refused} of 8 refused");
    for (i, status, retry, body) in &answers {
        match status {
            200 => {
                // Echoed whole, as the message's body.
                let echoed: serde_json::Value = serde_json::from_slice(body).unwrap();
                let text = echoed["body"]["text"].as_str().unwrap_or_default();
                assert!(
                    text.len() == 4 << 20 && text.bytes().all(|b| b == b'a' + i),
                    "upload {i}: {} bytes back: {}",
                    text.len(),
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
            503 => {
                assert_eq!(retry.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
                let text = String::from_utf8_lossy(body);
                assert!(text.contains("--max-inflight-body-mb"), "{text}");
            }
            other => panic!("upload {i}: unexpected {other}"),
        }
    }
    // A model push may be 1 GiB, more than the whole budget: without a
    // length it is refused at once, naming what to send.
    let (answer, _) = raw_exchange(
        &server,
        format!(
            "PUT /v1/models/m HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            crate::support::ADMIN_TOKEN
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(
        answer.contains("send the body with a Content-Length"),
        "{answer}"
    );
    // Nothing is held once they are answered.
    assert_eq!(server.invoke("echo", "text/plain", "ok").await.0, 200);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn raw_exchange(server: &Server, request: &[u8]) -> (String, Duration) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    (answer, started.elapsed())
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(
        &dir.path().join("data"),
        &["--header-timeout-ms", "300", "--body-timeout-ms", "300"],
    );
    server.deploy("echo", "guest-misbehave", &[]).await;
    // Headers that never finish: the connection is closed.
    let (answer, took) = raw_exchange(&server, b"POST /fn/echo HTTP/1.1\r\nHost: x\r\n");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    // A body that never finishes: 408.
    let (answer, took) = raw_exchange(
        &server,
        b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-this",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The node still serves.
    assert_eq!(server.invoke("echo", "text/plain", "ok").await.0, 200);
}

#[tokio::test]
async fn health_status_and_request_ids() {
    let server = Server::start();
    let response = crate::support::client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = crate::support::client()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, v) = server.get("/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(v["engine"]["pooling"], true);
    assert!(v["store"].as_str().unwrap().starts_with("directory "));

    server.deploy("echo", "guest-misbehave", &[]).await;
    let response = crate::support::client()
        .post(server.url("/fn/echo"))
        .header("x-request-id", "trace-abc-123")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    assert_eq!(response.headers()["x-sluice-stage"], "echo@1");

    let response = crate::support::client()
        .get(server.url("/fn/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let v: serde_json::Value = response.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("POST"));
}

#[tokio::test]
async fn with_admin_listen_the_control_plane_answers_only_on_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(&dir.path().join("data"), &["--admin-listen", "127.0.0.1:0"]);
    let admin = format!(
        "http://{}",
        server.admin.expect("the control plane's address")
    );
    let client = crate::support::client();

    // Deploys, listings and status go to the control plane's address ...
    let deployed = client
        .put(format!("{admin}/v1/functions/echo"))
        .body(crate::support::component_bytes("guest-misbehave"))
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 201);
    let listed: serde_json::Value = client
        .get(format!("{admin}/v1/functions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["functions"][0]["name"], "echo", "{listed}");
    let status = client
        .get(format!("{admin}/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);

    // ... and are not found on the data plane's, which serves calls,
    // inference and health.
    for (method, path) in [
        ("GET", "/v1/status"),
        ("GET", "/v1/functions"),
        ("PUT", "/v1/functions/echo"),
        ("DELETE", "/v1/functions/echo/versions/1"),
        ("PUT", "/v1/blobs"),
    ] {
        let response = client
            .request(method.parse().unwrap(), server.url(path))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path} on the data plane");
    }
    assert_eq!(server.invoke("echo", "text/plain", "hi").await.0, 200);
    for path in ["/healthz", "/v2/health/live"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // The control plane's address does not take calls.
    let call = client
        .post(format!("{admin}/fn/echo"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 404);
}

/// Tensor JSON is decoded straight into typed elements: a 50 MB OIP JSON
/// request costs a small multiple of its size in the node's memory, not
/// the 20–30× of a generic JSON tree.
#[tokio::test]
async fn a_50_mb_oip_json_request_takes_a_small_multiple_of_its_size_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(&dir.path().join("data"), &["--max-body-bytes", "67108864"]);
    let model = std::fs::read(crate::support::repo().join("examples/models/iris-logreg.onnx"))
        .expect("model");
    let pushed = crate::support::client()
        .put(server.url("/v1/models/iris"))
        .body(model)
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 201);
    // The reference rows and labels, tiled to 50 MB as nested rows.
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(crate::support::repo().join("examples/models/iris-logreg.reference.json"))
            .expect("reference"),
    )
    .expect("reference JSON");
    let rows: Vec<Vec<f64>> = reference["inputs"]["X"]["data"]
        .as_array()
        .expect("data")
        .chunks(4)
        .map(|r| r.iter().map(|v| v.as_f64().expect("float")).collect())
        .collect();
    let labels: Vec<i64> = reference["outputs"]["label"]["data"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|v| v.as_i64().expect("label"))
        .collect();
    let mut data = String::new();
    let mut n = 0;
    while data.len() < 50_000_000 {
        let row = &rows[n % rows.len()];
        data.push_str(if n == 0 { "[" } else { ",[" });
        let cells: Vec<String> = row.iter().map(|x| x.to_string()).collect();
        data.push_str(&cells.join(","));
        data.push(']');
        n += 1;
    }
    let body = format!(
        r#"{{"inputs":[{{"name":"X","datatype":"FP32","shape":[{n},4],"data":[{data}]}}],"outputs":[{{"name":"label"}}]}}"#
    );
    let size = body.len() as u64;
    drop(data);

    let before = server.peak_rss();
    let started = Instant::now();
    let response = crate::support::client()
        .post(server.url("/v2/models/iris/infer"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("infer");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("JSON answer");
    let took = started.elapsed();
    let growth = server.peak_rss().saturating_sub(before);
    let served = answer["outputs"][0]["data"].as_array().expect("labels");
    assert_eq!(served.len(), n);
    for (i, label) in served.iter().enumerate() {
        assert_eq!(label.as_i64(), Some(labels[i % labels.len()]), "row {i}");
    }
    eprintln!(
        "a {:.1} MB OIP JSON request of {n} rows: peak RSS +{:.1} MiB ({:.2}× the body), {took:.2?}",
        size as f64 / 1e6,
        growth as f64 / (1 << 20) as f64,
        growth as f64 / size as f64,
    );
    assert!(
        growth < 2 * size,
        "peak RSS grew by {growth} bytes for a {size}-byte request"
    );
}
