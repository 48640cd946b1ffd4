//! The second engine: onnxruntime through its C API (the `ort` crate),
//! for the models tract is slow on (large matrix products and
//! convolutions; BENCHMARKS.md) or cannot load. The library is not linked:
//! a node loads it at start from the path it is given (`--onnxruntime`,
//! or `ORT_DYLIB_PATH`), so the binary stays small and a node without it
//! serves every other model. A model runs here when pushed with
//! `--engine onnxruntime`.
//!
//! Each session runs on the calling thread (one intra-op thread), like
//! tract: the node bounds concurrent runs by its cores. Sessions need
//! exclusive access to run, so a model keeps a few, made on demand and
//! sharing their pre-packed weights. Inputs are handed to onnxruntime as
//! views of the tract tensors `arrange` made (no copy); outputs are copied
//! into tract tensors before the session is given back.

use super::{InferenceError, tract_tensor};
use crate::tensor::Signature;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use tract_onnx::prelude::*;

/// The onnxruntime library a node loaded.
pub struct Onnxruntime {
    environment: ort::environment::Environment,
}

impl Onnxruntime {
    /// Load the shared library at `path` (e.g. the `libonnxruntime.so.*`
    /// inside the `onnxruntime` wheel's `capi/` folder); at most once per
    /// process.
    pub fn load(path: &Path) -> Result<Self, InferenceError> {
        let failed = |e: String| {
            InferenceError::Unsupported(format!(
                "cannot load onnxruntime from {}: {e} (give the path of libonnxruntime 1.24 or later, e.g. the one in the onnxruntime wheel's capi/ folder)",
                path.display()
            ))
        };
        let environment = ort::init_from(path)
            .map_err(|e| failed(e.to_string()))?
            .with_name("sluice")
            .with_telemetry(false)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        Ok(Self { environment })
    }

    /// Its environment (one per process), for sessions made beside the
    /// node's (the engine benchmark's peer).
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// Check `bytes` load, and return the sessions that run them, the
    /// model's signature (with `input_shapes` pinning dimensions the file
    /// leaves unknown) and the element types its inputs take.
    pub fn compile(
        &self,
        bytes: &[u8],
        input_shapes: &BTreeMap<String, Vec<i64>>,
    ) -> Result<(Sessions, Signature, Vec<DatumType>), InferenceError> {
        let weights = PrepackedWeights::new();
        let first = session(&self.environment, &weights, bytes)?;
        let mut signature = Signature::default();
        let mut input_types = Vec::new();
        for (outlets, what) in [(first.inputs(), "input"), (first.outputs(), "output")] {
            for outlet in outlets {
                let name = outlet.name().to_string();
                let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
                    return Err(InferenceError::Unsupported(format!(
                        "{what} `{name}` is {}, not a tensor; Sluice carries tensors only (export classifiers with zipmap=False)",
                        outlet.dtype()
                    )));
                };
                let datum_type = datum_type(*ty).ok_or_else(|| {
                    InferenceError::Unsupported(format!(
                        "{what} `{name}` has element type {ty}, which Sluice cannot carry"
                    ))
                })?;
                let mut dims: Vec<i64> = shape.iter().copied().collect();
                if what == "input" {
                    if let Some(pinned) = input_shapes.get(&name) {
                        dims = pinned.clone();
                    }
                    input_types.push(datum_type);
                }
                let spec = tract_tensor::spec_of(name, datum_type, dims, what)?;
                match what {
                    "input" => signature.inputs.push(spec),
                    _ => signature.outputs.push(spec),
                }
            }
        }
        if let Some(unknown) = input_shapes
            .keys()
            .find(|n| !signature.inputs.iter().any(|s| &s.name == *n))
        {
            return Err(InferenceError::InvalidInput(format!(
                "--input-shape names `{unknown}`, an input the model does not have; its inputs are {}",
                signature
                    .inputs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let sessions = Sessions {
            environment: self.environment.clone(),
            bytes: bytes.to_vec(),
            weights,
            idle: Mutex::new(vec![first]),
        };
        Ok((sessions, signature, input_types))
    }
}

fn session(
    environment: &ort::environment::Environment,
    weights: &PrepackedWeights,
    bytes: &[u8],
) -> Result<Session, InferenceError> {
    Session::builder(environment)
        .and_then(|b| Ok(b.with_intra_threads(1)?))
        .and_then(|b| Ok(b.with_inter_threads(1)?))
        .and_then(|b| Ok(b.with_parallel_execution(false)?))
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|b| Ok(b.with_prepacked_weights(weights)?))
        .and_then(|mut b| b.commit_from_memory(bytes))
        .map_err(|e| InferenceError::Unsupported(format!("onnxruntime cannot load it: {e}")))
}

/// One model version's sessions: idle ones, and what it takes to make
/// another when every one is running.
pub struct Sessions {
    environment: ort::environment::Environment,
    bytes: Vec<u8>,
    weights: PrepackedWeights,
    idle: Mutex<Vec<Session>>,
}

impl Sessions {
    /// Run on `inputs` (in the model's input order).
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, InferenceError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut session = match idle {
            Some(session) => session,
            None => session(&self.environment, &self.weights, &self.bytes)?,
        };
        let outputs = run(&mut session, &inputs)?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(session);
        }
        Ok(outputs)
    }
}

