//! Tensors and messages: what flows between stages, models and clients.
//!
//! These are Sluice's own types, owned by no format. Every format converts
//! at the edge that owns it: the WIT bindings in `engine`, tract values in
//! `inference`, wasi-nn tensors in `engine::wasi_nn`, Open Inference
//! Protocol JSON and binary tensors in `http`. The one table of element
//! types and OIP datatypes is [`Datatype`].

mod datatype;

pub use datatype::Datatype;

use serde::{Deserialize, Serialize};

/// The element types a tensor carries (the contract's `element-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// Byte.
    U8,
    /// Boolean.
    Bool,
    /// UTF-8 text.
    String,
}

/// The elements of a tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 32-bit signed integers.
    I32(Vec<i32>),
    /// 64-bit signed integers.
    I64(Vec<i64>),
    /// Bytes.
    U8(Vec<u8>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Text.
    String(Vec<String>),
}

impl TensorData {
    /// No elements of type `element` yet, room for `capacity`.
    pub fn with_capacity(element: ElementType, capacity: usize) -> Self {
        match element {
            ElementType::F32 => Self::F32(Vec::with_capacity(capacity)),
            ElementType::F64 => Self::F64(Vec::with_capacity(capacity)),
            ElementType::I32 => Self::I32(Vec::with_capacity(capacity)),
            ElementType::I64 => Self::I64(Vec::with_capacity(capacity)),
            ElementType::U8 => Self::U8(Vec::with_capacity(capacity)),
            ElementType::Bool => Self::Bool(Vec::with_capacity(capacity)),
            ElementType::String => Self::String(Vec::with_capacity(capacity)),
        }
    }

    /// The element type.
    pub fn element_type(&self) -> ElementType {
        match self {
            Self::F32(_) => ElementType::F32,
            Self::F64(_) => ElementType::F64,
            Self::I32(_) => ElementType::I32,
            Self::I64(_) => ElementType::I64,
            Self::U8(_) => ElementType::U8,
            Self::Bool(_) => ElementType::Bool,
            Self::String(_) => ElementType::String,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::U8(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
        }
    }

    /// Bytes the elements take (text at its length).
    pub fn byte_size(&self) -> usize {
        match self {
            Self::F32(v) => v.len() * 4,
            Self::F64(v) => v.len() * 8,
            Self::I32(v) => v.len() * 4,
            Self::I64(v) => v.len() * 8,
            Self::U8(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.iter().map(String::len).sum(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense tensor: a shape and as many elements as it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The dimensions.
    pub shape: Vec<u64>,
    /// The elements, row-major.
    pub data: TensorData,
}

impl Tensor {
    /// Check that the shape holds exactly the elements given; `name` is
    /// the tensor's name, for the message.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let expected = self.shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d));
        let found = self.data.len() as u64;
        match expected {
            Some(n) if n == found => Ok(()),
            Some(n) => Err(format!(
                "tensor `{name}` has shape {:?} ({n} elements) but {found} values",
                self.shape
            )),
            None => Err(format!(
                "tensor `{name}` has shape {:?}, which overflows",
                self.shape
            )),
        }
    }
}

/// A tensor and the name a model or a later stage knows it by.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// The name.
    pub name: String,
    /// The tensor.
    pub tensor: Tensor,
}

/// A single value carried next to the tensors (a label, an id).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Text(String),
}

/// A named scalar.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The name.
    pub name: String,
    /// The value.
    pub value: Scalar,
}

/// Raw bytes with their media type: a request body, or a raw response.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    /// The media type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What a stage receives and returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The raw body, if any.
    pub body: Option<Body>,
    /// Named tensors.
    pub tensors: Vec<NamedTensor>,
    /// Named scalars.
    pub fields: Vec<Field>,
}

impl Message {
    /// Bytes of content: the body, tensor elements (text at its length),
    /// names and fields.
    pub fn byte_size(&self) -> u64 {
        let body = self.body.as_ref().map_or(0, |b| b.bytes.len());
        let tensors: usize = (self.tensors.iter())
            .map(|t| t.name.len() + t.tensor.data.byte_size())
            .sum();
        let fields: usize = (self.fields.iter())
            .map(|f| {
                f.name.len()
                    + match &f.value {
                        Scalar::Text(t) => t.len(),
                        _ => 8,
                    }
            })
            .sum();
        (body + tensors + fields) as u64
    }
}

/// One input or output of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The name requests use.
    pub name: String,
    /// The datatype it travels as.
    pub datatype: Datatype,
    /// The shape; `-1` marks a dynamic dimension (e.g. the batch).
    pub shape: Vec<i64>,
}

/// What a model takes and produces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The inputs, in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// The outputs, in the model's order.
    pub outputs: Vec<TensorSpec>,
}

/// `[-1, 4]` as `[N, 4]`, for messages.
pub fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| if *d < 0 { "N".into() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Parse the dimensions of an input shape, `N,3,224,224`: positive numbers,
/// or `N` / `-1` for a dynamic dimension (`-1` in the result).
pub fn parse_shape(text: &str) -> Result<Vec<i64>, String> {
    text.split(',')
        .map(|d| match d.trim() {
            "N" | "-1" => Ok(-1),
            d => d
                .parse::<i64>()
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| format!("dimension {d:?} must be a positive number, N or -1")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_must_hold_their_elements() {
        let t = Tensor {
            shape: vec![2, 2],
            data: TensorData::F32(vec![1.0; 3]),
        };
        assert!(
            t.check("x")
                .unwrap_err()
                .contains("tensor `x` has shape [2, 2]")
        );
        let huge = Tensor {
            shape: vec![u64::MAX, 2],
            data: TensorData::U8(vec![]),
        };
        assert!(huge.check("h").unwrap_err().contains("overflows"));
    }

    #[test]
    fn input_shapes_parse_dynamic_dimensions() {
        assert_eq!(parse_shape("N, 3,48,-1").unwrap(), vec![-1, 3, 48, -1]);
        assert_eq!(shape_text(&[-1, 4]), "[N, 4]");
        for bad in ["0", "x", "", "3,,4", "-2"] {
            assert!(parse_shape(bad).is_err(), "{bad:?}");
        }
    }
}
