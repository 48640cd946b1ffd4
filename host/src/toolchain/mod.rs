//! Building stages into components, whatever they are written in:
//!
//! - a folder with a `Cargo.toml`: a Rust crate against `sluice-sdk`
//!   ([`rust`]);
//! - a folder with a `stage.py`: Python, built by componentize-py
//!   ([`python`]);
//! - a folder with a `stage.js`: JavaScript, built by componentize-js
//!   ([`js`]).
//!
//! The Python and JavaScript builds bring the contract (`wit/`) and their
//! SDK from this binary, and the build tool from a cache of their own
//! (installed there from PyPI or npm on first use), so a stage folder needs
//! nothing but its source.

mod js;
mod python;
mod rust;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every stage is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// A stage built into a component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The package name.
    pub package: String,
    /// The component file.
    pub wasm: PathBuf,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `cargo` could not be run.
    #[error("cannot run `{cargo}`: {source}; is the Rust toolchain installed?")]
    NoCargo {
        /// The cargo binary tried.
        cargo: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The folder holds no stage, or `cargo metadata` said something
    /// unexpected.
    #[error("`{path}` is not a buildable stage: {reason}")]
    NotAStage {
        /// The path given.
        path: String,
        /// Why.
        reason: String,
    },
    /// `cargo build` failed; its output was shown.
    #[error(
        "cargo build failed (see its output above); if it says \"can't find crate for `core`\", run `rustup target add {TARGET}`"
    )]
    Cargo,
    /// The build succeeded but the component is not where expected.
    #[error("cargo built `{package}` but `{}` is missing; is the crate a `cdylib`?", wasm.display())]
    Missing {
        /// The package.
        package: String,
        /// The expected file.
        wasm: PathBuf,
    },
    /// A Python or JavaScript build tool is missing and could not be
    /// installed.
    #[error("cannot get {tool}: {reason}")]
    NoTool {
        /// The tool.
        tool: &'static str,
        /// Why, and what to do.
        reason: String,
    },
    /// The build tool failed on the stage; its output says why.
    #[error("{tool} could not build `{path}`:\n{output}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// The stage folder.
        path: String,
        /// What it printed.
        output: String,
    },
}

/// Which language a stage folder is written in.
enum Language {
    Rust,
    Python,
    JavaScript,
}

fn language(path: &Path) -> Result<Language, BuildError> {
    if path.join("Cargo.toml").is_file() {
        Ok(Language::Rust)
    } else if path.join("stage.py").is_file() {
        Ok(Language::Python)
    } else if path.join("stage.js").is_file() {
        Ok(Language::JavaScript)
    } else {
        Err(BuildError::NotAStage {
            path: path.display().to_string(),
            reason: "it has no Cargo.toml (Rust), stage.py (Python) or stage.js (JavaScript); `sluice new` writes one".into(),
        })
    }
}

/// Build the stages in the folders `paths`, answered in the same order.
/// Rust crates share one `cargo build` per workspace.
pub fn build(paths: &[PathBuf]) -> Result<Vec<Built>, BuildError> {
    let mut languages = Vec::with_capacity(paths.len());
    let mut crates = Vec::new();
    for path in paths {
        let language = language(path)?;
        if matches!(language, Language::Rust) {
            crates.push(path.clone());
        }
        languages.push(language);
    }
    let mut rust = if crates.is_empty() {
        Vec::new()
    } else {
        rust::build(&crates)?
    }
    .into_iter();
    let mut built = Vec::with_capacity(paths.len());
    for (path, language) in paths.iter().zip(languages) {
        built.push(match language {
            Language::Rust => rust.next().ok_or_else(|| BuildError::NotAStage {
                path: path.display().to_string(),
                reason: "cargo built fewer components than crates".into(),
            })?,
            Language::Python => python::build(path)?,
            Language::JavaScript => js::build(path)?,
        });
    }
    Ok(built)
}

