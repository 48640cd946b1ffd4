//! JavaScript stages: `stage.js` default-exports a subclass of the SDK's
//! `Stage` and imports the SDK as `./sluice-sdk.js` (and, for predictors
//! and featurizers, `./sluice-sdk-inference.js` / `./sluice-sdk-features.js`);
//! the world and name come from `package.json` (`"sluice": {"world": ...}`,
//! `"name"`). componentize-js (from npm) compiles the folder, the SDK and a
//! small entry module into a component, the modules evaluated at build
//! time.

use super::{BuildError, Built, copy_source, install_step, name_and_world, output, run_tool};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-js release builds are made with.
const VERSION: &str = "0.23.0";

const SDK: [(&str, &str); 3] = [
    (
        "sluice-sdk.js",
        include_str!("../../../guest-sdk/js/sluice-sdk.js"),
    ),
    (
        "sluice-sdk-inference.js",
        include_str!("../../../guest-sdk/js/sluice-sdk-inference.js"),
    ),
    (
        "sluice-sdk-features.js",
        include_str!("../../../guest-sdk/js/sluice-sdk-features.js"),
    ),
];

/// The module componentize-js wraps: it exports the stage `stage.js`
/// defines as `sluice:pipeline/stage`.
const ENTRY: &str = "\
import StageClass from \"./stage.js\";
import { exportStage } from \"./sluice-sdk.js\";
export const stage = exportStage(StageClass);
";

pub(super) fn build(path: &Path) -> Result<Built, BuildError> {
    let (name, world) = name_and_world(path, declared(path)?, "package.json")?;
    if world == "http" {
        // componentize-js 0.23's engine exports wasi:http 0.2.10, whose
        // WIT none of its packages ships.
        return Err(BuildError::NotAStage {
            path: path.display().to_string(),
            reason: "a JavaScript HTTP function cannot be built here yet: write it in Rust or Python, or build it with componentize-js yourself and deploy the .wasm".into(),
        });
    }
    let tool = componentize_js()?;
    let scratch = super::scratch(&[])?;
    let app = scratch.path().join("app");
    copy_source(path, &app)?;
    for (file, text) in SDK.iter().chain([&("sluice-entry.js", ENTRY)]) {
        std::fs::write(app.join(file), text).map_err(|e| BuildError::NotAStage {
            path: path.display().to_string(),
            reason: format!("cannot write {file}: {e}"),
        })?;
    }
    let wasm = output(path, &name)?;
    run_tool(
        "componentize-js",
        path,
        // Paths relative to the scratch folder: the tool's WIT reader sees
        // only the folder it runs in.
        Command::new(&tool)
            .current_dir(scratch.path())
            .args(["--wit", "wit", "--world-name", &world])
            // No `fetch`: a stage's data comes through the contract.
            .args(["--disable", "http", "fetch-event", "--out"])
            .arg(&wasm)
            .arg("app/sluice-entry.js"),
    )?;
    Ok(Built {
        package: name,
        wasm,
    })
}

/// `name` and `sluice.world` of `package.json`, if any.
fn declared(path: &Path) -> Result<(Option<String>, Option<String>), BuildError> {
    let file = path.join("package.json");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok((None, None));
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| BuildError::NotAStage {
            path: path.display().to_string(),
            reason: format!("{}: {e}", file.display()),
        })?;
    let text = |value: &serde_json::Value| value.as_str().map(String::from);
    Ok((text(&doc["name"]), text(&doc["sluice"]["world"])))
}

/// componentize-js: `$SLUICE_COMPONENTIZE_JS`, else the one installed in
/// the tools cache (with `npm`, on first use).
fn componentize_js() -> Result<PathBuf, BuildError> {
    if let Some(tool) = std::env::var_os("SLUICE_COMPONENTIZE_JS") {
        return Ok(PathBuf::from(tool));
    }
    let prefix = super::tools_dir().join(format!("componentize-js-{VERSION}"));
    let tool = prefix.join("node_modules/.bin/componentize-js");
    super::installed_once(&tool, "componentize-js", || {
        eprintln!(
            "installing componentize-js {VERSION} into {} (first JavaScript build)…",
            prefix.display()
        );
        install_step(
            "componentize-js",
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("@bytecodealliance/componentize-js@{VERSION}")),
        )
    })?;
    Ok(tool)
}
