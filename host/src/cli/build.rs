//! `sluice build`: stage folders (Rust crates, `stage.py`, `stage.js`) into
//! components, each checked against the worlds as a node would check it.

use super::serve::cli_engine;
use anyhow::{Context, Result};
use clap::Args;
use sluice::engine::Engine;
use std::path::PathBuf;

#[derive(Args)]
pub struct BuildArgs {
    /// Stage folders: a Rust crate (Cargo.toml), a Python stage
    /// (stage.py) or a JavaScript stage (stage.js); default: the current
    /// directory.
    paths: Vec<PathBuf>,
}

pub async fn run(args: BuildArgs) -> Result<()> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths
    };
    let built = tokio::task::spawn_blocking(move || sluice::toolchain::build(&paths)).await??;
    let engine = Engine::new(cli_engine())?;
    for stage in built {
        let bytes = std::fs::read(&stage.wasm)?;
        let (_, world) = engine.compile(&bytes).with_context(|| {
            format!("{} built, but Sluice would refuse it", stage.wasm.display())
        })?;
        println!(
            "{}\t{}\t{} bytes\t{world}",
            stage.package,
            stage.wasm.display(),
            bytes.len()
        );
    }
    Ok(())
}
