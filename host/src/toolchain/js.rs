//! JavaScript stages: `stage.js` default-exports a subclass of the SDK's
//! `Stage` and imports the SDK as `./sluice-sdk.js` (and, for predictors
//! and featurizers, `./sluice-sdk-inference.js` / `./sluice-sdk-features.js`);
//! the world and name come from `package.json` (`"sluice": {"world": ...}`,
//! `"name"`). componentize-js (from npm) compiles the folder, the SDK and a
//! small entry module into a component, the modules evaluated at build
//! time. An HTTP function (`"world": "http"`) is a plain `wasi:http`
//! component instead: `stage.js` handles `fetch` events, which the engine
//! answers as `wasi:http/incoming-handler`.

use super::{BuildError, Built, copy_source, install_step, name_and_world, output, run_tool};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-js release builds are made with.
const VERSION: &str = "0.23.0";

/// The jco release installed with it, for its WASI WIT.
const JCO: &str = "1.35.0";

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
    let tool = componentize_js()?;
    let scratch = super::scratch(&[])?;
    let app = scratch.path().join("app");
    copy_source(path, &app)?;
    let wasm = output(path, &name)?;
    // Paths relative to the scratch folder: the tool's WIT reader sees only
    // the folder it runs in.
    let mut command = Command::new(&tool);
    command.current_dir(scratch.path());
    if world == "http" {
        http_world(&tool, &scratch.path().join("http-wit"))?;
        command.args(["--wit", "http-wit", "--world-name", "http", "--out"]);
        command.arg(&wasm).arg("app/stage.js");
    } else {
        for (file, text) in SDK.iter().chain([&("sluice-entry.js", ENTRY)]) {
            std::fs::write(app.join(file), text).map_err(|e| BuildError::NotAStage {
                path: path.display().to_string(),
                reason: format!("cannot write {file}: {e}"),
            })?;
        }
        command.args(["--wit", "wit", "--world-name", &world]);
        // No `fetch`: a stage's data comes through the contract.
        command.args(["--disable", "http", "fetch-event", "--out"]);
        command.arg(&wasm).arg("app/sluice-entry.js");
    }
    run_tool("componentize-js", path, &mut command)?;
    Ok(Built {
        package: name,
        wasm,
    })
}

/// The WASI release componentize-js's engine is built against: it exports
/// `wasi:http/incoming-handler@0.2.10`.
const ENGINE_WASI: &str = "0.2.10";

/// The WASI 0.2 WIT that jco (a dependency of componentize-js) ships.
const JCO_WASI: &str = "0.2.12";

/// An HTTP function's world, written to `dir`: `wasi:http/proxy` at the
/// engine's WASI release, plus the environment (where Sluice, `wasmtime
/// serve` and Spin put its config). No package ships the WIT of that
/// release, so jco's is relabelled: WASI 0.2 patch releases share one
/// stable interface (later additions are `@unstable` and stay off), and
/// componentize-js checks the engine's imports and exports against it, so
/// a mismatch fails the build, never a request.
fn http_world(tool: &Path, dir: &Path) -> Result<(), BuildError> {
    let failed = |reason: String| BuildError::NoTool {
        tool: "componentize-js",
        reason,
    };
    // `tool` is `node_modules/.bin/componentize-js`.
    let node_modules = tool.parent().and_then(Path::parent).unwrap_or(tool);
    let wit = node_modules.join(format!("@bytecodealliance/jco/lib/wit/builtin/{JCO_WASI}"));
    let packages = std::fs::read_dir(&wit).map_err(|e| {
        failed(format!(
            "cannot read jco's WASI {JCO_WASI} WIT at {} ({e}); install componentize-js {VERSION} with jco {JCO} beside it, or remove the tools folder to have Sluice do so",
            wit.display()
        ))
    })?;
    let io = |e: std::io::Error| failed(format!("cannot write {}: {e}", dir.display()));
    for package in packages {
        let package = package.map_err(io)?.path();
        let text = std::fs::read_to_string(package.join("package.wit")).map_err(io)?;
        let deps = dir
            .join("deps")
            .join(package.file_name().unwrap_or_default());
        std::fs::create_dir_all(&deps).map_err(io)?;
        let relabelled = text.replace(&format!("@{JCO_WASI}"), &format!("@{ENGINE_WASI}"));
        std::fs::write(deps.join("package.wit"), relabelled).map_err(io)?;
    }
    let world = format!(
        "package sluice:http-function;\n\nworld http {{\n    include wasi:http/proxy@{ENGINE_WASI};\n    import wasi:cli/environment@{ENGINE_WASI};\n}}\n"
    );
    std::fs::write(dir.join("world.wit"), world).map_err(io)
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
                .arg(format!("@bytecodealliance/componentize-js@{VERSION}"))
                .arg(format!("@bytecodealliance/jco@{JCO}")),
        )
    })?;
    Ok(tool)
}
