//! Python stages: `stage.py` defines one `sluice_sdk.Stage` subclass; the
//! world and name come from `pyproject.toml` (`[tool.sluice] world`,
//! `[project] name`). componentize-py (from PyPI) compiles the folder, the
//! SDK and a small entry module into a component, importing them at build
//! time so that a request never pays the interpreter's start-up. An HTTP
//! function (`world = "http"`) is a plain `wasi:http` component instead.

use super::{BuildError, Built, copy_source, install_step, name_and_world, output, run_tool};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release builds are made with.
const VERSION: &str = "0.25.1";

const SDK: &str = include_str!("../../../guest-sdk/python/sluice_sdk/__init__.py");

/// The module componentize-py wraps: it exports the stage `stage.py`
/// defines as `sluice:pipeline/stage`.
const ENTRY: &str = "\
import stage  # noqa: F401 - defines the sluice_sdk.Stage subclass
import sluice_sdk
from wit_world import exports

_run = sluice_sdk._entry()


class Stage(exports.Stage):
    def run(self, input):
        return _run(input)
";

pub(super) fn build(path: &Path) -> Result<Built, BuildError> {
    let (name, world) = name_and_world(path, declared(path)?, "pyproject.toml")?;
    let tool = componentize_py()?;
    let scratch = super::scratch(&[
        ("py/sluice_sdk/__init__.py", SDK),
        ("py/sluice_stage_entry.py", ENTRY),
    ])?;
    let app = scratch.path().join("app");
    copy_source(path, &app)?;
    let wasm = output(path, &name)?;
    // An HTTP function's `stage.py` defines `IncomingHandler`, the standard
    // `wasi:http/incoming-handler` export, against the WASI WIT that
    // spin-sdk's wheel carries; it does not use the SDK.
    let (wit, world, sdk, module) = if world == "http" {
        (wasi_wit()?, HTTP_WORLD.to_owned(), None, "stage")
    } else {
        let sdk = scratch.path().join("py");
        (
            scratch.path().join("wit"),
            world,
            Some(sdk),
            "sluice_stage_entry",
        )
    };
    let mut command = Command::new(&tool);
    command
        .arg("--wit-path")
        .arg(wit)
        .args(["--world", &world, "componentize", "--python-path"])
        .arg(&app);
    if let Some(sdk) = sdk {
        command.arg("--python-path").arg(sdk);
    }
    run_tool(
        "componentize-py",
        path,
        command
            .args([module, "--output"])
            .arg(&wasm)
            // Only the stage's own folder and the SDK are bundled.
            .env_remove("VIRTUAL_ENV"),
    )?;
    Ok(Built {
        package: name,
        wasm,
    })
}

/// The world a Python HTTP function targets: what `wasmtime serve` and
/// Spin run (a 0.2.0 component links against any newer 0.2 host).
const HTTP_WORLD: &str = "wasi:http/proxy@0.2.0";

/// The spin-sdk release whose wheel carries the WASI WIT.
const SPIN_SDK: &str = "5.0.0";

/// The WASI WIT folder, from spin-sdk's wheel installed (without its
/// dependencies) in the tools cache on first use.
fn wasi_wit() -> Result<PathBuf, BuildError> {
    let target = super::tools_dir().join(format!("spin-sdk-{SPIN_SDK}"));
    let wit = target.join("spin_sdk").join("wit");
    super::installed_once(&wit.join("world.wit"), "wasi-wit", || {
        install_step(
            "wasi-wit",
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
                .arg(&target)
                .arg(format!("spin-sdk=={SPIN_SDK}")),
        )
    })?;
    Ok(wit)
}

/// `[project] name` and `[tool.sluice] world` of `pyproject.toml`, if any.
fn declared(path: &Path) -> Result<(Option<String>, Option<String>), BuildError> {
    let file = path.join("pyproject.toml");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok((None, None));
    };
    let doc: toml::Table = text.parse().map_err(|e| BuildError::NotAStage {
        path: path.display().to_string(),
        reason: format!("{}: {e}", file.display()),
    })?;
    let text = |value: Option<&toml::Value>| value?.as_str().map(String::from);
    let name = text(doc.get("project").and_then(|p| p.get("name")));
    let world = doc.get("tool").and_then(|t| t.get("sluice"));
    Ok((name, text(world.and_then(|s| s.get("world")))))
}

/// componentize-py: `$SLUICE_COMPONENTIZE_PY`, else the one installed in
/// the tools cache (a virtual environment made with `python3` on first
/// use).
fn componentize_py() -> Result<PathBuf, BuildError> {
    if let Some(tool) = std::env::var_os("SLUICE_COMPONENTIZE_PY") {
        return Ok(PathBuf::from(tool));
    }
    let venv = super::tools_dir().join(format!("componentize-py-{VERSION}"));
    let tool = venv.join("bin").join("componentize-py");
    super::installed_once(&tool, "componentize-py", || {
        eprintln!(
            "installing componentize-py {VERSION} into {} (first Python build)…",
            venv.display()
        );
        install_step(
            "componentize-py",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )?;
        install_step(
            "componentize-py",
            Command::new(venv.join("bin").join("pip")).args([
                "install",
                "--quiet",
                &format!("componentize-py=={VERSION}"),
            ]),
        )
    })?;
    Ok(tool)
}
