//! What the benches share.

use std::path::PathBuf;

/// The component of a stage crate in this repository, built for wasm.
pub fn component(crate_dir: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir);
    let built = sluice::toolchain::build(&[path]).expect("build the stage");
    std::fs::read(&built[0].wasm).expect("read the component")
}
