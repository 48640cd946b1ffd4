//! `SVMRegressor` (ai.onnx.ml), as scikit-learn's `SVR`, `NuSVR` and
//! `OneClassSVM` export: for each row `x`, the sum over the support
//! vectors of `coefficients[j] * K(x, sv_j)`, plus `rho` (with no support
//! vectors, the dot product of `coefficients` and `x`, plus `rho`); a
//! one-class model answers `1` where that is positive, else `-1`. Kernels
//! as in [`super::svm_kernel`].
//! Sums run in f64; the output is f32 `[N, 1]`.

use super::svm_kernel::Kernel;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

#[derive(Debug, Clone, PartialEq)]
struct SvmRegressor {
    kernel: Kernel,
    /// Support vectors, row after row (`features` each); empty for a
    /// linear model.
    support: Vec<f32>,
    coefficients: Vec<f32>,
    rho: f32,
    one_class: bool,
}

// tract needs ops to hash; the model's parameters are fixed at load.
impl std::hash::Hash for SvmRegressor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.support.len().hash(state);
        self.coefficients.len().hash(state);
        self.rho.to_bits().hash(state);
    }
}

impl Eq for SvmRegressor {}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let name = &node.name;
    let kernel = Kernel::read(node, "SVMRegressor")?;
    let transform: String = node
        .get_attr_opt("post_transform")?
        .unwrap_or_else(|| "NONE".into());
    if transform != "NONE" {
        bail!(
            "SVMRegressor `{name}`: post_transform `{transform}` is not supported (only NONE; scikit-learn exports NONE)"
        );
    }
    let support: Vec<f32> = node
        .get_attr_opt_vec("support_vectors")?
        .unwrap_or_default();
    let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
    let n_supports: i64 = node.get_attr_opt("n_supports")?.unwrap_or(0);
    let rho: Vec<f32> = node.get_attr_opt_vec("rho")?.unwrap_or_default();
    ensure!(
        rho.len() == 1,
        "SVMRegressor `{name}`: `rho` needs exactly one value (it has {})",
        rho.len()
    );
    if n_supports > 0 {
        ensure!(
            coefficients.len() as i64 == n_supports
                && !support.is_empty()
                && support.len().is_multiple_of(coefficients.len()),
            "SVMRegressor `{name}`: {n_supports} support vectors need as many coefficients ({}) and a whole number of rows of support_vectors ({} values)",
            coefficients.len(),
            support.len()
        );
    } else {
        ensure!(
            !coefficients.is_empty(),
            "SVMRegressor `{name}`: a linear model (no support vectors) needs its coefficients"
        );
    }
    let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) == 1;
    Ok((
        expand(SvmRegressor {
            kernel,
            support: if n_supports > 0 { support } else { Vec::new() },
            coefficients,
            rho: rho[0],
            one_class,
        }),
        vec![],
    ))
}

impl SvmRegressor {
    /// Features per row the model expects.
    fn features(&self) -> usize {
        match self.support.is_empty() {
            true => self.coefficients.len(),
            false => self.support.len() / self.coefficients.len(),
        }
    }

    fn score(&self, x: &[f32]) -> f32 {
        let sum = match self.support.is_empty() {
            true => super::linear::dot(x, &self.coefficients),
            false => (self.support.chunks_exact(x.len()).zip(&self.coefficients))
                .map(|(v, c)| f64::from(*c) * self.kernel.of(x, v))
                .sum::<f64>(),
        };
        let score = (sum + f64::from(self.rho)) as f32;
        match self.one_class {
            true if score > 0.0 => 1.0,
            true => -1.0,
            false => score,
        }
    }
}

