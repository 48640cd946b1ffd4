//! `sluice new` for every world and language: each template is written,
//! built and deployed by `sluice test`, and passes the examples it lists.

use crate::support::{repo, sluice, succeeded};

#[test]
fn every_template_builds_and_passes_the_test_it_writes() {
    let scratch = tempfile::tempdir().unwrap();
    let templates = [
        ("preprocessor", "rust", 2),
        ("featurizer", "rust", 2),
        ("predictor", "rust", 3),
        ("http", "rust", 2),
        ("preprocessor", "python", 2),
        ("featurizer", "python", 2),
        ("predictor", "python", 3),
        ("http", "python", 2),
        ("preprocessor", "js", 2),
        ("featurizer", "js", 2),
        ("predictor", "js", 3),
        ("http", "js", 2),
    ];
    for (kind, lang, examples) in templates {
        let name = format!("my-{kind}-{lang}");
        let dir = scratch.path().join(&name);
        let made = sluice()
            .args(["new", kind, &name, "--lang", lang, "--dir"])
            .arg(&dir)
            .arg("--sdk")
            .arg(repo().join("guest-sdk"))
            .output()
            .unwrap();
        let said = succeeded(&made);
        assert!(said.contains("sluice test"), "{said}");
        let tested = sluice().arg("test").arg(&dir).output().unwrap();
        let report = String::from_utf8_lossy(&tested.stdout);
        assert!(
            tested.status.success() && report.contains(&format!("{examples} passed, 0 failed")),
            "{kind} in {lang}: {report}\n{}",
            String::from_utf8_lossy(&tested.stderr)
        );
    }

    // A template's test fails when the stage stops doing what it says.
    let dir = scratch.path().join("my-preprocessor-python");
    let stage = dir.join("stage.py");
    let source = std::fs::read_to_string(&stage).unwrap();
    std::fs::write(&stage, source.replace("text.lower()", "text")).unwrap();
    let tested = sluice().arg("test").arg(&dir).output().unwrap();
    assert!(!tested.status.success());
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(report.contains("1 passed, 1 failed"), "{report}");
    assert!(
        report.contains("\"normalised\":\"Hello, Sluice World\""),
        "{report}"
    );

    // An HTTP function's deploy config reaches it (as its environment).
    let dir = scratch.path().join("my-http-js");
    let manifest = dir.join("sluice.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"hello\"", "\"ahoy\"")).unwrap();
    let tested = sluice().arg("test").arg(&dir).output().unwrap();
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(report.contains("ahoy, sluice"), "{report}");
    assert!(report.contains("1 passed, 1 failed"), "{report}");

    // A name must fit.
    let refused = sluice()
        .args(["new", "preprocessor", "Bad.Name"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot name a stage"));
}
