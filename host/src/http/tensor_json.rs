//! Tensors as JSON, `{name, datatype, shape, data}`, as the Open Inference
//! Protocol writes them: the edge shared by message JSON (`/fn`) and OIP
//! JSON (`/v2`). Datatype names and what they travel as come from the one
//! table, [`Datatype`].
//!
//! Floats are written as the shortest text that reads back to the same
//! value of their own type: an FP32 `5.1` answers `5.1`, not the f64
//! widening `5.099999904632568`.

use super::ApiError;
use crate::tensor::{Datatype, NamedTensor, Tensor, TensorData};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;

// Decoding: a tensor object's members are kept as slices of the body
// (`RawValue`) until the whole object is read, because JSON objects are
// unordered (`serde_json::json!` writes `data` before `datatype`). Then
// `data` is decoded once, straight into a vector of its datatype: no
// generic JSON tree, which costs 20–30× the text it was read from.

/// A whole JSON request body read by `seed`, which is told the body's
/// length (see [`TensorList`]).
pub fn read<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    seed: impl FnOnce(usize) -> S,
    media: &str,
) -> Result<S::Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    seed(body.len())
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
        .map_err(|e| refused(e, media))
}

/// A request body that is not the JSON it should be, as a 400: what the
/// decoder found wrong (it names the member and the position), or why the
/// text is no JSON at all.
fn refused(e: serde_json::Error, media: &str) -> ApiError {
    if e.is_data() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::bad_request(format!("the body is not valid JSON ({media}): {e}"))
    }
}

/// A request's tensor object, decoded: `{name, datatype, shape, data}`, or
/// OIP's `{name, datatype, shape, parameters: {binary_data_size}}` whose
/// elements follow the JSON.
pub struct TensorIn {
    /// The name.
    pub name: String,
    /// Its datatype.
    pub datatype: Datatype,
    /// The dimensions.
    pub shape: Vec<u64>,
    /// Where its elements are.
    pub data: DataIn,
}

/// Where a request tensor's elements are.
pub enum DataIn {
    /// In `data`, decoded and checked against the datatype (not yet
    /// against the shape).
    Inline(TensorData),
    /// This many bytes in the binary part after the JSON.
    Binary(u64),
}

impl TensorIn {
    /// The tensor with its elements inline, checked against its shape.
    pub fn inline(self) -> Result<NamedTensor, ApiError> {
        let DataIn::Inline(data) = self.data else {
            return Err(ApiError::bad_request(format!(
                "tensor `{}`: binary data is for OIP requests; send a `data` array",
                self.name
            )));
        };
        let tensor = Tensor {
            shape: self.shape,
            data,
        };
        tensor.check(&self.name).map_err(ApiError::bad_request)?;
        Ok(NamedTensor {
            name: self.name,
            tensor,
        })
    }
}

/// A JSON array of tensor objects: the list called `list` (`inputs`,
/// `tensors`), named in errors, in a JSON text of `text_len` bytes.
pub struct TensorList {
    /// The list's name.
    pub list: &'static str,
    /// The length of the JSON text: no tensor reserves room for more
    /// elements than it could hold.
    pub text_len: usize,
}

impl<'de> DeserializeSeed<'de> for TensorList {
    type Value = Vec<TensorIn>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TensorList {
    type Value = Vec<TensorIn>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "`{}` as an array of {{name, datatype, shape, data}}",
            self.list
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tensors = Vec::new();
        while let Some(t) = seq.next_element_seed(TensorObject {
            list: self.list,
            index: tensors.len(),
            text_len: self.text_len,
        })? {
            tensors.push(t);
        }
        Ok(tensors)
    }
}

