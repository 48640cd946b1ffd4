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

/// A request body that is not the JSON it should be, as a 400: what the
/// decoder found wrong (it names the member and the position), or why the
/// text is no JSON at all.
pub fn refused(e: serde_json::Error, media: &str) -> ApiError {
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

/// A JSON array of tensor objects: the list called `.0` (`inputs`,
/// `tensors`), named in errors.
pub struct TensorList(pub &'static str);

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
            self.0
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tensors = Vec::new();
        while let Some(t) = seq.next_element_seed(TensorObject {
            list: self.0,
            index: tensors.len(),
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
        let (mut name, mut datatype, mut shape, mut data, mut parameters) =
            (None, None, None, None, None);
        while let Some(member) = map.next_key::<Member>()? {
            let slot: &mut Option<&'de RawValue> = match member {
                Member::Name => &mut name,
                Member::Datatype => &mut datatype,
                Member::Shape => &mut shape,
                Member::Data => &mut data,
                Member::Parameters => &mut parameters,
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.replace(map.next_value()?).is_some() {
                return Err(de::Error::custom(format!(
                    "{}[{}] has a member twice",
                    self.list, self.index
                )));
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
            let data = match (binary, data) {
                (Some(size), _) => DataIn::Binary(size),
                (None, Some(raw)) => DataIn::Inline(decode_data(datatype, &shape, raw)?),
                (None, None) => return Err("needs a `data` array".into()),
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

/// `data` as elements of `datatype`, nested arrays read row-major.
fn decode_data(datatype: Datatype, shape: &[u64], raw: &RawValue) -> Result<TensorData, String> {
    let text = raw.get();
    if !text.starts_with('[') {
        return Err("needs a `data` array".into());
    }
    // The shape's element count, but never more than the text could hold
    // (every element takes at least a byte and a comma): a client's shape
    // must not make the node allocate.
    let declared = shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d));
    let capacity = declared.map_or(0, |n| n.min(text.len() as u64 / 2 + 1) as usize);
    let mut sink = Sink {
        datatype,
        data: TensorData::with_capacity(datatype.carried_as(), capacity),
        count: 0,
        bad: None,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    // The text was read as JSON once already: only nesting too deep for
    // the parser's recursion limit fails here.
    (&mut sink)
        .deserialize(&mut de)
        .map_err(|e| format!("bad `data`: {e}"))?;
    match sink.bad {
        Some(bad) => Err(bad),
        None => Ok(sink.data),
    }
}

/// Collects `data`'s elements into a typed vector, each checked to fit
/// the datatype; the first that does not is remembered and the rest read
/// past.
struct Sink {
    datatype: Datatype,
    data: TensorData,
    /// Elements read so far: the index of the next.
    count: usize,
    bad: Option<String>,
}

impl Sink {
    fn integer(&mut self, n: i128) {
        let fits = self
            .datatype
            .range()
            .is_none_or(|(min, max)| (min..=max).contains(&n));
        match &mut self.data {
            TensorData::F32(v) => v.push(n as f32),
            TensorData::F64(v) => v.push(n as f64),
            TensorData::I32(v) if fits => v.push(n as i32),
            TensorData::I64(v) if fits => v.push(n as i64),
            TensorData::U8(v) if fits => v.push(n as u8),
            _ => return self.refuse(&n),
        }
        self.count += 1;
    }

    fn float(&mut self, x: f64) {
        match &mut self.data {
            TensorData::F32(v) if (x as f32).is_finite() => v.push(x as f32),
            TensorData::F64(v) => v.push(x),
            _ => return self.refuse(&Value::from(x)),
        }
        self.count += 1;
    }

    fn boolean(&mut self, b: bool) {
        match &mut self.data {
            TensorData::Bool(v) => v.push(b),
            _ => return self.refuse(&b),
        }
        self.count += 1;
    }

    fn text(&mut self, s: &str) {
        match &mut self.data {
            TensorData::String(v) => v.push(s.to_string()),
            _ => return self.refuse(&Value::from(truncated(s))),
        }
        self.count += 1;
    }

    fn refuse(&mut self, shown: &dyn fmt::Display) {
        if self.bad.is_none() {
            self.bad = Some(format!(
                "data[{}] = {shown} is not {}",
                self.count,
                self.datatype.element()
            ));
        }
        self.count += 1;
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
        write!(f, "{}", self.datatype.element())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.integer(n.into());
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.integer(n.into());
        Ok(())
    }

    fn visit_f64<E>(self, x: f64) -> Result<(), E> {
        self.float(x);
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.boolean(b);
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.text(s);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.refuse(&"null");
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.refuse(&"{…}");
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
