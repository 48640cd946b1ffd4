//! What the data plane pays per call for access control, in process
//! (results in BENCHMARKS.md): `Node::admit_call`, which every
//! `/fn`, `/p` and `/v2/models` request goes through before its body is
//! read: for a name whose invocation is open (a head lookup from the
//! cache: what every call pays), for one that needs a token, called with
//! an invoker token (the head, then the verified-token cache), for an
//! open one with a route rate limit (the head, then a token bucket), and the
//! verified-token cache alone (the difference between the two).
//!
//! Run with `cargo bench -p sluice --bench access`.

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::access::Role;
use sluice::cache::CacheConfig;
use sluice::engine::{Engine, EngineConfig};
use sluice::node::{ControlPlane, Kind, Node};
use sluice::registry::{Bucket, Guard, Invocation, RateLimit};
use sluice::store::{FsStore, ObjectStore};
use std::hint::black_box;
use std::sync::Arc;

fn admit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(FsStore::open(dir.path()).expect("store"));
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let node = Node::new(engine, store, CacheConfig::default());
    let token = runtime.block_on(async {
        let admin = node.acting("bench");
        admin
            .set_invocation(Kind::Function, "open", Invocation::Open)
            .await
            .expect("open");
        admin
            .set_invocation(Kind::Function, "closed", Invocation::Token)
            .await
            .expect("closed");
        admin
            .set_invocation(Kind::Function, "limited", Invocation::Open)
            .await
            .expect("limited");
        // A limit no bench reaches: the cost of taking a token.
        let bucket = Bucket {
            per_second: 1e12,
            burst: u32::MAX,
        };
        let guard = Guard {
            rate_limit: Some(RateLimit {
                route: Some(bucket),
                per_token: None,
            }),
            ..Guard::default()
        };
        admin
            .set_guard(Kind::Function, "limited", Some(guard))
            .await
            .expect("guard");
        let made = admin
            .create_token("app", Role::Invoker, Vec::new())
            .await
            .expect("token");
        made.token
    });
    runtime
        .block_on(node.admit_call(Kind::Function, "closed", Some(&token), true))
        .expect("the invoker token is let through");
    assert!(
        runtime
            .block_on(node.admit_call(Kind::Function, "closed", None, true))
            .is_err(),
        "a call without a token is refused"
    );

    let mut group = c.benchmark_group("admit_call");
    group.bench_function("open name", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(node.admit_call(Kind::Function, "open", None, true).await).expect("open");
        })
    });
    group.bench_function("open name, route rate limit", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(node.admit_call(Kind::Function, "limited", None, true).await)
                .expect("within the limit");
        })
    });
    group.bench_function("token name, invoker token", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                node.admit_call(Kind::Function, "closed", Some(&token), true)
                    .await,
            )
            .expect("admitted");
        })
    });
    group.bench_function("verified-token cache only", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(node.access().identify(Some(&token)).await).expect("known");
        })
    });
    group.finish();
}

criterion_group!(benches, admit);
criterion_main!(benches);