/// The contract, as the Python and JavaScript builds need it on disk.
const WIT: [(&str, &str); 3] = [
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// The worlds a Python or JavaScript stage may declare (`http`: a
/// standard `wasi:http` component).
const WORLDS: [&str; 4] = ["preprocessor", "featurizer", "predictor", "http"];

/// A scratch folder holding `wit/` and whatever `files` the build needs.
fn scratch(files: &[(&str, &str)]) -> Result<tempfile::TempDir, BuildError> {
    let io = |e: std::io::Error| BuildError::NoTool {
        tool: "a scratch folder",
        reason: e.to_string(),
    };
    let dir = tempfile::tempdir().map_err(io)?;
    for (name, text) in WIT
        .iter()
        .map(|(n, t)| (format!("wit/{n}"), *t))
        .chain(files.iter().map(|(n, t)| (n.to_string(), *t)))
    {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(dir)
}

/// Where build tools are installed: `$SLUICE_TOOLS`, else
/// `$XDG_CACHE_HOME/sluice/tools` or `~/.cache/sluice/tools`.
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_TOOLS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("sluice").join("tools")
}

/// Run `command` for `tool`: Ok, or what it printed when it failed.
fn run(tool: &'static str, command: &mut Command) -> Result<Result<(), String>, BuildError> {
    let output = command.output().map_err(|e| BuildError::NoTool {
        tool,
        reason: format!("cannot run {:?}: {e}", command.get_program()),
    })?;
    if output.status.success() {
        return Ok(Ok(()));
    }
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Err(printed.trim().to_string()))
}

/// Run an install step of `tool`, its output kept for the error.
fn install_step(tool: &'static str, command: &mut Command) -> Result<(), BuildError> {
    run(tool, command)?.map_err(|printed| BuildError::NoTool {
        tool,
        reason: format!("{:?} failed:\n{printed}", command.get_program()),
    })
}

/// Run the build `tool` on the stage at `path`.
fn run_tool(tool: &'static str, path: &Path, command: &mut Command) -> Result<(), BuildError> {
    run(tool, command)?.map_err(|output| BuildError::Tool {
        tool,
        path: path.display().to_string(),
        output,
    })
}

/// A Python or JavaScript stage's name and world, from its project file,
/// defaulting to the folder's name and `preprocessor`.
fn name_and_world(
    path: &Path,
    declared: (Option<String>, Option<String>),
    file: &str,
) -> Result<(String, String), BuildError> {
    let folder = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "stage".into());
    let name = declared.0.unwrap_or(folder);
    let world = declared.1.unwrap_or_else(|| "preprocessor".into());
    if !WORLDS.contains(&world.as_str()) {
        return Err(BuildError::NotAStage {
            path: path.display().to_string(),
            reason: format!(
                "{file} declares the world `{world}`; use {}",
                WORLDS.join(", ")
            ),
        });
    }
    Ok((name, world))
}

/// Where a Python or JavaScript stage's component goes: `target/NAME.wasm`
/// in its folder.
fn output(path: &Path, name: &str) -> Result<PathBuf, BuildError> {
    let target = path.join("target");
    std::fs::create_dir_all(&target).map_err(|e| BuildError::NotAStage {
        path: path.display().to_string(),
        reason: format!("cannot create {}: {e}", target.display()),
    })?;
    let wasm = target.join(format!("{name}.wasm"));
    Ok(std::path::absolute(&wasm).unwrap_or(wasm))
}

/// Make `tool` with `install` unless it is there, one process at a time
/// (a lock file beside it).
fn installed_once(
    tool: &Path,
    name: &'static str,
    install: impl FnOnce() -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    if tool.is_file() {
        return Ok(());
    }
    let failed = |e: std::io::Error| BuildError::NoTool {
        tool: name,
        reason: format!(
            "cannot lock the tools folder {}: {e}",
            tools_dir().display()
        ),
    };
    std::fs::create_dir_all(tools_dir()).map_err(failed)?;
    let lock = std::fs::File::create(tools_dir().join(format!("{name}.lock"))).map_err(failed)?;
    lock.lock().map_err(failed)?;
    if tool.is_file() {
        return Ok(());
    }
    install()?;
    if !tool.is_file() {
        return Err(BuildError::NoTool {
            tool: name,
            reason: format!("it was installed but {} is missing", tool.display()),
        });
    }
    Ok(())
}

/// Copy a stage folder's sources to `to`, leaving out build output,
/// caches, dependencies and hidden files (the build bundles what it is
/// given).
fn copy_source(from: &Path, to: &Path) -> Result<(), BuildError> {
    let failed = |e: std::io::Error| BuildError::NotAStage {
        path: from.display().to_string(),
        reason: format!("cannot copy its sources: {e}"),
    };
    std::fs::create_dir_all(to).map_err(failed)?;
    for entry in std::fs::read_dir(from).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let name = entry.file_name();
        let skip = name.to_string_lossy().starts_with('.')
            || ["target", "__pycache__", "node_modules"].contains(&&*name.to_string_lossy());
        if skip {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        if entry.file_type().map_err(failed)?.is_dir() {
            copy_source(&source, &dest)?;
        } else {
            std::fs::copy(&source, &dest).map_err(failed)?;
        }
    }
    Ok(())
}
