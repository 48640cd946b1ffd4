//! Explanations: exact TreeSHAP against the `shap` package's values (from
//! the example script), Kernel SHAP through pipelines, stages and OIP, and
//! attributions that sum to the answer minus the expected answer.

use crate::support::{Server, Up, client, push_with_baseline, repo, sluice};
use serde_json::{Value, json};

fn example(file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo().join("examples/models").join(file)).unwrap())
        .unwrap()
}

async fn post(url: String, body: &Value) -> (u16, Value) {
    let response = client().post(url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x.as_array() {
            Some(_) => numbers(x),
            None => vec![x.as_f64().unwrap()],
        })
        .collect()
}

#[tokio::test]
async fn tree_shap_equals_the_shap_packages_values_on_the_example_tree_models() {
    let server = Server::start();
    for model in [
        "iris-rf",
        "cancer-gbt",
        "cancer-rf",
        "diabetes-gbr",
        "diabetes-rf",
    ] {
        push_with_baseline(&server, model, model);
        let reference = example(&format!("{model}.shap.json"));
        let rows = reference["rows"].as_array().unwrap();
        let width = rows[0].as_array().unwrap().len();
        let body = json!({
            "parameters": {"explain": true},
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [rows.len(), width], "data": numbers(&reference["rows"])}],
        });
        let (status, answer) = post(server.url(&format!("/v2/models/{model}/infer")), &body).await;
        assert_eq!(status, 200, "{model}: {answer}");
        let explanation = &answer["explanations"][0];
        assert_eq!(explanation["method"], "tree_shap", "{model}");
        assert_eq!(explanation["exact"], true);
        let ours = numbers(&explanation["attributions"]);
        let theirs = numbers(&reference["values"]);
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{model}: rows × features × targets"
        );
        // Leaf weights are f32 in ONNX, doubles in scikit-learn: 1e-5,
        // relative to the score's scale for the regressors (~150).
        let scale = reference["expected_value"][0]
            .as_f64()
            .unwrap()
            .abs()
            .max(1.0);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{model}: value {i}: {a} vs shap's {b}"
            );
        }
        let expected = numbers(&explanation["expected_value"]);
        for (a, b) in expected.iter().zip(numbers(&reference["expected_value"])) {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{model}: expected value {a} vs {b}"
            );
        }
        // Each row's attributions sum to its raw score minus the expected
        // one; the regressors answer the raw score itself.
        if model.starts_with("diabetes") {
            let targets = expected.len();
            let features = ours.len() / rows.len() / targets;
            let answered = numbers(&answer["outputs"][0]["data"]);
            for (r, value) in answered.iter().enumerate() {
                let sum: f64 = ours[r * features * targets..(r + 1) * features * targets]
                    .iter()
                    .sum();
                assert!(
                    (expected[0] + sum - value).abs() <= 1e-4 * scale,
                    "{model} row {r}: {} vs {value}",
                    expected[0] + sum
                );
            }
        }
    }
}

#[tokio::test]
async fn kernel_shap_explains_a_pipelines_model_step_and_a_predictor_stages_runs() {
    // The quickstart: its model has a baseline (sluice.toml), a scaler and a
    // logistic regression, explained by Kernel SHAP over every coalition.
    let up = Up::start("examples/quickstart");
    let rows = json!([
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    ]);
    let (status, answer) = post(format!("{}/p/iris?explain=true", up.base()), &rows).await;
    assert_eq!(status, 200, "{answer}");
    let probabilities = answer["output"]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "probabilities")
        .expect("the pipeline's answer");
    let p = numbers(&probabilities["data"]);
    let explanation = &answer["explanations"][0];
    assert_eq!(explanation["model"], "iris");
    assert_eq!(explanation["method"], "kernel_shap");
    assert_eq!(explanation["explains"], "output `probabilities`");
    assert_eq!(explanation["exact"], true);
    assert_eq!(explanation["coalitions"], 14);
    assert_eq!(
        explanation["features"],
        json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    let expected = numbers(&explanation["expected_value"]);
    let attributions = &explanation["attributions"];
    for row in 0..2 {
        for class in 0..3 {
            let sum: f64 = (0..4)
                .map(|f| attributions[row][f][class].as_f64().unwrap())
                .sum();
            let want = p[row * 3 + class] - expected[class];
            assert!(
                (sum - want).abs() < 1e-5,
                "row {row} class {class}: {sum} vs {want}"
            );
        }
    }
    // Petals decide iris: for the setosa (row 0), petal length pushes
    // class 0 up more than sepal width does.
    let phi = |f: usize| attributions[0][f][0].as_f64().unwrap();
    assert!(phi(2) > phi(1).abs(), "{attributions}");

    // Without asking, the answer is as always.
    let (status, plain) = post(format!("{}/p/iris", up.base()), &rows).await;
    assert_eq!(status, 200);
    assert!(
        plain.get("explanations").is_none() && plain["tensors"].is_array(),
        "{plain}"
    );
    let (status, refused) = post(format!("{}/p/iris?explain=maybe", up.base()), &rows).await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("explain=true or explain=false"),
        "{refused}"
    );
    // A stage that runs no model has nothing to explain.
    let (status, refused) = post(
        format!("{}/fn/iris-features?explain=true", up.base()),
        &rows,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        refused["error"].as_str().unwrap().contains("ran no model"),
        "{refused}"
    );

    // A predictor stage's `inference` calls are explained the same way.
    let server = Server::start();
    push_with_baseline(&server, "iris", "iris-scaled-logreg");
    server
        .deploy("iris-predict", "onnx-predict", &[("config.model", "iris")])
        .await;
    let message = json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]});
    let response = client()
        .post(server.url("/fn/iris-predict?explain=true"))
        .header("content-type", "application/vnd.sluice.message+json")
        .body(message.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let staged: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{staged}");
    let from_stage = &staged["explanations"][0]["attributions"][0];
    for f in 0..4 {
        let a = from_stage[f][0].as_f64().unwrap();
        let b = attributions[0][f][0].as_f64().unwrap();
        assert!(
            (a - b).abs() < 1e-6,
            "feature {f}: {a} vs the pipeline's {b}"
        );
    }

    // A model pushed without a baseline cannot be explained, and says so.
    let output = sluice()
        .args(["models", "push"])
        .arg(repo().join("examples/models/iris-logreg.onnx"))
        .args(["--name", "bare", "--server", &server.url("")])
        .output()
        .unwrap();
    assert!(output.status.success());
    let body = json!({"parameters": {"explain": true}, "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4]}]});
    let (status, refused) = post(server.url("/v2/models/bare/infer"), &body).await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("has no baseline with background rows"),
        "{refused}"
    );
}
