//! The kernels of `SVMRegressor` and `SVMClassifier`, as onnxruntime
//! computes them: `LINEAR` is `x·v`, `POLY` is `(γ x·v + c)^degree`, `RBF`
//! is `exp(-γ |x - v|²)` and `SIGMOID` is `tanh(γ x·v + c)`, with `γ`, `c`
//! and the degree from `kernel_params`. Computed in f64.

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kernel {
    Linear,
    Poly { gamma: f64, coef0: f64, degree: i32 },
    Rbf { gamma: f64 },
    Sigmoid { gamma: f64, coef0: f64 },
}

impl Kernel {
    /// The kernel `node` (an `op`) names in `kernel_type` and `kernel_params`.
    pub(super) fn read(node: &NodeProto, op: &str) -> TractResult<Self> {
        let params: Vec<f32> = node.get_attr_opt_vec("kernel_params")?.unwrap_or_default();
        let param = |i: usize| f64::from(params.get(i).copied().unwrap_or(0.0));
        let (gamma, coef0, degree) = (param(0), param(1), param(2) as i32);
        let kind: String = node
            .get_attr_opt("kernel_type")?
            .unwrap_or_else(|| "LINEAR".into());
        Ok(match kind.as_str() {
            "LINEAR" => Self::Linear,
            "POLY" => Self::Poly {
                gamma,
                coef0,
                degree,
            },
            "RBF" => Self::Rbf { gamma },
            "SIGMOID" => Self::Sigmoid { gamma, coef0 },
            other => bail!(
                "{op} `{}`: unknown kernel_type `{other}` (expected LINEAR, POLY, RBF or SIGMOID)",
                node.name
            ),
        })
    }

    /// `K(x, v)`.
    pub(super) fn of(&self, x: &[f32], v: &[f32]) -> f64 {
        let dot = || super::linear::dot(x, v);
        match *self {
            Self::Linear => dot(),
            Self::Poly {
                gamma,
                coef0,
                degree,
            } => (gamma * dot() + coef0).powi(degree),
            Self::Rbf { gamma } => {
                let d2: f64 = (x.iter().zip(v))
                    .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                    .sum();
                (-gamma * d2).exp()
            }
            Self::Sigmoid { gamma, coef0 } => (gamma * dot() + coef0).tanh(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Kernel;

    #[test]
    fn each_kernel_as_onnxruntime_defines_it() {
        let (x, v) = ([1.0, 2.0], [3.0, -1.0]); // x·v = 1, |x - v|² = 13
        let cases = [
            (Kernel::Linear, 1.0),
            (
                Kernel::Poly {
                    gamma: 0.5,
                    coef0: 1.0,
                    degree: 3,
                },
                3.375,
            ),
            (Kernel::Rbf { gamma: 0.5 }, (-6.5f64).exp()),
            (
                Kernel::Sigmoid {
                    gamma: 0.5,
                    coef0: 1.0,
                },
                1.5f64.tanh(),
            ),
        ];
        for (kernel, want) in cases {
            assert!((kernel.of(&x, &v) - want).abs() < 1e-12, "{kernel:?}");
        }
    }
}