impl Expansion for SvmRegressor {
    fn name(&self) -> StaticName {
        "SVMRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::regressor_rules(s, inputs, outputs, 1)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        if let Ok(features) = fact.shape[1].to_usize() {
            ensure!(
                features == self.features(),
                "SVMRegressor `{prefix}`: the input has {features} features; the model's support vectors or coefficients have {}",
                self.features()
            );
        }
        let x = super::wire_f32(prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for SvmRegressor {
    fn name(&self) -> StaticName {
        "SluiceSVMRegressor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for SvmRegressor {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let features = self.features();
        ensure!(
            x.shape().len() == 2 && x.shape()[1] == features,
            "SVMRegressor: rows of {features} features expected, got shape {:?}",
            x.shape()
        );
        let plain = x.try_as_plain_ram()?;
        let rows = plain.as_slice::<f32>()?;
        let scores: Vec<f32> = match features {
            0 => vec![self.score(&[]); x.shape()[0]],
            _ => rows.chunks_exact(features).map(|r| self.score(r)).collect(),
        };
        let n = scores.len();
        Ok(tvec!(Tensor::from_shape(&[n, 1], &scores)?.into_tvalue()))
    }
}

impl TypedOp for SvmRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&[inputs[0].shape[0].clone(), 1.to_dim()])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::graph::{Attr, one_node};
    use crate::inference::compile;
    use std::collections::BTreeMap;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::prelude::*;

    fn svm(attributes: Vec<(&str, Attr)>) -> Vec<u8> {
        one_node(
            "SVMRegressor",
            DataType::Float,
            &[-1, 2],
            &[("Y", DataType::Float)],
            attributes,
        )
    }

    fn run(model: &[u8], rows: &[f32]) -> Vec<f32> {
        let (plan, _, _) = compile(model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[rows.len() / 2, 2], rows).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        y[0].to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn linear_rbf_and_one_class_models_score_rows() {
        let linear = svm(vec![
            ("coefficients", Attr::Floats(vec![2.0, -1.0])),
            ("rho", Attr::Floats(vec![0.5])),
        ]);
        assert_eq!(run(&linear, &[1.0, 1.0, 3.0, 0.0]), [1.5, 6.5]);
        let rbf = |one_class| {
            svm(vec![
                ("kernel_type", Attr::String("RBF")),
                ("kernel_params", Attr::Floats(vec![0.5, 0.0, 0.0])),
                ("support_vectors", Attr::Floats(vec![0.0, 0.0, 1.0, 1.0])),
                ("coefficients", Attr::Floats(vec![1.0, -2.0])),
                ("n_supports", Attr::Int(2)),
                ("rho", Attr::Floats(vec![0.25])),
                ("one_class", Attr::Int(one_class)),
            ])
        };
        // At (0, 0): 1·e^0 - 2·e^(-0.5·2) + 0.25.
        let want = 1.0 - 2.0 * (-1.0f32).exp() + 0.25;
        let got = run(&rbf(0), &[0.0, 0.0, 1.0, 1.0]);
        assert!((got[0] - want).abs() < 1e-6, "{got:?}");
        assert_eq!(run(&rbf(1), &[0.0, 0.0, 1.0, 1.0]), [1.0, -1.0]);
    }

    #[test]
    fn inconsistent_or_unknown_settings_are_refused() {
        for (attributes, says) in [
            (
                vec![
                    ("kernel_type", Attr::String("CUBIC")),
                    ("coefficients", Attr::Floats(vec![1.0, 1.0])),
                    ("rho", Attr::Floats(vec![0.0])),
                ],
                "unknown kernel_type",
            ),
            (
                vec![
                    ("coefficients", Attr::Floats(vec![1.0])),
                    ("support_vectors", Attr::Floats(vec![1.0, 2.0, 3.0])),
                    ("n_supports", Attr::Int(2)),
                    ("rho", Attr::Floats(vec![0.0])),
                ],
                "support vectors need",
            ),
            (
                vec![
                    ("coefficients", Attr::Floats(vec![1.0, 1.0])),
                    ("rho", Attr::Floats(vec![0.0])),
                    ("post_transform", Attr::String("PROBIT")),
                ],
                "post_transform",
            ),
        ] {
            let error = compile(&svm(attributes), &BTreeMap::new())
                .err()
                .expect("refused");
            assert!(format!("{error:#}").contains(says), "{error:#}");
        }
    }
}
