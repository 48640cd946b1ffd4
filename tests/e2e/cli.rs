//! The `sluice` command line, on the embedded store and against a server.

use crate::support::{Server, Up, component, sluice};

fn run(args: &[&str]) -> (bool, String, String) {
    let output = sluice().args(args).output().expect("run sluice");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn deploy_invoke_and_list_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let wasm = component("json-to-tensor");
    let (ok, out, err) = run(&[
        "deploy",
        wasm.to_str().unwrap(),
        "--name",
        "feat",
        "--config",
        "fields=x,y",
        "--data",
        data,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("deployed feat version 1 (preprocessor, "),
        "{out}"
    );

    let (ok, out, err) = run(&[
        "invoke",
        "feat",
        "--data",
        r#"{"x": 1, "y": 2}"#,
        "--data-dir",
        data,
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tensors"][0]["data"], serde_json::json!([1.0, 2.0]));

    let (ok, out, _) = run(&[
        "invoke",
        "feat",
        "--data",
        r#"{"x": 1}"#,
        "--data-dir",
        data,
    ]);
    assert!(!ok);
    assert!(out.contains("missing field `y`"), "{out}");

    let (ok, out, err) = run(&["functions", "ls", "--data", data]);
    assert!(ok, "{err}");
    assert!(out.starts_with("feat ") && out.contains("v1"), "{out}");

    let (ok, _, err) = run(&[
        "deploy",
        wasm.to_str().unwrap(),
        "--name",
        "Bad/Name",
        "--data",
        data,
    ]);
    assert!(!ok);
    assert!(err.contains("invalid name"), "{err}");
}

#[tokio::test]
async fn deploy_and_invoke_through_a_server() {
    let server = Server::start();
    let url = format!("http://{}", server.addr);
    let wasm = component("standard-scaler");
    let (ok, out, err) = run(&[
        "deploy",
        wasm.to_str().unwrap(),
        "--name",
        "scale",
        "--config",
        "mean=1",
        "--config",
        "std=2",
        "--server",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("deployed scale version 1"), "{out}");
    let body = r#"{"tensors":[{"name":"features","datatype":"FP64","shape":[2,1],"data":[3,5]}]}"#;
    let (ok, out, err) = run(&[
        "invoke",
        "scale",
        "-t",
        "application/vnd.sluice.message+json",
        "-d",
        body,
        "--server",
        &url,
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tensors"][0]["data"], serde_json::json!([1.0, 2.0]));
    let (ok, _, err) = run(&["functions", "ls", "--server", "http://127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("cannot reach http://127.0.0.1:1"), "{err}");
}

/// The README's first command: `sluice up examples/quickstart`.
#[tokio::test]
async fn up_builds_deploys_serves_and_prints_working_curl_lines() {
    let up = Up::start("examples/quickstart");
    let curls = &up.curls;
    assert!(curls.len() >= 3, "{curls:?}");
    for curl in curls {
        // The control-plane line reads the token from SLUICE_TOKEN.
        let output = std::process::Command::new("sh")
            .args(["-c", &format!("{curl} -f")])
            .env("SLUICE_TOKEN", crate::support::ADMIN_TOKEN)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{curl}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.stdout.is_empty());
    }
}
