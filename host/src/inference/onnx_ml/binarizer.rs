//! `Binarizer` (ai.onnx.ml): `Y = X > threshold ? 1 : 0`, element-wise,
//! in the input's own type.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::logic::comp_gt;
use tract_onnx::tract_hir::internal::*;

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Binarizer {
    /// A scalar f32 tensor (tract's `Tensor` hashes; `f32` does not).
    threshold: Arc<Tensor>,
}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold: f32 = node.get_attr_opt("threshold")?.unwrap_or(0.0);
    Ok((
        expand(Binarizer {
            threshold: rctensor0(threshold),
        }),
        vec![],
    ))
}

impl Expansion for Binarizer {
    fn name(&self) -> StaticName {
        "Binarizer".into()
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
        let fact = model.outlet_fact(inputs[0])?.clone();
        let threshold = self
            .threshold
            .cast_to_dt(fact.datum_type)?
            .into_owned()
            .broadcast_into_rank(fact.rank())?;
        let threshold = model.add_const(format!("{prefix}.threshold"), threshold)?;
        let above = model.wire_node(
            format!("{prefix}.above"),
            TypedBinOp(comp_gt(), None),
            &[inputs[0], threshold],
        )?;
        model.wire_node(format!("{prefix}.binary"), cast(fact.datum_type), &above)
    }
}

#[cfg(test)]
mod tests {
    use super::super::graph::{Attr, one_node};
    use crate::inference::compile;
    use std::collections::BTreeMap;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::prelude::*;

    #[test]
    fn values_above_the_threshold_become_one_in_the_input_type() {
        let model = one_node(
            "Binarizer",
            DataType::Float,
            &[-1, 3],
            &[("Y", DataType::Float)],
            vec![("threshold", Attr::Float(0.5))],
        );
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[2, 3], &[0.5f32, 0.51, -3.0, 9.0, 0.0, 0.5]).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let y: Vec<f32> = y[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(y, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);

        // Integers stay integers; the default threshold is 0.
        let model = one_node(
            "Binarizer",
            DataType::Int64,
            &[-1, 2],
            &[("Y", DataType::Int64)],
            vec![],
        );
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[1, 2], &[-2i64, 7]).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let y: Vec<i64> = y[0]
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(y, [0, 1]);
    }
}