/// Item `index` of the list `list`.
struct TensorObject {
    list: &'static str,
    index: usize,
    text_len: usize,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Member {
    Name,
    Datatype,
    Shape,
    Data,
    Parameters,
    #[serde(other)]
    Other,
}

/// A tensor's OIP `parameters`: only `binary_data_size` is read.
#[derive(Deserialize)]
struct TensorParameters {
    binary_data_size: Option<u64>,
}

impl<'de> DeserializeSeed<'de> for TensorObject {
    type Value = TensorIn;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorObject {
    type Value = TensorIn;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}[{}] as an object {{name, datatype, shape, data}}",
            self.list, self.index
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut name, mut datatype, mut shape, mut raw_data, mut parameters) =
            (None, None, None, None, None);
        // `data` read as it came, when `datatype` came first.
        let mut decoded: Option<Sink> = None;
        let twice =
            || de::Error::custom(format!("{}[{}] has a member twice", self.list, self.index));
        while let Some(member) = map.next_key::<Member>()? {
            let slot: &mut Option<&'de RawValue> = match member {
                Member::Name => &mut name,
                Member::Datatype => &mut datatype,
                Member::Shape => &mut shape,
                Member::Parameters => &mut parameters,
                Member::Data if raw_data.is_some() || decoded.is_some() => return Err(twice()),
                Member::Data => match datatype.map(|raw| decode_datatype(Some(raw))) {
                    Some(Ok(known)) => {
                        let declared = shape.and_then(|raw| decode_shape(Some(raw)).ok());
                        let mut sink = Sink::new(known, declared.as_deref(), self.text_len);
                        map.next_value_seed(&mut sink)?;
                        decoded = Some(sink);
                        continue;
                    }
                    _ => &mut raw_data,
                },
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.replace(map.next_value()?).is_some() {
                return Err(twice());
            }
        }
        let name: String = name
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "{}[{}] needs a string `name`",
                    self.list, self.index
                ))
            })?;
        let tensor = || -> Result<TensorIn, String> {
            let datatype = decode_datatype(datatype)?;
            let shape = decode_shape(shape)?;
            let binary = match parameters {
                None => None,
                Some(raw) => {
                    serde_json::from_str::<TensorParameters>(raw.get())
                        .map_err(|e| format!("bad `parameters`: {e}"))?
                        .binary_data_size
                }
            };
            let data = match (binary, decoded, raw_data) {
                (Some(size), _, _) => DataIn::Binary(size),
                (None, Some(sink), _) => DataIn::Inline(sink.finish()?),
                (None, None, Some(raw)) => {
                    let mut sink = Sink::new(datatype, Some(&shape), raw.get().len());
                    // The text was read as JSON once already: only nesting
                    // too deep for the parser's recursion limit fails here.
                    (&mut sink)
                        .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
                        .map_err(|e| format!("bad `data`: {e}"))?;
                    DataIn::Inline(sink.finish()?)
                }
                (None, None, None) => return Err("needs a `data` array".into()),
            };
            Ok(TensorIn {
                name: name.clone(),
                datatype,
                shape,
                data,
            })
        };
        tensor().map_err(|m| de::Error::custom(format!("tensor `{name}`: {m}")))
    }
}

fn decode_datatype(raw: Option<&RawValue>) -> Result<Datatype, String> {
    match raw.map(|raw| serde_json::from_str::<&str>(raw.get())) {
        Some(Ok(s)) => Datatype::parse(s)
            .ok_or_else(|| format!("unsupported datatype `{s}`; use {}", Datatype::names())),
        _ => Err(format!("needs a string `datatype` ({})", Datatype::names())),
    }
}

fn decode_shape(raw: Option<&RawValue>) -> Result<Vec<u64>, String> {
    let raw = raw.ok_or("needs a `shape` array")?;
    serde_json::from_str(raw.get()).map_err(|_| {
        format!(
            "`shape` must be an array of non-negative integers, got {}",
            truncated(raw.get())
        )
    })
}

