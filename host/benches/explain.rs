//! What an explanation costs: for each example tabular model with a
//! baseline, one row's run through the node's model engine
//! (`run/{model}`) and the explanation of that run (`explain/{model}`:
//! exact TreeSHAP for the tree models, Kernel SHAP over every coalition
//! for iris-scaled-logreg), the rows cycling through the model's eight
//! reference rows.
//!
//! Run with `cargo bench -p sluice --bench explain`.

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::cache::{CacheConfig, DocumentCache};
use sluice::inference::{Baseline, Models, Push};
use sluice::registry::{Name, Selector};
use sluice::store::FsStore;
use sluice::tensor::{NamedTensor, Tensor, TensorData};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn read(file: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/models");
    std::fs::read(dir.join(file)).expect(file)
}

/// Each reference row of `model`, as a one-row request.
fn rows(model: &str) -> Vec<Vec<NamedTensor>> {
    let reference: serde_json::Value =
        serde_json::from_slice(&read(&format!("{model}.reference.json"))).expect("json");
    let x = &reference["inputs"]["X"];
    let width = x["shape"][1].as_u64().unwrap() as usize;
    let data: Vec<f64> = x["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    data.chunks(width)
        .map(|row| {
            vec![NamedTensor {
                name: "X".into(),
                tensor: Tensor {
                    shape: vec![1, width as u64],
                    data: TensorData::F32(row.iter().map(|v| *v as f32).collect()),
                },
            }]
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsStore::open(dir.path()).expect("store"));
    let documents = Arc::new(DocumentCache::new(store, CacheConfig::default()));
    let models = Arc::new(Models::new(documents, 1 << 32));
    let mut group = c.benchmark_group("explain");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for model in [
        "iris-scaled-logreg",
        "iris-gbt",
        "iris-rf",
        "cancer-gbt",
        "cancer-rf",
        "diabetes-gbr",
        "diabetes-rf",
    ] {
        let name = Name::parse(model).unwrap();
        let push = Push {
            baseline: Some(Baseline::Json(
                read(&format!("{model}.baseline.json")).into(),
            )),
            ..Push::default()
        };
        runtime
            .block_on(models.push(&name, read(&format!("{model}.onnx")).into(), push, None))
            .expect("push");
        let loaded = runtime
            .block_on(models.get(&name, &Selector::Default))
            .expect("load");
        let rows = rows(model);
        let mut i = 0;
        group.bench_function(format!("run/{model}"), |b| {
            b.iter(|| {
                i += 1;
                let input = rows[i % rows.len()].clone();
                runtime.block_on(models.run(&loaded, input)).expect("run")
            })
        });
        group.bench_function(format!("explain/{model}"), |b| {
            b.iter(|| {
                i += 1;
                let input = &rows[i % rows.len()];
                runtime
                    .block_on(models.explain(&loaded, input))
                    .expect("explain")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
