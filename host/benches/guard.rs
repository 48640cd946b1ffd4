//! Load shedding and shared rate limits on real `sluice serve` processes
//! (results in BENCHMARKS.md). Run with
//! `cargo bench -p sluice --bench guard`.
//!
//! - `shedding`: a CPU-bound stage (`guest-misbehave` doing `WORK`
//!   thousand rounds of arithmetic, about 7 ms of one core) under several
//!   caps (`max_concurrency`, `max_queue`: shedding on) and uncapped. For
//!   each, its capacity is measured first (as many closed-loop callers as
//!   its cap); then open-loop arrivals (a fixed schedule, not waiting for
//!   answers) at half the capacity (unloaded) and at twice it (overload),
//!   each for `SECS` seconds, one request per arrival over keep-alive
//!   connections. Reported: admitted throughput, shed share, admitted
//!   p50 and p99, and the p99 against the unloaded one.
//! - `rate limit`: two nodes on one store share a route limit of 100/s
//!   (burst 10); open-loop load of 300/s for `SECS` seconds, spread evenly
//!   over both nodes, then all on one. Reported: admitted per second
//!   against the limit.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECS: u64 = 10;
/// The stage's work per call, in thousands of rounds (about 7 ms here).
const WORK: u64 = 4000;
/// The nodes' admin token (the control plane needs one).
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

/// A `sluice serve` process; killed on drop.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    fn start(data: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(["--heartbeat-ms", "500", "--poll-interval-ms", "200"])
            .env("RUST_LOG", "error")
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("address line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening on")
            .to_string();
        Self { child, base }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn put(client: &reqwest::Client, url: String, query: &[(&str, &str)], body: Vec<u8>) {
    let response = client
        .put(url)
        .query(query)
        .body(body)
        .send()
        .await
        .expect("PUT");
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn put_json(client: &reqwest::Client, url: String, body: Value) {
    let response = client.put(url).json(&body).send().await.expect("PUT");
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );
}

/// What a run of calls came to: (status, latency) per call.
struct Run {
    calls: Vec<(u16, Duration)>,
    took: Duration,
}

impl Run {
    fn admitted(&self) -> Vec<Duration> {
        let mut ok: Vec<Duration> = (self.calls.iter())
            .filter(|(s, _)| *s == 200)
            .map(|(_, d)| *d)
            .collect();
        ok.sort();
        ok
    }

    fn quantile(sorted: &[Duration], q: f64) -> f64 {
        let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i].as_secs_f64() * 1e3
    }

    fn row(&self, label: &str, capacity: f64, load: f64, unloaded_p99: f64) {
        let ok = self.admitted();
        let refused = self
            .calls
            .iter()
            .filter(|(s, _)| *s == 503 || *s == 429)
            .count();
        let other = self.calls.len() - ok.len() - refused;
        println!(
            "| {label} | {capacity:.0}/s | {load}× | {:.0}/s | {:.1}% | {other} | {:.2} ms | {:.2} ms | {:.2}× |",
            ok.len() as f64 / self.took.as_secs_f64(),
            100.0 * refused as f64 / self.calls.len() as f64,
            Self::quantile(&ok, 0.5),
            Self::quantile(&ok, 0.99),
            Self::quantile(&ok, 0.99) / unloaded_p99,
        );
    }
}

/// Open-loop arrivals at `rate` per second for `secs`, each call sent to
/// `urls[i % urls.len()]`.
async fn open_loop(client: &reqwest::Client, urls: &[String], rate: f64, secs: u64) -> Run {
    let period = Duration::from_secs_f64(1.0 / rate);
    let n = (rate * secs as f64) as usize;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let request = client
            .post(&urls[i % urls.len()])
            .header("content-type", "text/plain")
            .body("x");
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = match request.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            (status, sent.elapsed())
        }));
    }
    let mut calls = Vec::with_capacity(n);
    for task in tasks {
        calls.push(task.await.expect("task"));
    }
    Run {
        calls,
        took: started.elapsed(),
    }
}

/// Calls per second `callers` closed-loop callers get through.
async fn capacity(client: &reqwest::Client, url: &str, callers: usize) -> f64 {
    let started = Instant::now();
    let until = started + Duration::from_secs(3);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..callers)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.to_string(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let r = client.post(&url).body("x").send().await.expect("call");
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn shedding(client: &reqwest::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"));
    let wasm = common::component("tests/guests/misbehave");
    let work = WORK.to_string();
    println!(
        "| stage | capacity | offered | admitted | shed | failed | admitted p50 | admitted p99 | p99 / unloaded p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let p99 = |r: &Run| Run::quantile(&r.admitted(), 0.99);
    for (max, queue) in [("2", "0"), ("2", "2"), ("1", "0"), ("1", "1"), ("", "")] {
        let (name, label) = match max {
            "" => ("uncapped".to_string(), "uncapped (no shedding)".to_string()),
            _ => (
                format!("cap-{max}-{queue}"),
                format!("max_concurrency={max}, max_queue={queue}"),
            ),
        };
        let mut query = vec![("config.work", work.as_str())];
        if !max.is_empty() {
            query.extend([("max_concurrency", max), ("max_queue", queue)]);
        }
        put(
            client,
            format!("{}/v1/functions/{name}", node.base),
            &query,
            wasm.clone(),
        )
        .await;
        let url = vec![format!("{}/fn/{name}", node.base)];
        let callers = max.parse().unwrap_or(2);
        let c = capacity(client, &url[0], callers).await;
        let unloaded = open_loop(client, &url, c * 0.5, SECS).await;
        let base = p99(&unloaded);
        unloaded.row(&label, c, 0.5, base);
        let overload = open_loop(client, &url, c * 2.0, SECS).await;
        overload.row(&label, c, 2.0, base);
    }
}

async fn rate_limit(client: &reqwest::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (a, b) = (Node::start(&data), Node::start(&data));
    let wasm = common::component("tests/guests/pass-through");
    put(
        client,
        format!("{}/v1/functions/limited", a.base),
        &[],
        wasm,
    )
    .await;
    let (rate, burst) = (100.0, 10);
    put_json(
        client,
        format!("{}/v1/functions/limited/guard", a.base),
        json!({"rate_limit": {"route": {"per_second": rate, "burst": burst}}}),
    )
    .await;
    // Both nodes have counted each other once each sees 2 live nodes.
    for node in [&a, &b] {
        loop {
            let shown: Value = client
                .get(format!("{}/v1/functions/limited/guard", node.base))
                .send()
                .await
                .expect("guard")
                .json()
                .await
                .expect("JSON");
            if shown["live_nodes"] == 2 && shown["guard"].is_object() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let url = |n: &Node| format!("{}/fn/limited", n.base);
    println!("| load (300/s offered) | admitted/s | limit | error |");
    println!("|---|---|---|---|");
    for (label, urls) in [
        ("even over both nodes", vec![url(&a), url(&b)]),
        ("all on one node", vec![url(&a)]),
    ] {
        let run = open_loop(client, &urls, 300.0, SECS).await;
        let admitted = run.calls.iter().filter(|(s, _)| *s == 200).count() as f64;
        let per_second = admitted / run.took.as_secs_f64();
        println!(
            "| {label} | {per_second:.1} | {rate} | {:+.1}% |",
            100.0 * (per_second - rate) / rate
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        bearer.parse().expect("header"),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    runtime.block_on(async {
        println!("## shedding");
        shedding(&client).await;
        println!();
        println!("## rate limit shared by two nodes");
        rate_limit(&client).await;
    });
}
