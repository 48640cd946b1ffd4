//! `Imputer` (ai.onnx.ml): along the last axis, values equal to the
//! replaced value (NaN when it is NaN) become the feature's imputed value
//! (one per feature, or one for all). Float inputs take
//! `imputed_value_floats` / `replaced_value_float`, int64 inputs the
//! `int64s` pair, as onnxruntime serves it.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

/// What to replace and with what, in one element type.
#[derive(Debug, Clone)]
enum Values {
    F32 { replaced: f32, imputed: Vec<f32> },
    I64 { replaced: i64, imputed: Vec<i64> },
}

#[derive(Debug, Clone)]
struct Imputer(Values);

/// Identical values, floats compared bit for bit (so a NaN sentinel equals
/// itself).
impl PartialEq for Imputer {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        match (&self.0, &other.0) {
            (
                Values::F32 {
                    replaced: a,
                    imputed: x,
                },
                Values::F32 {
                    replaced: b,
                    imputed: y,
                },
            ) => a.to_bits() == b.to_bits() && bits(x) == bits(y),
            (
                Values::I64 {
                    replaced: a,
                    imputed: x,
                },
                Values::I64 {
                    replaced: b,
                    imputed: y,
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

impl Eq for Imputer {}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let floats: Option<Vec<f32>> = node.get_attr_opt_vec("imputed_value_floats")?;
    let ints: Option<Vec<i64>> = node.get_attr_opt_vec("imputed_value_int64s")?;
    let values = match (floats, ints) {
        (Some(imputed), None) if !imputed.is_empty() => Values::F32 {
            replaced: node.get_attr_opt("replaced_value_float")?.unwrap_or(0.0),
            imputed,
        },
        (None, Some(imputed)) if !imputed.is_empty() => Values::I64 {
            replaced: node.get_attr_opt("replaced_value_int64")?.unwrap_or(0),
            imputed,
        },
        _ => bail!(
            "Imputer `{}` needs exactly one of imputed_value_floats and imputed_value_int64s, with at least one value",
            node.name
        ),
    };
    Ok((expand(Imputer(values)), vec![]))
}

impl Imputer {
    fn datum_type(&self) -> DatumType {
        match self.0 {
            Values::F32 { .. } => f32::datum_type(),
            Values::I64 { .. } => i64::datum_type(),
        }
    }

    fn imputed_len(&self) -> usize {
        match &self.0 {
            Values::F32 { imputed, .. } => imputed.len(),
            Values::I64 { imputed, .. } => imputed.len(),
        }
    }
}

impl Expansion for Imputer {
    fn name(&self) -> StaticName {
        "Imputer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&inputs[0].datum_type, self.datum_type())?;
        super::same_shape_rules(s, inputs, outputs, None)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            fact.datum_type == self.datum_type(),
            "Imputer `{prefix}` imputes {:?} values into a {:?} input; export it for the input's type",
            self.datum_type(),
            fact.datum_type
        );
        let rank = fact.rank();
        ensure!(
            rank >= 1,
            "Imputer `{prefix}` needs an input with a feature axis"
        );
        if let Ok(features) = fact.shape[rank - 1].to_usize() {
            let n = self.imputed_len();
            ensure!(
                n == 1 || n == features,
                "Imputer `{prefix}` has {n} imputed values; the input has {features} features (give one per feature, or one for all)"
            );
        }
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for Imputer {
    fn name(&self) -> StaticName {
        "SluiceImputer".into()
    }

    op_as_typed_op!();
}

/// Replace, in `data` (rows of `width`), what `hit` says with `imputed`.
fn impute<T: Copy>(data: &mut [T], width: usize, imputed: &[T], hit: impl Fn(T) -> bool) {
    for row in data.chunks_exact_mut(width) {
        for (j, v) in row.iter_mut().enumerate() {
            if hit(*v) {
                *v = imputed[if imputed.len() == 1 { 0 } else { j }];
            }
        }
    }
}

impl EvalOp for Imputer {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut x = args_1!(inputs).into_tensor();
        let width = *x.shape().last().unwrap_or(&1);
        ensure!(
            self.imputed_len() == 1 || self.imputed_len() == width,
            "the input has {width} features; the imputer has {} values",
            self.imputed_len()
        );
        let mut plain = x.try_as_plain_ram_mut()?;
        match &self.0 {
            Values::F32 { replaced, imputed } => {
                let replaced = *replaced;
                let data = plain.as_slice_mut::<f32>()?;
                if replaced.is_nan() {
                    impute(data, width, imputed, |v| v.is_nan());
                } else {
                    impute(data, width, imputed, |v| v == replaced);
                }
            }
            Values::I64 { replaced, imputed } => {
                let replaced = *replaced;
                impute(plain.as_slice_mut::<i64>()?, width, imputed, |v| {
                    v == replaced
                });
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for Imputer {
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

    #[test]
    fn missing_values_take_each_features_imputed_value() {
        let model = one_node(
            "Imputer",
            DataType::Float,
            &[-1, 3],
            &[("Y", DataType::Float)],
            vec![
                ("imputed_value_floats", Attr::Floats(vec![1.0, 2.0, 3.0])),
                ("replaced_value_float", Attr::Float(f32::NAN)),
            ],
        );
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x =
            Tensor::from_shape(&[2, 3], &[f32::NAN, 5.0, f32::NAN, 0.0, f32::NAN, 6.0]).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let y: Vec<f32> = y[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(y, [1.0, 5.0, 3.0, 0.0, 2.0, 6.0]);
    }

    #[test]
    fn integer_sentinels_and_wrong_widths() {
        let model = one_node(
            "Imputer",
            DataType::Int64,
            &[-1, 2],
            &[("Y", DataType::Int64)],
            vec![
                ("imputed_value_int64s", Attr::Ints(vec![42])),
                ("replaced_value_int64", Attr::Int(-1)),
            ],
        );
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[2, 2], &[-1i64, 3, 4, -1]).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let y: Vec<i64> = y[0]
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(y, [42, 3, 4, 42]);

        let wrong = one_node(
            "Imputer",
            DataType::Float,
            &[-1, 3],
            &[("Y", DataType::Float)],
            vec![("imputed_value_floats", Attr::Floats(vec![1.0, 2.0]))],
        );
        let error = compile(&wrong, &BTreeMap::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("has 2 imputed values; the input has 3 features"),
            "{error}"
        );
    }
}