/// At most 64 bytes of `text`, for a message.
fn truncated(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Collects `data` into a vector of its datatype, nested arrays read
/// row-major and each element checked to fit; the first that does not is
/// remembered and the rest read past.
struct Sink {
    datatype: Datatype,
    data: TensorData,
    /// Inside the outer array (a bare value is no `data` array).
    nested: bool,
    /// Elements read so far: the index of the next.
    count: usize,
    bad: Option<String>,
}

/// One element of `data`, as JSON gave it.
enum Leaf<'a> {
    Int(i128),
    Float(f64),
    Bool(bool),
    Text(&'a str),
    Null,
    Object,
}

impl Sink {
    /// Room for the elements `shape` declares, but never more than `text_len`
    /// bytes of JSON could hold (every element takes at least a byte and a
    /// comma): a client's shape must not make the node allocate.
    fn new(datatype: Datatype, shape: Option<&[u64]>, text_len: usize) -> Self {
        let declared = shape.and_then(|s| s.iter().try_fold(1u64, |n, d| n.checked_mul(*d)));
        let capacity = declared.map_or(0, |n| n.min(text_len as u64 / 2 + 1) as usize);
        Self {
            datatype,
            data: TensorData::with_capacity(datatype.carried_as(), capacity),
            nested: false,
            count: 0,
            bad: None,
        }
    }

    fn leaf(&mut self, leaf: Leaf) {
        if !self.nested {
            self.bad = Some("needs a `data` array".into());
            return;
        }
        let fits =
            |n: i128| (self.datatype.range()).is_none_or(|(min, max)| (min..=max).contains(&n));
        let accepted = match (&mut self.data, &leaf) {
            (TensorData::F32(v), Leaf::Int(n)) => {
                v.push(*n as f32);
                true
            }
            (TensorData::F32(v), Leaf::Float(x)) if (*x as f32).is_finite() => {
                v.push(*x as f32);
                true
            }
            (TensorData::F64(v), Leaf::Int(n)) => {
                v.push(*n as f64);
                true
            }
            (TensorData::F64(v), Leaf::Float(x)) => {
                v.push(*x);
                true
            }
            (TensorData::I32(v), Leaf::Int(n)) if fits(*n) => {
                v.push(*n as i32);
                true
            }
            (TensorData::I64(v), Leaf::Int(n)) if fits(*n) => {
                v.push(*n as i64);
                true
            }
            (TensorData::U8(v), Leaf::Int(n)) if fits(*n) => {
                v.push(*n as u8);
                true
            }
            (TensorData::Bool(v), Leaf::Bool(b)) => {
                v.push(*b);
                true
            }
            (TensorData::String(v), Leaf::Text(s)) => {
                v.push(s.to_string());
                true
            }
            _ => false,
        };
        if !accepted && self.bad.is_none() {
            let shown = match leaf {
                Leaf::Int(n) => n.to_string(),
                Leaf::Float(x) => Value::from(x).to_string(),
                Leaf::Bool(b) => b.to_string(),
                Leaf::Text(s) => Value::from(truncated(s)).to_string(),
                Leaf::Null => "null".into(),
                Leaf::Object => "{…}".into(),
            };
            self.bad = Some(format!(
                "data[{}] = {shown} is not {}",
                self.count,
                self.datatype.element()
            ));
        }
        self.count += 1;
    }

    fn finish(self) -> Result<TensorData, String> {
        match self.bad {
            Some(bad) => Err(bad),
            None => Ok(self.data),
        }
    }
}

impl<'de> DeserializeSeed<'de> for &mut Sink {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Sink {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a `data` array of {}", self.datatype.element())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.nested = true;
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.leaf(Leaf::Int(n.into()));
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.leaf(Leaf::Int(n.into()));
        Ok(())
    }

    fn visit_f64<E>(self, x: f64) -> Result<(), E> {
        self.leaf(Leaf::Float(x));
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.leaf(Leaf::Bool(b));
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.leaf(Leaf::Text(s));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.leaf(Leaf::Null);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.leaf(Leaf::Object);
        Ok(())
    }
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
