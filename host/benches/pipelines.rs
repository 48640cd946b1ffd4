//! Pipelines (results in BENCHMARKS.md):
//!
//! - `hops/{1,5}/{size}`: a pipeline of 1 or 5 pass-through function steps
//!   on a message of `size`, in the same run: the cost of a hop is
//!   (t5 − t1) / 4; `hops/direct/{size}`: the same function invoked on its
//!   own (what a pipeline adds around its steps);
//! - `image/pipeline/{image}`: the image example (`examples/image-classify`:
//!   decode + resize + normalise in WASM → the text-direction CNN → top-k
//!   in WASM) on a PNG, through the node;
//! - `image/native/{image}`: the same work as one native program: the two
//!   stages' own Rust code compiled natively, tract called directly on a
//!   plan optimised once;
//! - `image/preprocess-{wasm,native}/{image}`: the first stage alone, as a
//!   component through the node and as native Rust; `image/model-{node,
//!   native}/{image}`: the CNN alone on the preprocessed tensor, through the
//!   node's model engine and as tract's plan called directly.
//!
//! Everything runs in process on a store in a temporary directory.
//! Run with `cargo bench -p sluice --bench pipelines`.

mod common;

use common::component;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice::cache::CacheConfig;
use sluice::engine::{Engine, EngineConfig};
use sluice::inference::Push;
use sluice::node::{ControlPlane, Deploy, Node, Settings};
use sluice::registry::Selector;
use sluice::store::FsStore;
use sluice::tensor::{Body, Message, NamedTensor, Scalar, Tensor, TensorData};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use tract_onnx::prelude::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A message of one f32 tensor of `floats` values and a field.
fn message(floats: usize) -> Message {
    Message {
        body: None,
        tensors: vec![NamedTensor {
            name: "features".into(),
            tensor: Tensor {
                shape: vec![1, floats as u64],
                data: TensorData::F32((0..floats).map(|i| i as f32 * 0.5).collect()),
            },
        }],
        fields: vec![sluice::tensor::Field {
            name: "id".into(),
            value: Scalar::Text("request-7".into()),
        }],
    }
}

