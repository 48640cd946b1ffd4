//! `json-to-tensor`: turns a JSON object (or an array of objects, a batch)
//! with named numeric fields into one feature tensor, in a configured order.
//!
//! Config:
//! - `fields` (required): comma-separated field names, in tensor column order.
//! - `tensor`: name of the output tensor (default `features`).
//! - `dtype`: `f32` (default) or `f64`.
//! - `keep`: comma-separated fields copied through as scalar fields (e.g. an id).
//!
//! `{"a": 1, "b": 2}` becomes a `[1, 2]` tensor; `[{..}, {..}]` becomes `[2, n]`.

use serde_json::{Map, Value};
use sluice_sdk::{Message, Scalar, Stage, StageError, Tensor, config, export_stage};

struct JsonToTensor;

impl Stage for JsonToTensor {
    fn run(input: Message) -> Result<Message, StageError> {
        let fields = config::parse_list::<String>("fields")?;
        let tensor_name = config::get("tensor").unwrap_or_else(|| "features".into());
        let keep = match config::get("keep") {
            Some(_) => config::parse_list::<String>("keep")?,
            None => Vec::new(),
        };
        let rows = parse_rows(input.body_bytes()?)?;
        let values = feature_values(&rows, &fields)?;
        let shape = [rows.len() as u64, fields.len() as u64];
        let tensor = match config::get("dtype").as_deref().unwrap_or("f32") {
            "f32" => Tensor::new(shape, narrow_to_f32(&values, &rows, &fields)?)?,
            "f64" => Tensor::new(shape, values)?,
            other => {
                return Err(StageError::internal(format!(
                    "config key `dtype` = {other:?} is invalid: use f32 or f64"
                )));
            }
        };
        let mut output = Message::new().with_tensor(tensor_name, tensor);
        for name in &keep {
            for (i, row) in rows.iter().enumerate() {
                if let Some(value) = row.get(name) {
                    let field = if rows.len() == 1 {
                        name.clone()
                    } else {
                        format!("{name}.{i}")
                    };
                    output = output.with_field(field, to_scalar(value));
                }
            }
        }
        Ok(output)
    }
}

export_stage!(JsonToTensor);

/// One object, or an array of objects (a batch).
fn parse_rows(body: &[u8]) -> Result<Vec<Map<String, Value>>, StageError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| StageError::invalid_input(format!("request body is not valid JSON: {e}")))?;
    match value {
        Value::Object(row) => Ok(vec![row]),
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(row) => Ok(row),
                other => Err(StageError::invalid_input(format!(
                    "row {i}: expected a JSON object, got {}",
                    kind(&other)
                ))),
            })
            .collect(),
        Value::Array(_) => Err(StageError::invalid_input(
            "expected at least one row, got an empty array",
        )),
        other => Err(StageError::invalid_input(format!(
            "expected a JSON object or an array of objects, got {}",
            kind(&other)
        ))),
    }
}

fn feature_values(rows: &[Map<String, Value>], fields: &[String]) -> Result<Vec<f64>, StageError> {
    let mut values = Vec::with_capacity(rows.len() * fields.len());
    for (i, row) in rows.iter().enumerate() {
        for name in fields {
            let at = || location(rows.len(), i, name);
            let value = row
                .get(name)
                .ok_or_else(|| StageError::invalid_input(format!("missing {}", at())))?;
            let number = value.as_f64().ok_or_else(|| {
                StageError::invalid_input(format!("{} must be a number, got {}", at(), kind(value)))
            })?;
            if !number.is_finite() {
                return Err(StageError::invalid_input(format!(
                    "{} must be finite, got {number}",
                    at()
                )));
            }
            values.push(number);
        }
    }
    Ok(values)
}

/// Values that are finite as f64 can still overflow f32.
fn narrow_to_f32(
    values: &[f64],
    rows: &[Map<String, Value>],
    fields: &[String],
) -> Result<Vec<f32>, StageError> {
    values
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let narrowed = v as f32;
            if narrowed.is_finite() {
                Ok(narrowed)
            } else {
                let at = location(rows.len(), k / fields.len(), &fields[k % fields.len()]);
                Err(StageError::invalid_input(format!(
                    "{at} = {v:e} does not fit in f32"
                )))
            }
        })
        .collect()
}

fn location(rows: usize, row: usize, name: &str) -> String {
    if rows == 1 {
        format!("field `{name}`")
    } else {
        format!("field `{name}` in row {row}")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn to_scalar(value: &Value) -> Scalar {
    match value {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Scalar::Int)
            .unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => Scalar::Text(s.clone()),
        other => Scalar::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn orders_values_by_configured_fields() {
        let rows = parse_rows(br#"{"b": 2, "a": 1.5, "extra": "x"}"#).unwrap();
        assert_eq!(
            feature_values(&rows, &fields(&["a", "b"])).unwrap(),
            vec![1.5, 2.0]
        );
    }

    #[test]
    fn names_the_missing_or_mistyped_field() {
        let rows = parse_rows(br#"[{"a": 1}, {"a": "one"}]"#).unwrap();
        let err = feature_values(&rows, &fields(&["a"])).unwrap_err();
        assert_eq!(
            err,
            StageError::invalid_input("field `a` in row 1 must be a number, got a string")
        );
        let rows = parse_rows(br#"{"b": 1}"#).unwrap();
        let err = feature_values(&rows, &fields(&["a"])).unwrap_err();
        assert_eq!(err, StageError::invalid_input("missing field `a`"));
    }

    #[test]
    fn refuses_values_that_overflow_f32() {
        let rows = parse_rows(br#"{"a": 1e300}"#).unwrap();
        let values = feature_values(&rows, &fields(&["a"])).unwrap();
        let err = narrow_to_f32(&values, &rows, &fields(&["a"])).unwrap_err();
        assert_eq!(
            err,
            StageError::invalid_input("field `a` = 1e300 does not fit in f32")
        );
    }
}
