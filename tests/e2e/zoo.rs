//! The model zoo (examples/models/zoo): every estimator its script trains
//! and exports, pushed to a real node over HTTP and called over the Open
//! Inference Protocol; every output must be onnxruntime's (labels equal,
//! floats within 1e-5 relative, never a non-finite value where onnxruntime
//! has a number).

use crate::models::{Tolerance, compare, infer_request, post};
use crate::support::{Server, client, onnxruntime_library, repo};
use serde_json::Value;
use std::path::PathBuf;

/// Models where onnxruntime's own rounding exceeds 1e-5 relative, and the
/// absolute floor their outputs are compared with instead of 1e-7.
const ROUNDED_BY_ONNXRUNTIME: &[(&str, f64)] = &[
    // A decision value of 0.01475 that cancels out of sums of ~1-10 (30
    // features, 100 support vectors): scikit-learn (f64) gives
    // 0.0147502128, Sluice (f64 sums) 0.0147501860, onnxruntime (f32
    // GEMM) 0.0147498120.
    ("svc-linear-cancer", 1e-6),
];

fn zoo() -> PathBuf {
    repo().join("examples/models/zoo")
}

fn read_json(file: &str) -> Value {
    let text = std::fs::read_to_string(zoo().join(file)).expect("zoo file");
    serde_json::from_str(&text).expect("zoo JSON")
}

/// Push the zoo's model `name` to run on `engine`; the node's answer when
/// it refuses it.
async fn push(server: &Server, name: &str, engine: &str) -> Result<(), String> {
    let model = std::fs::read(zoo().join(format!("{name}.onnx"))).expect("zoo model");
    let response = client()
        .put(server.url(&format!("/v1/models/{name}")))
        .query(&[("engine", engine)])
        .body(model)
        .send()
        .await
        .expect("push");
    match response.status().as_u16() {
        201 => Ok(()),
        status => Err(format!(
            "refused at push ({status}): {}",
            response.text().await.unwrap_or_default()
        )),
    }
}

/// Rows `from..to` of every input and output of a reference (all of them
/// have the rows along their first axis).
fn rows(reference: &Value, from: usize, to: usize) -> Value {
    let mut part = reference.clone();
    for side in ["inputs", "outputs"] {
        for tensor in part[side].as_object_mut().expect("tensors").values_mut() {
            let total = tensor["shape"][0].as_u64().expect("rows") as usize;
            let data = tensor["data"].as_array().expect("data");
            let width = data.len() / total;
            tensor["data"] = Value::from(data[from * width..to * width].to_vec());
            tensor["shape"][0] = Value::from(to - from);
        }
    }
    part
}

/// The largest error of `name`'s outputs against onnxruntime's, as a share
/// of the tolerance: all the reference rows in one call, then a few of them
/// in a second (a node may reuse what a run sets up, never what it
/// computed).
async fn check(server: &Server, name: &str, engine: &str) -> Result<f64, String> {
    push(server, name, engine).await?;
    let reference = read_json(&format!("{name}.reference.json"));
    let first = compare_call(server, name, &reference).await?;
    let second = compare_call(server, name, &rows(&reference, 3, 9))
        .await
        .map_err(|e| format!("a second call (rows 3..9): {e}"))?;
    Ok(first.max(second))
}

async fn compare_call(server: &Server, name: &str, reference: &Value) -> Result<f64, String> {
    let (status, answer) = post(
        server,
        &format!("/v2/models/{name}/infer"),
        &infer_request(reference),
    )
    .await;
    if status != 200 {
        return Err(format!("infer answered {status}: {answer}"));
    }
    let want = reference["outputs"].as_object().expect("outputs");
    let outputs = answer["outputs"].as_array().ok_or("no outputs")?;
    if outputs.len() != want.len() {
        return Err(format!(
            "{} outputs, onnxruntime has {}",
            outputs.len(),
            want.len()
        ));
    }
    let mut worst = 0f64;
    for output in outputs {
        let output_name = output["name"].as_str().ok_or("an output without a name")?;
        let reference = want
            .get(output_name)
            .ok_or_else(|| format!("output {output_name} is not onnxruntime's"))?;
        let tolerance = match ROUNDED_BY_ONNXRUNTIME.iter().find(|(n, _)| *n == name) {
            Some((_, absolute)) => Tolerance {
                absolute: *absolute,
                ..Tolerance::RELATIVE
            },
            None => Tolerance::RELATIVE,
        };
        let error =
            compare(output, reference, tolerance).map_err(|e| format!("{output_name}{e}"))?;
        worst = worst.max(error);
    }
    Ok(worst)
}

#[tokio::test]
async fn every_zoo_model_is_served_with_onnxruntimes_numbers() {
    check_zoo(&Server::start(), "tract").await;
}

/// The same models on the second engine: the node runs them through
/// onnxruntime's C API, and its conversions must not change a number.
#[tokio::test]
async fn every_zoo_model_runs_on_the_onnxruntime_engine_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let library = onnxruntime_library();
    let server = Server::start_on(
        &dir.path().join("data"),
        &["--onnxruntime", library.to_str().expect("path")],
    );
    check_zoo(&server, "onnxruntime").await;
}

async fn check_zoo(server: &Server, engine: &str) {
    let index = read_json("index.json");
    let exported: Vec<&Value> = index
        .as_array()
        .expect("index")
        .iter()
        .filter(|e| e.get("export_error").is_none())
        .collect();
    assert!(
        exported.len() >= 30,
        "the zoo has {} exported models",
        exported.len()
    );
    let mut failures = Vec::new();
    for entry in exported {
        let name = entry["name"].as_str().expect("name");
        match check(server, name, engine).await {
            Ok(error) => eprintln!(
                "{name:<36} {:<32} worst error {error:.2} of the tolerance",
                entry["estimator"].as_str().unwrap_or("")
            ),
            Err(e) => failures.push(format!("{name} ({}): {e}", entry["estimator"])),
        }
    }
    assert!(
        failures.is_empty(),
        "{} zoo model(s) not served right on {engine}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
