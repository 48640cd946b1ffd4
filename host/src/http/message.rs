//! Messages over HTTP (`/fn`): request bodies into stage input, stage
//! output into responses. Tensors travel as OIP JSON tensors
//! (`tensor_json.rs`).

use super::tensor_json::{self, TensorIn, TensorJson, TensorList};
use crate::http::error::ApiError;
use crate::inference::explain::Explanation;
use crate::tensor::{Body, Field, Message, Scalar};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

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
    let message = tensor_json::read(&bytes, |text_len| MessageSeed { text_len }, MESSAGE_JSON)?;
    Ok(Message {
        body: None,
        tensors: message
            .tensors
            .into_iter()
            .map(TensorIn::inline)
            .collect::<Result<_, _>>()?,
        fields: message
            .fields
            .into_iter()
            .map(|(name, value)| Field { name, value })
            .collect(),
    })
}

/// A [`MESSAGE_JSON`] body as read: tensors not yet checked against their
/// shapes.
struct MessageIn {
    tensors: Vec<TensorIn>,
    fields: Vec<(String, Scalar)>,
}

/// Reads a [`MessageIn`] from a body of `text_len` bytes.
struct MessageSeed {
    text_len: usize,
}

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = MessageIn;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<MessageIn, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed {
    type Value = MessageIn;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {MESSAGE_JSON} object with `tensors` and/or `fields`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MessageIn, A::Error> {
        let mut message = MessageIn {
            tensors: Vec::new(),
            fields: Vec::new(),
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "tensors" => {
                    message.tensors = map.next_value_seed(TensorList {
                        list: "tensors",
                        text_len: self.text_len,
                    })?
                }
                "fields" => message.fields = map.next_value_seed(ScalarMap("field"))?,
                unknown => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{unknown}` in a {MESSAGE_JSON} body; expected `tensors` and `fields`"
                    )));
                }
            }
        }
        Ok(message)
    }
}

/// A JSON object of name → boolean, number or string: message `fields`,
/// OIP `parameters`. `.0` names an entry in errors (`field`).
pub struct ScalarMap(pub &'static str);

impl<'de> DeserializeSeed<'de> for ScalarMap {
    type Value = Vec<(String, Scalar)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ScalarMap {
    type Value = Vec<(String, Scalar)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an object of {} name → boolean, number or string",
            self.0
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(ScalarValue {
                what: self.0,
                name: &name,
            })?;
            entries.push((name, value));
        }
        Ok(entries)
    }
}

/// One boolean, number or string: the `what` called `name`.
struct ScalarValue<'a> {
    /// What it is (`field`), for errors.
    what: &'static str,
    /// Its name.
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for ScalarValue<'_> {
    type Value = Scalar;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarValue<'_> {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} `{}` as a boolean, number or string",
            self.what, self.name
        )
    }

    fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(n).map_or(Scalar::Float(n as f64), Scalar::Int))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(x))
    }

    fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(s.to_string()))
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

/// The answer to a request with `?explain=true`: `{"output": ...,
/// "explanations": [...]}`, the output as it would have been answered (a
/// message as its JSON, a JSON body as itself, any other body as text).
pub fn encode_explained(
    output: Message,
    explanations: &[Explanation],
) -> Result<Response, ApiError> {
    let internal =
        |e: serde_json::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    // The output's JSON as written alone (floats at their own precision).
    let output_json = if output.tensors.is_empty() && output.fields.is_empty() {
        match output.body {
            None => b"null".to_vec(),
            Some(body) if serde_json::from_slice::<de::IgnoredAny>(&body.bytes).is_ok() => {
                body.bytes.to_vec()
            }
            Some(body) => {
                serde_json::to_vec(&String::from_utf8_lossy(&body.bytes)).map_err(internal)?
            }
        }
    } else {
        serde_json::to_vec(&MessageJson::of(&output)).map_err(internal)?
    };
    let mut answer = b"{\"output\":".to_vec();
    answer.extend_from_slice(&output_json);
    answer.extend_from_slice(b",\"explanations\":");
    answer.extend_from_slice(&serde_json::to_vec(explanations).map_err(internal)?);
    answer.push(b'}');
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer,
    )
        .into_response())
}

/// Whether a data-plane query asks for explanations: `explain=true`, the
/// only parameter `/fn` and `/p` take.
pub fn wants_explanation(params: &[(String, String)]) -> Result<bool, ApiError> {
    match super::query::only(params, "explain", "this route").map_err(ApiError::bad_request)? {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "explain={other}: give explain=true or explain=false"
        ))),
    }
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

