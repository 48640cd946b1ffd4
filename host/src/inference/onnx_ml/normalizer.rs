//! `Normalizer` (ai.onnx.ml): each row (the last axis) divided by its
//! `MAX` (the largest value, not the largest magnitude), `L1` (sum of
//! magnitudes) or `L2` (Euclidean) norm; a row whose norm is zero passes
//! through unchanged. The output is f32, as onnxruntime serves it. (tract's
//! own operator divides by the largest magnitude, which differs on rows
//! with negative values.)

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Normalizer(Norm);

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let norm: String = node.get_attr_opt("norm")?.unwrap_or_else(|| "MAX".into());
    let norm = match norm.as_str() {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => bail!(
            "Normalizer `{}`: unknown norm `{other}` (expected MAX, L1 or L2)",
            node.name
        ),
    };
    Ok((expand(Normalizer(norm)), vec![]))
}

impl Expansion for Normalizer {
    fn name(&self) -> StaticName {
        "Normalizer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::same_shape_rules(s, inputs, outputs, Some(f32::datum_type()))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            fact.rank() >= 1,
            "Normalizer `{prefix}` needs an input with a feature axis"
        );
        ensure!(
            fact.datum_type.is_number(),
            "Normalizer `{prefix}` normalizes numbers; its input is {:?}",
            fact.datum_type
        );
        let x = super::wire_f32(prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for Normalizer {
    fn name(&self) -> StaticName {
        "SluiceNormalizer".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Normalizer {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut x = args_1!(inputs).into_tensor();
        let width = *x.shape().last().unwrap_or(&1);
        if width == 0 {
            return Ok(tvec!(x.into_tvalue()));
        }
        let mut plain = x.try_as_plain_ram_mut()?;
        for row in plain.as_slice_mut::<f32>()?.chunks_exact_mut(width) {
            let norm = match self.0 {
                Norm::Max => row.iter().copied().fold(f32::MIN, f32::max),
                Norm::L1 => row.iter().map(|v| v.abs()).sum(),
                Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            if norm != 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for Normalizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
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

    fn normalize(norm: &'static str, elem_type: DataType, x: Tensor) -> Vec<f32> {
        let model = one_node(
            "Normalizer",
            elem_type,
            &[-1, x.shape()[1] as i64],
            &[("Y", DataType::Float)],
            vec![("norm", Attr::String(norm))],
        );
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        y[0].to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn each_norm_divides_rows_and_zero_rows_pass_through() {
        let x = Tensor::from_shape(&[3, 2], &[-4.0f32, 2.0, 3.0, 4.0, 0.0, 0.0]).unwrap();
        // MAX is the largest value: -4 / 2 = -2, as onnxruntime computes it.
        assert_eq!(
            normalize("MAX", DataType::Float, x.clone()),
            [-2.0, 1.0, 0.75, 1.0, 0.0, 0.0]
        );
        assert_eq!(
            normalize("L1", DataType::Float, x.clone()),
            [-4.0 / 6.0, 2.0 / 6.0, 3.0 / 7.0, 4.0 / 7.0, 0.0, 0.0]
        );
        let l2 = normalize("L2", DataType::Float, x);
        let expected = [-4.0 / 20f32.sqrt(), 2.0 / 20f32.sqrt(), 0.6, 0.8, 0.0, 0.0];
        for (a, b) in l2.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{l2:?}");
        }
    }

    #[test]
    fn integers_become_floats_and_unknown_norms_are_refused() {
        let x = Tensor::from_shape(&[1, 3], &[1i64, 1, 2]).unwrap();
        assert_eq!(normalize("L1", DataType::Int64, x), [0.25, 0.25, 0.5]);

        let model = one_node(
            "Normalizer",
            DataType::Float,
            &[-1, 2],
            &[("Y", DataType::Float)],
            vec![("norm", Attr::String("L3"))],
        );
        let error = compile(&model, &BTreeMap::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("unknown norm `L3`"), "{error}");
    }
}
