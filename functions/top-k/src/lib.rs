//! `top-k`: a classifier's scores to its `k` best labels, best first.
//!
//! Takes a `[classes]` or `[rows, classes]` f32 tensor of scores
//! (probabilities, or logits with `softmax = "true"`) and answers two
//! tensors: `labels` (strings, `[rows, k]`) and `scores` (f32, `[rows, k]`).
//! Equal scores keep class order. Fields pass through.
//!
//! Config:
//! - `labels` (required): comma-separated class names, in the model's
//!   class order.
//! - `k`: how many to keep (default 5; at most the number of classes).
//! - `input`: the scores tensor's name (default: the message's only tensor).
//! - `softmax`: `true` to turn logits into probabilities first.

use sluice_sdk::{Message, Stage, StageError, Tensor, config, export_stage};

struct TopK;

impl Stage for TopK {
    fn run(mut input: Message) -> Result<Message, StageError> {
        let labels = config::parse_list::<String>("labels")?;
        let k = match config::get("k") {
            Some(_) => config::parse::<usize>("k")?,
            None => 5,
        };
        let softmax = match config::get("softmax") {
            Some(_) => config::parse::<bool>("softmax")?,
            None => false,
        };
        let scores = match config::get("input") {
            Some(name) => input.take_tensor(&name)?,
            None => input.take_only_tensor()?,
        };
        let (labels, scores) = top_k(scores, &labels, k, softmax)?;
        let mut output = Message::new()
            .with_tensor("labels", labels)
            .with_tensor("scores", scores);
        output.fields = input.fields;
        Ok(output)
    }
}

export_stage!(TopK);

/// The `k` best of each row of `scores`: (labels, scores).
pub fn top_k(
    scores: Tensor,
    labels: &[String],
    k: usize,
    softmax: bool,
) -> Result<(Tensor, Tensor), StageError> {
    let shape = scores.shape().to_vec();
    let classes = match shape.as_slice() {
        [c] | [_, c] => *c as usize,
        _ => {
            return Err(StageError::invalid_input(format!(
                "expected scores of shape [classes] or [rows, classes], got {shape:?}"
            )));
        }
    };
    if classes != labels.len() {
        return Err(StageError::internal(format!(
            "the scores have {classes} classes but config `labels` names {}",
            labels.len()
        )));
    }
    if k == 0 {
        return Err(StageError::internal("config `k` must be at least 1"));
    }
    let k = k.min(classes);
    let values = scores.into_vec::<f32>()?;
    let rows = values.len() / classes.max(1);
    let (mut top_labels, mut top_scores) = (Vec::new(), Vec::new());
    for row in values.chunks(classes) {
        let row = if softmax {
            softmaxed(row)
        } else {
            row.to_vec()
        };
        let mut order: Vec<usize> = (0..classes).collect();
        // Stable: equal scores keep class order; NaN sorts last.
        order.sort_by(|&a, &b| {
            row[b]
                .partial_cmp(&row[a])
                .unwrap_or(std::cmp::Ordering::Less)
        });
        for &i in &order[..k] {
            top_labels.push(labels[i].clone());
            top_scores.push(row[i]);
        }
    }
    let out_shape: Vec<u64> = match shape.len() {
        1 => vec![k as u64],
        _ => vec![rows as u64, k as u64],
    };
    Ok((
        Tensor::new(out_shape.clone(), top_labels)?,
        Tensor::new(out_shape, top_scores)?,
    ))
}

fn softmaxed(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &str) -> Vec<String> {
        names.split(',').map(String::from).collect()
    }

    #[test]
    fn rows_keep_their_best_classes_best_first() {
        let scores = Tensor::new([2, 3], vec![0.2f32, 0.5, 0.3, 0.6, 0.1, 0.3]).unwrap();
        let (names, values) = top_k(scores, &labels("a,b,c"), 2, false).unwrap();
        assert_eq!(names.shape(), [2, 2]);
        assert_eq!(names.as_slice::<String>().unwrap(), ["b", "c", "a", "c"]);
        assert_eq!(values.as_slice::<f32>().unwrap(), [0.5, 0.3, 0.6, 0.3]);
    }

    #[test]
    fn k_is_capped_ties_keep_class_order_and_logits_can_be_softmaxed() {
        let scores = Tensor::new([2], vec![1.0f32, 1.0]).unwrap();
        let (names, values) = top_k(scores, &labels("0,180"), 5, true).unwrap();
        assert_eq!(names.as_slice::<String>().unwrap(), ["0", "180"]);
        assert_eq!(values.as_slice::<f32>().unwrap(), [0.5, 0.5]);
    }

    #[test]
    fn a_label_list_of_the_wrong_length_is_refused() {
        let scores = Tensor::new([3], vec![0.1f32, 0.2, 0.7]).unwrap();
        let error = top_k(scores, &labels("a,b"), 1, false).unwrap_err();
        assert!(error.message().contains("3 classes"), "{error:?}");
    }
}
