//! `standard-scaler`: standardises each column of a feature tensor,
//! `(x - mean) / std`, like scikit-learn's `StandardScaler`.
//!
//! Config:
//! - `mean`, `std` (required): comma-separated, one value per column; every
//!   `std` must be positive.
//! - `input`: name of the tensor to scale (default `features`).
//! - `output`: name of the scaled tensor (default: the input's name).
//!
//! Takes an `f32` or `f64` tensor of shape `[n]` or `[rows, n]`; returns the
//! same shape and type. Other tensors and fields pass through unchanged.

use sluice_sdk::{ElementType, Message, Stage, StageError, Tensor, config, export_stage};

struct StandardScaler;

impl Stage for StandardScaler {
    fn run(mut input: Message) -> Result<Message, StageError> {
        let params = Params::from_config()?;
        let input_name = config::get("input").unwrap_or_else(|| "features".into());
        let output_name = config::get("output").unwrap_or_else(|| input_name.clone());
        let tensor = input.take_tensor(&input_name)?;
        let scaled = params.scale(tensor)?;
        input.tensors.push((output_name, scaled));
        Ok(input)
    }
}

export_stage!(StandardScaler);

struct Params {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Params {
    fn from_config() -> Result<Self, StageError> {
        Self::new(config::parse_list("mean")?, config::parse_list("std")?)
    }

    fn new(mean: Vec<f64>, std: Vec<f64>) -> Result<Self, StageError> {
        if mean.len() != std.len() {
            return Err(StageError::internal(format!(
                "config `mean` has {} values but `std` has {}; give one of each per column",
                mean.len(),
                std.len()
            )));
        }
        if let Some(i) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(StageError::internal(format!(
                "config `std` item {i} is {}; every std must be a positive number",
                std[i]
            )));
        }
        Ok(Self { mean, std })
    }

    fn scale(&self, tensor: Tensor) -> Result<Tensor, StageError> {
        let width = self.mean.len() as u64;
        let got = tensor.shape().last().copied().unwrap_or(0);
        if tensor.shape().is_empty() || tensor.shape().len() > 2 || got != width {
            return Err(StageError::invalid_input(format!(
                "expected a tensor of shape [{width}] or [rows, {width}], got {:?}",
                tensor.shape()
            )));
        }
        let shape = tensor.shape().to_vec();
        match tensor.element_type() {
            ElementType::F32 => {
                let mut values = tensor.into_vec::<f32>()?;
                for (i, v) in values.iter_mut().enumerate() {
                    let c = i % self.mean.len();
                    *v = ((f64::from(*v) - self.mean[c]) / self.std[c]) as f32;
                }
                Tensor::new(shape, values)
            }
            ElementType::F64 => {
                let mut values = tensor.into_vec::<f64>()?;
                for (i, v) in values.iter_mut().enumerate() {
                    let c = i % self.mean.len();
                    *v = (*v - self.mean[c]) / self.std[c];
                }
                Tensor::new(shape, values)
            }
            other => Err(StageError::invalid_input(format!(
                "expected a tensor of f32 or f64, got {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_each_column() {
        let params = Params::new(vec![1.0, 10.0], vec![2.0, 5.0]).unwrap();
        let t = Tensor::new([2, 2], vec![3.0f32, 20.0, 1.0, 0.0]).unwrap();
        let scaled = params.scale(t).unwrap();
        assert_eq!(scaled.as_slice::<f32>().unwrap(), &[1.0, 2.0, 0.0, -2.0]);
        assert_eq!(scaled.shape(), &[2, 2]);
    }

    #[test]
    fn wrong_width_states_expected_and_got() {
        let params = Params::new(vec![0.0; 4], vec![1.0; 4]).unwrap();
        let err = params
            .scale(Tensor::new([1, 3], vec![0.0f32; 3]).unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            StageError::invalid_input("expected a tensor of shape [4] or [rows, 4], got [1, 3]")
        );
    }

    #[test]
    fn refuses_non_positive_std() {
        let err = Params::new(vec![0.0, 0.0], vec![1.0, 0.0]).err().unwrap();
        assert_eq!(
            err,
            StageError::internal("config `std` item 1 is 0; every std must be a positive number")
        );
    }
}
