//! Messages over HTTP: request bodies into stage input, stage output into
//! responses. Tensors travel as `{name, datatype, shape, data}` with the
//! Open Inference Protocol datatype names.

use crate::engine::wit::{
    Body, ElementType, Field, Message, NamedTensor, Scalar, Tensor, TensorData,
};
use crate::http::error::ApiError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The media type of a whole message as JSON: what `POST /fn/...` answers
/// with, and what it accepts to pass tensors and fields directly.
pub const MESSAGE_JSON: &str = "application/vnd.sluice.message+json";

/// The OIP datatype name of an element type.
pub fn datatype(t: ElementType) -> &'static str {
    match t {
        ElementType::F32 => "FP32",
        ElementType::F64 => "FP64",
        ElementType::I32 => "INT32",
        ElementType::I64 => "INT64",
        ElementType::U8 => "UINT8",
        ElementType::Bool => "BOOL",
        ElementType::String => "BYTES",
    }
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

/// The element type of tensor data.
pub(crate) fn element_type(data: &TensorData) -> ElementType {
    match data {
        TensorData::F32(_) => ElementType::F32,
        TensorData::F64(_) => ElementType::F64,
        TensorData::I32(_) => ElementType::I32,
        TensorData::I64(_) => ElementType::I64,
        TensorData::U8(_) => ElementType::U8,
        TensorData::Bool(_) => ElementType::Bool,
        TensorData::String(_) => ElementType::String,
    }
}

/// Check that a tensor's shape matches its data.
pub fn check_shape(name: &str, tensor: &Tensor) -> Result<(), String> {
    let expected = tensor.shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d));
    let found = data_len(&tensor.data) as u64;
    match expected {
        Some(n) if n == found => Ok(()),
        Some(n) => Err(format!(
            "tensor `{name}` has shape {:?} ({n} elements) but {found} values",
            tensor.shape
        )),
        None => Err(format!(
            "tensor `{name}` has shape {:?}, which overflows",
            tensor.shape
        )),
    }
}

/// The stage's input for an HTTP request: the body as-is, or, for
/// [`MESSAGE_JSON`], the tensors and fields it describes.
pub fn decode_request(content_type: Option<&str>, bytes: Vec<u8>) -> Result<Message, ApiError> {
    let content_type = content_type
        .unwrap_or("application/octet-stream")
        .to_string();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != MESSAGE_JSON {
        return Ok(Message {
            body: Some(Body {
                content_type,
                bytes,
            }),
            tensors: Vec::new(),
            fields: Vec::new(),
        });
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("body is not valid JSON ({MESSAGE_JSON}): {e}"))
    })?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::bad_request(format!(
            "a {MESSAGE_JSON} body must be an object with `tensors` and/or `fields`"
        )));
    };
    let tensors = match object.remove("tensors") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, t)| decode_tensor("tensors", i, t))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`tensors` must be an array of {name, datatype, shape, data}",
            ));
        }
    };
    let fields = match object.remove("fields") {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(name, v)| decode_scalar(&name, v).map(|value| Field { name, value }))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`fields` must be an object of name → value",
            ));
        }
    };
    if let Some(unknown) = object.keys().next() {
        return Err(ApiError::bad_request(format!(
            "unknown key `{unknown}` in a {MESSAGE_JSON} body; expected `tensors` and `fields`"
        )));
    }
    Ok(Message {
        body: None,
        tensors,
        fields,
    })
}

fn decode_scalar(name: &str, value: Value) -> Result<Scalar, ApiError> {
    match value {
        Value::Bool(b) => Ok(Scalar::Bool(b)),
        Value::String(s) => Ok(Scalar::Text(s)),
        Value::Number(n) => Ok(n
            .as_i64()
            .map(Scalar::Int)
            .unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap_or(f64::NAN)))),
        _ => Err(ApiError::bad_request(format!(
            "field `{name}` must be a boolean, number or string"
        ))),
    }
}

