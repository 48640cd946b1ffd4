//! Uploading components: validation, versions, names, restarts.

use crate::support::{Server, client, component_bytes};
use serde_json::Value;

async fn put(server: &Server, name: &str, body: Vec<u8>) -> (u16, Value) {
    let response = client()
        .put(server.url(&format!("/v1/functions/{name}")))
        .body(body)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn components_that_fit_no_world_are_refused_naming_the_import() {
    let server = Server::start();
    let (status, v) = put(&server, "rogue", component_bytes("guest-rogue-import")).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        "the component imports `acme:telemetry/beacon`, which no Sluice world grants: it is not a Sluice or granted WASI interface"
    );
    // Nothing was recorded.
    assert_eq!(server.get("/v1/functions/rogue").await.0, 404);
}

/// `wasi:sockets` is linked (the standard libraries of Python and
/// JavaScript import it) to a context that denies every socket.
#[tokio::test]
async fn a_stage_that_opens_a_socket_is_denied_at_run_time() {
    let server = Server::start();
    let (status, v) = put(&server, "net", component_bytes("guest-net-client")).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = server.invoke("net", "text/plain", "").await;
    assert_eq!(status, 500, "{v}");
    let error = v["error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("denied"), "{error}");
}

#[tokio::test]
async fn core_modules_garbage_and_truncated_uploads_are_refused() {
    let server = Server::start();
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let (status, v) = put(&server, "core", core_module).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module, not a component"),
        "{v}"
    );

    let (status, v) = put(&server, "junk", b"definitely not wasm at all".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("not WebAssembly"),
        "{v}"
    );

    let mut truncated = component_bytes("standard-scaler");
    truncated.truncate(truncated.len() / 2);
    let (status, v) = put(&server, "half", truncated).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("the component is invalid"),
        "{v}"
    );

    let (status, v) = put(&server, "empty", Vec::new()).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        server.get("/v1/functions").await.1["functions"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn names_are_validated_and_nothing_lands_outside_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(&dir.path().join("data"), &[]);
    let long = "a".repeat(64);
    for name in [
        "Upper",
        "..%2Fx",
        "a%2F..%2F..%2Fescape",
        "-dash",
        long.as_str(),
        "sp%20ace",
    ] {
        let (status, v) = put(&server, name, component_bytes("guest-misbehave")).await;
        assert_eq!(status, 400, "{name}: {v}");
        assert!(
            v["error"].as_str().unwrap().starts_with("invalid name"),
            "{name}: {v}"
        );
    }
    let (status, _) = put(&server, "", component_bytes("guest-misbehave")).await;
    assert_eq!(status, 404, "an empty name has no route");
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".log"))
        .collect();
    entries.sort();
    assert_eq!(entries, vec!["data".to_string()]);
    assert_eq!(
        server.get("/v1/functions").await.1["functions"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn versions_count_up_identical_deploys_are_idempotent_and_delete_works() {
    let server = Server::start();
    let first = server.deploy("f", "guest-misbehave", &[]).await;
    assert_eq!(
        (first["version"].as_u64(), first["created"].as_bool()),
        (Some(1), Some(true))
    );
    let again = server.deploy("f", "guest-misbehave", &[]).await;
    assert_eq!(
        (again["version"].as_u64(), again["created"].as_bool()),
        (Some(1), Some(false))
    );
    let second = server
        .deploy(
            "f",
            "guest-misbehave",
            &[("config.mode", "two"), ("description", "with config")],
        )
        .await;
    assert_eq!(second["version"], 2);

    let (status, v) = server.get("/v1/functions/f").await;
    assert_eq!(status, 200);
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["config"]["mode"], "two");
    assert_eq!(versions[1]["description"], "with config");
    // Who deployed is the token's name, not anything the request says.
    assert_eq!(versions[1]["created_by"], "admin");
    assert_eq!(versions[0]["digest"], versions[1]["digest"]);
    let (_, list) = server.get("/v1/functions").await;
    assert_eq!(list["functions"][0]["latest"], 2);

    let response = client()
        .delete(server.url("/v1/functions/f/versions/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(server.invoke("f@2", "text/plain", "x").await.0, 404);
    let (status, v) = server.invoke("f", "text/plain", "x").await;
    assert_eq!(status, 200, "the newest remaining version serves: {v}");
    let response = client()
        .delete(server.url("/v1/functions/f/versions/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_restarted_node_keeps_functions_and_loads_precompiled_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_on(&data, &[]);
    server.deploy("keep", "guest-misbehave", &[]).await;
    server.stop();

    let server = Server::start_on(&data, &[]);
    let (status, v) = server.invoke("keep", "text/plain", "after restart").await;
    assert_eq!(
        (status, v["body"]["text"].as_str()),
        (200, Some("after restart"))
    );
    let (_, status) = server.get("/v1/status").await;
    assert_eq!(status["counters"]["components_compiled"], 0, "{status}");
    assert_eq!(status["counters"]["artifacts_loaded"], 1, "{status}");

    // A deleted artifact is rebuilt from the blob and stored again.
    let fingerprint = status["engine"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    server.stop();
    std::fs::remove_dir_all(data.join("compiled").join(&fingerprint)).unwrap();
    let server = Server::start_on(&data, &[]);
    assert_eq!(server.invoke("keep", "text/plain", "x").await.0, 200);
    let (_, status) = server.get("/v1/status").await;
    assert_eq!(status["counters"]["components_compiled"], 1, "{status}");
    assert!(
        data.join("compiled")
            .join(&fingerprint)
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}

#[tokio::test]
async fn a_forged_or_foreign_artifact_is_never_loaded_and_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_on(&data, &[]);
    server.deploy("keep", "guest-misbehave", &[]).await;
    server.stop();
    let artifact = std::fs::read_dir(data.join("compiled"))
        .unwrap()
        .flat_map(|fp| std::fs::read_dir(fp.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a stored artifact");
    let stored = std::fs::read(&artifact).unwrap();
    let newline = stored.iter().position(|b| *b == b'\n').unwrap();
    let header = String::from_utf8(stored[..newline].to_vec()).unwrap();
    let digest = header.split(' ').nth(1).expect("digest").to_string();
    // Someone with write access to the bucket: the same header shape and a
    // digest that matches the bytes, but no signature made with the key.
    let mut forged = format!("SLUICE-CWASM2 {digest} {}\n", "ab".repeat(32)).into_bytes();
    forged.extend_from_slice(&stored[newline + 1..]);
    std::fs::write(&artifact, &forged).unwrap();

    let server = Server::start_on(&data, &[]);
    assert_eq!(server.invoke("keep", "text/plain", "x").await.0, 200);
    let (_, status) = server.get("/v1/status").await;
    assert_eq!(status["counters"]["artifacts_loaded"], 0, "{status}");
    assert_eq!(status["counters"]["components_compiled"], 1, "{status}");
    assert!(
        server
            .log_text()
            .contains("precompiled artifact not trusted; recompiling"),
        "{}",
        server.log_text()
    );
    server.stop();
    // It stored a signed one again, which a node with the key loads; a node
    // with another key does not.
    assert_ne!(std::fs::read(&artifact).unwrap(), forged);
    let server = Server::start_on(&data, &[]);
    assert_eq!(server.invoke("keep", "text/plain", "x").await.0, 200);
    let (_, status) = server.get("/v1/status").await;
    assert_eq!(status["counters"]["artifacts_loaded"], 1, "{status}");
    server.stop();
    let other = Server::start_on(
        &data,
        &[
            "--signing-key",
            "another-signing-key-0123456789abcdef012345",
        ],
    );
    assert_eq!(other.invoke("keep", "text/plain", "x").await.0, 200);
    let (_, status) = other.get("/v1/status").await;
    assert_eq!(status["counters"]["artifacts_loaded"], 0, "{status}");
}

#[tokio::test]
async fn secret_config_reaches_the_stage_and_never_the_api() {
    let server = Server::start();
    let deployed = server
        .deploy(
            "scaler",
            "standard-scaler",
            &[("config.mean", "1,2"), ("secret.std", "2,4")],
        )
        .await;
    assert_eq!(
        deployed["function"]["config"]["std"], "(secret)",
        "{deployed}"
    );
    assert_eq!(deployed["function"]["config"]["mean"], "1,2");
    // The stage reads the real value: (3 - 1) / 2 and (6 - 2) / 4.
    let (status, scaled) = server
        .invoke(
            "scaler",
            "application/vnd.sluice.message+json",
            r#"{"tensors":[{"name":"features","datatype":"FP32","shape":[2],"data":[3,6]}]}"#,
        )
        .await;
    assert_eq!(status, 200, "{scaled}");
    assert_eq!(scaled["tensors"][0]["data"], serde_json::json!([1.0, 1.0]));
    for path in ["/v1/functions/scaler", "/v1/functions/scaler/versions/1"] {
        let (status, shown) = server.get(path).await;
        assert_eq!(status, 200);
        let text = shown.to_string();
        assert!(
            !text.contains("2,4") && text.contains("(secret)"),
            "{path}: {text}"
        );
    }
}
