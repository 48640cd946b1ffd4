//! The image-classification example (`examples/image-classify`) end to end:
//! `sluice up` and its curl lines, the preprocessing stage's exact tensor,
//! and the pipeline called as a model by tritonclient. (Under the Lambda
//! emulator: `lambda.rs`.)

use crate::support::{Up, client, component, python, repo, sluice};
use serde_json::{Value, json};
use std::path::PathBuf;

/// What `make_example.py` recorded for each image: the preprocessed
/// tensor's sha256 and onnxruntime's top-k on it.
pub(crate) fn expected(image: &str) -> Value {
    let path = repo().join("examples/image-classify/expected.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all[image].clone()
}

pub(crate) fn image_path(image: &str) -> PathBuf {
    repo().join("examples/image-classify").join(image)
}

/// A `labels`/`scores` answer against the reference: labels equal, scores
/// within 1e-4 (the CNN runs on tract here and on onnxruntime there; a JPEG
/// also decodes a little differently: 1e-3).
pub(crate) fn assert_top_k(image: &str, labels: &Value, scores: &Value) {
    let want = expected(image);
    assert_eq!(*labels, want["labels"], "{image}");
    let tolerance = if want["exact"] == true { 1e-4 } else { 1e-3 };
    let (got, want) = (
        scores.as_array().unwrap(),
        want["scores"].as_array().unwrap(),
    );
    assert_eq!(got.len(), want.len(), "{image}");
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!(
            (g - w).abs() <= tolerance,
            "{image}: {g} vs onnxruntime {w}"
        );
    }
}

/// A message answer's tensor by name.
pub(crate) fn tensor<'a>(message: &'a Value, name: &str) -> &'a Value {
    message["tensors"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no tensor {name} in {message}"))
}

/// Deploy the example to `target` (e.g. `--store DIR`) with the CLI: its
/// stages, its model with the input shape pinned, then the pipeline from
/// the example's own sluice.toml.
pub(crate) fn deploy(target: &[&str]) {
    let model = repo().join("examples/models/text-direction.onnx");
    let manifest = repo().join("examples/image-classify/sluice.toml");
    let (preprocess, top_k) = (component("image-preprocess"), component("top-k"));
    let steps: [Vec<&str>; 4] = [
        vec![
            "deploy",
            preprocess.to_str().unwrap(),
            "--name",
            "image-preprocess",
        ],
        vec!["deploy", top_k.to_str().unwrap(), "--name", "top-k"],
        vec![
            "models",
            "push",
            model.to_str().unwrap(),
            "--name",
            "text-direction",
            "--input-shape",
            "x=1,3,48,192",
        ],
        vec!["deploy", manifest.to_str().unwrap()],
    ];
    for args in steps {
        let output = sluice().args(&args).args(target).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn the_image_example_classifies_over_its_curl_lines_and_over_the_open_inference_protocol() {
    let up = Up::start("examples/image-classify");
    let curls = &up.curls;
    // The printed curl lines work as printed: one per image.
    let mut addr = String::new();
    for image in ["upright.png", "upright.jpg"] {
        let curl = curls
            .iter()
            .find(|c| c.contains(image) && c.contains("/p/image-classify"))
            .unwrap_or_else(|| panic!("no curl line for {image}: {curls:?}"));
        let output = std::process::Command::new("sh")
            .args(["-c", &format!("{curl} -f")])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{curl}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_top_k(
            image,
            &tensor(&answer, "labels")["data"],
            &tensor(&answer, "scores")["data"],
        );
        addr = curl
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap()
            .to_string();
    }
    let url = |path: &str| format!("http://{addr}{path}");

    // Upside down is 180; the stage's tensor is the generator's, bit for bit.
    for image in ["upright.png", "flipped.png"] {
        let bytes = std::fs::read(image_path(image)).unwrap();
        let response = client()
            .post(url("/p/image-classify"))
            .header("content-type", "image/png")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let timing = response.headers()["server-timing"]
            .to_str()
            .unwrap()
            .to_string();
        for step in ["preprocess", "classify", "top"] {
            assert!(timing.contains(&format!("{step};dur=")), "{timing}");
        }
        let answer: Value = response.json().await.unwrap();
        assert_top_k(
            image,
            &tensor(&answer, "labels")["data"],
            &tensor(&answer, "scores")["data"],
        );

        let preprocessed: Value = client()
            .post(url("/fn/image-preprocess"))
            .header("content-type", "image/png")
            .body(bytes)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let x = tensor(&preprocessed, "x");
        assert_eq!(x["shape"], json!([1, 3, 48, 192]));
        let le: Vec<u8> = x["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| (v.as_f64().unwrap() as f32).to_le_bytes())
            .collect();
        assert_eq!(
            sluice::store::Digest::of(&le).hex(),
            expected(image)["tensor_sha256"],
            "{image}: the stage's tensor differs from make_example.py's"
        );
    }
    // Not an image: the caller's mistake, named.
    let response = client()
        .post(url("/p/image-classify"))
        .header("content-type", "image/png")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("step preprocess")
            && error["error"]
                .as_str()
                .unwrap()
                .contains("not a PNG or JPEG"),
        "{error}"
    );

    // tritonclient: each file as a UINT8 tensor named `image`.
    let output = tokio::process::Command::new(python())
        .arg(repo().join("tests/e2e/image_client.py"))
        .arg(&addr)
        .arg("image-classify")
        .args(["upright.png", "flipped.png", "upright.jpg"].map(image_path))
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["ready"], true, "{seen}");
    assert_eq!(seen["metadata"]["platform"], "sluice_pipeline");
    for image in ["upright.png", "flipped.png", "upright.jpg"] {
        let answer = &seen["answers"][image];
        assert_top_k(image, &answer["labels"], &answer["scores"]);
    }
}
