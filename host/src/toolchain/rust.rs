//! Rust stages: `cargo build --release --target wasm32-wasip2` with
//! size-oriented settings, in a target directory of its own so the host's
//! build artefacts are never invalidated.

use super::{BuildError, Built, TARGET};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

pub(super) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Build the stage crates at `paths` (directories holding a `Cargo.toml`),
/// one `cargo build` per workspace.
pub(super) fn build(paths: &[PathBuf]) -> Result<Vec<Built>, BuildError> {
    // workspace root → (target dir, [(package, lib name)])
    let mut workspaces: BTreeMap<PathBuf, (PathBuf, Vec<(String, String)>)> = BTreeMap::new();
    let mut order = Vec::new();
    for path in paths {
        let (metadata, package, lib) = locate(path)?;
        order.push(package.clone());
        workspaces
            .entry(metadata.workspace_root)
            .or_insert_with(|| (metadata.target_directory, Vec::new()))
            .1
            .push((package, lib));
    }
    let mut built = Vec::new();
    for (root, (target_dir, packages)) in workspaces {
        let target_dir = target_dir.join("sluice-stages");
        let mut command = Command::new(cargo());
        command
            .current_dir(&root)
            .args(["build", "--release", "--target", TARGET, "--target-dir"])
            .arg(&target_dir);
        for (package, _) in &packages {
            command.args(["-p", package]);
        }
        // Small, self-contained components whatever the workspace's release
        // profile says; flags from an enclosing cargo must not leak in.
        for (key, value) in [
            ("OPT_LEVEL", "s"),
            ("LTO", "true"),
            ("CODEGEN_UNITS", "1"),
            ("PANIC", "abort"),
            ("STRIP", "true"),
            ("DEBUG", "false"),
            ("INCREMENTAL", "false"),
        ] {
            command.env(format!("CARGO_PROFILE_RELEASE_{key}"), value);
        }
        for leaked in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
        ] {
            command.env_remove(leaked);
        }
        let status = command.status().map_err(|source| BuildError::NoCargo {
            cargo: cargo(),
            source,
        })?;
        if !status.success() {
            return Err(BuildError::Cargo);
        }
        for (package, lib) in packages {
            let wasm = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{lib}.wasm"));
            if !wasm.is_file() {
                return Err(BuildError::Missing { package, wasm });
            }
            built.push(Built { package, wasm });
        }
    }
    // In the order asked for, whatever the workspaces.
    built.sort_by_key(|b| order.iter().position(|p| *p == b.package));
    Ok(built)
}

/// The workspace metadata, package name and library name of the crate at `path`.
fn locate(path: &Path) -> Result<(Metadata, String, String), BuildError> {
    let not_a_stage = |reason: String| BuildError::NotAStage {
        path: path.display().to_string(),
        reason,
    };
    let manifest = path.join("Cargo.toml");
    let manifest = manifest
        .canonicalize()
        .map_err(|e| not_a_stage(format!("cannot read {}: {e}", manifest.display())))?;
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|source| BuildError::NoCargo {
            cargo: cargo(),
            source,
        })?;
    if !output.status.success() {
        return Err(not_a_stage(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .map_err(|e| not_a_stage(format!("unexpected `cargo metadata` output: {e}")))?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.manifest_path == manifest)
        .ok_or_else(|| {
            not_a_stage("no package is defined by its Cargo.toml (a virtual workspace?)".into())
        })?;
    let lib = package
        .targets
        .iter()
        .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))
        .ok_or_else(|| {
            not_a_stage("it has no `cdylib` library; add `[lib] crate-type = [\"cdylib\"]`".into())
        })?;
    let names = (package.name.clone(), lib.name.replace('-', "_"));
    Ok((metadata, names.0, names.1))
}
