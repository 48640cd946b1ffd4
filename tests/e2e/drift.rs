//! Drift detection: baselines from the example script and from `sluice
//! models baseline`, windows of two real nodes merged in the store, alerts
//! received by a webhook server in the test.

use crate::support::{
    Server, client, only_alert, push_with_baseline, repo, sluice, succeeded, webhook,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How often the nodes of these tests write and judge their windows.
const FLUSH_SECS: &str = "1";

fn iris_rows() -> Vec<Vec<f64>> {
    let csv = std::fs::read_to_string(repo().join("examples/models/iris.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

/// Run `rows` through model `name` on `server`, 15 rows a request.
async fn serve_rows(server: &Server, name: &str, rows: &[Vec<f64>]) {
    for chunk in rows.chunks(15) {
        let body = json!({"inputs": [{
            "name": "X", "datatype": "FP32", "shape": [chunk.len(), 4],
            "data": chunk.iter().flatten().collect::<Vec<_>>(),
        }]});
        let response = client()
            .post(server.url(&format!("/v2/models/{name}/infer")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
}

/// The drift report of `name`, once it counts `rows` rows.
async fn report_with(server: &Server, name: &str, rows: u64) -> Value {
    let start = Instant::now();
    loop {
        let (status, report) = server.get(&format!("/v1/models/{name}/drift")).await;
        assert_eq!(status, 200, "{report}");
        if report["rows"] == rows {
            return report;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the report of {name} never counted {rows} rows: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `sluice models baseline` of the iris model on `sample`, written to `out`
/// (with `extra` arguments).
fn baseline_of(
    sample: &std::path::Path,
    out: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> std::process::Output {
    sluice()
        .args(["models", "baseline"])
        .arg(repo().join("examples/models/iris-scaled-logreg.onnx"))
        .arg(sample)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn models_baseline_computes_what_the_training_script_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("baseline.json");
    let models = repo().join("examples/models");
    let text = succeeded(&baseline_of(&models.join("iris.csv"), &out, &[]));
    assert!(
        text.contains("150 rows, 4 features (10 bins each), output label, 75 background rows"),
        "{text}"
    );
    let ours: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let script: Value = serde_json::from_slice(
        &std::fs::read(models.join("iris-scaled-logreg.baseline.json")).unwrap(),
    )
    .unwrap();
    for key in ["format", "input", "rows", "output", "thresholds"] {
        assert_eq!(ours[key], script[key], "{key}");
    }
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-9)
    };
    for (a, b) in ours["features"]
        .as_array()
        .unwrap()
        .iter()
        .zip(script["features"].as_array().unwrap())
    {
        assert_eq!(a["name"], b["name"]);
        assert_eq!(a["counts"], b["counts"], "{}", a["name"]);
        assert!(
            close(&a["edges"], &b["edges"]),
            "{} edges: {} vs {}",
            a["name"],
            a["edges"],
            b["edges"]
        );
        assert!(close(&a["sums"], &b["sums"]), "{} sums", a["name"]);
    }
    assert_eq!(ours["background"], script["background"]);

    // The same sample as Parquet (written by DuckDB) gives the same
    // baseline.
    let parquet = dir.path().join("iris.parquet");
    let wrote = std::process::Command::new(crate::support::python())
        .args(["-c", "import duckdb, sys; duckdb.sql(f\"COPY (SELECT * FROM read_csv('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet)\")"])
        .arg(models.join("iris.csv"))
        .arg(&parquet)
        .status()
        .unwrap();
    assert!(wrote.success());
    let from_parquet = dir.path().join("from-parquet.json");
    succeeded(&baseline_of(&parquet, &from_parquet, &[]));
    let theirs: Value = serde_json::from_slice(&std::fs::read(&from_parquet).unwrap()).unwrap();
    assert_eq!(theirs, ours);

    // The model's outputs computed by the other engine give the same
    // baseline; that engine without its library is refused, saying how.
    let on_ort = dir.path().join("onnxruntime.json");
    let library = crate::support::onnxruntime_library();
    let args = [
        std::ffi::OsStr::new("--engine"),
        std::ffi::OsStr::new("onnxruntime"),
        std::ffi::OsStr::new("--onnxruntime"),
        library.as_os_str(),
    ];
    succeeded(&baseline_of(&models.join("iris.csv"), &on_ort, &args));
    let theirs: Value = serde_json::from_slice(&std::fs::read(&on_ort).unwrap()).unwrap();
    assert_eq!(theirs, ours);
    let refused = sluice()
        .args(["models", "baseline"])
        .arg(models.join("iris-scaled-logreg.onnx"))
        .arg(models.join("iris.csv"))
        .args(["-o", "unused.json", "--engine", "onnxruntime"])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--onnxruntime PATH"), "{stderr}");

    // A column that is not a number is named, with the way out.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b,c,d,species\n1,2,3,4,setosa\n").unwrap();
    let output = baseline_of(&bad, &out, &[]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("column `species`: `setosa` is not a number")
            && err.contains("--drop species"),
        "{err}"
    );
}

// Multi-threaded: the webhook answers while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_distribution_alerts_once_across_two_nodes_and_the_baseline_does_not() {
    let (hook, received) = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = [
        "--drift-flush-secs",
        FLUSH_SECS,
        "--drift-sample-rows",
        "24",
        "--alert-webhook",
        &hook,
    ];
    let a = Server::start_on(&data, &flags);
    let b = Server::start_on(&data, &flags);
    for name in ["iris-ok", "iris-live"] {
        push_with_baseline(&a, name, "iris-scaled-logreg");
    }

    // The training data itself, half through each node.
    let rows = iris_rows();
    let (first, second) = rows.split_at(75);
    serve_rows(&a, "iris-ok", first).await;
    serve_rows(&b, "iris-ok", second).await;
    let ok = report_with(&a, "iris-ok", 150).await;
    assert_eq!(ok["nodes"], 2, "{ok}");
    assert_eq!(ok["level"], "ok", "{ok}");
    for feature in ok["features"].as_array().unwrap() {
        assert!(feature["psi"].as_f64().unwrap() < 0.01, "{feature}");
    }
    assert_eq!(ok["output"]["psi"].as_f64(), Some(0.0), "{ok}");

    // The same flowers, with petals 3 cm longer: through both nodes.
    let shifted: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| vec![r[0], r[1], r[2] + 3.0, r[3]])
        .collect();
    let (first, second) = shifted.split_at(75);
    serve_rows(&a, "iris-live", first).await;
    serve_rows(&b, "iris-live", second).await;
    let live = report_with(&b, "iris-live", 150).await;
    assert_eq!(live["nodes"], 2, "{live}");
    assert_eq!(live["level"], "alert", "{live}");
    let petal = &live["features"][2];
    assert_eq!(petal["name"], "petal_length");
    assert!(petal["psi"].as_f64().unwrap() >= 0.25, "{petal}");
    assert!(petal["ks"].as_f64().unwrap() > 0.4, "{petal}");
    let w = petal["wasserstein"].as_f64().unwrap();
    assert!((2.5..=3.5).contains(&w), "moved by 3 cm: {w}");
    assert!(
        live["features"][0]["psi"].as_f64().unwrap() < 0.01,
        "{live}"
    );

    // One alert (one node wins the level change), naming the feature and
    // where the served sample was written.
    // Both nodes judge the merged window in the 3 s after it.
    let alert = &only_alert(&received, Duration::from_secs(3)).await;
    assert_eq!(alert["event"], "drift");
    assert_eq!(alert["model"], "iris-live");
    assert_eq!(alert["level"], "alert");
    assert_eq!(alert["previous"], "ok");
    assert!(
        alert["features"][2]["psi"].as_f64().unwrap() >= 0.25,
        "{alert}"
    );
    let key = alert["sample"]["key"].as_str().expect("a sample key");
    let sample = std::fs::read_to_string(data.join(key)).expect("the sample in the store");
    let mut lines = sample.lines();
    assert_eq!(
        lines.next(),
        Some("sepal_length,sepal_width,petal_length,petal_width")
    );
    let kept: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(kept.len() as u64, alert["sample"]["rows"].as_u64().unwrap());
    assert!(!kept.is_empty() && kept.len() <= 48, "{}", kept.len());
    assert!(kept.iter().all(|row| {
        shifted
            .iter()
            .any(|s| s.iter().zip(row).all(|(x, y)| (x - y).abs() < 1e-5))
    }));

    // The metrics and the terminal say the same.
    let metrics = a.metrics().await;
    assert!(
        metrics.contains(r#"sluice_drift_level{model="iris-live",version="1"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_drift_level{model="iris-ok",version="1"} 0"#),
        "{metrics}"
    );
    let text = succeeded(
        &sluice()
            .args(["drift", "iris-live", "--server", &a.url("")])
            .output()
            .unwrap(),
    );
    assert!(
        text.starts_with("iris-live version 1: ALERT — 150 rows"),
        "{text}"
    );
    let petal_line = text
        .lines()
        .find(|l| l.starts_with("petal_length"))
        .expect("a petal_length line");
    assert!(
        petal_line.contains("alert") && petal_line.contains('█'),
        "{text}"
    );

    // A model pushed without a baseline has nothing to measure against.
    let (status, body) = a.get("/v1/models/nope/drift").await;
    assert_eq!(status, 404, "{body}");
}
