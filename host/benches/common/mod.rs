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

/// One row of `width` f32 features, as the benches' stages take it.
#[allow(dead_code)] // Not every bench sends a message.
pub fn features(width: usize) -> sluice::tensor::Message {
    use sluice::tensor::{Message, NamedTensor, Tensor, TensorData};
    Message {
        body: None,
        tensors: vec![NamedTensor {
            name: "features".into(),
            tensor: Tensor {
                shape: vec![1, width as u64],
                data: TensorData::F32((0..width).map(|i| i as f32).collect()),
            },
        }],
        fields: Vec::new(),
    }
}
