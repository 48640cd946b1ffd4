use crate::StageError;
use crate::bindings::sluice::pipeline::types as wit;
use std::fmt;

/// Element type of a tensor (the Open Inference Protocol name in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 32-bit float (FP32).
    F32,
    /// 64-bit float (FP64).
    F64,
    /// 32-bit signed integer (INT32).
    I32,
    /// 64-bit signed integer (INT64).
    I64,
    /// Byte (UINT8).
    U8,
    /// Boolean (BOOL).
    Bool,
    /// UTF-8 string (BYTES).
    String,
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::U8 => "u8",
            Self::Bool => "bool",
            Self::String => "string",
        })
    }
}

impl From<wit::ElementType> for ElementType {
    fn from(t: wit::ElementType) -> Self {
        match t {
            wit::ElementType::F32 => Self::F32,
            wit::ElementType::F64 => Self::F64,
            wit::ElementType::I32 => Self::I32,
            wit::ElementType::I64 => Self::I64,
            wit::ElementType::U8 => Self::U8,
            wit::ElementType::Bool => Self::Bool,
            wit::ElementType::String => Self::String,
        }
    }
}

/// The elements of a tensor, row-major.
pub type TensorData = wit::TensorData;

/// A Rust type that can be a tensor element: `f32`, `f64`, `i32`, `i64`,
/// `u8`, `bool` or `String`.
pub trait Element: Sized + sealed::Sealed {
    /// The tensor element type this Rust type stands for.
    const TYPE: ElementType;
    #[doc(hidden)]
    fn wrap(values: Vec<Self>) -> TensorData;
    #[doc(hidden)]
    fn unwrap(data: TensorData) -> Result<Vec<Self>, TensorData>;
    #[doc(hidden)]
    fn view(data: &TensorData) -> Option<&[Self]>;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! element {
    ($rust:ty, $variant:ident) => {
        impl sealed::Sealed for $rust {}
        impl Element for $rust {
            const TYPE: ElementType = ElementType::$variant;
            fn wrap(values: Vec<Self>) -> TensorData {
                TensorData::$variant(values)
            }
            fn unwrap(data: TensorData) -> Result<Vec<Self>, TensorData> {
                match data {
                    TensorData::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
            fn view(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

element!(f32, F32);
element!(f64, F64);
element!(i32, I32);
element!(i64, I64);
element!(u8, U8);
element!(bool, Bool);
element!(String, String);

/// A dense, row-major tensor whose shape always matches its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<u64>,
    data: TensorData,
}

impl Tensor {
    /// A tensor of `shape` holding `values`; fails when the number of values
    /// is not the product of the shape.
    pub fn new<T: Element>(shape: impl Into<Vec<u64>>, values: Vec<T>) -> Result<Self, StageError> {
        Self::from_parts(shape.into(), T::wrap(values))
    }

    /// A one-dimensional tensor.
    pub fn vector<T: Element>(values: Vec<T>) -> Self {
        Self {
            shape: vec![values.len() as u64],
            data: T::wrap(values),
        }
    }

    /// A tensor from a shape and already-typed data, checking they agree.
    pub fn from_parts(shape: Vec<u64>, data: TensorData) -> Result<Self, StageError> {
        let expected = shape
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(*d))
            .ok_or_else(|| {
                StageError::invalid_input(format!("tensor shape {shape:?} overflows"))
            })?;
        let found = data_len(&data) as u64;
        if expected != found {
            return Err(StageError::invalid_input(format!(
                "tensor shape {shape:?} needs {expected} elements, found {found}"
            )));
        }
        Ok(Self { shape, data })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        data_len(&self.data)
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn element_type(&self) -> ElementType {
        match &self.data {
            TensorData::F32(_) => ElementType::F32,
            TensorData::F64(_) => ElementType::F64,
            TensorData::I32(_) => ElementType::I32,
            TensorData::I64(_) => ElementType::I64,
            TensorData::U8(_) => ElementType::U8,
            TensorData::Bool(_) => ElementType::Bool,
            TensorData::String(_) => ElementType::String,
        }
    }

    /// The raw typed data.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The elements as a slice of `T`; an invalid-input error names both
    /// types when the tensor holds another element type.
    pub fn as_slice<T: Element>(&self) -> Result<&[T], StageError> {
        T::view(&self.data).ok_or_else(|| self.type_mismatch(T::TYPE))
    }

    /// The elements as a `Vec<T>`, without copying.
    pub fn into_vec<T: Element>(self) -> Result<Vec<T>, StageError> {
        let found = self.element_type();
        T::unwrap(self.data).map_err(|_| type_mismatch(T::TYPE, found))
    }

    /// Check the shape against a pattern where `None` matches any size, e.g.
    /// `[None, Some(4)]` for "a batch of rows of 4".
    pub fn expect_shape(&self, pattern: &[Option<u64>]) -> Result<(), StageError> {
        let fits = self.shape.len() == pattern.len()
            && self
                .shape
                .iter()
                .zip(pattern)
                .all(|(d, p)| p.is_none_or(|p| p == *d));
        if fits {
            return Ok(());
        }
        let want: Vec<String> = pattern
            .iter()
            .map(|p| p.map_or("*".to_string(), |d| d.to_string()))
            .collect();
        Err(StageError::invalid_input(format!(
            "expected a tensor of shape [{}], got {:?}",
            want.join(", "),
            self.shape
        )))
    }

    fn type_mismatch(&self, wanted: ElementType) -> StageError {
        type_mismatch(wanted, self.element_type())
    }
}

fn type_mismatch(wanted: ElementType, found: ElementType) -> StageError {
    StageError::invalid_input(format!("expected a tensor of {wanted}, got {found}"))
}

fn data_len(data: &TensorData) -> usize {
    match data {
        TensorData::F32(v) => v.len(),
        TensorData::F64(v) => v.len(),
        TensorData::I32(v) => v.len(),
        TensorData::I64(v) => v.len(),
        TensorData::U8(v) => v.len(),
        TensorData::Bool(v) => v.len(),
        TensorData::String(v) => v.len(),
    }
}

impl From<Tensor> for wit::Tensor {
    fn from(t: Tensor) -> Self {
        Self {
            shape: t.shape,
            data: t.data,
        }
    }
}

/// The host checks every tensor's shape against its data before a stage
/// sees it, so this conversion needs no check of its own.
impl From<wit::Tensor> for Tensor {
    fn from(t: wit::Tensor) -> Self {
        Self {
            shape: t.shape,
            data: t.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_must_match_data() {
        assert!(Tensor::new([2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).is_ok());
        let err = Tensor::new([2, 3], vec![1.0f32; 4]).unwrap_err();
        assert_eq!(
            err.message(),
            "tensor shape [2, 3] needs 6 elements, found 4"
        );
    }

    #[test]
    fn typed_access_names_both_types() {
        let t = Tensor::vector(vec![1i64, 2]);
        assert_eq!(t.as_slice::<i64>().unwrap(), &[1, 2]);
        let err = t.as_slice::<f32>().unwrap_err();
        assert_eq!(
            err,
            StageError::invalid_input("expected a tensor of f32, got i64")
        );
    }

    #[test]
    fn shape_patterns() {
        let t = Tensor::new([3, 4], vec![0u8; 12]).unwrap();
        assert!(t.expect_shape(&[None, Some(4)]).is_ok());
        let err = t.expect_shape(&[None, Some(5)]).unwrap_err();
        assert_eq!(
            err.message(),
            "expected a tensor of shape [*, 5], got [3, 4]"
        );
    }
}
