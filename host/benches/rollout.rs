//! What a rollout adds to a call (results in BENCHMARKS.md):
//!
//! - `invoke/{none,split,sticky,shadow-0}`: a pass-through function called
//!   through the node, unqualified: with no rollout; with a 50% split judged
//!   against an SLO; with a 50% split sticky by a header (a different key
//!   each call); with a shadow rollout at weight 0 (routing and bookkeeping,
//!   no copies). Every function has two versions of the same component, so
//!   the calls differ only in routing. The routing overhead is a row minus
//!   `none`.
//! - `route/{split,sticky}`: the routing decision alone.
//!
//! Everything runs in process on a store in a temporary directory.
//! Run with `cargo bench -p sluice --bench rollout`.

mod common;

use axum::http::{HeaderMap, HeaderValue};
use common::component;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice::cache::CacheConfig;
use sluice::engine::{Engine, EngineConfig};
use sluice::node::{ControlPlane, Deploy, Node, Settings};
use sluice::registry::rollout::{RolloutChange, draw};
use sluice::registry::{Rollout, RolloutState, Selector, Slo, StickyKey};
use sluice::store::FsStore;
use sluice::tensor::{Body, Message};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsStore::open(dir.path()).expect("store"));
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let node = Arc::new(Node::new(engine, store, CacheConfig::default()));
    let plane = node.acting("bench");
    let change = |name: &str, change: RolloutChange| {
        runtime
            .block_on(plane.rollout(sluice::node::Kind::Function, name, change))
            .unwrap_or_else(|e| panic!("rollout of {name}: {e}"));
    };
    let start = |weight, shadow, sticky: Option<&str>| RolloutChange::Start {
        to: 2,
        weight,
        shadow,
        sticky: sticky.map(|k| k.parse().expect("sticky key")),
        slo: Some(Slo::default()),
    };
    for name in ["none", "split", "sticky", "shadow-0"] {
        for version in ["1", "2"] {
            let deploy = Deploy {
                created_by: "bench".into(),
                config: BTreeMap::from([("version".to_string(), version.to_string())]),
                ..Deploy::default()
            };
            let artifact = component("tests/guests/pass-through").into();
            runtime
                .block_on(plane.publish(name, artifact, Settings::Function(deploy), None))
                .unwrap_or_else(|e| panic!("publish {name}: {e}"));
        }
    }
    // `none` runs version 2 (its newest); the others split 1 and 2.
    change("split", start(50, false, None));
    change("sticky", start(50, false, Some("header:x-user")));
    change("shadow-0", start(1, true, None));
    change("shadow-0", RolloutChange::Set { weight: 0 });
    let input = Message {
        body: Some(Body {
            content_type: "text/plain".into(),
            bytes: b"hello".to_vec(),
        }),
        ..Message::default()
    };
    let keys: Vec<HeaderMap> = (0..1024)
        .map(|i| {
            let mut headers = HeaderMap::new();
            let user = HeaderValue::from_str(&format!("user-{i}")).expect("header");
            headers.insert("x-user", user);
            headers
        })
        .collect();

    let mut group = c.benchmark_group("invoke");
    for name in ["none", "split", "sticky", "shadow-0"] {
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                i = (i + 1) % keys.len();
                let headers = &keys[i];
                let (node, input) = (&node, input.clone());
                async move {
                    let call = node.invoke(
                        name,
                        &Selector::Default,
                        input,
                        "bench".into(),
                        Some(headers),
                    );
                    black_box(call.await.expect("invoke"))
                }
            })
        });
    }
    group.finish();

    let rollout = |sticky: Option<StickyKey>| Rollout {
        from: 1,
        to: 2,
        weight: 50,
        shadow: false,
        sticky,
        slo: Some(Slo::default()),
        started_at: String::new(),
        started_by: String::new(),
        state: RolloutState::Active,
    };
    let mut group = c.benchmark_group("route");
    let split = rollout(None);
    let mut n = 0u64;
    group.bench_function("split", |b| {
        b.iter(|| {
            n += 1;
            black_box(split.route("split", None, || draw(n)))
        })
    });
    let sticky = rollout(Some(StickyKey::Header("x-user".into())));
    let users: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    let mut i = 0usize;
    group.bench_function("sticky", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            black_box(sticky.route("sticky", Some(users[i].as_bytes()), || 0))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
