//! The standard `wasi:nn` interface over the node's models, so a guest
//! written for wasi-nn runs unchanged as a predictor stage.
//!
//! `wasmtime-wasi-nn` carries the WIT glue (`wasi:nn@0.2.0-rc-2024-10-28`);
//! Sluice plugs in:
//! - a graph registry whose `load-by-name` resolves registry models
//!   (`NAME`, `NAME@VERSION`, `NAME@ALIAS`) through the same plan cache as
//!   the `inference` interface;
//! - execution contexts that run through [`Models::run`]: the same pool,
//!   the same input checks, the same dynamic batching.
//!
//! `load` (model bytes sent by the guest) is refused: models live in the
//! registry, versioned and shared, and are compiled once per node.
//!
//! wasi-nn's host calls are synchronous; they wait for the async model
//! engine with `block_in_place`, which hands the worker's other tasks to
//! another thread for the duration, so HTTP handling never stalls. They
//! wait no longer than the call's deadline: the epoch check cannot stop a
//! host call, so they stop themselves, and the stage traps with
//! "deadline exceeded" as soon as it runs again.

use super::host::Reach;
use crate::inference::{Model, Models};
use crate::registry::{Name, Selector};
use crate::tensor::{NamedTensor, Tensor, TensorData};
use elsa::sync::FrozenMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::{Handle, RuntimeFlavor};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor as NnNamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, TensorType};
use wasmtime_wasi_nn::{
    Backend, ExecutionContext, Graph, GraphRegistry, Registry, Tensor as NnTensor,
};

pub use wasmtime_wasi_nn::wit::{WasiNnCtx, WasiNnView};

/// The wasi-nn state of one call; made on the stage's first wasi-nn call.
pub(super) fn context(reach: Reach, deadline: Instant) -> WasiNnCtx {
    let graphs = NodeGraphs {
        reach,
        deadline,
        loaded: FrozenMap::new(),
    };
    WasiNnCtx::new([Backend::from(RegistryOnly)], Registry::from(graphs))
}

/// The graphs one call has loaded by name, resolved on first use.
struct NodeGraphs {
    reach: Reach,
    /// The call's deadline.
    deadline: Instant,
    /// Append-only: `GraphRegistry::get` hands out references while later
    /// names are still being added.
    loaded: FrozenMap<String, Box<Graph>>,
}

impl NodeGraphs {
    fn resolve(&self, target: &str) -> Result<Arc<Model>, String> {
        let models = self
            .reach
            .models
            .as_ref()
            .ok_or("models are only available to predictor stages")?;
        let (name, selector) = Selector::split(target).map_err(|e| e.to_string())?;
        let name = Name::parse(name).map_err(|e| e.to_string())?;
        if let Some(refused) = self
            .reach
            .grant
            .as_ref()
            .and_then(|g| g.refuses("model", name.as_str()))
        {
            return Err(refused);
        }
        wait(self.deadline, "load-by-name", models.get(&name, &selector))?
            .map_err(|e| e.to_string())
    }
}

impl GraphRegistry for NodeGraphs {
    fn get(&self, target: &str) -> Option<&Graph> {
        if let Some(graph) = self.loaded.get(target) {
            return Some(graph);
        }
        match self.resolve(target) {
            Ok(model) => {
                let graph = ModelGraph {
                    model,
                    models: self.reach.models.clone()?,
                    deadline: self.deadline,
                };
                let graph = Graph::from(Box::new(graph) as Box<dyn BackendGraph>);
                Some(self.loaded.insert(target.to_string(), Box::new(graph)))
            }
            Err(reason) => {
                // wasi-nn can only say `not-found`; the log says why.
                tracing::warn!(model = target, %reason, "wasi-nn load-by-name failed");
                None
            }
        }
    }

    fn get_mut(&mut self, target: &str) -> Option<&mut Graph> {
        self.loaded
            .as_mut()
            .get_mut(target)
            .map(|graph| &mut **graph)
    }
}

/// The ONNX backend wasi-nn's `load` reaches: it points at `load-by-name`.
struct RegistryOnly;

impl BackendInner for RegistryOnly {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(&mut self, _: &[&[u8]], _: ExecutionTarget) -> Result<Graph, BackendError> {
        Err(failure(
            "Sluice serves models from its registry: push the file with `sluice models push` and load it with load-by-name(\"NAME[@VERSION]\")",
        ))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

/// A registry model as a wasi-nn graph.
struct ModelGraph {
    model: Arc<Model>,
    models: Arc<Models>,
    deadline: Instant,
}

impl BackendGraph for ModelGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let context = ModelContext {
            model: self.model.clone(),
            models: self.models.clone(),
            deadline: self.deadline,
        };
        Ok(ExecutionContext::from(
            Box::new(context) as Box<dyn BackendExecutionContext>
        ))
    }
}

struct ModelContext {
    model: Arc<Model>,
    models: Arc<Models>,
    deadline: Instant,
}

