//! `infra/`: every deployment description passes its validator (from the
//! registries: cfn-lint, kubernetes-validate and hadolint from PyPI,
//! systemd's own `systemd-analyze verify`), and each validator is shown to
//! catch a broken copy, so a pass means something.

use crate::support::{python, repo, tool};
use std::path::Path;
use std::process::{Command, Output};

fn run(command: &mut Command) -> Output {
    command.output().expect("validator")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `infra/{path}` with `from` replaced by `to`, written under `dir`.
fn broken(dir: &Path, path: &str, from: &str, to: &str) -> std::path::PathBuf {
    let original = std::fs::read_to_string(repo().join("infra").join(path)).expect("infra file");
    assert!(original.contains(from), "{path} has no {from:?}");
    let copy = dir.join(Path::new(path).file_name().unwrap());
    std::fs::write(&copy, original.replace(from, to)).expect("write");
    copy
}

#[test]
fn the_sam_template_passes_cfn_lint() {
    let template = repo().join("infra/aws/template.yaml");
    let output = run(Command::new(tool("cfn-lint")).arg(&template));
    assert!(output.status.success(), "{}", text(&output));
    let dir = tempfile::tempdir().unwrap();
    let bad = broken(
        dir.path(),
        "aws/template.yaml",
        "Role: !GetAtt ServeRole.Arn",
        "Role: !GetAtt NoSuchRole.Arn",
    );
    let output = run(Command::new(tool("cfn-lint")).arg(&bad));
    assert!(!output.status.success(), "a dangling role passed cfn-lint");
}

#[test]
fn the_kubernetes_manifests_pass_strict_schema_validation() {
    let manifests = repo().join("infra/kubernetes/sluice.yaml");
    let output = run(Command::new(tool("kubernetes-validate"))
        .arg("--strict")
        .arg(&manifests));
    assert!(output.status.success(), "{}", text(&output));
    for kind in [
        "deployment/sluice",
        "service/sluice",
        "horizontalpodautoscaler/sluice",
    ] {
        assert!(
            text(&output).contains(&format!("passed for resource {kind}")),
            "{}",
            text(&output)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = broken(
        dir.path(),
        "kubernetes/sluice.yaml",
        "containerPort: 8080",
        "containerPort: eighty",
    );
    let output = run(Command::new(tool("kubernetes-validate"))
        .arg("--strict")
        .arg(&bad));
    assert!(
        !output.status.success(),
        "a bad port passed: {}",
        text(&output)
    );

    // Knative's Service is a custom resource with no schema on the
    // registries: its pod template (minus Knative's own fields) is checked
    // as a core Pod.
    let pod = dir.path().join("knative-pod.yaml");
    let script = r#"
import sys, yaml
service = yaml.safe_load(open(sys.argv[1]))
assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
annotations = service["spec"]["template"]["metadata"]["annotations"]
assert annotations["autoscaling.knative.dev/min-scale"] == "0", "not scaling to zero"
spec = dict(service["spec"]["template"]["spec"])
for knative_only in ("containerConcurrency", "timeoutSeconds"):
    spec.pop(knative_only)
for container in spec["containers"]:
    container.setdefault("name", "user-container")
    container["readinessProbe"]["httpGet"].setdefault("port", 8080)
yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sluice"}, "spec": spec}, open(sys.argv[2], "w"))
"#;
    let output = run(Command::new(python())
        .args(["-c", script])
        .arg(repo().join("infra/kubernetes/knative-service.yaml"))
        .arg(&pod));
    assert!(output.status.success(), "{}", text(&output));
    let output = run(Command::new(tool("kubernetes-validate"))
        .arg("--strict")
        .arg(&pod));
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let output = run(Command::new(tool("hadolint")).arg(repo().join("infra/container/Dockerfile")));
    assert!(output.status.success(), "{}", text(&output));
    let dir = tempfile::tempdir().unwrap();
    let bad = broken(
        dir.path(),
        "container/Dockerfile",
        "USER 65532:65532",
        "USER root",
    );
    let output = run(Command::new(tool("hadolint")).arg(&bad));
    assert!(!output.status.success(), "running as root passed hadolint");
}

#[test]
fn the_systemd_units_verify_cleanly() {
    // Verified against the binary they would run: this build's.
    let dir = tempfile::tempdir().unwrap();
    let service = broken(
        dir.path(),
        "systemd/sluice.service",
        "/usr/local/bin/sluice",
        env!("CARGO_BIN_EXE_sluice"),
    );
    std::fs::copy(
        repo().join("infra/systemd/sluice.socket"),
        dir.path().join("sluice.socket"),
    )
    .unwrap();
    let verify = |units: &[&Path]| {
        run(Command::new("systemd-analyze")
            .arg("verify")
            .args(units)
            .current_dir(dir.path()))
    };
    let output = verify(&[&dir.path().join("sluice.socket"), &service]);
    // Unknown keys and bad values are warnings with status 0: clean means
    // nothing printed.
    assert!(
        output.status.success() && text(&output).trim().is_empty(),
        "{}",
        text(&output)
    );
    std::fs::write(
        &service,
        std::fs::read_to_string(&service)
            .unwrap()
            .replace("Type=simple", "Type=simpel"),
    )
    .unwrap();
    let output = verify(&[&service]);
    assert!(
        text(&output).contains("simpel"),
        "a bad Type passed: {}",
        text(&output)
    );
}