/// One `{name, datatype, shape, data}` tensor, item `index` of the list
/// called `list` (for messages).
pub(crate) fn decode_tensor(
    list: &str,
    index: usize,
    value: Value,
) -> Result<NamedTensor, ApiError> {
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
    let datatype = match t.remove("datatype") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(bad(
                "needs a string `datatype` (FP32, FP64, INT32, INT64, UINT8, BOOL or BYTES)".into(),
            ));
        }
    };
    let shape: Vec<u64> = match t.remove("shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| {
                d.as_u64().ok_or_else(|| {
                    bad(format!(
                        "shape entries must be non-negative integers, got {d}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("needs a `shape` array".into())),
    };
    let items = match t.remove("data") {
        Some(Value::Array(items)) => flatten(items),
        _ => return Err(bad("needs a `data` array".into())),
    };
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
    let data = match datatype.as_str() {
        "FP32" => TensorData::F32(
            collect(&items, "an f32", |v| {
                v.as_f64().map(|x| x as f32).filter(|x| x.is_finite())
            })
            .map_err(bad)?,
        ),
        "FP64" => TensorData::F64(collect(&items, "a number", Value::as_f64).map_err(bad)?),
        "INT32" => TensorData::I32(
            collect(&items, "an i32", |v| {
                v.as_i64().and_then(|x| i32::try_from(x).ok())
            })
            .map_err(bad)?,
        ),
        "INT64" => TensorData::I64(collect(&items, "an i64", Value::as_i64).map_err(bad)?),
        // Narrower types travel widened; the model casts them back.
        "INT8" => TensorData::I32(
            collect(&items, "an i8", |v| {
                v.as_i64().and_then(|x| i8::try_from(x).ok()).map(i32::from)
            })
            .map_err(bad)?,
        ),
        "INT16" => TensorData::I32(
            collect(&items, "an i16", |v| {
                v.as_i64()
                    .and_then(|x| i16::try_from(x).ok())
                    .map(i32::from)
            })
            .map_err(bad)?,
        ),
        "UINT16" | "UINT32" | "UINT64" => TensorData::I64(
            collect(&items, "an unsigned integer", |v| {
                v.as_u64().and_then(|x| i64::try_from(x).ok())
            })
            .map_err(bad)?,
        ),
        "FP16" => TensorData::F32(
            collect(&items, "a number", |v| {
                v.as_f64().map(|x| x as f32).filter(|x| x.is_finite())
            })
            .map_err(bad)?,
        ),
        "UINT8" => TensorData::U8(
            collect(&items, "a u8", |v| {
                v.as_u64().and_then(|x| u8::try_from(x).ok())
            })
            .map_err(bad)?,
        ),
        "BOOL" => TensorData::Bool(collect(&items, "a boolean", Value::as_bool).map_err(bad)?),
        "BYTES" => TensorData::String(
            collect(&items, "a string", |v| v.as_str().map(String::from)).map_err(bad)?,
        ),
        other => {
            return Err(bad(format!(
                "unsupported datatype `{other}`; use FP16, FP32, FP64, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, BOOL or BYTES"
            )));
        }
    };
    let tensor = Tensor { shape, data };
    check_shape(&name, &tensor).map_err(ApiError::bad_request)?;
    Ok(NamedTensor { name, tensor })
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

/// A tensor as `{name, datatype, shape, data}`.
pub(crate) fn encode_tensor(t: &NamedTensor) -> Value {
    let data = match &t.tensor.data {
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::U8(v) => json!(v),
        TensorData::Bool(v) => json!(v),
        TensorData::String(v) => json!(v),
    };
    json!({
        "name": t.name,
        "datatype": datatype(element_type(&t.tensor.data)),
        "shape": t.tensor.shape,
        "data": data,
    })
}

fn encode_scalar(s: &Scalar) -> Value {
    match s {
        Scalar::Bool(b) => json!(b),
        Scalar::Int(i) => json!(i),
        Scalar::Float(f) => json!(f),
        Scalar::Text(t) => json!(t),
    }
}

/// The HTTP response for a stage's output: a body alone is sent raw with
/// its content type; anything else is [`MESSAGE_JSON`]. Inconsistent
/// tensors from the stage are a stage bug: 500.
pub fn encode_response(output: Message) -> Result<Response, ApiError> {
    for t in &output.tensors {
        check_shape(&t.name, &t.tensor).map_err(|m| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the stage returned a bad tensor: {m}"),
            )
        })?;
    }
    if output.tensors.is_empty() && output.fields.is_empty() {
        let Some(body) = output.body else {
            return Ok(StatusCode::NO_CONTENT.into_response());
        };
        let content_type = HeaderValue::from_str(&body.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
        return Ok(([(header::CONTENT_TYPE, content_type)], body.bytes).into_response());
    }
    let mut object = Map::new();
    object.insert(
        "tensors".into(),
        Value::Array(output.tensors.iter().map(encode_tensor).collect()),
    );
    object.insert(
        "fields".into(),
        Value::Object(
            output
                .fields
                .iter()
                .map(|f| (f.name.clone(), encode_scalar(&f.value)))
                .collect(),
        ),
    );
    if let Some(body) = output.body {
        let encoded = match String::from_utf8(body.bytes) {
            Ok(text) => json!({"content_type": body.content_type, "text": text}),
            Err(e) => {
                json!({"content_type": body.content_type, "base64": base64::engine::general_purpose::STANDARD.encode(e.into_bytes())})
            }
        };
        object.insert("body".into(), encoded);
    }
    let bytes = serde_json::to_vec(&Value::Object(object))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(MESSAGE_JSON))],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_json_round_trips_tensors_and_fields() {
        let body = br#"{"tensors":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4]]}],"fields":{"id":7,"tag":"a"}}"#;
        let m = decode_request(Some(MESSAGE_JSON), body.to_vec()).unwrap();
        assert!(
            matches!(&m.tensors[0].tensor.data, TensorData::F32(v) if v == &[1.0, 2.0, 3.0, 4.0])
        );
        assert_eq!(m.fields.len(), 2);
    }

    #[test]
    fn bad_tensors_are_refused_with_their_name() {
        let cases: [(&str, &str); 5] = [
            (
                r#"{"tensors":[{"name":"x","datatype":"FP32","shape":[3],"data":[1,2]}]}"#,
                "tensor `x` has shape [3]",
            ),
            (
                r#"{"tensors":[{"name":"y","datatype":"COMPLEX64","shape":[1],"data":[1]}]}"#,
                "tensor `y`: unsupported datatype `COMPLEX64`",
            ),
            (
                r#"{"tensors":[{"name":"y","datatype":"INT8","shape":[1],"data":[300]}]}"#,
                "tensor `y`: data[0] = 300 is not an i8",
            ),
            (
                r#"{"tensors":[{"name":"z","datatype":"UINT8","shape":[1],"data":[300]}]}"#,
                "tensor `z`: data[0] = 300 is not a u8",
            ),
            (r#"{"tensor":[]}"#, "unknown key `tensor`"),
        ];
        for (body, expected) in cases {
            let err = decode_request(Some(MESSAGE_JSON), body.as_bytes().to_vec()).unwrap_err();
            assert!(format!("{err:?}").contains(expected), "{body}: {err:?}");
        }
    }

    #[test]
    fn other_media_types_pass_through_as_the_body() {
        let m = decode_request(Some("application/json"), b"{}".to_vec()).unwrap();
        assert_eq!(m.body.unwrap().content_type, "application/json");
    }
}
