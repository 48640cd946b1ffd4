//! The WIT edge: the contract's generated types to Sluice's own tensor and
//! message types and back. The two have the same shape, so a conversion
//! moves the buffers, never copies an element.

use super::host::wit;
use crate::tensor::{Body, ElementType, Field, Message, NamedTensor, Scalar, Tensor, TensorData};

impl From<wit::Message> for Message {
    fn from(m: wit::Message) -> Self {
        Self {
            body: m.body.map(|b| Body {
                content_type: b.content_type,
                bytes: b.bytes,
            }),
            tensors: m.tensors.into_iter().map(NamedTensor::from).collect(),
            fields: m
                .fields
                .into_iter()
                .map(|f| Field {
                    name: f.name,
                    value: f.value.into(),
                })
                .collect(),
        }
    }
}

impl From<Message> for wit::Message {
    fn from(m: Message) -> Self {
        Self {
            body: m.body.map(|b| wit::Body {
                content_type: b.content_type,
                bytes: b.bytes,
            }),
            tensors: m.tensors.into_iter().map(wit::NamedTensor::from).collect(),
            fields: m
                .fields
                .into_iter()
                .map(|f| wit::Field {
                    name: f.name,
                    value: f.value.into(),
                })
                .collect(),
        }
    }
}

impl From<wit::NamedTensor> for NamedTensor {
    fn from(t: wit::NamedTensor) -> Self {
        let data = match t.tensor.data {
            wit::TensorData::F32(v) => TensorData::F32(v),
            wit::TensorData::F64(v) => TensorData::F64(v),
            wit::TensorData::I32(v) => TensorData::I32(v),
            wit::TensorData::I64(v) => TensorData::I64(v),
            wit::TensorData::U8(v) => TensorData::U8(v),
            wit::TensorData::Bool(v) => TensorData::Bool(v),
            wit::TensorData::String(v) => TensorData::String(v),
        };
        Self {
            name: t.name,
            tensor: Tensor {
                shape: t.tensor.shape,
                data,
            },
        }
    }
}

impl From<NamedTensor> for wit::NamedTensor {
    fn from(t: NamedTensor) -> Self {
        let data = match t.tensor.data {
            TensorData::F32(v) => wit::TensorData::F32(v),
            TensorData::F64(v) => wit::TensorData::F64(v),
            TensorData::I32(v) => wit::TensorData::I32(v),
            TensorData::I64(v) => wit::TensorData::I64(v),
            TensorData::U8(v) => wit::TensorData::U8(v),
            TensorData::Bool(v) => wit::TensorData::Bool(v),
            TensorData::String(v) => wit::TensorData::String(v),
        };
        Self {
            name: t.name,
            tensor: wit::Tensor {
                shape: t.tensor.shape,
                data,
            },
        }
    }
}

impl From<wit::Scalar> for Scalar {
    fn from(s: wit::Scalar) -> Self {
        match s {
            wit::Scalar::Bool(b) => Self::Bool(b),
            wit::Scalar::Int(i) => Self::Int(i),
            wit::Scalar::Float(f) => Self::Float(f),
            wit::Scalar::Text(t) => Self::Text(t),
        }
    }
}

impl From<Scalar> for wit::Scalar {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Bool(b) => Self::Bool(b),
            Scalar::Int(i) => Self::Int(i),
            Scalar::Float(f) => Self::Float(f),
            Scalar::Text(t) => Self::Text(t),
        }
    }
}

impl From<ElementType> for wit::ElementType {
    fn from(e: ElementType) -> Self {
        match e {
            ElementType::F32 => Self::F32,
            ElementType::F64 => Self::F64,
            ElementType::I32 => Self::I32,
            ElementType::I64 => Self::I64,
            ElementType::U8 => Self::U8,
            ElementType::Bool => Self::Bool,
            ElementType::String => Self::String,
        }
    }
}
