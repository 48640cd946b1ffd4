//! Sluice's model engine (tract with Sluice's operators) against
//! onnxruntime's C API, in one process, on every example and zoo model at
//! 1 and 64 rows. Results in BENCHMARKS.md.
//!
//! Both engines get the same compiled-once model, one thread, and the same
//! inputs: distinct rows (the reference rows, each feature moved by up to
//! ±5%), a different batch on every call, built before timing. Timed is
//! one run each: tract's plan (`Runner::run`, what a node calls) and
//! `Session::run`. The two engines take turns in rounds (which one goes
//! first alternates), each round long enough to time; the table gives the
//! median per-run time over the rounds and the spread of the round means
//! (10th to 90th percentile).
//!
//! onnxruntime is loaded from `ORT_DYLIB_PATH` (the onnxruntime wheel's
//! shared library); `host/benches/engines.sh` installs the wheel and runs
//! this. `-- NAME` keeps the models
//! whose name contains NAME.

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor as OrtTensor};
use sluice::inference::compile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tract_onnx::prelude::{TValue, Tensor, tvec};

const ROUNDS: usize = 21;
const ROUND: Duration = Duration::from_millis(6);
/// Distinct inputs per model and batch size, used in turn.
const DISTINCT: usize = 64;

/// A model to measure: its file, its reference and the input shape it is
/// pinned to (the CNN's) if any.
struct Case {
    name: String,
    dir: PathBuf,
    pinned: Option<Vec<i64>>,
    batches: &'static [usize],
}

fn cases(repo: &Path) -> Vec<Case> {
    let examples = repo.join("examples/models");
    let mut cases: Vec<Case> = [
        "iris-logreg",
        "iris-scaled-logreg",
        "digits-mlp",
        "digits-mnb",
        "iris-gbt",
        "iris-rf",
        "cancer-gbt",
        "cancer-rf",
        "diabetes-gbr",
        "diabetes-rf",
        "xgb-iris",
        "xgb-cancer",
        "lgbm-iris",
        "lgbm-diabetes",
        "diabetes-svr",
    ]
    .into_iter()
    .map(|name| Case {
        name: name.into(),
        dir: examples.clone(),
        pinned: None,
        batches: &[1, 64],
    })
    .collect();
    cases.push(Case {
        name: "text-direction".into(),
        dir: examples.clone(),
        pinned: Some(vec![1, 3, 48, 192]),
        batches: &[1],
    });
    let zoo = examples.join("zoo");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(zoo.join("index.json")).expect("zoo index"))
            .expect("zoo index JSON");
    for entry in index.as_array().expect("index") {
        if entry.get("export_error").is_none() {
            cases.push(Case {
                name: entry["name"].as_str().expect("name").into(),
                dir: zoo.clone(),
                pinned: None,
                batches: &[1, 64],
            });
        }
    }
    cases
}

/// A deterministic generator (xorshift), so every run measures the same inputs.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// One input batch, for both engines.
struct Input {
    tract: Arc<Tensor>,
    ort: DynValue,
}

