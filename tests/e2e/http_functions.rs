//! Standard `wasi:http` components as HTTP functions: deployed unchanged,
//! called with any method at their own paths, sandboxed like stages, and
//! refused outgoing requests except to the origins their deploy allows.

use crate::support::{Server, client};
use axum::Router;
use axum::routing::get;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A call's status, `x-sluice-stage`, content type and body text.
async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String, String) {
    let mut request = client()
        .request(method, server.url(path))
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (stage, content_type) = (header("x-sluice-stage"), header("content-type"));
    let status = response.status().as_u16();
    (status, stage, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn an_http_component_deploys_unchanged_and_answers_any_method_at_its_paths() {
    let server = Server::start();
    server
        .deploy(
            "hello",
            "guest-http-echo",
            &[("config.GREETING", "hi there")],
        )
        .await;
    let (_, record) = server.get("/v1/functions/hello/versions/1").await;
    assert_eq!(record["world"], "http", "{record}");

    // The component sees the path below /fn/hello, query and headers as
    // sent, and its deploy config as its environment: byte for byte.
    let get = call(
        &server,
        reqwest::Method::GET,
        "/fn/hello/some/path?x=1&y=%20",
        &[("x-echo", "abc")],
        "",
    )
    .await;
    assert_eq!(
        get,
        (
            200,
            "hello@1".into(),
            "text/plain".into(),
            "GET /some/path?x=1&y=%20\nx-echo: abc\ngreeting: hi there\nbody: \n".into()
        )
    );
    let post = call(&server, reqwest::Method::POST, "/fn/hello", &[], "payload").await;
    assert_eq!(
        post.3,
        "POST /\nx-echo: \ngreeting: hi there\nbody: payload\n"
    );
    let put = call(&server, reqwest::Method::PUT, "/fn/hello@1/a?b", &[], "").await;
    assert_eq!(
        (put.0, put.3.as_str()),
        (200, "PUT /a?b\nx-echo: \ngreeting: hi there\nbody: \n")
    );

    // A stage keeps its one door, POST /fn/NAME.
    server.deploy("pass", "guest-pass-through", &[]).await;
    let (status, _, _, body) = call(&server, reqwest::Method::GET, "/fn/pass", &[], "").await;
    assert_eq!(status, 405, "{body}");
    assert!(
        body.contains("`pass` is a stage: call it with POST"),
        "{body}"
    );
    let (status, _, _, body) = call(&server, reqwest::Method::POST, "/fn/pass/x", &[], "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is a stage and has no paths"), "{body}");

    // One name holds one kind; a pipeline's steps are stages.
    let refused = |path: &str, body: Vec<u8>, says: &'static str| {
        let request = client().put(server.url(path)).body(body).send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 400);
            let error: Value = response.json().await.unwrap();
            assert!(error["error"].as_str().unwrap().contains(says), "{error}");
        }
    };
    refused(
        "/v1/functions/hello",
        crate::support::component_bytes("guest-pass-through"),
        "function `hello` holds HTTP functions (version 1 is http); this component is a stage",
    )
    .await;
    let manifest =
        "[[pipeline]]\nname = \"web\"\n\n[[pipeline.step]]\nname = \"one\"\nfunction = \"hello\"\n";
    refused(
        "/v1/pipelines/web",
        manifest.into(),
        "`hello` is an HTTP function",
    )
    .await;
}