fn hops_manifest(name: &str, steps: usize) -> Vec<u8> {
    let mut text = format!("name = \"{name}\"\n");
    for i in 0..steps {
        text.push_str(&format!(
            "[[step]]\nname = \"hop{i}\"\nfunction = \"pass\"\n"
        ));
    }
    text.into_bytes()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsStore::open(dir.path()).expect("store"));
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let node = Arc::new(Node::new(engine, store, CacheConfig::default()));
    let publish = |name: &str, artifact: Vec<u8>, settings: Settings| {
        runtime
            .block_on(
                node.acting("bench")
                    .publish(name, artifact.into(), settings, None),
            )
            .unwrap_or_else(|e| panic!("publish {name}: {e}"));
    };
    let function = || {
        Settings::Function(Deploy {
            created_by: "bench".into(),
            ..Deploy::default()
        })
    };
    let pipeline = || Settings::Pipeline {
        created_by: "bench".into(),
    };
    publish("pass", component("tests/guests/pass-through"), function());
    publish("hops-1", hops_manifest("hops-1", 1), pipeline());
    publish("hops-5", hops_manifest("hops-5", 5), pipeline());
    publish(
        "image-preprocess",
        component("functions/image-preprocess"),
        function(),
    );
    publish("top-k", component("functions/top-k"), function());
    let model_file = repo().join("examples/models/text-direction.onnx");
    let model_bytes = std::fs::read(&model_file).expect("model");
    publish(
        "text-direction",
        model_bytes,
        Settings::Model(Push {
            input_shapes: BTreeMap::from([("x".to_string(), vec![1, 3, 48, 192])]),
            ..Push::default()
        }),
    );
    // The example's own pipeline, from its sluice.toml.
    let example =
        std::fs::read(repo().join("examples/image-classify/sluice.toml")).expect("manifest");
    let manifest = sluice::pipeline::parse(std::str::from_utf8(&example).expect("UTF-8"))
        .expect("the example's pipeline")
        .remove(0);
    publish(
        "image-classify",
        serde_json::to_vec(&manifest).expect("JSON"),
        pipeline(),
    );

    let mut group = c.benchmark_group("hops");
    for (label, floats) in [("64B", 16), ("64KiB", 16 * 1024)] {
        let input = message(floats);
        group.bench_with_input(BenchmarkId::new("direct", label), &input, |b, input| {
            b.to_async(&runtime).iter(|| async {
                let out = node
                    .invoke(
                        "pass",
                        &Selector::Default,
                        input.clone(),
                        "bench".into(),
                        None,
                    )
                    .await
                    .expect("invoke");
                black_box(out)
            })
        });
        for steps in [1, 5] {
            let name = format!("hops-{steps}");
            group.bench_with_input(
                BenchmarkId::new(steps.to_string(), label),
                &input,
                |b, input| {
                    b.to_async(&runtime).iter(|| async {
                        let run = node
                            .run_pipeline(
                                &name,
                                &Selector::Default,
                                input.clone(),
                                "bench".into(),
                                None,
                            )
                            .await
                            .expect("pipeline");
                        black_box(run.output)
                    })
                },
            );
        }
    }
    group.finish();

    // The native program: the stages' code and tract, no sandbox, no node.
    let plan = tract_onnx::onnx()
        .model_for_path(&model_file)
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, 48, 192]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract plan");
    let settings = image_preprocess::Settings::default();
    let labels = ["0".to_string(), "180".to_string()];
    let native = |bytes: &[u8]| {
        let x = image_preprocess::preprocess(bytes, &settings).expect("preprocess");
        let x = tract_ndarray::Array4::from_shape_vec(
            (1, 3, 48, 192),
            x.into_vec::<f32>().expect("f32"),
        )
        .expect("shape");
        let outputs = plan.run(tvec!(x.into_tensor().into())).expect("run");
        let scores: Vec<f32> = outputs[0]
            .to_plain_array_view::<f32>()
            .expect("scores")
            .iter()
            .copied()
            .collect();
        let scores = sluice_sdk::Tensor::new([1, 2], scores).expect("tensor");
        top_k::top_k(scores, &labels, 2, false).expect("top-k")
    };

    let mut group = c.benchmark_group("image");
    for image in ["upright.png", "flipped.png"] {
        let bytes =
            std::fs::read(repo().join("examples/image-classify").join(image)).expect("image");
        // Both sides must agree before either is timed.
        let run = runtime
            .block_on(node.run_pipeline(
                "image-classify",
                &Selector::Default,
                image_message(&bytes),
                "bench".into(),
                None,
            ))
            .expect("pipeline");
        let (native_labels, _) = native(&bytes);
        let served = run
            .output
            .tensors
            .iter()
            .find(|t| t.name == "labels")
            .expect("labels");
        assert_eq!(
            served.tensor.data,
            TensorData::String(native_labels.into_vec::<String>().expect("labels")),
            "{image}"
        );
        group.bench_with_input(BenchmarkId::new("pipeline", image), &bytes, |b, bytes| {
            b.to_async(&runtime).iter(|| async {
                let run = node
                    .run_pipeline(
                        "image-classify",
                        &Selector::Default,
                        image_message(bytes),
                        "bench".into(),
                        None,
                    )
                    .await
                    .expect("pipeline");
                black_box(run.output)
            })
        });
        group.bench_with_input(BenchmarkId::new("native", image), &bytes, |b, bytes| {
            b.iter(|| black_box(native(bytes)))
        });
        // The first stage alone, as a component and natively: where the
        // pipeline's time beyond the native program goes.
        group.bench_with_input(
            BenchmarkId::new("preprocess-wasm", image),
            &bytes,
            |b, bytes| {
                b.to_async(&runtime).iter(|| async {
                    let out = node
                        .invoke(
                            "image-preprocess",
                            &Selector::Default,
                            image_message(bytes),
                            "bench".into(),
                            None,
                        )
                        .await
                        .expect("preprocess");
                    black_box(out)
                })
            },
        );
        // The model alone on the preprocessed tensor: through the node's
        // model engine, and tract's plan called directly.
        let x = image_preprocess::preprocess(&bytes, &settings).expect("preprocess");
        let model = runtime
            .block_on(node.model("text-direction", &Selector::Default))
            .expect("model");
        let input = vec![NamedTensor {
            name: "x".into(),
            tensor: Tensor {
                shape: vec![1, 3, 48, 192],
                data: TensorData::F32(x.into_vec::<f32>().expect("f32")),
            },
        }];
        group.bench_with_input(BenchmarkId::new("model-node", image), &input, |b, input| {
            b.to_async(&runtime)
                .iter(|| async { black_box(node.infer(&model, input.clone()).await.expect("run")) })
        });
        group.bench_with_input(
            BenchmarkId::new("model-native", image),
            &input,
            |b, input| {
                b.iter(|| {
                    let TensorData::F32(data) = &input[0].tensor.data else {
                        unreachable!("an f32 input")
                    };
                    let x = tract_ndarray::Array4::from_shape_vec((1, 3, 48, 192), data.clone())
                        .expect("shape");
                    black_box(plan.run(tvec!(x.into_tensor().into())).expect("run"))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("preprocess-native", image),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    black_box(image_preprocess::preprocess(bytes, &settings).expect("preprocess"))
                })
            },
        );
    }
    group.finish();
}

/// A request as `POST /p/...` makes it from a PNG body.
fn image_message(bytes: &[u8]) -> Message {
    Message {
        body: Some(Body {
            content_type: "image/png".into(),
            bytes: bytes.to_vec(),
        }),
        ..Message::default()
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
