//! The model engine through a node's run path (results in BENCHMARKS.md;
//! the comparison with onnxruntime is `engines.rs`):
//!
//! - `engine/{model}/{1,64}`: one run of each example model at batch 1 and
//!   64 rows, through the node's model engine (input checks, the blocking
//!   pool, conversion back);
//! - `batching/{mlp,cnn}/{off,on}`: 64 concurrent single-row requests to
//!   the MLP (tract) and the CNN (onnxruntime engine, when ORT_DYLIB_PATH
//!   is set), without and with dynamic batching.
//!
//! Run with `cargo bench -p sluice --bench models`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::cache::{CacheConfig, DocumentCache};
use sluice::inference::onnxruntime::Onnxruntime;
use sluice::inference::{Batching, Engine, Models, Push};
use sluice::registry::{Name, Selector};
use sluice::store::FsStore;
use sluice::tensor::{NamedTensor, Tensor, TensorData};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn example(name: &str) -> (Vec<u8>, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/models");
    let model = std::fs::read(dir.join(format!("{name}.onnx"))).expect("model");
    let reference =
        std::fs::read_to_string(dir.join(format!("{name}.reference.json"))).expect("reference");
    (model, serde_json::from_str(&reference).expect("json"))
}

/// The reference input repeated to `rows` rows (first row of the file).
fn input(reference: &serde_json::Value, rows: usize) -> Vec<NamedTensor> {
    let (name, spec) = reference["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let shape: Vec<u64> = spec["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .collect();
    let row_len: u64 = shape[1..].iter().product();
    let row = spec["data"].as_array().unwrap()[..row_len as usize]
        .iter()
        .map(|v| v.as_f64().unwrap());
    let data = match spec["datatype"].as_str() {
        Some("float64") => TensorData::F64(row.collect::<Vec<_>>().repeat(rows)),
        _ => TensorData::F32(row.map(|v| v as f32).collect::<Vec<_>>().repeat(rows)),
    };
    let mut shape = shape;
    shape[0] = rows as u64;
    vec![NamedTensor {
        name: name.clone(),
        tensor: Tensor { shape, data },
    }]
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsStore::open(dir.path()).expect("store"));
    let documents = Arc::new(DocumentCache::new(store, CacheConfig::default()));
    let models = Arc::new(Models::new(documents, 1 << 32));
    let push = |name: &str, file: &str, push: Push| {
        let (bytes, _) = example(file);
        let name = Name::parse(name).unwrap();
        runtime
            .block_on(models.push(&name, bytes.into(), push, None))
            .expect("push");
        runtime
            .block_on(models.get(&name, &Selector::Default))
            .expect("load")
    };

    let mut group = c.benchmark_group("engine");
    for (name, batches) in [
        ("iris-logreg", &[1usize, 64][..]),
        ("iris-gbt", &[1, 64]),
        ("iris-rf", &[1, 64]),
        ("cancer-gbt", &[1, 64]),
        ("diabetes-gbr", &[1, 64]),
        ("diabetes-rf", &[1, 64]),
        ("diabetes-gbr-double", &[1, 64]),
        ("xgb-iris", &[1, 64]),
        ("xgb-cancer", &[1, 64]),
        ("lgbm-iris", &[1, 64]),
        ("lgbm-diabetes", &[1, 64]),
        ("digits-mlp", &[1, 64]),
        ("text-direction", &[1]),
    ] {
        let mut settings = Push::default();
        if name == "text-direction" {
            settings
                .input_shapes
                .insert("x".into(), vec![1, 3, 48, 192]);
        }
        let model = push(name, name, settings);
        let (_, reference) = example(name);
        for &rows in batches {
            let inputs = input(&reference, rows);
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new(name, rows), &inputs, |b, inputs| {
                b.to_async(&runtime)
                    .iter(|| async { models.run(&model, inputs.clone()).await.expect("run") })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("batching");
    group.throughput(Throughput::Elements(64));
    // The CNN batches on the onnxruntime engine only (tract cannot plan
    // it with a free batch dimension): when ORT_DYLIB_PATH names the
    // library (`host/benches/engines.sh` shows where the wheel keeps it).
    let mut cases = vec![("mlp", "digits-mlp", Engine::Tract)];
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(path) => {
            let library = Onnxruntime::load(std::path::Path::new(&path)).expect("onnxruntime");
            models.use_onnxruntime(library);
            cases.push(("cnn", "text-direction", Engine::Onnxruntime));
        }
        None => eprintln!("batching/cnn: skipped (set ORT_DYLIB_PATH)"),
    }
    for (case, file, engine) in cases {
        let (_, reference) = example(file);
        let one_row = input(&reference, 1);
        for (label, batching) in [
            ("off", None),
            (
                "on",
                Some(Batching {
                    max_batch_size: 64,
                    max_queue_delay_us: 1000,
                    max_queue_size: Batching::DEFAULT_MAX_QUEUE_SIZE,
                }),
            ),
        ] {
            let model = push(
                &format!("{case}-batching-{label}"),
                file,
                Push {
                    batching,
                    engine,
                    ..Push::default()
                },
            );
            group.bench_function(format!("{case}/{label}"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        runtime.block_on(async {
                            let calls = (0..64).map(|_| {
                                let (models, model, inputs) =
                                    (models.clone(), model.clone(), one_row.clone());
                                tokio::spawn(async move {
                                    models.run(&model, inputs).await.expect("run")
                                })
                            });
                            for call in futures::future::join_all(calls).await {
                                call.expect("task");
                            }
                        });
                    }
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
