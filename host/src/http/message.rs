//! Messages over HTTP (`/fn`): request bodies into stage input, stage
//! output into responses. Tensors travel as OIP JSON tensors
//! (`tensor_json.rs`).

use super::tensor_json::{self, TensorJson};
use crate::http::error::ApiError;
use crate::tensor::{Body, Field, Message, Scalar};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The media type of a whole message as JSON: what `POST /fn/...` answers
/// with, and what it accepts to pass tensors and fields directly.
pub const MESSAGE_JSON: &str = "application/vnd.sluice.message+json";

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
            .map(|(i, t)| tensor_json::decode("tensors", i, t))
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

/// The HTTP response for a stage's output: a body alone is sent raw with
/// its content type; anything else is [`MESSAGE_JSON`]. Inconsistent
/// tensors from the stage are a stage bug: 500.
pub fn encode_response(output: Message) -> Result<Response, ApiError> {
    for t in &output.tensors {
        t.tensor.check(&t.name).map_err(|m| {
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
    let bytes = serde_json::to_vec(&MessageJson::of(&output))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(MESSAGE_JSON))],
        bytes,
    )
        .into_response())
}

/// A message as [`MESSAGE_JSON`].
#[derive(Serialize)]
struct MessageJson<'a> {
    tensors: Vec<TensorJson<'a>>,
    fields: BTreeMap<&'a str, ScalarJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
}

impl<'a> MessageJson<'a> {
    fn of(m: &'a Message) -> Self {
        Self {
            tensors: m.tensors.iter().map(TensorJson::of).collect(),
            fields: m
                .fields
                .iter()
                .map(|f| (f.name.as_str(), ScalarJson(&f.value)))
                .collect(),
            body: m
                .body
                .as_ref()
                .map(|body| match std::str::from_utf8(&body.bytes) {
                    Ok(text) => {
                        serde_json::json!({"content_type": body.content_type, "text": text})
                    }
                    Err(_) => serde_json::json!({
                        "content_type": body.content_type,
                        "base64": base64::engine::general_purpose::STANDARD.encode(&body.bytes),
                    }),
                }),
        }
    }
}

struct ScalarJson<'a>(&'a Scalar);

impl Serialize for ScalarJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Scalar::Bool(b) => b.serialize(serializer),
            Scalar::Int(i) => i.serialize(serializer),
            Scalar::Float(f) => f.serialize(serializer),
            Scalar::Text(t) => t.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    #[tokio::test]
    async fn floats_are_answered_as_the_shortest_text_of_their_own_type() {
        let body = br#"{"tensors":[{"name":"x","datatype":"FP32","shape":[3],"data":[5.1,0.1,1e-7]},{"name":"y","datatype":"FP64","shape":[1],"data":[5.1]}],"fields":{"p":0.1}}"#;
        let m = decode_request(Some(MESSAGE_JSON), body.to_vec()).unwrap();
        let response = encode_response(m).unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        for expected in [
            r#"{"name":"x","datatype":"FP32","shape":[3],"data":[5.1,0.1,1e-7]}"#,
            r#"{"name":"y","datatype":"FP64","shape":[1],"data":[5.1]}"#,
            r#""fields":{"p":0.1}"#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }

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
