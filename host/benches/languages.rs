//! A stage with no work in it, written in Rust, Python (componentize-py)
//! and JavaScript (componentize-js), on one node over a local store
//! (results in BENCHMARKS.md):
//!
//! - `languages/instantiate/*`: a fresh instance from the template;
//! - `languages/warm/*`: one call through the node (instantiate, pass a
//!   16-float tensor in and out) with everything in memory;
//! - `languages/first_request/*`: a node that has never run the function
//!   serves its first call: version record and precompiled artifact from
//!   the store, deserialize, link, instantiate, run.
//!
//! It prints each component's size and compile time first.
//!
//! Run with `cargo bench -p sluice --bench languages`.

mod common;

use common::component;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice::cache::CacheConfig;
use sluice::engine::{Engine, EngineConfig, StageIdentity, Template};
use sluice::node::{ControlPlane, Deploy, Node, Settings, SigningKey};
use sluice::registry::Selector;
use sluice::store::{FsStore, ObjectStore};
use sluice::tensor::Message;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STAGES: [(&str, &str); 3] = [
    ("rust", "tests/guests/pass-through"),
    ("python", "tests/guests/py-pass"),
    ("js", "tests/guests/js-pass"),
];

fn input() -> Message {
    common::features(16)
}

async fn call(node: &Arc<Node>, name: &str) {
    let out = node
        .invoke(name, &Selector::Default, input(), "bench".into(), None)
        .await
        .expect("invoke");
    black_box(out);
}

fn signing() -> SigningKey {
    SigningKey::from_secret("bench-signing-key-0123456789abcdef0123").expect("key")
}

fn languages(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let root = tempfile::tempdir().expect("store folder");
    let store: Arc<dyn ObjectStore> = Arc::new(FsStore::open(root.path()).expect("store"));
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let deployer = Node::new(engine.clone(), store.clone(), CacheConfig::default())
        .with_signing_key(signing());
    let mut templates = Vec::new();
    for (language, dir) in STAGES {
        let bytes = component(dir);
        let started = Instant::now();
        let (compiled, world) = engine.compile(&bytes).expect("compile");
        let compile = started.elapsed();
        let Template::Stage(pre) = engine.prepare(&compiled, world).expect("link") else {
            panic!("{dir} is not a stage");
        };
        let cwasm = engine.serialize(&compiled).expect("serialize").len();
        eprintln!(
            "{language}: component {} bytes, compiled in {compile:?}, artifact {cwasm} bytes",
            bytes.len()
        );
        templates.push((language, pre));
        runtime
            .block_on(deployer.acting("bench").publish(
                language,
                bytes.into(),
                Settings::Function(Deploy {
                    created_by: "bench".into(),
                    ..Deploy::default()
                }),
                None,
            ))
            .expect("deploy");
    }

    let mut group = c.benchmark_group("languages/instantiate");
    for (language, pre) in &templates {
        let identity = StageIdentity {
            function: (*language).into(),
            version: 1,
            request_id: "bench".into(),
            metrics: sluice::observe::metrics::metrics().function(language, 1),
        };
        group.bench_function(BenchmarkId::from_parameter(language), |b| {
            b.to_async(&runtime).iter(|| async {
                engine
                    .instantiate(pre, identity.clone())
                    .await
                    .expect("instance")
            })
        });
    }
    group.finish();

    let node = Arc::new(
        Node::new(engine.clone(), store.clone(), CacheConfig::default())
            .with_signing_key(signing()),
    );
    let mut group = c.benchmark_group("languages/warm");
    for (language, _) in STAGES {
        runtime.block_on(call(&node, language));
        group.bench_function(BenchmarkId::from_parameter(language), |b| {
            b.to_async(&runtime).iter(|| call(&node, language))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("languages/first_request");
    group.sample_size(10);
    for (language, _) in STAGES {
        group.bench_function(BenchmarkId::from_parameter(language), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A fresh node: empty document and template caches.
                    let node = Arc::new(
                        Node::new(engine.clone(), store.clone(), CacheConfig::default())
                            .with_signing_key(signing()),
                    );
                    let start = Instant::now();
                    runtime.block_on(call(&node, language));
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, languages);
criterion_main!(benches);
