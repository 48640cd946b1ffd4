//! The cold and warm paths of a node over S3 (results in BENCHMARKS.md).
//! The store is the tests' S3-compatible server on loopback, over HTTP.
//!
//! - `first_request/precompiled`: a node that has never run the function
//!   (empty caches) serves its first call: alias document, version record and
//!   precompiled artifact from S3, deserialize, link, instantiate, run;
//! - `first_request/compile`: the same with no artifact for this engine, so
//!   the component is fetched and compiled (and the artifact stored again);
//! - `warm/cache_hit`: a call when everything is in memory;
//! - `warm/revalidated`: a call whose alias document is past its poll
//!   interval, so it pays one conditional GET to the store.
//!
//! It also prints the store requests of 1,000 warm calls.
//!
//! Run with `cargo bench -p sluice --bench cold_start`.

// The tests' S3 server; the benchmark uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/e2e/s3.rs"]
mod s3;

mod common;

use common::component;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice::cache::CacheConfig;
use sluice::engine::{Engine, EngineConfig};
use sluice::node::{ControlPlane, Deploy, Node, Settings, SigningKey};
use sluice::registry::Selector;
use sluice::store::ObjectStore;
use sluice::tensor::Message;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WIDTH: usize = 16;

fn input() -> Message {
    common::features(WIDTH)
}

fn cache(poll_interval: Duration) -> CacheConfig {
    CacheConfig {
        poll_interval,
        ..CacheConfig::default()
    }
}

async fn call(node: &Arc<Node>) {
    let out = node
        .invoke("scaler", &Selector::Default, input(), "bench".into(), None)
        .await
        .expect("invoke");
    black_box(out);
}

fn nodes_over_s3(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = s3::S3Server::start();
    let store: Arc<dyn ObjectStore> = Arc::new(runtime.block_on(server.store("bench")));
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let deployer = Node::new(engine.clone(), store.clone(), CacheConfig::default())
        .with_signing_key(signing());
    let list = |f: fn(usize) -> f64| {
        (0..WIDTH)
            .map(|i| f(i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let request = Deploy {
        config: [
            ("mean".to_string(), list(|i| i as f64 * 0.5)),
            ("std".to_string(), list(|i| 1.0 + i as f64 * 0.01)),
        ]
        .into(),
        created_by: "bench".into(),
        ..Deploy::default()
    };
    let deployed = runtime
        .block_on(deployer.acting("bench").publish(
            "scaler",
            component("functions/standard-scaler").into(),
            Settings::Function(request),
            None,
        ))
        .expect("deploy");
    let artifact = format!(
        "compiled/{}/{}.cwasm",
        engine.fingerprint(),
        deployed
            .version
            .digest()
            .expect("a function version has a digest")
            .hex()
    );

    let mut group = c.benchmark_group("first_request");
    for (label, precompiled) in [("precompiled", true), ("compile", false)] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if !precompiled {
                        runtime.block_on(store.delete(&artifact)).expect("delete");
                    }
                    // A fresh node: empty document and template caches.
                    let node = Arc::new(
                        Node::new(engine.clone(), store.clone(), CacheConfig::default())
                            .with_signing_key(signing()),
                    );
                    let start = Instant::now();
                    runtime.block_on(call(&node));
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("warm");
    for (label, poll) in [
        ("cache_hit", Duration::from_secs(3600)),
        ("revalidated", Duration::ZERO),
    ] {
        let node = Arc::new(
            Node::new(engine.clone(), store.clone(), cache(poll)).with_signing_key(signing()),
        );
        runtime.block_on(call(&node));
        group.bench_function(label, |b| b.to_async(&runtime).iter(|| call(&node)));
    }
    group.finish();

    // Store requests of 1,000 warm calls spread over ~3 s (3 ms apart),
    // with the default poll interval.
    let node = Arc::new(
        Node::new(engine.clone(), store.clone(), CacheConfig::default())
            .with_signing_key(signing()),
    );
    runtime.block_on(call(&node));
    let before = runtime.block_on(node.status(None)).store_requests;
    let start = Instant::now();
    runtime.block_on(async {
        for _ in 0..1000 {
            call(&node).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let elapsed = start.elapsed();
    let after = runtime.block_on(node.status(None)).store_requests;
    eprintln!(
        "store requests in 1000 warm calls over {elapsed:?} (poll interval {:?}): gets {}, revalidations {}, puts {}, lists {}, heads {}",
        CacheConfig::default().poll_interval,
        after.gets - before.gets,
        after.revalidations - before.revalidations,
        after.puts - before.puts,
        after.lists - before.lists,
        after.heads - before.heads,
    );
}

criterion_group!(benches, nodes_over_s3);
criterion_main!(benches);

/// The key every node of the bench signs and verifies artifacts with, as
/// the nodes of one store share theirs.
fn signing() -> SigningKey {
    SigningKey::from_secret("bench-signing-key-0123456789abcdef0123").expect("key")
}
