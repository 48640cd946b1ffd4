//! The OpenAPI description against the live node: schemathesis (from
//! PyPI, in the test tools' venv) generates requests for every operation
//! of `/openapi.json`, positive and negative, and checks every answer.

use crate::support::{ADMIN_TOKEN, Server, Up, tool};
use std::process::Command;

#[tokio::test]
async fn the_openapi_description_covers_every_route() {
    let server = Server::start();
    let doc: serde_json::Value = crate::support::client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // The registry routes are written out per kind, as the router has them.
    for kind in ["functions", "models", "pipelines", "tables"] {
        let item = &paths[&format!("/v1/{kind}/{{name}}")];
        assert!(item["put"]["requestBody"].is_object(), "{kind}: {item}");
        assert_eq!(item["get"]["tags"][0], kind);
    }
    assert!(!paths.keys().any(|p| p.contains("{kind}")));
    for route in [
        "/fn/{target}",
        "/p/{target}",
        "/v2/models/{model}/infer",
        "/v1/features/{table}/lookup",
        "/v1/tokens",
        "/v1/audit/verify",
        "/healthz",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(route), "{route} is not described");
    }
    // A control-plane route says it needs a token, and what a refusal is.
    let show = &paths["/v1/models/{name}"]["get"];
    assert_eq!(show["security"][0]["token"], serde_json::json!([]));
    assert!(show["responses"]["401"].is_object(), "{show}");
}

/// Both planes, the data plane first: the control plane's run deletes
/// and re-points what the data plane's run calls.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_nonconforming_response() {
    let up = Up::start("examples/quickstart");
    let data_plane = "^/(fn|p|v2)/";
    schemathesis(&up, &["--include-path-regex", data_plane]);
    // The generated requests reached the pinned stages and pipeline.
    let status: serde_json::Value = crate::support::client()
        .get(format!("{}/v1/status", up.base()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let invocations = status["counters"]["invocations"].as_u64().unwrap_or(0);
    assert!(invocations >= 50, "{status}");
    schemathesis(&up, &["--exclude-path-regex", data_plane]);
}

/// Run schemathesis on `up` with `args`: every response is checked
/// against the description (status, media type, headers, schema) and
/// none may be a server error. Its summary on success.
fn schemathesis(up: &Up, args: &[&str]) -> String {
    let config = crate::support::repo().join("tests/e2e/schemathesis.toml");
    // Its cache and reports go to a scratch folder, not the repository.
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(tool("schemathesis"))
        .current_dir(scratch.path())
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/openapi.json", up.base()))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            "--seed",
            "15",
            // One worker: CPython 3.11's `ast` is not safe for the
            // concurrent lambda descriptions hypothesis makes.
            "--workers",
            "1",
            "--request-timeout",
            "30",
        ])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{summary}");
    summary
}