/// Components only reach wasi-nn through WIT; the preview1 (WITX) calls
/// that bind tensors one by one have no caller here.
const WITX_ONLY: &str = "set-input/get-output belong to the WITX ABI; Sluice serves wasi-nn over WIT: pass the inputs to compute";

impl BackendExecutionContext for ModelContext {
    fn set_input(&mut self, _: Id, _: &NnTensor) -> Result<(), BackendError> {
        Err(failure(WITX_ONLY))
    }

    fn get_output(&mut self, _: Id) -> Result<NnTensor, BackendError> {
        Err(failure(WITX_ONLY))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NnNamedTensor>>,
    ) -> Result<Option<Vec<NnNamedTensor>>, BackendError> {
        let inputs = inputs
            .ok_or_else(|| failure(WITX_ONLY))?
            .into_iter()
            .map(|t| {
                Ok(NamedTensor {
                    tensor: from_nn(&t.name, t.tensor)?,
                    name: t.name,
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let outputs = wait(
            self.deadline,
            "compute",
            self.models.run(&self.model, inputs),
        )
        .map_err(failure)?
        .map_err(|e| failure(e.to_string()))?;
        outputs
            .into_iter()
            .map(|t| {
                Ok(NnNamedTensor {
                    tensor: to_nn(&t.name, t.tensor)?,
                    name: t.name,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Wait for the model engine from a synchronous host call (`call`) on a
/// guest's fiber, until `deadline`. A run left behind keeps its run slot
/// until tract finishes, as when a request is dropped.
fn wait<F: Future>(deadline: Instant, call: &str, future: F) -> Result<F::Output, String> {
    let handle = Handle::try_current()
        .map_err(|_| "wasi-nn calls need the node's async runtime".to_string())?;
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return Err("wasi-nn calls need the node's multi-threaded runtime".into());
    }
    let bounded = tokio::time::timeout_at(deadline.into(), future);
    tokio::task::block_in_place(|| handle.block_on(bounded))
        .map_err(|_| format!("the call's deadline passed during wasi-nn {call}"))
}

fn failure(message: impl std::fmt::Display) -> BackendError {
    tracing::debug!(%message, "wasi-nn call failed");
    BackendError::BackendAccess(wasmtime::format_err!("{message}"))
}

/// A wasi-nn tensor (little-endian bytes) as a Sluice tensor.
fn from_nn(name: &str, tensor: NnTensor) -> Result<Tensor, BackendError> {
    let shape: Vec<u64> = tensor.dimensions.iter().map(|d| u64::from(*d)).collect();
    let bytes = &tensor.data;
    macro_rules! decode {
        ($variant:ident, $ty:ty) => {{
            const SIZE: usize = size_of::<$ty>();
            if bytes.len() % SIZE != 0 {
                return Err(failure(format!(
                    "input `{name}`: {} bytes is not a whole number of {}-byte elements",
                    bytes.len(),
                    SIZE
                )));
            }
            TensorData::$variant(
                bytes
                    .chunks_exact(SIZE)
                    .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunk of SIZE")))
                    .collect(),
            )
        }};
    }
    let data = match tensor.ty {
        TensorType::Fp32 => decode!(F32, f32),
        TensorType::Fp64 => decode!(F64, f64),
        TensorType::I32 => decode!(I32, i32),
        TensorType::I64 => decode!(I64, i64),
        TensorType::U8 => TensorData::U8(tensor.data),
        TensorType::Fp16 | TensorType::Bf16 => {
            return Err(BackendError::UnsupportedTensorType(format!(
                "input `{name}` is {:?}; send FP32 (the model engine widens it where the model takes less)",
                tensor.ty
            )));
        }
    };
    Ok(Tensor { shape, data })
}

/// A Sluice tensor as a wasi-nn tensor. Booleans become U8 0/1; strings
/// have no wasi-nn type.
fn to_nn(name: &str, tensor: Tensor) -> Result<NnTensor, BackendError> {
    let dimensions = tensor
        .shape
        .iter()
        .map(|d| u32::try_from(*d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| failure(format!("output `{name}` has a dimension beyond u32")))?;
    fn bytes<T: Copy, const N: usize>(values: &[T], le: fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|v| le(*v)).collect()
    }
    let (ty, data) = match tensor.data {
        TensorData::F32(v) => (TensorType::Fp32, bytes(&v, f32::to_le_bytes)),
        TensorData::F64(v) => (TensorType::Fp64, bytes(&v, f64::to_le_bytes)),
        TensorData::I32(v) => (TensorType::I32, bytes(&v, i32::to_le_bytes)),
        TensorData::I64(v) => (TensorType::I64, bytes(&v, i64::to_le_bytes)),
        TensorData::U8(v) => (TensorType::U8, v),
        TensorData::Bool(v) => (TensorType::U8, v.into_iter().map(u8::from).collect()),
        TensorData::String(_) => {
            return Err(BackendError::UnsupportedTensorType(format!(
                "output `{name}` holds strings, which wasi-nn cannot carry; call the model through `sluice:pipeline/inference`"
            )));
        }
    };
    Ok(NnTensor::new(dimensions, ty, data))
}
