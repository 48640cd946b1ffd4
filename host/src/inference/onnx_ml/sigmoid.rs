//! `Sigmoid` (the default domain): `1 / (1 + e^-x)` computed with the
//! standard library's `exp`, in f32 or f64 like the input. tract's own is a
//! rational approximation (f32 and f16 only) that stops short of 1: for a
//! large score it answers 0.99999955, so the `1 - σ` scikit-learn's binary
//! linear classifiers export as the other class's probability came out
//! 4.5e-7 where onnxruntime (and the exact value) give 0.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Sigmoid;

pub(super) fn parse(
    _: &ParsingContext,
    _: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(Sigmoid), vec![]))
}

impl Expansion for Sigmoid {
    fn name(&self) -> StaticName {
        "Sigmoid".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::same_shape_rules(s, inputs, outputs, None)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        ensure!(
            dt == f32::datum_type() || dt == f64::datum_type(),
            "Sigmoid `{prefix}`: input of type {dt:?}; Sluice computes it for float and double"
        );
        model.wire_node(prefix, SluiceSigmoid, inputs)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct SluiceSigmoid;

impl Op for SluiceSigmoid {
    fn name(&self) -> StaticName {
        "SluiceSigmoid".into()
    }

    op_as_typed_op!();
}

impl EvalOp for SluiceSigmoid {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut x = args_1!(inputs).into_tensor();
        let double = x.datum_type() == DatumType::F64;
        let mut plain = x.try_as_plain_ram_mut()?;
        match double {
            true => plain
                .as_slice_mut::<f64>()?
                .iter_mut()
                .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            false => plain
                .as_slice_mut::<f32>()?
                .iter_mut()
                .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for SluiceSigmoid {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::graph::one_node;
    use crate::inference::compile;
    use std::collections::BTreeMap;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::prelude::*;

    #[test]
    fn saturates_exactly_and_stays_finite_around_plus_minus_1000() {
        for (elem, x) in [
            (
                DataType::Float,
                Tensor::from(tract_ndarray::arr1(&[
                    -1000.0f32, -20.0, 0.0, 1.0, 20.0, 1000.0,
                ])),
            ),
            (
                DataType::Double,
                Tensor::from(tract_ndarray::arr1(&[
                    -1000.0f64, -20.0, 0.0, 1.0, 20.0, 1000.0,
                ])),
            ),
        ] {
            let model = one_node("Sigmoid", elem, &[6], &[("Y", elem)], vec![]);
            let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
            let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
            let y: Vec<f64> = y[0]
                .cast_to::<f64>()
                .unwrap()
                .to_plain_array_view::<f64>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            assert_eq!(y[0], 0.0, "{y:?}");
            assert_eq!(y[2], 0.5, "{y:?}");
            assert!((y[3] - 1.0 / (1.0 + (-1f64).exp())).abs() < 1e-7, "{y:?}");
            // tract's approximation gives 0.99999955 at 20, so 1 - σ was 4.5e-7.
            assert_eq!(1.0 - y[5], 0.0, "{y:?}");
            if elem == DataType::Float {
                assert_eq!(y[4], 1.0, "{y:?}");
            }
        }
    }
}
