//! Access control and the audit log, through real nodes: every
//! control-plane route against every role and every kind of bad token,
//! revocation across two nodes, and `sluice audit` catching an edited
//! record.

use crate::s3::S3Server;
use crate::support::{ADMIN_TOKEN, Server, client, component, repo, sluice};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What a route needs.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Need {
    View,
    Change,
    Admin,
}

/// Every control-plane route (with a body that changes nothing when let
/// through), on names a `fr-` prefix does not reach unless marked.
fn routes() -> Vec<(Method, &'static str, &'static str, Need)> {
    use Need::*;
    let mut routes = vec![
        (Method::GET, "/v1/status", "", View),
        (Method::GET, "/metrics", "", View),
        (Method::PUT, "/v1/blobs", "x", Change),
        (Method::POST, "/v1/features/t/ingest?format=csv", "", Change),
        (Method::POST, "/v1/features/t", "[]", Change),
        (Method::POST, "/v1/features/t/compact", "", Change),
        (Method::GET, "/v1/tokens", "", Admin),
        (Method::POST, "/v1/tokens", "{}", Admin),
        (Method::DELETE, "/v1/tokens/nobody", "", Admin),
        (Method::GET, "/v1/audit", "", Admin),
        (Method::GET, "/v1/audit/verify", "", Admin),
    ];
    for kind in ["functions", "models", "pipelines", "tables"] {
        let leak =
            |path: &str| -> &'static str { Box::leak(path.replace("{k}", kind).into_boxed_str()) };
        routes.extend([
            (Method::GET, leak("/v1/{k}"), "", View),
            (Method::GET, leak("/v1/{k}/f"), "", View),
            (Method::GET, leak("/v1/{k}/f/versions/1"), "", View),
            (Method::PUT, leak("/v1/{k}/f"), "not an artifact", Change),
            (Method::DELETE, leak("/v1/{k}/f/versions/9"), "", Change),
            (Method::PUT, leak("/v1/{k}/f/aliases/stable"), "{}", Change),
            (Method::DELETE, leak("/v1/{k}/f/aliases/stable"), "", Change),
            (Method::POST, leak("/v1/{k}/f/rollback"), "", Change),
            (Method::PUT, leak("/v1/{k}/f/invocation"), "{}", Change),
            (Method::GET, leak("/v1/{k}/f/rollout"), "", View),
            (Method::POST, leak("/v1/{k}/f/rollout"), "{}", Change),
            (Method::GET, leak("/v1/{k}/f/guard"), "", View),
            (Method::PUT, leak("/v1/{k}/f/guard"), "{}", Change),
            (Method::DELETE, leak("/v1/{k}/f/guard"), "", Change),
        ]);
    }
    routes
}

async fn call(server: &Server, method: &Method, path: &str, body: &str, auth: Option<&str>) -> u16 {
    // A client without the admin token the support client sends.
    let mut request = reqwest::Client::new()
        .request(method.clone(), server.url(path))
        .body(body.to_string());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.expect("request").status().as_u16()
}

