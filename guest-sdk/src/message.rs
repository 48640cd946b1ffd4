use crate::bindings::sluice::pipeline::types as wit;
use crate::{StageError, Tensor};

/// Raw bytes with their media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The media type, e.g. `application/json`.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A single value carried next to the tensors.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Text(String),
}

/// What a stage receives and returns: an optional body, named tensors and
/// named scalar fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// Raw bytes: the HTTP request body for a first stage, or a response.
    pub body: Option<Body>,
    /// Named tensors, in order.
    pub tensors: Vec<(String, Tensor)>,
    /// Named scalars, in order.
    pub fields: Vec<(String, Scalar)>,
}

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// A message holding only a body.
    pub fn from_body(content_type: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            body: Some(Body {
                content_type: content_type.into(),
                bytes: bytes.into(),
            }),
            ..Self::default()
        }
    }

    /// Add a named tensor.
    pub fn with_tensor(mut self, name: impl Into<String>, tensor: Tensor) -> Self {
        self.tensors.push((name.into(), tensor));
        self
    }

    /// Add a named scalar.
    pub fn with_field(mut self, name: impl Into<String>, value: Scalar) -> Self {
        self.fields.push((name.into(), value));
        self
    }

    /// The body's bytes; an invalid-input error when there is none.
    pub fn body_bytes(&self) -> Result<&[u8], StageError> {
        self.body
            .as_ref()
            .map(|b| b.bytes.as_slice())
            .ok_or_else(|| StageError::invalid_input("expected a request body, got none"))
    }

    /// The tensor called `name`; an invalid-input error listing the tensors
    /// present when it is missing.
    pub fn tensor(&self, name: &str) -> Result<&Tensor, StageError> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| self.missing_tensor(name))
    }

    /// Remove and return the tensor called `name`.
    pub fn take_tensor(&mut self, name: &str) -> Result<Tensor, StageError> {
        match self.tensors.iter().position(|(n, _)| n == name) {
            Some(i) => Ok(self.tensors.remove(i).1),
            None => Err(self.missing_tensor(name)),
        }
    }

    /// Remove and return the message's only tensor; an invalid-input error
    /// when there is not exactly one.
    pub fn take_only_tensor(&mut self) -> Result<Tensor, StageError> {
        if self.tensors.len() == 1 {
            return Ok(self.tensors.remove(0).1);
        }
        let present: Vec<&str> = self.tensors.iter().map(|(n, _)| n.as_str()).collect();
        Err(StageError::invalid_input(format!(
            "expected exactly one tensor, found {} [{}]",
            present.len(),
            present.join(", ")
        )))
    }

    /// The scalar field called `name`, if present.
    pub fn field(&self, name: &str) -> Option<&Scalar> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn missing_tensor(&self, name: &str) -> StageError {
        let present: Vec<&str> = self.tensors.iter().map(|(n, _)| n.as_str()).collect();
        StageError::invalid_input(format!(
            "expected a tensor named `{name}`, found [{}]",
            present.join(", ")
        ))
    }
}

impl From<wit::Scalar> for Scalar {
    fn from(s: wit::Scalar) -> Self {
        match s {
            wit::Scalar::Bool(v) => Self::Bool(v),
            wit::Scalar::Int(v) => Self::Int(v),
            wit::Scalar::Float(v) => Self::Float(v),
            wit::Scalar::Text(v) => Self::Text(v),
        }
    }
}

impl From<Scalar> for wit::Scalar {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Bool(v) => Self::Bool(v),
            Scalar::Int(v) => Self::Int(v),
            Scalar::Float(v) => Self::Float(v),
            Scalar::Text(v) => Self::Text(v),
        }
    }
}

impl From<wit::Message> for Message {
    fn from(m: wit::Message) -> Self {
        Self {
            body: m.body.map(|b| Body {
                content_type: b.content_type,
                bytes: b.bytes,
            }),
            tensors: m
                .tensors
                .into_iter()
                .map(|t| (t.name, t.tensor.into()))
                .collect(),
            fields: m
                .fields
                .into_iter()
                .map(|f| (f.name, f.value.into()))
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
            tensors: m
                .tensors
                .into_iter()
                .map(|(name, t)| wit::NamedTensor {
                    name,
                    tensor: t.into(),
                })
                .collect(),
            fields: m
                .fields
                .into_iter()
                .map(|(name, value)| wit::Field {
                    name,
                    value: value.into(),
                })
                .collect(),
        }
    }
}
