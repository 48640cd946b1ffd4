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

/// The manifests' safe defaults: the control plane on its own port that no
/// Service or route exposes, secrets only by reference, the HTTP API
/// authorized.
#[test]
fn the_manifests_keep_the_control_plane_private_and_secrets_out() {
    let script = r#"
import sys, yaml
plain = lambda env: {e["name"]: e.get("value") for e in env}
def container_env(pod_spec):
    return pod_spec["containers"][0]["env"]
docs = list(yaml.safe_load_all(open(sys.argv[1])))
deployment = next(d for d in docs if d["kind"] == "Deployment")
service = next(d for d in docs if d["kind"] == "Service")
knative = yaml.safe_load(open(sys.argv[2]))
for env in (container_env(deployment["spec"]["template"]["spec"]), container_env(knative["spec"]["template"]["spec"])):
    values = plain(env)
    assert values.get("SLUICE_ADMIN_LISTEN", "").endswith(":9090"), "control plane not on its own port"
    for secret in ("SLUICE_ADMIN_TOKEN", "SLUICE_SIGNING_KEY"):
        entry = next(e for e in env if e["name"] == secret)
        assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], secret + " in plain env"
assert [p.get("targetPort") for p in service["spec"]["ports"]] == ["http"], "the Service exposes more than the data plane"
assert all(p["containerPort"] != 9090 for p in knative["spec"]["template"]["spec"]["containers"][0]["ports"])
loader = yaml.SafeLoader
for tag in ("!Ref", "!Sub", "!GetAtt"):
    loader.add_constructor(tag, lambda l, n: l.construct_scalar(n))
sam = yaml.load(open(sys.argv[3]), Loader=loader)
function = sam["Resources"]["Sluice"]["Properties"]
assert function["Events"]["Http"]["Properties"]["Auth"]["Authorizer"] == "AWS_IAM", "HTTP API route not authorized"
assert function["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"
key = function["Environment"]["Variables"]["SLUICE_SIGNING_KEY"]
assert key.startswith("{{resolve:secretsmanager:"), "signing key not from Secrets Manager"
print("ok")
"#;
    let infra = repo().join("infra");
    let check = |k8s: &Path, knative: &Path, sam: &Path| {
        run(Command::new(python())
            .args(["-c", script])
            .arg(k8s)
            .arg(knative)
            .arg(sam))
    };
    let (k8s, knative, sam) = (
        infra.join("kubernetes/sluice.yaml"),
        infra.join("kubernetes/knative-service.yaml"),
        infra.join("aws/template.yaml"),
    );
    let output = check(&k8s, &knative, &sam);
    assert!(output.status.success(), "{}", text(&output));
    // The check catches a control plane exposed and a route left open.
    let dir = tempfile::tempdir().unwrap();
    let exposed = broken(
        dir.path(),
        "kubernetes/sluice.yaml",
        "targetPort: http",
        "targetPort: admin",
    );
    assert!(!check(&exposed, &knative, &sam).status.success());
    let open = broken(
        dir.path(),
        "aws/template.yaml",
        "Authorizer: AWS_IAM",
        "Authorizer: NONE",
    );
    assert!(!check(&k8s, &knative, &open).status.success());
}