async fn create_token(server: &Server, name: &str, role: &str, prefixes: &[&str]) -> String {
    let response = client()
        .post(server.url("/v1/tokens"))
        .json(&json!({"name": name, "role": role, "prefixes": prefixes}))
        .send()
        .await
        .expect("create token");
    assert_eq!(response.status(), 201);
    let made: Value = response.json().await.expect("JSON");
    assert_eq!(made["role"], role);
    made["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn every_control_route_checks_the_token_role_and_prefix() {
    let server = Server::start();
    let deployer = create_token(&server, "deployer", "deployer", &[]).await;
    let viewer = create_token(&server, "viewer", "viewer", &[]).await;
    let invoker = create_token(&server, "invoker", "invoker", &[]).await;
    let scoped = create_token(&server, "scoped", "deployer", &["fr-"]).await;
    let revoked = create_token(&server, "gone", "admin", &[]).await;
    let response = client()
        .delete(server.url("/v1/tokens/gone"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), 200);

    let bearer = |t: &str| format!("Bearer {t}");
    let mut near_miss = deployer.clone();
    near_miss.pop();
    let unauthenticated = [
        None,
        Some("Bearer".to_string()),
        Some("Basic YWRtaW46YWRtaW4=".to_string()),
        Some(bearer("slc_000000000000_nothing")),
        Some(bearer(&near_miss)),
        Some(bearer(&revoked)),
    ];
    let admin = bearer(ADMIN_TOKEN);
    let roles = [
        (bearer(&deployer), vec![Need::View, Need::Change]),
        (bearer(&viewer), vec![Need::View]),
        (bearer(&invoker), vec![]),
        (admin.clone(), vec![Need::View, Need::Change, Need::Admin]),
    ];
    for (method, path, body, need) in routes() {
        for auth in &unauthenticated {
            let status = call(&server, &method, path, body, auth.as_deref()).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
        }
        for (auth, may) in &roles {
            let status = call(&server, &method, path, body, Some(auth)).await;
            if may.contains(&need) {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} refused ({status}) to a role that may"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} with {auth}");
            }
        }
        // `fr-` reaches `fr-...` names only: routes about a name `f` are
        // refused, and the metrics, which name everything; the others
        // (lists, status, blobs) follow the role.
        let status = call(&server, &method, path, body, Some(&bearer(&scoped))).await;
        let segments: Vec<&str> = path.split('/').collect();
        let about_f = matches!(segments.get(3), Some(&"f" | &"t"));
        if need == Need::Admin || about_f || path == "/metrics" {
            assert_eq!(status, 403, "{method} {path} with a prefix-limited token");
        } else {
            assert!(status != 401 && status != 403, "{method} {path}: {status}");
        }
        let scoped_path = path
            .replace("/f", "/fr-f")
            .replace("/features/t", "/features/fr-t");
        if need != Need::Admin && about_f {
            let status = call(&server, &method, &scoped_path, body, Some(&bearer(&scoped))).await;
            assert!(
                status != 401 && status != 403,
                "{method} {scoped_path}: {status}"
            );
        }
    }

    // A prefix-limited token lists only its names.
    server.deploy("fr-echo", "guest-misbehave", &[]).await;
    server.deploy("echo", "guest-misbehave", &[]).await;
    let listed: Value = reqwest::Client::new()
        .get(server.url("/v1/functions"))
        .header("authorization", bearer(&scoped))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let names: Vec<_> = listed["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["fr-echo"]);

    // The data plane stays open; a 401 says how to authenticate.
    assert_eq!(call(&server, &Method::GET, "/healthz", "", None).await, 200);
    assert_eq!(
        call(&server, &Method::POST, "/fn/echo", "hi", None).await,
        200
    );
    let refused = reqwest::Client::new()
        .get(server.url("/v1/status"))
        .send()
        .await
        .expect("status");
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let body: Value = refused.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("SLUICE_TOKEN"),
        "{body}"
    );

    // Secrets are stored only hashed.
    let (_, tokens) = server.get("/v1/tokens").await;
    let text = tokens.to_string();
    assert!(
        !text.contains(&deployer) && !text.contains("hash"),
        "{text}"
    );
}

