//! Whole-process cold starts and scale to zero (results in BENCHMARKS.md),
//! with the store on the tests' S3-compatible server over loopback:
//!
//! - `sluice serve`: process start to the `listening` line (Sluice's own
//!   init) and to the first answer of a function whose artifact is in S3;
//! - `sluice` as a Lambda bootstrap under cargo-lambda's Runtime API
//!   emulator (when the test tools' venv has it: run the e2e tests once):
//!   process start to the first answer through a Function URL, and the
//!   `init_ms` the process logs;
//! - the first call to a function unloaded for idleness vs a warm call;
//! - resident memory: a fresh node, the node with the examples warm, and
//!   after scale to zero.
//!
//! Run with `cargo bench -p sluice --bench process_start`.

#[allow(dead_code)]
#[path = "../../tests/e2e/s3.rs"]
mod s3;

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 15;

/// The control plane's token (`/v1/status`).
const ADMIN_TOKEN: &str = "process-start-bench-admin-token";

/// `sluice` against the bench's S3 server, in an environment that names
/// no CA files (as on a Lambda), so S3 connections trust the compiled-in
/// roots only.
fn sluice(s3: &s3::S3Server) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .envs(s3.env())
        .env("RUST_LOG", "info")
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    command
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A `[1, 4]` tensor for the scaler, as a message.
fn scaler_input() -> Value {
    json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})
}

fn post(agent: &ureq_like::Agent, url: &str, content_type: &str, body: &Value) -> u16 {
    agent.post(url, content_type, &body.to_string())
}

/// A minimal blocking HTTP/1.1 client over std (the bench measures
/// processes; it should not bring a runtime of its own).
mod ureq_like {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub struct Agent;

    impl Agent {
        fn request(
            &self,
            method: &str,
            url: &str,
            content_type: &str,
            body: &str,
        ) -> (u16, String) {
            let token = super::ADMIN_TOKEN;
            let rest = url.strip_prefix("http://").expect("http URL");
            let (host, path) = rest
                .split_once('/')
                .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
            let mut stream = TcpStream::connect(host).expect("connect");
            write!(
                stream,
                "{method} {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .expect("write");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read");
            let status = answer
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let body = answer
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            (status, body)
        }

        pub fn post(&self, url: &str, content_type: &str, body: &str) -> u16 {
            self.request("POST", url, content_type, body).0
        }

