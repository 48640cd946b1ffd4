//! `LinearRegressor` (ai.onnx.ml): `Y = X · coefficientsᵀ + intercepts`,
//! `[N, targets]` f32, summed in f64, with `post_transform` as onnxruntime
//! applies it (per row when there are several targets; only `PROBIT` for
//! one). tract's own fails to optimise when the features come from a
//! `Concat` (scikit-learn's `PolynomialFeatures` before a linear model).

use super::trees::PostTransform;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, check_input_arity,
    check_output_arity, expand,
};

#[derive(Debug)]
struct Regressor {
    /// `[targets, features]`.
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    post: PostTransform,
}

impl Regressor {
    fn features(&self) -> usize {
        self.coefficients.len() / self.targets
    }
}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let name = &node.name;
    let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
    let targets = node.get_attr_opt::<i64>("targets")?.unwrap_or(1);
    ensure!(
        targets >= 1
            && !coefficients.is_empty()
            && coefficients.len().is_multiple_of(targets as usize),
        "LinearRegressor `{name}`: {} coefficients are not one row per target ({targets})",
        coefficients.len()
    );
    let targets = targets as usize;
    let intercepts: Vec<f32> = node
        .get_attr_opt_vec("intercepts")?
        .unwrap_or_else(|| vec![0.0; targets]);
    ensure!(
        intercepts.len() == targets,
        "LinearRegressor `{name}`: {} intercepts for {targets} target(s)",
        intercepts.len()
    );
    let post = PostTransform::parse(
        &node
            .get_attr_opt::<String>("post_transform")?
            .unwrap_or_else(|| "NONE".into()),
    )
    .map_err(|e| format_err!("LinearRegressor `{name}`: {e}"))?;
    Ok((
        expand(LinearRegressor(Arc::new(Regressor {
            coefficients,
            intercepts,
            targets,
            post,
        }))),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct LinearRegressor(Arc<Regressor>);

impl PartialEq for LinearRegressor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LinearRegressor {}

impl Expansion for LinearRegressor {
    fn name(&self) -> StaticName {
        "LinearRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.0.targets.to_dim())
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
                features == self.0.features(),
                "LinearRegressor `{prefix}`: the input has {features} features; the coefficients have {} per target",
                self.0.features()
            );
        }
        let x = super::wire_f32(prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for LinearRegressor {
    fn name(&self) -> StaticName {
        "SluiceLinearRegressor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for LinearRegressor {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let r = &self.0;
        let x = args_1!(inputs);
        let features = r.features();
        ensure!(
            x.shape().len() == 2 && x.shape()[1] == features,
            "LinearRegressor: rows of {features} features expected, got shape {:?}",
            x.shape()
        );
        let plain = x.try_as_plain_ram()?;
        let rows = plain.as_slice::<f32>()?;
        let n = x.shape()[0];
        let mut y = Vec::with_capacity(n * r.targets);
        for row in rows.chunks_exact(features.max(1)).take(n) {
            let start = y.len();
            for (w, b) in r.coefficients.chunks_exact(features).zip(&r.intercepts) {
                let dot: f64 = (row.iter().zip(w))
                    .map(|(a, c)| f64::from(*a) * f64::from(*c))
                    .sum();
                y.push((dot + f64::from(*b)) as f32);
            }
            // As onnxruntime: one target takes only PROBIT.
            if r.targets > 1 || r.post == PostTransform::Probit {
                r.post.apply(&mut y[start..]);
            }
        }
        Ok(tvec!(
            Tensor::from_shape(&[n, r.targets], &y)?.into_tvalue()
        ))
    }
}

impl TypedOp for LinearRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact([
            inputs[0].shape[0].clone(),
            self.0.targets.to_dim()
        ])))
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

    fn run(attributes: Vec<(&str, Attr)>, rows: &[f32]) -> Vec<f32> {
        let model = one_node(
            "LinearRegressor",
            DataType::Float,
            &[-1, 2],
            &[("Y", DataType::Float)],
            attributes,
        );
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[rows.len() / 2, 2], rows).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        y[0].to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn one_or_several_targets_with_intercepts() {
        let one = vec![
            ("coefficients", Attr::Floats(vec![2.0, -1.0])),
            ("intercepts", Attr::Floats(vec![0.5])),
        ];
        assert_eq!(run(one, &[1.0, 1.0, 3.0, 0.0]), [1.5, 6.5]);
        let two = vec![
            ("coefficients", Attr::Floats(vec![1.0, 0.0, 0.0, 1.0])),
            ("intercepts", Attr::Floats(vec![0.0, 1.0])),
            ("targets", Attr::Int(2)),
        ];
        assert_eq!(run(two, &[4.0, 5.0]), [4.0, 6.0]);
    }

    #[test]
    fn several_targets_take_the_post_transform() {
        let softmax = vec![
            ("coefficients", Attr::Floats(vec![1.0, 0.0, 0.0, 1.0])),
            ("targets", Attr::Int(2)),
            ("post_transform", Attr::String("SOFTMAX")),
        ];
        let y = run(softmax, &[0.0, 0.0, 1000.0, -1000.0]);
        assert_eq!(y, [0.5, 0.5, 1.0, 0.0]);
    }

    #[test]
    fn coefficients_that_fit_no_target_count_are_refused() {
        let model = one_node(
            "LinearRegressor",
            DataType::Float,
            &[-1, 2],
            &[("Y", DataType::Float)],
            vec![
                ("coefficients", Attr::Floats(vec![1.0, 2.0, 3.0])),
                ("targets", Attr::Int(2)),
            ],
        );
        let error = compile(&model, &BTreeMap::new()).err().expect("refused");
        assert!(
            format!("{error:#}").contains("not one row per target"),
            "{error:#}"
        );
    }
}