#[tokio::test]
async fn a_token_revoked_on_one_node_is_refused_on_the_other_within_the_poll_interval() {
    let s3 = S3Server::start();
    let a = Server::start_s3(&s3, "access", 200);
    let b = Server::start_s3(&s3, "access", 200);
    let token = create_token(&a, "ci", "viewer", &[]).await;
    let auth = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while call(&b, &Method::GET, "/v1/status", "", Some(&auth)).await != 200 {
        assert!(
            Instant::now() < deadline,
            "node B never accepted the new token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = client()
        .delete(a.url("/v1/tokens/ci"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), 200);
    assert_eq!(
        call(&a, &Method::GET, "/v1/status", "", Some(&auth)).await,
        401
    );
    let revoked = Instant::now();
    while call(&b, &Method::GET, "/v1/status", "", Some(&auth)).await != 401 {
        // The poll interval (200 ms) plus a request's time on a busy box.
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "node B still accepts a revoked token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_change_is_audited_and_an_edited_record_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_on(&data, &[]);
    let deployer = create_token(&server, "release-bot", "deployer", &[]).await;
    let deployed = reqwest::Client::new()
        .put(server.url("/v1/functions/echo"))
        .header("authorization", format!("Bearer {deployer}"))
        .header("x-sluice-actor", "someone-else")
        .body(crate::support::component_bytes("guest-misbehave"))
        .send()
        .await
        .expect("deploy");
    assert_eq!(deployed.status(), 201);
    let record: Value = deployed.json().await.expect("JSON");
    assert_eq!(record["function"]["created_by"], "release-bot");
    let moved = client()
        .put(server.url("/v1/functions/echo/aliases/stable"))
        .json(&json!({"version": 1}))
        .send()
        .await
        .expect("alias");
    assert_eq!(moved.status(), 200);

    let audit = |args: &[&str]| {
        let output = sluice()
            .args(["audit"])
            .args(args)
            .args(["--server", &server.url("")])
            .output()
            .expect("sluice audit");
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (ok, log) = audit(&["log"]);
    assert!(ok, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    let actions: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words[2], words[3])
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("node", "token.create"),
            ("admin", "token.create"),
            ("release-bot", "publish"),
            ("admin", "alias.set")
        ],
        "{log}"
    );
    let (ok, verified) = audit(&["verify"]);
    assert!(ok && verified.contains("intact: 4 records"), "{verified}");
    let (ok, none) = audit(&["log", "--since", "2999-01-01T00:00:00Z"]);
    assert!(ok && none.trim().is_empty(), "{none}");

    // Someone with write access to the store rewrites history.
    let third = data.join("audit/records/000000000003.json");
    let text = std::fs::read_to_string(&third).expect("record 3");
    std::fs::write(&third, text.replace("release-bot", "admin")).expect("edit");
    let (ok, broken) = audit(&["verify"]);
    assert!(!ok, "{broken}");
    assert!(
        broken.contains("broken at record 3") && broken.contains("edited"),
        "{broken}"
    );
}

/// Deploy `guest-misbehave` as `name` with the CLI and `--invoke`.
fn deploy_with_cli(server: &Server, name: &str, invoke: &str) -> String {
    let output = sluice()
        .arg("deploy")
        .arg(component("guest-misbehave"))
        .args(["--name", name, "--config", &format!("run={invoke}")])
        .args(["--invoke", invoke, "--server", &server.url("")])
        .output()
        .expect("sluice deploy");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

async fn set_invocation(server: &Server, path: &str, invocation: &str) -> (u16, Value) {
    let response = client()
        .put(server.url(path))
        .json(&json!({ "invocation": invocation }))
        .send()
        .await
        .expect("set invocation");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_name_closed_at_deploy_takes_only_tokens_that_may_invoke_it() {
    let server = Server::start();
    let bearer = |t: &str| format!("Bearer {t}");
    let invoker = bearer(&create_token(&server, "app", "invoker", &["fr-"]).await);
    let elsewhere = bearer(&create_token(&server, "other-app", "invoker", &["ops-"]).await);
    let viewer = bearer(&create_token(&server, "dash", "viewer", &[]).await);
    let deployer = bearer(&create_token(&server, "ci", "deployer", &[]).await);
    let admin = bearer(ADMIN_TOKEN);

    // A function closed at its first deploy is never open.
    let printed = deploy_with_cli(&server, "fr-echo", "token");
    assert!(
        printed.contains("function fr-echo: invocation token"),
        "{printed}"
    );
    let (_, head) = server.get("/v1/functions/fr-echo").await;
    assert_eq!(head["invocation"], "token");
    let cases = [
        (None, 401),
        (Some("Bearer not-a-token"), 401),
        (Some(viewer.as_str()), 403),
        (Some(elsewhere.as_str()), 403),
        (Some(invoker.as_str()), 200),
        (Some(deployer.as_str()), 200),
        (Some(admin.as_str()), 200),
    ];
    for target in ["fr-echo", "fr-echo@1", "fr-echo@latest"] {
        for (auth, want) in cases {
            let path = format!("/fn/{target}");
            let got = call(&server, &Method::POST, &path, "hi", auth).await;
            assert_eq!(got, want, "{target} with {auth:?}");
        }
    }
    let refused = reqwest::Client::new()
        .post(server.url("/fn/fr-echo"))
        .body("hi")
        .send()
        .await
        .expect("call");
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");

    // The setting belongs to the name: a new version without --invoke and
    // a rollback keep it closed.
    server
        .deploy("fr-echo", "guest-misbehave", &[("config.v", "2")])
        .await;
    let rolled = client()
        .post(server.url("/v1/functions/fr-echo/rollback?alias=latest"))
        .send()
        .await
        .expect("rollback");
    assert!(rolled.status().is_success(), "{}", rolled.status());
    assert_eq!(
        call(&server, &Method::POST, "/fn/fr-echo", "hi", None).await,
        401
    );

    // A model, over the Open Inference Protocol, metadata included.
    let iris = std::fs::read(repo().join("examples/models/iris-logreg.onnx")).expect("model");
    let pushed = client()
        .put(server.url("/v1/models/fr-iris"))
        .body(iris)
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 201);
    let (status, head) = set_invocation(&server, "/v1/models/fr-iris/invocation", "token").await;
    assert_eq!(
        (status, &head["invocation"]),
        (200, &json!("token")),
        "{head}"
    );
    let infer = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2]}]})
    .to_string();
    for path in ["/v2/models/fr-iris", "/v2/models/fr-iris/versions/1/ready"] {
        assert_eq!(
            call(&server, &Method::GET, path, "", None).await,
            401,
            "{path}"
        );
        assert_eq!(
            call(&server, &Method::GET, path, "", Some(&invoker)).await,
            200,
            "{path}"
        );
    }
    let path = "/v2/models/fr-iris/infer";
    assert_eq!(call(&server, &Method::POST, path, &infer, None).await, 401);
    assert_eq!(
        call(&server, &Method::POST, path, &infer, Some(&elsewhere)).await,
        403
    );
    assert_eq!(
        call(&server, &Method::POST, path, &infer, Some(&invoker)).await,
        200
    );

    // A pipeline has its own setting; its steps run under it, so an open
    // pipeline may use a closed function.
    let manifest = "name = \"fr-p\"\n[[step]]\nname = \"a\"\nfunction = \"fr-echo\"\n";
    let deployed = client()
        .put(server.url("/v1/pipelines/fr-p"))
        .body(manifest)
        .send()
        .await
        .expect("pipeline");
    assert_eq!(deployed.status(), 201);
    assert_eq!(
        call(&server, &Method::POST, "/p/fr-p", "hi", None).await,
        200
    );
    set_invocation(&server, "/v1/pipelines/fr-p/invocation", "token").await;
    assert_eq!(
        call(&server, &Method::POST, "/p/fr-p", "hi", None).await,
        401
    );
    assert_eq!(
        call(&server, &Method::POST, "/p/fr-p", "hi", Some(&invoker)).await,
        200
    );

    // Open again from the CLI; other names were never closed.
    let printed = deploy_with_cli(&server, "fr-echo", "open");
    assert!(
        printed.contains("function fr-echo: invocation open"),
        "{printed}"
    );
    assert_eq!(
        call(&server, &Method::POST, "/fn/fr-echo", "hi", None).await,
        200
    );
    server.deploy("echo", "guest-misbehave", &[]).await;
    assert_eq!(
        call(&server, &Method::POST, "/fn/echo", "hi", None).await,
        200
    );

    // Bad settings are refused with what to write; every change is audited.
    let (status, body) =
        set_invocation(&server, "/v1/functions/fr-echo/invocation", "private").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`token`"),
        "{body}"
    );
    let (status, _) = set_invocation(&server, "/v1/tables/t/invocation", "token").await;
    assert_eq!(status, 400);
    let (_, log) = server.get("/v1/audit").await;
    let changes: Vec<(String, String)> = log["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "invocation")
        .map(|r| {
            let name = r["name"].as_str().unwrap_or_default().to_string();
            (name, r["detail"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let want = [
        ("fr-echo", "token"),
        ("fr-iris", "token"),
        ("fr-p", "token"),
        ("fr-echo", "open"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect();
    assert_eq!(changes, want);
}
