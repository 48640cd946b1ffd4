//! `{{name}}`: a text to its normalised form (lower case, one space
//! between words) and its word count.
//!
//! In: `{"text": "..."}`. Out: `{"normalised": "...", "words": N}`.

use serde_json::{Value, json};
use sluice_sdk::{Message, Stage, StageError, export_stage};

struct Normalise;

impl Stage for Normalise {
    fn run(input: Message) -> Result<Message, StageError> {
        let body: Value = serde_json::from_slice(input.body_bytes()?)
            .map_err(|e| StageError::invalid_input(format!("the body is not JSON: {e}")))?;
        let text = body["text"]
            .as_str()
            .ok_or_else(|| StageError::invalid_input("the body needs a string field `text`"))?;
        let (normalised, words) = normalise(text);
        let answer = json!({"normalised": normalised, "words": words});
        Ok(Message::from_body("application/json", answer.to_string()))
    }
}

export_stage!(Normalise);

/// Lower case, words separated by one space; and how many words.
pub fn normalise(text: &str) -> (String, usize) {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    (words.join(" "), words.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn spaces_and_case_are_normalised() {
        assert_eq!(super::normalise("  A  b\tC "), ("a b c".to_string(), 3));
    }
}
