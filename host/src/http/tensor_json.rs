//! Tensors as JSON, `{name, datatype, shape, data}`, as the Open Inference
//! Protocol writes them: the edge shared by message JSON (`/fn`) and OIP
//! JSON (`/v2`). Datatype names and what they travel as come from the one
//! table, [`Datatype`].
//!
//! Floats are written as the shortest text that reads back to the same
//! value of their own type: an FP32 `5.1` answers `5.1`, not the f64
//! widening `5.099999904632568`.

use super::ApiError;
use crate::tensor::{Datatype, ElementType, NamedTensor, Tensor, TensorData};
use serde::Serialize;
use serde::ser::Serializer;
use serde_json::Value;

/// One `{name, datatype, shape, data}` tensor, item `index` of the list
/// called `list` (for messages).
pub fn decode(list: &str, index: usize, value: Value) -> Result<NamedTensor, ApiError> {
    let Value::Object(mut t) = value else {
        return Err(ApiError::bad_request(format!(
            "{list}[{index}] must be an object {{name, datatype, shape, data}}"
        )));
    };
    let name = match t.remove("name") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(ApiError::bad_request(format!(
                "{list}[{index}] needs a string `name`"
            )));
        }
    };
    let bad = |msg: String| ApiError::bad_request(format!("tensor `{name}`: {msg}"));
    let datatype = datatype(t.remove("datatype")).map_err(bad)?;
    let shape = shape(t.remove("shape")).map_err(bad)?;
    let items = match t.remove("data") {
        Some(Value::Array(items)) => flatten(items),
        _ => return Err(bad("needs a `data` array".into())),
    };
    let data = values(datatype, &items).map_err(bad)?;
    let tensor = Tensor { shape, data };
    tensor.check(&name).map_err(ApiError::bad_request)?;
    Ok(NamedTensor { name, tensor })
}

/// The `datatype` of a tensor object.
pub fn datatype(value: Option<Value>) -> Result<Datatype, String> {
    match value {
        Some(Value::String(s)) => Datatype::parse(&s)
            .ok_or_else(|| format!("unsupported datatype `{s}`; use {}", Datatype::names())),
        _ => Err(format!("needs a string `datatype` ({})", Datatype::names())),
    }
}

/// The `shape` of a tensor object: every dimension a non-negative integer.
pub fn shape(value: Option<Value>) -> Result<Vec<u64>, String> {
    match value {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| format!("shape entries must be non-negative integers, got {d}"))
            })
            .collect(),
        _ => Err("needs a `shape` array".into()),
    }
}

/// JSON values as elements of `datatype`, each checked to fit it.
fn values(datatype: Datatype, items: &[Value]) -> Result<TensorData, String> {
    fn collect<T>(
        items: &[Value],
        what: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        items
            .iter()
            .enumerate()
            .map(|(i, v)| f(v).ok_or_else(|| format!("data[{i}] = {v} is not {what}")))
            .collect()
    }
    let integer = |v: &Value| -> Option<i128> {
        let (min, max) = datatype.range()?;
        let n = v
            .as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))?;
        (min..=max).contains(&n).then_some(n)
    };
    let what = datatype.element();
    Ok(match datatype.carried_as() {
        ElementType::F32 => TensorData::F32(collect(items, what, |v| {
            v.as_f64().map(|x| x as f32).filter(|x| x.is_finite())
        })?),
        ElementType::F64 => TensorData::F64(collect(items, what, Value::as_f64)?),
        ElementType::I32 => {
            TensorData::I32(collect(items, what, |v| integer(v).map(|n| n as i32))?)
        }
        ElementType::I64 => {
            TensorData::I64(collect(items, what, |v| integer(v).map(|n| n as i64))?)
        }
        ElementType::U8 => TensorData::U8(collect(items, what, |v| integer(v).map(|n| n as u8))?),
        ElementType::Bool => TensorData::Bool(collect(items, what, Value::as_bool)?),
        ElementType::String => {
            TensorData::String(collect(items, what, |v| v.as_str().map(String::from))?)
        }
    })
}

/// Nested arrays (`[[1, 2], [3, 4]]`) are accepted and read row-major.
fn flatten(items: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(items.len());
    let mut stack: Vec<std::vec::IntoIter<Value>> = vec![items.into_iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(Value::Array(inner)) => stack.push(inner.into_iter()),
            Some(v) => out.push(v),
            None => {
                stack.pop();
            }
        }
    }
    out
}

/// A tensor as `{name, datatype, shape, data}` (or with `parameters` and
/// no `data`, when its elements travel in the binary part).
#[derive(Serialize)]
pub struct TensorJson<'a> {
    /// The name.
    pub name: &'a str,
    /// Its datatype.
    pub datatype: Datatype,
    /// The dimensions.
    pub shape: &'a [u64],
    /// The elements, unless they are sent as binary data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Elements<'a>>,
    /// OIP parameters (`binary_data_size`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

impl<'a> TensorJson<'a> {
    /// `t` with its elements inline.
    pub fn of(t: &'a NamedTensor) -> Self {
        Self {
            name: &t.name,
            datatype: t.tensor.data.element_type().datatype(),
            shape: &t.tensor.shape,
            data: Some(Elements(&t.tensor.data)),
            parameters: None,
        }
    }
}

/// Tensor elements written in their own type: f32 as the shortest f32 text.
pub struct Elements<'a>(pub &'a TensorData);

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::F32(v) => v.serialize(serializer),
            TensorData::F64(v) => v.serialize(serializer),
            TensorData::I32(v) => v.serialize(serializer),
            TensorData::I64(v) => v.serialize(serializer),
            TensorData::U8(v) => v.serialize(serializer),
            TensorData::Bool(v) => v.serialize(serializer),
            TensorData::String(v) => v.serialize(serializer),
        }
    }
}