#[tokio::test]
async fn an_http_function_runs_under_its_deadline_and_memory_cap() {
    let server = Server::start();
    server
        .deploy(
            "web",
            "guest-http-echo",
            &[("timeout_ms", "300"), ("memory_mb", "16")],
        )
        .await;
    let (status, _, _, body) = call(&server, reqwest::Method::GET, "/fn/web/spin", &[], "").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("deadline exceeded"), "{body}");
    let (status, _, _, body) = call(&server, reqwest::Method::GET, "/fn/web/hog", &[], "").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("its cap is 16777216 bytes"), "{body}");
    // The node and the function are unharmed.
    let (status, _, _, body) = call(&server, reqwest::Method::GET, "/fn/web/ok", &[], "").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "GET /ok\nx-echo: \ngreeting: \nbody: \n")
    );
    let metrics = server.metrics().await;
    let deadline = metrics.lines().find(|l| {
        l.starts_with("sluice_function_calls_total{")
            && l.contains(r#"function="web""#)
            && l.contains(r#"result="deadline""#)
    });
    assert_eq!(
        deadline.and_then(|l| l.split(' ').nth(1)),
        Some("1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn outbound_http_is_denied_unless_the_deploy_allows_the_origin() {
    // An upstream the test serves, recording the paths it was asked for.
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    let upstream = Router::new().route(
        "/{*path}",
        get(move |uri: axum::http::Uri| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(uri.to_string());
                "upstream says hi"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, upstream).await });

    let server = Server::start();
    let fetch = format!("/fn/fetcher/fetch?url={origin}/data");
    server.deploy("fetcher", "guest-http-echo", &[]).await;
    let (status, _, _, body) = call(&server, reqwest::Method::GET, &fetch, &[], "").await;
    assert_eq!(
        (status, body.as_str()),
        (
            502,
            "outbound request failed: ErrorCode::HttpRequestDenied\n"
        )
    );
    assert!(
        server.log_text().contains(
            "outgoing request denied: its origin is not in the deploy's --allow-outbound"
        ),
        "{}",
        server.log_text()
    );

    // Another origin allowed is still a denial; this one is served.
    let other = "http://127.0.0.1:9";
    server
        .deploy("fetcher", "guest-http-echo", &[("allow_outbound", other)])
        .await;
    let (status, _, _, _) = call(&server, reqwest::Method::GET, &fetch, &[], "").await;
    assert_eq!(status, 502);
    server
        .deploy(
            "fetcher",
            "guest-http-echo",
            &[("allow_outbound", other), ("allow_outbound", &origin)],
        )
        .await;
    let (status, stage, _, body) = call(&server, reqwest::Method::GET, &fetch, &[], "").await;
    assert_eq!(
        (status, stage.as_str(), body.as_str()),
        (200, "fetcher@3", "upstream says hi")
    );
    assert_eq!(*asked.lock().unwrap(), ["/data"]);
    let (_, record) = server.get("/v1/functions/fetcher/versions/3").await;
    assert_eq!(
        record["allow_outbound"],
        serde_json::json!([other, origin]),
        "{record}"
    );
}

#[tokio::test]
async fn http_functions_also_answer_at_the_nodes_route_prefix_and_keep_its_admission() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(&dir.path().join("data"), &["--http-prefix", "/api"]);
    server.deploy("hello", "guest-http-echo", &[]).await;
    let (status, stage, _, body) =
        call(&server, reqwest::Method::GET, "/api/hello/a?b=1", &[], "").await;
    assert_eq!(
        (status, stage.as_str(), body.as_str()),
        (200, "hello@1", "GET /a?b=1\nx-echo: \ngreeting: \nbody: \n")
    );
    let (status, _, _, body) = call(&server, reqwest::Method::DELETE, "/api/hello", &[], "").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "DELETE /\nx-echo: \ngreeting: \nbody: \n")
    );
    // A stage is not an HTTP function, there or anywhere.
    server.deploy("pass", "guest-pass-through", &[]).await;
    let (status, _, _, _) = call(&server, reqwest::Method::POST, "/api/pass", &[], "").await;
    assert_eq!(status, 404);

    // A closed name is closed at the prefix too.
    let closed = client()
        .put(server.url("/v1/functions/hello/invocation"))
        .json(&serde_json::json!({"invocation": "token"}))
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "{:?}", closed.text().await);
    let anonymous = reqwest::Client::new()
        .get(server.url("/api/hello/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, _, _, _) = call(&server, reqwest::Method::GET, "/api/hello/a", &[], "").await;
    assert_eq!(status, 200, "the test client sends the admin token");

    // A prefix that would shadow the node's routes is refused at start.
    let refused = crate::support::sluice()
        .args(["serve", "--http-prefix", "/v1/x"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("would shadow the node's own /v1 routes")
    );
}
