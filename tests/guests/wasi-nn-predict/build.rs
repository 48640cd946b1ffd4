//! Bindings for the standard `wasi:nn` WIT, taken from the crate that
//! serves it on the host (`wasmtime-wasi-nn`, at the version in the
//! workspace's Cargo.lock): guest and host agree on one interface version,
//! and no copy of the WIT lives in this repository.

use std::path::{Path, PathBuf};
use std::{env, fs};

const HOST_CRATE: &str = "wasmtime-wasi-nn";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let lock_file = manifest.join("../../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_file.display());
    let lock = fs::read_to_string(&lock_file).expect("the workspace's Cargo.lock");
    let version =
        locked_version(&lock).expect("wasmtime-wasi-nn in Cargo.lock (a host dependency)");
    let wit = find_wit(&version).unwrap_or_else(|| {
        panic!("{HOST_CRATE} {version} is not in the cargo registry; run `cargo fetch` in the workspace")
    });
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let bindings = format!(
        "wit_bindgen::generate!({{ path: {:?}, world: \"wasi:nn/ml\" }});\n",
        wit.display().to_string()
    );
    fs::write(out.join("wasi_nn.rs"), bindings).expect("writing the bindings module");
}

/// The version of the host crate the workspace locks.
fn locked_version(lock: &str) -> Option<String> {
    lock.split("[[package]]").find_map(|entry| {
        let mut lines = entry.lines().map(str::trim);
        lines.find(|l| *l == format!("name = \"{HOST_CRATE}\""))?;
        let version = lines.find_map(|l| l.strip_prefix("version = \""))?;
        Some(version.trim_end_matches('"').to_string())
    })
}

/// `wit/wasi-nn.wit` in the crate's unpacked source, in any registry index.
fn find_wit(version: &str) -> Option<PathBuf> {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(Result::ok)
        .map(|index| {
            index
                .path()
                .join(format!("{HOST_CRATE}-{version}/wit/wasi-nn.wit"))
        })
        .find(|path| path.is_file())
}
