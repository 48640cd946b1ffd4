//! The tract edge: Sluice tensors as tract values and back, and the
//! signature a typed model publishes (names, datatypes, shapes with
//! dynamic dimensions).

use super::InferenceError;
use crate::tensor::{ElementType, Signature, Tensor, TensorData, TensorSpec, shape_text};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ndarray::{ArrayD, IxDyn};

/// The element type a tract datum travels as, if Sluice carries it: the
/// contract has no 8/16-bit signed, wide unsigned or half-float lists, so
/// those travel widened (and inputs are cast back before a run).
fn carried(dt: DatumType) -> Option<ElementType> {
    Some(match dt {
        DatumType::F32 | DatumType::F16 => ElementType::F32,
        DatumType::F64 => ElementType::F64,
        DatumType::I8 | DatumType::I16 | DatumType::I32 => ElementType::I32,
        DatumType::I64 | DatumType::U16 | DatumType::U32 | DatumType::U64 | DatumType::TDim => {
            ElementType::I64
        }
        DatumType::U8 => ElementType::U8,
        DatumType::Bool => ElementType::Bool,
        DatumType::String => ElementType::String,
        _ => return None,
    })
}

fn spec(model: &TypedModel, outlet: OutletId, what: &str) -> Result<TensorSpec, InferenceError> {
    let fact = model
        .outlet_fact(outlet)
        .map_err(|e| InferenceError::Unsupported(e.to_string()))?;
    // Inputs keep their source node's name; outputs carry the file's output
    // names as outlet labels.
    let node_name = &model.node(outlet.node).name;
    let name = if what == "input" {
        node_name.as_str()
    } else {
        model.outlet_label(outlet).unwrap_or(node_name)
    }
    .to_string();
    let shape = fact
        .shape
        .iter()
        .map(|d| d.as_i64().unwrap_or(-1))
        .collect();
    spec_of(name, fact.datum_type, shape, what)
}

/// The spec of an input or output of element type `datum_type` (`-1`
/// marks a dynamic dimension).
pub fn spec_of(
    name: String,
    datum_type: DatumType,
    shape: Vec<i64>,
    what: &str,
) -> Result<TensorSpec, InferenceError> {
    let element_type = carried(datum_type).ok_or_else(|| {
        InferenceError::Unsupported(format!(
            "{what} `{name}` has element type {datum_type:?}, which Sluice cannot carry"
        ))
    })?;
    Ok(TensorSpec {
        name,
        datatype: element_type.datatype(),
        shape,
    })
}

/// The signature of a typed model.
pub fn signature_of(model: &TypedModel) -> Result<Signature, InferenceError> {
    let collect = |outlets: &[OutletId], what: &str| {
        outlets
            .iter()
            .map(|o| spec(model, *o, what))
            .collect::<Result<Vec<_>, _>>()
    };
    let internal = |e: TractError| InferenceError::Internal(e.to_string());
    Ok(Signature {
        inputs: collect(model.input_outlets().map_err(internal)?, "input")?,
        outputs: collect(model.output_outlets().map_err(internal)?, "output")?,
    })
}

/// A tensor as a tract value, checked against `spec`.
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
    let given = tensor.data.element_type();
    if given != spec.datatype.carried_as() {
        return Err(bad(format!("is {given}")));
    }
    let shape: Vec<usize> = tensor.shape.iter().map(|d| *d as usize).collect();
    fn array<T: Datum>(shape: &[usize], data: Vec<T>) -> Result<TValue, String> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(|a| a.into_tensor().into_tvalue())
            .map_err(|e| e.to_string())
    }
    let value = match tensor.data {
        TensorData::F32(v) => array(&shape, v),
        TensorData::F64(v) => array(&shape, v),
        TensorData::I32(v) => array(&shape, v),
        TensorData::I64(v) => array(&shape, v),
        TensorData::U8(v) => array(&shape, v),
        TensorData::Bool(v) => array(&shape, v),
        TensorData::String(v) => array(&shape, v),
    };
    value.map_err(|e| bad(format!("does not match its shape: {e}")))
}

/// A tract value as a tensor.
pub fn from_tract(value: &TValue) -> Result<Tensor, InferenceError> {
    fn plain<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> TractResult<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()?.iter().cloned().collect())
    }
    fn cast<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> TractResult<Vec<T>> {
        plain::<T>(t.cast_to::<T>()?.as_ref())
    }
    let t: &tract_onnx::prelude::Tensor = value;
    let unsupported = |dt: DatumType| {
        InferenceError::Internal(format!(
            "the model produced element type {dt:?}, which Sluice cannot carry"
        ))
    };
    let data = match t.datum_type() {
        DatumType::F32 => plain::<f32>(t).map(TensorData::F32),
        DatumType::F64 => plain::<f64>(t).map(TensorData::F64),
        DatumType::I32 => plain::<i32>(t).map(TensorData::I32),
        DatumType::I64 => plain::<i64>(t).map(TensorData::I64),
        DatumType::U8 => plain::<u8>(t).map(TensorData::U8),
        DatumType::Bool => plain::<bool>(t).map(TensorData::Bool),
        DatumType::String => plain::<String>(t).map(TensorData::String),
        // Travels widened.
        dt => match carried(dt).ok_or_else(|| unsupported(dt))? {
            ElementType::F32 => cast::<f32>(t).map(TensorData::F32),
            ElementType::I32 => cast::<i32>(t).map(TensorData::I32),
            ElementType::I64 => cast::<i64>(t).map(TensorData::I64),
            _ => return Err(unsupported(dt)),
        },
    }
    .map_err(|e| InferenceError::Internal(e.to_string()))?;
    Ok(Tensor {
        shape: t.shape().iter().map(|d| *d as u64).collect(),
        data,
    })
}