        pub fn get_json(&self, url: &str) -> serde_json::Value {
            let (_, body) = self.request("GET", url, "text/plain", "");
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// `sluice serve` on the store, with extra flags: the child and its URL,
/// and the time from spawn to its `listening` line.
fn serve(s3: &s3::S3Server, store: &str, flags: &[&str]) -> (Child, String, Duration) {
    let started = Instant::now();
    let mut child = sluice(s3)
        .args(["serve", "--store", store, "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("line");
    let listening = started.elapsed();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    (child, url, listening)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn cargo_lambda() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_BIN_EXE_sluice")).ancestors().nth(2)?;
    let tool = target.join("sluice-venv/bin/cargo-lambda");
    tool.is_file().then_some(tool)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list.
    }
    let agent = ureq_like::Agent;
    let s3 = s3::S3Server::start();
    let store = s3.location("bench");
    let dir = tempfile::tempdir().expect("tempdir");
    let scaler = dir.path().join("scaler.wasm");
    std::fs::write(&scaler, common::component("functions/standard-scaler")).unwrap();
    let deployed = sluice(&s3)
        .args(["deploy"])
        .arg(&scaler)
        .args(["--name", "scaler", "--store", &store])
        .args([
            "--config",
            "mean=5.8,3.0,3.7,1.2",
            "--config",
            "std=0.8,0.4,1.8,0.8",
        ])
        .output()
        .expect("deploy");
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/models");
    for (name, shape) in [
        ("iris-logreg", None),
        ("digits-mlp", None),
        ("text-direction", Some("x=1,3,48,192")),
    ] {
        let mut push = sluice(&s3);
        push.args(["models", "push"])
            .arg(models.join(format!("{name}.onnx")))
            .args(["--name", name, "--store", &store]);
        if let Some(shape) = shape {
            push.args(["--input-shape", shape]);
        }
        let pushed = push.output().expect("push");
        assert!(
            pushed.status.success(),
            "{}",
            String::from_utf8_lossy(&pushed.stderr)
        );
    }

    // `sluice serve`: process start to listening, and to the first answer.
    let (mut init, mut first) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let (child, url, listening) = serve(&s3, &store, &[]);
        let status = post(
            &agent,
            &format!("{url}/fn/scaler"),
            "application/vnd.sluice.message+json",
            &scaler_input(),
        );
        first.push(ms(started.elapsed()));
        init.push(ms(listening));
        assert_eq!(status, 200);
        stop(child);
    }
    println!(
        "serve: process start → listening {:.1} ms, → first answer (artifact from S3) {:.1} ms (medians of {RUNS})",
        median(init),
        median(first)
    );

    // Lambda under the emulator.
    if let Some(tool) = cargo_lambda() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let emulator = Command::new(tool)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(&repo)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("emulator");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The roots S3 connections trust: the compiled-in ones, or those
        // plus the system's store named by SSL_CERT_FILE and SSL_CERT_DIR
        // (what every process read before roots were compiled in).
        let system = [
            ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
            ("SSL_CERT_DIR", "/etc/ssl/certs"),
        ];
        for (roots, env) in [
            ("compiled-in roots", &[][..]),
            ("+ the system's store", &system[..]),
        ] {
            let (mut totals, mut inits) = (Vec::new(), Vec::new());
            for _ in 0..RUNS {
                let log = dir.path().join("lambda.log");
                let started = Instant::now();
                let child = sluice(&s3)
                    .envs(env.iter().copied())
                    .env(
                        "AWS_LAMBDA_RUNTIME_API",
                        format!("http://127.0.0.1:{port}/.rt"),
                    )
                    .env("AWS_LAMBDA_FUNCTION_NAME", "_")
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                    .env("SLUICE_STORE", &store)
                    .stdout(std::fs::File::create(&log).unwrap())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn");
                let status = post(
                    &agent,
                    &format!("http://127.0.0.1:{port}/lambda-url/_/fn/scaler"),
                    "application/vnd.sluice.message+json",
                    &scaler_input(),
                );
                totals.push(ms(started.elapsed()));
                assert_eq!(status, 200);
                stop(child);
                let text = std::fs::read_to_string(&log).unwrap();
                if let Some(init) = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find_map(|l| l["init_ms"].as_f64())
                {
                    inits.push(init);
                }
            }
            println!(
                "lambda (emulator), {roots}: process start → first answer {:.1} ms; Sluice's init (logged init_ms) {:.2} ms (medians of {RUNS})",
                median(totals),
                median(inits)
            );
        }
        stop(emulator);
    } else {
        println!(
            "lambda: skipped (no cargo-lambda in the test tools' venv; run the e2e tests once)"
        );
    }

    // Evicted vs warm, and resident memory.
    let (child, url, _) = serve(
        &s3,
        &store,
        &["--function-idle-secs", "1", "--model-idle-secs", "1"],
    );
    let rss = |agent: &ureq_like::Agent| {
        let status = agent.get_json(&format!("{url}/v1/status"));
        let mib = |key: &str| status[key].as_f64().unwrap_or(0.0) / (1 << 20) as f64;
        (mib("resident_bytes"), mib("resident_anonymous_bytes"))
    };
    let idle_node = rss(&agent);
    let call = || {
        let started = Instant::now();
        assert_eq!(
            post(
                &agent,
                &format!("{url}/fn/scaler"),
                "application/vnd.sluice.message+json",
                &scaler_input()
            ),
            200
        );
        ms(started.elapsed())
    };
    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        call();
        warm.extend((0..100).map(|_| call()));
        while agent.get_json(&format!("{url}/v1/status"))["functions_loaded"] != 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        cold.push(call());
    }
    println!(
        "scale to zero: first call after unloading {:.2} ms vs warm {:.3} ms (medians; HTTP round trip included)",
        median(cold),
        median(warm)
    );
    for (name, input, shape) in [
        ("iris-logreg", "X", vec![1, 4]),
        ("digits-mlp", "X", vec![1, 64]),
        ("text-direction", "x", vec![1, 3, 48, 192]),
    ] {
        let n: usize = shape.iter().product();
        let request = json!({"inputs": [{"name": input, "datatype": "FP32", "shape": shape, "data": vec![0.5f32; n]}]});
        assert_eq!(
            post(
                &agent,
                &format!("{url}/v2/models/{name}/infer"),
                "application/json",
                &request
            ),
            200
        );
    }
    call();
    let warm_node = rss(&agent);
    while agent.get_json(&format!("{url}/v1/status"))["models"]["entries"] != 0
        || agent.get_json(&format!("{url}/v1/status"))["functions_loaded"] != 0
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = rss(&agent);
    println!(
        "resident memory (all / anonymous): fresh node {:.1} / {:.1} MiB; scaler + 3 models warm {:.1} / {:.1} MiB; after scale to zero {:.1} / {:.1} MiB",
        idle_node.0, idle_node.1, warm_node.0, warm_node.1, after.0, after.1
    );
    stop(child);
}
