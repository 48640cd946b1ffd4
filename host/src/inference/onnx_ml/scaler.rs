//! `Scaler` (ai.onnx.ml): `Y = (X - offset) * scale` per feature, the
//! features being the last axis. `offset` and `scale` hold one value per
//! feature or a single value for all; the output is always f32.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Scaler {
    /// 1-D f32 tensors (tract's `Tensor` hashes and compares; `f32` does not).
    offset: Arc<Tensor>,
    scale: Arc<Tensor>,
}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset: Vec<f32> = node
        .get_attr_opt_vec("offset")?
        .unwrap_or_else(|| vec![0.0]);
    let scale: Vec<f32> = node.get_attr_opt_vec("scale")?.unwrap_or_else(|| vec![1.0]);
    if offset.is_empty() || scale.is_empty() {
        bail!(
            "Scaler node `{}`: `offset` and `scale` need at least one value",
            node.name
        );
    }
    Ok((
        expand(Scaler {
            offset: rctensor1(&offset),
            scale: rctensor1(&scale),
        }),
        vec![],
    ))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
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
        let rank = fact.rank();
        ensure!(
            rank >= 1,
            "Scaler `{prefix}` needs an input with a feature axis"
        );
        let features = fact.shape[rank - 1].to_usize().ok();
        for (name, values) in [("offset", &self.offset), ("scale", &self.scale)] {
            if let Some(features) = features {
                ensure!(
                    values.len() == 1 || values.len() == features,
                    "Scaler `{prefix}`: `{name}` has {} values; the input has {features} features (give one value per feature, or one for all)",
                    values.len()
                );
            }
        }
        let x = super::wire_f32(prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Scaler {
    /// The value of `values` (offset or scale) for feature `i`.
    fn at(values: &[f32], i: usize) -> f32 {
        values[if values.len() == 1 { 0 } else { i }]
    }
}

// One pass over the input in place: tract's broadcast `Sub` and `Mul`
// cost ~2.5 µs each on a 64-row batch, more than the arithmetic.
impl Op for Scaler {
    fn name(&self) -> StaticName {
        "SluiceScaler".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Scaler {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut x = args_1!(inputs).into_tensor();
        let features = *x.shape().last().unwrap_or(&1);
        let (offset, scale) = (
            self.offset.try_as_plain_ram()?,
            self.scale.try_as_plain_ram()?,
        );
        let (offset, scale) = (offset.as_slice::<f32>()?, scale.as_slice::<f32>()?);
        ensure!(
            [offset.len(), scale.len()]
                .iter()
                .all(|n| *n == 1 || *n == features),
            "Scaler: rows of {features} features for {} offsets and {} scales",
            offset.len(),
            scale.len()
        );
        let mut plain = x.try_as_plain_ram_mut()?;
        for row in plain
            .as_slice_mut::<f32>()?
            .chunks_exact_mut(features.max(1))
        {
            for (i, v) in row.iter_mut().enumerate() {
                *v = (*v - Self::at(offset, i)) * Self::at(scale, i);
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for Scaler {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
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

    fn scaler(elem_type: DataType, features: i64, attributes: Vec<(&str, Attr)>) -> Vec<u8> {
        one_node(
            "Scaler",
            elem_type,
            &[-1, features],
            &[("Y", DataType::Float)],
            attributes,
        )
    }

    fn run(model: &[u8], input: Tensor) -> Vec<f32> {
        let (plan, signature, _) = compile(model, &BTreeMap::new()).expect("compiles");
        assert_eq!(signature.outputs[0].datatype, crate::tensor::Datatype::Fp32);
        let outputs = plan.run(tvec!(input.into_tvalue())).expect("runs");
        outputs[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn scales_each_feature_or_all_by_one_value() {
        let x = Tensor::from_shape(&[2, 3], &[1.0f32, 2.0, 3.0, -1.0, 0.0, 10.0]).unwrap();
        let per_feature = scaler(
            DataType::Float,
            3,
            vec![
                ("offset", Attr::Floats(vec![1.0, 2.0, 3.0])),
                ("scale", Attr::Floats(vec![2.0, 0.5, -1.0])),
            ],
        );
        assert_eq!(
            run(&per_feature, x.clone()),
            [0.0, 0.0, 0.0, -4.0, -1.0, -7.0]
        );
        let shared = scaler(
            DataType::Float,
            3,
            vec![
                ("offset", Attr::Floats(vec![1.0])),
                ("scale", Attr::Floats(vec![10.0])),
            ],
        );
        assert_eq!(run(&shared, x), [0.0, 10.0, 20.0, -20.0, -10.0, 90.0]);
    }

    #[test]
    fn integer_inputs_become_floats_and_missing_attributes_are_identity() {
        let model = scaler(DataType::Int64, 2, vec![]);
        let x = Tensor::from_shape(&[1, 2], &[3i64, -4]).unwrap();
        assert_eq!(run(&model, x), [3.0, -4.0]);
    }

    #[test]
    fn a_length_that_fits_no_feature_count_is_refused() {
        let model = scaler(
            DataType::Float,
            3,
            vec![("offset", Attr::Floats(vec![1.0, 2.0]))],
        );
        let error = compile(&model, &BTreeMap::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("`offset` has 2 values; the input has 3 features"),
            "{error}"
        );
    }
}