fn run(session: &mut Session, inputs: &[TValue]) -> Result<TVec<TValue>, InferenceError> {
    let failed = |e: ort::Error| InferenceError::Internal(format!("onnxruntime: {e}"));
    let values = inputs
        .iter()
        .map(|value| view(value).map_err(failed))
        .collect::<Result<Vec<SessionInputValue<'_>>, _>>()?;
    let outputs = session.run(values.as_slice()).map_err(failed)?;
    outputs
        .values()
        .map(|value| to_tract(&value).map_err(failed))
        .collect()
}

/// A tract tensor as an onnxruntime input, borrowing its data.
fn view(value: &TValue) -> ort::Result<SessionInputValue<'_>> {
    fn of<T: Datum + ort::value::PrimitiveTensorElementType + Clone>(
        t: &tract_onnx::prelude::Tensor,
    ) -> ort::Result<SessionInputValue<'_>> {
        let view = t
            .to_plain_array_view::<T>()
            .map_err(|e| ort::Error::new(e.to_string()))?;
        let data = view
            .to_slice()
            .ok_or_else(|| ort::Error::new("a non-contiguous input"))?;
        Ok(TensorRef::from_array_view((t.shape(), data))?
            .into_dyn()
            .into())
    }
    match value.datum_type() {
        DatumType::F32 => of::<f32>(value),
        DatumType::F64 => of::<f64>(value),
        DatumType::I64 => of::<i64>(value),
        DatumType::I32 => of::<i32>(value),
        DatumType::I16 => of::<i16>(value),
        DatumType::I8 => of::<i8>(value),
        DatumType::U8 => of::<u8>(value),
        DatumType::U16 => of::<u16>(value),
        DatumType::U32 => of::<u32>(value),
        DatumType::U64 => of::<u64>(value),
        DatumType::Bool => of::<bool>(value),
        DatumType::String => {
            let view = value
                .to_plain_array_view::<String>()
                .map_err(|e| ort::Error::new(e.to_string()))?;
            let data = view
                .to_slice()
                .ok_or_else(|| ort::Error::new("a non-contiguous input"))?;
            Ok(
                ort::value::Tensor::from_string_array((value.shape(), data))?
                    .into_dyn()
                    .into(),
            )
        }
        dt => Err(ort::Error::new(format!("an input of element type {dt:?}"))),
    }
}

/// An onnxruntime output as a tract tensor (a copy).
fn to_tract(value: &DynValue) -> ort::Result<TValue> {
    fn of<T: Datum + ort::value::PrimitiveTensorElementType + Copy>(
        value: &DynValue,
    ) -> ort::Result<TValue> {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
        tract_onnx::prelude::Tensor::from_shape(&dims, data)
            .map(IntoTValue::into_tvalue)
            .map_err(|e| ort::Error::new(e.to_string()))
    }
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(ort::Error::new(format!(
            "an output of type {}",
            value.dtype()
        )));
    };
    match ty {
        TensorElementType::Float32 => of::<f32>(value),
        TensorElementType::Float64 => of::<f64>(value),
        TensorElementType::Int64 => of::<i64>(value),
        TensorElementType::Int32 => of::<i32>(value),
        TensorElementType::Int16 => of::<i16>(value),
        TensorElementType::Int8 => of::<i8>(value),
        TensorElementType::Uint8 => of::<u8>(value),
        TensorElementType::Uint16 => of::<u16>(value),
        TensorElementType::Uint32 => of::<u32>(value),
        TensorElementType::Uint64 => of::<u64>(value),
        TensorElementType::Bool => of::<bool>(value),
        TensorElementType::String => {
            let (shape, data) = value.try_extract_strings()?;
            let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
            tract_onnx::tract_core::ndarray::ArrayD::from_shape_vec(dims, data)
                .map(|a| a.into_tensor().into_tvalue())
                .map_err(|e| ort::Error::new(e.to_string()))
        }
        ty => Err(ort::Error::new(format!("an output of element type {ty}"))),
    }
}

/// The tract element type of an onnxruntime one, where Sluice has one.
fn datum_type(ty: TensorElementType) -> Option<DatumType> {
    Some(match ty {
        TensorElementType::Float32 => DatumType::F32,
        TensorElementType::Float64 => DatumType::F64,
        TensorElementType::Int64 => DatumType::I64,
        TensorElementType::Int32 => DatumType::I32,
        TensorElementType::Int16 => DatumType::I16,
        TensorElementType::Int8 => DatumType::I8,
        TensorElementType::Uint8 => DatumType::U8,
        TensorElementType::Uint16 => DatumType::U16,
        TensorElementType::Uint32 => DatumType::U32,
        TensorElementType::Uint64 => DatumType::U64,
        TensorElementType::Bool => DatumType::Bool,
        TensorElementType::String => DatumType::String,
        _ => return None,
    })
}
