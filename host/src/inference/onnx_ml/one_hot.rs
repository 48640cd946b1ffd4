//! `OneHotEncoder` (ai.onnx.ml): each input value becomes a row of
//! zeros with a one at its category's position; output shape = input
//! shape + `[categories]`, f32. Integer categories (`cats_int64s`; numeric
//! inputs are cast to int64) or string categories (`cats_strings`). With
//! `zeros = 0` an unknown value fails the run instead of encoding as all
//! zeros.

use std::collections::HashMap;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, check_input_arity,
    check_output_arity, expand,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Categories {
    Int(HashMap<i64, usize>),
    Text(HashMap<String, usize>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OneHot {
    categories: Categories,
    count: usize,
    /// Unknown values encode as all zeros (else they fail the run).
    zeros: bool,
}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (categories, count) = match (
        node.get_attr_opt_vec::<i64>("cats_int64s")?,
        node.get_attr_opt_vec::<String>("cats_strings")?,
    ) {
        (Some(ints), None) if !ints.is_empty() => {
            let n = ints.len();
            (Categories::Int(ints.into_iter().zip(0..n).collect()), n)
        }
        (None, Some(texts)) if !texts.is_empty() => {
            let n = texts.len();
            (Categories::Text(texts.into_iter().zip(0..n).collect()), n)
        }
        _ => bail!(
            "OneHotEncoder `{}` needs exactly one of cats_int64s and cats_strings, with at least one category",
            node.name
        ),
    };
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((
        expand(OneHot {
            categories,
            count,
            zeros,
        }),
        vec![],
    ))
}

impl Expansion for OneHot {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.given(&inputs[0].rank, move |s, rank| {
            s.equals(&outputs[0].rank, rank + 1)?;
            let rank = rank as usize;
            for axis in 0..rank {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            s.equals(&outputs[0].shape[rank], self.count.to_dim())
        })?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let mut x = inputs[0];
        match self.categories {
            Categories::Text(_) => ensure!(
                fact.datum_type == String::datum_type(),
                "OneHotEncoder `{prefix}` has string categories; its input is {:?}",
                fact.datum_type
            ),
            Categories::Int(_) => {
                // tract types some int64 casts as TDim (symbolic integers).
                ensure!(
                    fact.datum_type.is_number() || fact.datum_type == TDim::datum_type(),
                    "OneHotEncoder `{prefix}` has integer categories; its input is {:?}",
                    fact.datum_type
                );
                if fact.datum_type != i64::datum_type() {
                    x = model.wire_node(
                        format!("{prefix}.to_i64"),
                        cast(i64::datum_type()),
                        &[x],
                    )?[0];
                }
            }
        }
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for OneHot {
    fn name(&self) -> StaticName {
        "SluiceOneHotEncoder".into()
    }

    op_as_typed_op!();
}

impl OneHot {
    fn encode<T: std::fmt::Debug>(
        &self,
        values: impl Iterator<Item = T>,
        position: impl Fn(&T) -> Option<usize>,
        out: &mut [f32],
    ) -> TractResult<()> {
        for (v, row) in values.zip(out.chunks_exact_mut(self.count)) {
            match position(&v) {
                Some(i) => row[i] = 1.0,
                None if self.zeros => {}
                None => bail!(
                    "value {v:?} is not one of the encoder's categories (the model sets zeros = 0)"
                ),
            }
        }
        Ok(())
    }
}

impl EvalOp for OneHot {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let mut shape: TVec<usize> = x.shape().into();
        shape.push(self.count);
        let mut out = vec![0f32; x.len() * self.count];
        let plain = x.try_as_plain_ram()?;
        match &self.categories {
            Categories::Int(map) => self.encode(
                plain.as_slice::<i64>()?.iter(),
                |v| map.get(*v).copied(),
                &mut out,
            )?,
            Categories::Text(map) => self.encode(
                plain.as_slice::<String>()?.iter(),
                |v| map.get(v.as_str()).copied(),
                &mut out,
            )?,
        }
        Ok(tvec!(Tensor::from_shape(&shape, &out)?.into_tvalue()))
    }
}

impl TypedOp for OneHot {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.push(self.count.to_dim());
        Ok(tvec!(f32::fact(shape)))
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

    fn encode(model: &[u8], x: Tensor) -> TractResult<(Vec<usize>, Vec<f32>)> {
        let (plan, _, _) = compile(model, &BTreeMap::new()).expect("compiles");
        let y = plan.run(tvec!(x.into_tvalue()))?;
        let view = y[0].to_plain_array_view::<f32>()?;
        Ok((view.shape().to_vec(), view.iter().copied().collect()))
    }

    #[test]
    fn integer_categories_unknowns_and_float_inputs() {
        let model = one_node(
            "OneHotEncoder",
            DataType::Float,
            &[-1, 1],
            &[("Y", DataType::Float)],
            vec![("cats_int64s", Attr::Ints(vec![3, 1, 2]))],
        );
        let x = Tensor::from_shape(&[3, 1], &[1.0f32, 3.0, 7.0]).unwrap();
        let (shape, y) = encode(&model, x).unwrap();
        assert_eq!(shape, [3, 1, 3]);
        assert_eq!(y, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);

        let strict = one_node(
            "OneHotEncoder",
            DataType::Int64,
            &[-1, 1],
            &[("Y", DataType::Float)],
            vec![
                ("cats_int64s", Attr::Ints(vec![3, 1])),
                ("zeros", Attr::Int(0)),
            ],
        );
        let x = Tensor::from_shape(&[1, 1], &[5i64]).unwrap();
        let error = format!("{:#}", encode(&strict, x).expect_err("unknown value fails"));
        assert!(
            error.contains("value 5 is not one of the encoder's categories"),
            "{error}"
        );
    }

    #[test]
    fn string_categories() {
        let model = one_node(
            "OneHotEncoder",
            DataType::String,
            &[-1],
            &[("Y", DataType::Float)],
            vec![("cats_strings", Attr::Strings(vec!["red", "green"]))],
        );
        let x = tract_onnx::tract_core::ndarray::arr1(&["green".to_string(), "blue".to_string()])
            .into_tensor();
        let (shape, y) = encode(&model, x).unwrap();
        assert_eq!(shape, [2, 2]);
        assert_eq!(y, [0.0, 1.0, 0.0, 0.0]);
    }
}
