//! A stage whose model calls use only the standard `wasi:nn` interface, as
//! a wasi-nn guest written for any runtime would: `load-by-name`,
//! `init-execution-context`, `compute`. Sluice resolves the name in its
//! model registry.
//!
//! Config:
//! - `model` (required): `NAME`, `NAME@VERSION` or `NAME@ALIAS`;
//! - `input`: the model's input name (default: the name of the message's
//!   only tensor).

use sluice_sdk::{Message, Stage, StageError, Tensor, TensorData, config, export_stage};

mod nn {
    include!(concat!(env!("OUT_DIR"), "/wasi_nn.rs"));
}

use nn::wasi::nn::errors::Error;
use nn::wasi::nn::graph;
use nn::wasi::nn::tensor::{Tensor as NnTensor, TensorType};

struct WasiNnPredict;

impl Stage for WasiNnPredict {
    fn run(mut input: Message) -> Result<Message, StageError> {
        let model = config::require("model")?;
        let tensor_name = input.tensors.first().map(|(name, _)| name.clone());
        let input_name = config::get("input")
            .or(tensor_name)
            .ok_or_else(|| StageError::invalid_input("the message has no tensor"))?;
        let tensor = to_nn(input.take_only_tensor()?)?;
        let graph = graph::load_by_name(&model).map_err(failed("load-by-name"))?;
        let context = graph
            .init_execution_context()
            .map_err(failed("init-execution-context"))?;
        let outputs = context
            .compute(vec![(input_name, tensor)])
            .map_err(failed("compute"))?;
        outputs
            .into_iter()
            .try_fold(Message::new(), |out, (name, tensor)| {
                Ok(out.with_tensor(name, from_nn(&tensor)?))
            })
    }
}

fn failed(call: &'static str) -> impl Fn(Error) -> StageError {
    move |e| StageError::internal(format!("wasi-nn {call}: {:?}: {}", e.code(), e.data()))
}

fn to_nn(tensor: Tensor) -> Result<NnTensor, StageError> {
    let dimensions = tensor
        .shape()
        .iter()
        .map(|d| u32::try_from(*d).map_err(|_| StageError::invalid_input("dimension beyond u32")))
        .collect::<Result<Vec<_>, _>>()?;
    let (ty, data) = match tensor.data() {
        TensorData::F32(v) => (
            TensorType::Fp32,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        TensorData::F64(v) => (
            TensorType::Fp64,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        TensorData::I32(v) => (
            TensorType::I32,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        TensorData::I64(v) => (
            TensorType::I64,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        TensorData::U8(v) => (TensorType::U8, v.clone()),
        _ => {
            return Err(StageError::invalid_input(format!(
                "wasi-nn has no tensor type for {} elements",
                tensor.element_type()
            )));
        }
    };
    Ok(NnTensor::new(&dimensions, ty, &data))
}

fn from_nn(tensor: &NnTensor) -> Result<Tensor, StageError> {
    let shape: Vec<u64> = tensor.dimensions().into_iter().map(u64::from).collect();
    let bytes = tensor.data();
    fn decode<T, const N: usize>(bytes: &[u8], le: fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| le(c.try_into().expect("chunk of N bytes")))
            .collect()
    }
    let data = match tensor.ty() {
        TensorType::Fp32 => TensorData::F32(decode(&bytes, f32::from_le_bytes)),
        TensorType::Fp64 => TensorData::F64(decode(&bytes, f64::from_le_bytes)),
        TensorType::I32 => TensorData::I32(decode(&bytes, i32::from_le_bytes)),
        TensorType::I64 => TensorData::I64(decode(&bytes, i64::from_le_bytes)),
        TensorType::U8 => TensorData::U8(bytes),
        other => {
            return Err(StageError::internal(format!(
                "the model returned {other:?}, which this stage does not decode"
            )));
        }
    };
    Tensor::from_parts(shape, data)
}

export_stage!(WasiNnPredict);