/// `DISTINCT` batches of `rows` rows: reference rows chosen in turn, each
/// value moved by up to ±5%.
fn inputs(reference: &serde_json::Value, rows: usize, rng: &mut Rng) -> (String, Vec<Input>) {
    let (name, spec) = reference["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .next()
        .expect("an input");
    let shape: Vec<usize> = (spec["shape"].as_array().expect("shape").iter())
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let row_len: usize = shape[1..].iter().product();
    let data: Vec<f64> = (spec["data"].as_array().expect("data").iter())
        .map(|v| v.as_f64().expect("number"))
        .collect();
    let double = spec["datatype"] == "float64";
    let mut batch_shape = shape.clone();
    batch_shape[0] = rows;
    let batches = (0..DISTINCT)
        .map(|_| {
            let mut values = Vec::with_capacity(rows * row_len);
            for _ in 0..rows {
                let row = (rng.next().abs() * shape[0] as f64) as usize % shape[0];
                for v in &data[row * row_len..][..row_len] {
                    values.push(v * (1.0 + 0.05 * rng.next()));
                }
            }
            let dims: Vec<i64> = batch_shape.iter().map(|d| *d as i64).collect();
            match double {
                true => Input {
                    tract: Arc::new(Tensor::from_shape(&batch_shape, &values).expect("tensor")),
                    ort: OrtTensor::from_array((dims, values))
                        .expect("ort tensor")
                        .into_dyn(),
                },
                false => {
                    let values: Vec<f32> = values.iter().map(|v| *v as f32).collect();
                    Input {
                        tract: Arc::new(Tensor::from_shape(&batch_shape, &values).expect("tensor")),
                        ort: OrtTensor::from_array((dims, values))
                            .expect("ort tensor")
                            .into_dyn(),
                    }
                }
            }
        })
        .collect();
    (name.clone(), batches)
}

/// Mean time of one call of `run`, over `calls` calls cycling the inputs.
fn time(calls: usize, mut run: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    for i in 0..calls {
        run(i % DISTINCT);
    }
    start.elapsed() / calls as u32
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    match us {
        us if us >= 100.0 => format!("{us:.0}"),
        us if us >= 10.0 => format!("{us:.1}"),
        us => format!("{us:.2}"),
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let dylib = std::env::var("ORT_DYLIB_PATH")
        .expect("ORT_DYLIB_PATH: the path of libonnxruntime.so (host/benches/engines.sh sets it)");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let engine = sluice::inference::onnxruntime::Onnxruntime::load(Path::new(&dylib))
        .expect("Sluice's onnxruntime engine");
    // onnxruntime allows one environment per process: the peer's sessions
    // are made in the engine's.
    let environment = engine.environment();
    println!(
        "| model | rows | Sluice (tract) µs (p10-p90) | onnxruntime µs (p10-p90) | ratio | Sluice (--engine onnxruntime) µs | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for case in cases(&repo) {
        if filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            continue;
        }
        let bytes = std::fs::read(case.dir.join(format!("{}.onnx", case.name))).expect("model");
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(case.dir.join(format!("{}.reference.json", case.name)))
                .expect("reference"),
        )
        .expect("reference JSON");
        let mut shapes = BTreeMap::new();
        let (input_name, _) = inputs(&reference, 1, &mut Rng(1));
        if let Some(pinned) = &case.pinned {
            shapes.insert(input_name.clone(), pinned.clone());
        }
        let (plan, _, _) = compile(&bytes, &shapes).expect("Sluice compiles the model");
        let (sessions, _, _) = engine
            .compile(&bytes, &BTreeMap::new())
            .expect("Sluice's onnxruntime engine loads the model");
        let mut session = Session::builder(environment)
            .and_then(|b| Ok(b.with_intra_threads(1)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|b| Ok(b.with_parallel_execution(false)?))
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
            .and_then(|mut b| b.commit_from_memory(&bytes))
            .expect("onnxruntime loads the model");
        for &rows in case.batches {
            let (_, batches) = inputs(&reference, rows, &mut rng);
            let mut tract = |i: usize| {
                let input = TValue::from_const(Arc::clone(&batches[i].tract));
                std::hint::black_box(plan.run(tvec![input]).expect("tract runs"));
            };
            let mut second = |i: usize| {
                let input = TValue::from_const(Arc::clone(&batches[i].tract));
                std::hint::black_box(sessions.run(tvec![input]).expect("onnxruntime engine runs"));
            };
            let mut onnxruntime = |i: usize| {
                let outputs = session
                    .run(ort::inputs![input_name.as_str() => &batches[i].ort])
                    .expect("onnxruntime runs");
                std::hint::black_box(outputs.len());
            };
            // Warm up, and size the rounds.
            let calls = |per_call: Duration| {
                (ROUND.as_nanos() / per_call.as_nanos().max(1)).clamp(3, 5000) as usize
            };
            let (tract_calls, ort_calls) = (
                calls(time(20, &mut tract)),
                calls(time(20, &mut onnxruntime)),
            );
            // The second engine does onnxruntime's work plus its own: the
            // same number of calls per round as the peer.
            time(20, &mut second);
            let (mut ours, mut theirs, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                if round % 2 == 0 {
                    ours.push(time(tract_calls, &mut tract));
                    theirs.push(time(ort_calls, &mut onnxruntime));
                    seconds.push(time(ort_calls, &mut second));
                } else {
                    seconds.push(time(ort_calls, &mut second));
                    theirs.push(time(ort_calls, &mut onnxruntime));
                    ours.push(time(tract_calls, &mut tract));
                }
            }
            ours.sort();
            theirs.sort();
            seconds.sort();
            let c = percentile(&seconds, 0.5);
            let (a, b) = (percentile(&ours, 0.5), percentile(&theirs, 0.5));
            println!(
                "| {} | {rows} | {} ({}-{}) | {} ({}-{}) | {:.2}× | {} | {:.2}× |",
                case.name,
                micros(a),
                micros(percentile(&ours, 0.1)),
                micros(percentile(&ours, 0.9)),
                micros(b),
                micros(percentile(&theirs, 0.1)),
                micros(percentile(&theirs, 0.9)),
                a.as_secs_f64() / b.as_secs_f64(),
                micros(c),
                c.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
}
