//! Per-request costs of running a stage (results in BENCHMARKS.md):
//!
//! - `instantiate/*`: a fresh instance from a function's template, with the
//!   pooling allocator and with on-demand allocation;
//! - `scaler/*`: one `standard-scaler` call on the warm path at 1 KiB and
//!   64 KiB of f32 features, against the same arithmetic as native Rust
//!   (the ratio is what counts; both run in the same process and run).
//!
//! Run with `cargo bench --bench stage_call`.

mod common;

use common::component;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::engine::{Engine, EngineConfig, StageIdentity, StageLimits, StagePre, Template};
use sluice::tensor::{Message, NamedTensor, Tensor, TensorData};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

fn prepare(engine: &Engine, bytes: &[u8]) -> StagePre {
    let (component, world) = engine.compile(bytes).expect("compile");
    match engine.prepare(&component, world).expect("link") {
        Template::Stage(pre) => pre,
        Template::Http(_) => panic!("not a stage"),
    }
}

fn identity() -> StageIdentity {
    StageIdentity {
        function: "bench".into(),
        version: 1,
        request_id: "bench".into(),
        metrics: sluice::observe::metrics::metrics().function("bench", 1),
    }
}

fn engine(pooling: bool) -> Engine {
    Engine::new(EngineConfig {
        pooling: Some(pooling),
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn instantiate(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let bytes = component("functions/standard-scaler");
    let mut group = c.benchmark_group("instantiate");
    for (label, pooling) in [("pooling", true), ("on-demand", false)] {
        let engine = engine(pooling);
        let pre = prepare(&engine, &bytes);
        group.bench_function(label, |b| {
            b.to_async(&runtime).iter(|| async {
                engine
                    .instantiate(&pre, identity())
                    .await
                    .expect("instantiate")
            })
        });
    }
    group.finish();
}

/// The scaler's arithmetic, natively: the baseline for the ratio.
fn scale_native(values: &mut [f32], mean: &[f64], std: &[f64]) {
    for (i, v) in values.iter_mut().enumerate() {
        let c = i % mean.len();
        *v = ((f64::from(*v) - mean[c]) / std[c]) as f32;
    }
}

fn scaler(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let engine = engine(true);
    let pre = prepare(&engine, &component("functions/standard-scaler"));
    // Sixteen columns: a typical tabular model. Config parsing (per call,
    // as each request gets a fresh instance) grows with the width.
    const WIDTH: usize = 16;
    let mean: Vec<f64> = (0..WIDTH).map(|i| i as f64 * 0.5).collect();
    let std: Vec<f64> = (0..WIDTH).map(|i| 1.0 + i as f64 * 0.01).collect();
    let join = |v: &[f64]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let config: Arc<BTreeMap<String, String>> = Arc::new(
        [
            ("mean".to_string(), join(&mean)),
            ("std".to_string(), join(&std)),
        ]
        .into(),
    );

    let mut group = c.benchmark_group("scaler");
    for kib in [1usize, 64] {
        let n = kib * 1024 / 4;
        let values: Vec<f32> = (0..n).map(|i| (i % 97) as f32).collect();
        group.throughput(Throughput::Bytes((n * 4) as u64));
        let message = Message {
            body: None,
            tensors: vec![NamedTensor {
                name: "features".into(),
                tensor: Tensor {
                    shape: vec![(n / WIDTH) as u64, WIDTH as u64],
                    data: TensorData::F32(values.clone()),
                },
            }],
            fields: Vec::new(),
        };
        group.bench_with_input(
            BenchmarkId::new("wasm", format!("{kib}KiB")),
            &message,
            |b, message| {
                b.to_async(&runtime).iter(|| async {
                    let out = engine
                        .call(
                            &pre,
                            identity(),
                            config.clone(),
                            StageLimits::default(),
                            Default::default(),
                            message.clone(),
                        )
                        .await
                        .expect("call");
                    black_box(out)
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("native", format!("{kib}KiB")),
            &values,
            |b, values| {
                b.iter(|| {
                    // The same work the stage does: copy the input in, scale it.
                    let mut copy = values.clone();
                    scale_native(&mut copy, &mean, &std);
                    black_box(copy)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, instantiate, scaler);
criterion_main!(benches);
