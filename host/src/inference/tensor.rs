//! Tensors between the WIT contract and tract, and the signature a model
//! publishes (names, element types, shapes with dynamic dimensions).

use super::InferenceError;
use crate::engine::wit::{ElementType, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ndarray::{ArrayD, IxDyn};

/// One input or output of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The name requests use.
    pub name: String,
    /// The element type, as the Open Inference Protocol writes it (`FP32`...).
    pub datatype: String,
    /// The shape; `-1` marks a dynamic dimension (e.g. the batch).
    pub shape: Vec<i64>,
}

/// What a model takes and produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The inputs, in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// The outputs, in the model's order.
    pub outputs: Vec<TensorSpec>,
}

/// The Open Inference Protocol name of a tract element type, if Sluice
/// carries it.
pub fn datatype_name(dt: DatumType) -> Option<&'static str> {
    Some(match dt {
        DatumType::F32 => "FP32",
        DatumType::F64 => "FP64",
        DatumType::I32 => "INT32",
        DatumType::I64 => "INT64",
        DatumType::U8 => "UINT8",
        DatumType::Bool => "BOOL",
        DatumType::String => "BYTES",
        // Carried widened: the contract has no 8/16-bit signed or f16 lists.
        DatumType::I8 | DatumType::I16 => "INT32",
        DatumType::U16 | DatumType::U32 => "INT64",
        DatumType::U64 | DatumType::TDim => "INT64",
        DatumType::F16 => "FP32",
        _ => return None,
    })
}

/// The contract's element type with that name.
pub fn element_type(datatype: &str) -> Option<ElementType> {
    Some(match datatype {
        "FP32" => ElementType::F32,
        "FP64" => ElementType::F64,
        "INT32" => ElementType::I32,
        "INT64" => ElementType::I64,
        "UINT8" => ElementType::U8,
        "BOOL" => ElementType::Bool,
        "BYTES" => ElementType::String,
        _ => return None,
    })
}

fn spec(
    model: &TypedModel,
    outlet: OutletId,
    fallback: &str,
) -> Result<TensorSpec, InferenceError> {
    let fact = model
        .outlet_fact(outlet)
        .map_err(|e| InferenceError::Unsupported(e.to_string()))?;
    // Inputs keep their source node's name; outputs carry the file's output
    // names as outlet labels.
    let node_name = &model.node(outlet.node).name;
    let name = if fallback == "input" {
        node_name.as_str()
    } else {
        model.outlet_label(outlet).unwrap_or(node_name)
    }
    .to_string();
    let datatype = datatype_name(fact.datum_type).ok_or_else(|| {
        InferenceError::Unsupported(format!(
            "{fallback} `{name}` has element type {:?}, which Sluice cannot carry",
            fact.datum_type
        ))
    })?;
    Ok(TensorSpec {
        name,
        datatype: datatype.to_string(),
        shape: fact
            .shape
            .iter()
            .map(|d| d.as_i64().unwrap_or(-1))
            .collect(),
    })
}

impl Signature {
    /// The signature of a typed model.
    pub fn of(model: &TypedModel) -> Result<Self, InferenceError> {
        let collect = |outlets: &[OutletId], what: &str| {
            outlets
                .iter()
                .map(|o| spec(model, *o, what))
                .collect::<Result<Vec<_>, _>>()
        };
        let internal = |e: TractError| InferenceError::Internal(e.to_string());
        Ok(Self {
            inputs: collect(model.input_outlets().map_err(internal)?, "input")?,
            outputs: collect(model.output_outlets().map_err(internal)?, "output")?,
        })
    }
}

/// A contract tensor as a tract value, checked against `spec`.
pub fn to_tract(spec: &TensorSpec, tensor: Tensor) -> Result<TValue, InferenceError> {
    let bad = |what: String| {
        InferenceError::InvalidInput(format!(
            "input `{}` {what}; the model expects {} of shape {}",
            spec.name,
            spec.datatype,
            shape_text(&spec.shape)
        ))
    };
    let fits = tensor.shape.len() == spec.shape.len()
        && tensor
            .shape
            .iter()
            .zip(&spec.shape)
            .all(|(got, want)| *want < 0 || *got as i64 == *want);
    if !fits {
        return Err(bad(format!("has shape {:?}", tensor.shape)));
    }
    let shape: Vec<usize> = tensor.shape.iter().map(|d| *d as usize).collect();
    fn array<T: Datum>(shape: &[usize], data: Vec<T>) -> Result<TValue, String> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(|a| a.into_tensor().into_tvalue())
            .map_err(|e| e.to_string())
    }
    let given = crate::http::codec::datatype(crate::http::codec::element_type(&tensor.data));
    let value = match (spec.datatype.as_str(), tensor.data) {
        ("FP32", TensorData::F32(v)) => array(&shape, v),
        ("FP64", TensorData::F64(v)) => array(&shape, v),
        ("INT32", TensorData::I32(v)) => array(&shape, v),
        ("INT64", TensorData::I64(v)) => array(&shape, v),
        ("UINT8", TensorData::U8(v)) => array(&shape, v),
        ("BOOL", TensorData::Bool(v)) => array(&shape, v),
        ("BYTES", TensorData::String(v)) => array(&shape, v),
        _ => return Err(bad(format!("is {given}"))),
    };
    value.map_err(|e| bad(format!("does not match its shape: {e}")))
}

/// A tract value as a contract tensor.
pub fn from_tract(value: &TValue) -> Result<Tensor, InferenceError> {
    fn plain<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> TractResult<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()?.iter().cloned().collect())
    }
    fn cast<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> TractResult<Vec<T>> {
        plain::<T>(t.cast_to::<T>()?.as_ref())
    }
    let t: &tract_onnx::prelude::Tensor = value;
    let data = match t.datum_type() {
        DatumType::F32 => plain::<f32>(t).map(TensorData::F32),
        DatumType::F64 => plain::<f64>(t).map(TensorData::F64),
        DatumType::I32 => plain::<i32>(t).map(TensorData::I32),
        DatumType::I64 => plain::<i64>(t).map(TensorData::I64),
        DatumType::U8 => plain::<u8>(t).map(TensorData::U8),
        DatumType::Bool => plain::<bool>(t).map(TensorData::Bool),
        DatumType::String => plain::<String>(t).map(TensorData::String),
        DatumType::I8 | DatumType::I16 => cast::<i32>(t).map(TensorData::I32),
        DatumType::U16 | DatumType::U32 | DatumType::U64 | DatumType::TDim => {
            cast::<i64>(t).map(TensorData::I64)
        }
        DatumType::F16 => cast::<f32>(t).map(TensorData::F32),
        other => {
            return Err(InferenceError::Internal(format!(
                "the model produced element type {other:?}, which Sluice cannot carry"
            )));
        }
    }
    .map_err(|e| InferenceError::Internal(e.to_string()))?;
    Ok(Tensor {
        shape: t.shape().iter().map(|d| *d as u64).collect(),
        data,
    })
}

/// `[-1, 4]` as `[N, 4]`, for messages.
pub fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| if *d < 0 { "N".into() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}