/// A scalar as JSON: a boolean, number or string.
pub struct ScalarJson<'a>(pub &'a Scalar);

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
            assert!(err.message().contains(expected), "{body}: {err:?}");
        }
    }

    #[test]
    fn members_are_read_in_any_order_and_every_datatype_lands_in_its_vector() {
        // `serde_json::json!` sorts keys: `data` comes before `datatype`.
        let body = br#"{"fields":{"big":18446744073709551615,"on":true},"tensors":[
            {"data":[[1,2],[3,4]],"datatype":"INT8","shape":[2,2],"name":"a"},
            {"shape":[2],"data":[true,false],"name":"b","datatype":"BOOL","other":{"x":[1]}},
            {"name":"c","datatype":"BYTES","shape":[1,1],"data":[["h\u00e9"]]},
            {"name":"d","datatype":"FP64","shape":[0],"data":[]},
            {"name":"e","datatype":"UINT8","shape":[3],"data":[0,[255],[[7]]]}]}"#;
        let m = decode_request(Some(MESSAGE_JSON), body.to_vec()).unwrap();
        let data: Vec<&TensorData> = m.tensors.iter().map(|t| &t.tensor.data).collect();
        assert_eq!(
            data,
            [
                &TensorData::I32(vec![1, 2, 3, 4]),
                &TensorData::Bool(vec![true, false]),
                &TensorData::String(vec!["hé".into()]),
                &TensorData::F64(vec![]),
                &TensorData::U8(vec![0, 255, 7]),
            ]
        );
        assert_eq!(m.fields[0].value, Scalar::Float(18446744073709551615.0));
        assert_eq!(m.fields[1].value, Scalar::Bool(true));
    }

    #[test]
    fn hostile_tensors_are_refused_without_allocating_for_their_claims() {
        let cases: [(&str, &str); 9] = [
            // A shape of 2^60 elements with two values: refused on the
            // count, nothing reserved for the claim.
            (
                r#"{"tensors":[{"name":"x","datatype":"FP64","shape":[1073741824,1073741824],"data":[1,2]}]}"#,
                "tensor `x` has shape [1073741824, 1073741824] (1152921504606846976 elements) but 2 values",
            ),
            (
                r#"{"tensors":[{"data":[1,null],"name":"x","datatype":"FP32","shape":[2]}]}"#,
                "tensor `x`: data[1] = null is not an f32",
            ),
            (
                r#"{"tensors":[{"name":"x","datatype":"FP32","shape":[1],"data":[1e39]}]}"#,
                "tensor `x`: data[0] = 1e+39 is not an f32",
            ),
            (
                r#"{"tensors":[{"name":"x","datatype":"INT32","shape":[2],"data":[1,2.5]}]}"#,
                "tensor `x`: data[1] = 2.5 is not an i32",
            ),
            (
                r#"{"tensors":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,"2"]}]}"#,
                r#"tensor `x`: data[1] = "2" is not an f32"#,
            ),
            (
                r#"{"tensors":[{"name":"x","datatype":"FP32","shape":[-1],"data":[1]}]}"#,
                "tensor `x`: `shape` must be an array of non-negative integers, got [-1]",
            ),
            (
                r#"{"tensors":[{"name":"x","datatype":"FP32","shape":[1],"data":{"0":1}}]}"#,
                "tensor `x`: needs a `data` array",
            ),
            (
                r#"{"tensors":[{"name":"x","name":"y","datatype":"FP32","shape":[1],"data":[1]}]}"#,
                "tensors[0] has a member twice",
            ),
            (
                r#"{"tensors":[{"datatype":"FP32","shape":[1],"data":[1]}]}"#,
                "tensors[0] needs a string `name`",
            ),
        ];
        for (body, expected) in cases {
            let err = decode_request(Some(MESSAGE_JSON), body.as_bytes().to_vec()).unwrap_err();
            assert!(err.message().contains(expected), "{body}: {err:?}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_told_apart_from_json_of_the_wrong_shape() {
        let cases = [
            (r#"{"tensors":["#, "the body is not valid JSON"),
            (r#"[1]"#, "invalid type: sequence, expected a"),
            (
                r#"{"fields":{"x":[1]}}"#,
                "field `x` as a boolean, number or string",
            ),
        ];
        for (body, expected) in cases {
            let err = decode_request(Some(MESSAGE_JSON), body.as_bytes().to_vec()).unwrap_err();
            assert!(err.message().contains(expected), "{body}: {err:?}");
        }
    }

    #[test]
    fn fuzz_message_json_decodes_or_refuses_and_never_panics() {
        use crate::fuzz::{JSON_TOKENS, iterations, run};
        let seeds: [&[u8]; 3] = [
            br#"{"tensors":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4]]}],"fields":{"id":7,"tag":"a"}}"#,
            br#"{"tensors":[{"data":[true,false],"shape":[2],"name":"b","datatype":"BOOL"},{"name":"s","datatype":"BYTES","shape":[1],"data":["h"]}]}"#,
            br#"{"fields":{"p":0.1,"q":-3,"r":false}}"#,
        ];
        run(
            15,
            iterations(),
            &seeds,
            JSON_TOKENS,
            |_, input| match decode_request(Some(MESSAGE_JSON), input.to_vec()) {
                Ok(m) => {
                    for t in &m.tensors {
                        assert!(t.tensor.check(&t.name).is_ok());
                    }
                    true
                }
                Err(e) => {
                    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
                    false
                }
            },
        );
    }

    #[test]
    fn other_media_types_pass_through_as_the_body() {
        let m = decode_request(Some("application/json"), b"{}".to_vec()).unwrap();
        assert_eq!(m.body.unwrap().content_type, "application/json");
    }
}
