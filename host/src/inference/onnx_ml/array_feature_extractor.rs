//! `ArrayFeatureExtractor` (ai.onnx.ml): the columns `Y` (int64 indices)
//! of `X`'s last axis, in `Y`'s order, for any element type. The output
//! has `X`'s shape with the last axis replaced by the number of indices
//! (`[1, k]` for a 1-D `X`), as onnxruntime serves it. An index outside the
//! row is an error: refused at load when the indices are constant, a failed
//! run otherwise (tract's own operator would read a neighbouring row's value
//! instead).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, check_input_arity,
    check_output_arity, expand,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ArrayFeatureExtractor;

pub(super) fn parse(
    _: &ParsingContext,
    _: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(ArrayFeatureExtractor), vec![]))
}

impl Expansion for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[1].datum_type, i64::datum_type())?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, x, indices| {
            let k: TDim = indices.iter().product();
            let shape: TVec<TDim> = match x.len() {
                1 => tvec!(1.into(), k),
                n => x[..n - 1].iter().cloned().chain([k]).collect(),
            };
            s.equals(&outputs[0].shape, shape)
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            x.rank() >= 1,
            "ArrayFeatureExtractor `{prefix}` needs an input with a feature axis"
        );
        let width = x.shape[x.rank() - 1].to_usize().ok();
        if let (Some(indices), Some(width)) = (&model.outlet_fact(inputs[1])?.konst, width) {
            check_indices(indices.try_as_plain_ram()?.as_slice::<i64>()?, width)
                .with_context(|| format!("ArrayFeatureExtractor `{prefix}`"))?;
        }
        model.wire_node(prefix, self.clone(), inputs)
    }
}

/// The indices as offsets into a row of `width`, or what is wrong with them.
fn check_indices(indices: &[i64], width: usize) -> TractResult<Vec<usize>> {
    ensure!(!indices.is_empty(), "no indices to extract");
    indices
        .iter()
        .map(|&i| match usize::try_from(i) {
            Ok(i) if i < width => Ok(i),
            _ => bail!("index {i} is outside the input's {width} features (0..{width})"),
        })
        .collect()
}

fn extract<T: Datum>(x: &Tensor, columns: &[usize], shape: &[usize]) -> TractResult<Tensor> {
    let width = *x.shape().last().unwrap_or(&1);
    let plain = x.try_as_plain_ram()?;
    let rows = plain.as_slice::<T>()?.chunks_exact(width);
    let out: Vec<T> = rows
        .flat_map(|row| columns.iter().map(|&c| row[c].clone()))
        .collect();
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, out)?.into_tensor())
}

impl Op for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "SluiceArrayFeatureExtractor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ArrayFeatureExtractor {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, indices) = args_2!(inputs);
        let width = *x.shape().last().unwrap_or(&0);
        let columns = check_indices(indices.try_as_plain_ram()?.as_slice::<i64>()?, width)?;
        let shape: TVec<usize> = match x.shape() {
            [_] => tvec!(1, columns.len()),
            s => s[..s.len() - 1]
                .iter()
                .copied()
                .chain([columns.len()])
                .collect(),
        };
        let y = dispatch_datum!(extract(x.datum_type())(&x, &columns, &shape))?;
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for ArrayFeatureExtractor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let k = inputs[1].shape.volume();
        let x = &inputs[0].shape;
        let shape: TVec<TDim> = match x.rank() {
            1 => tvec!(1.into(), k),
            n => x.iter().take(n - 1).cloned().chain([k]).collect(),
        };
        Ok(tvec!(inputs[0].datum_type.fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::graph::{Constant, one_node_with};
    use crate::inference::compile;
    use std::collections::BTreeMap;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::prelude::*;

    fn extractor(elem_type: DataType, dims: &[i64], indices: Vec<i64>) -> Vec<u8> {
        one_node_with(
            "ArrayFeatureExtractor",
            elem_type,
            dims,
            &[("Z", elem_type)],
            vec![],
            vec![Constant::Ints("Y", indices)],
        )
    }

    #[test]
    fn columns_in_index_order_for_numbers_and_strings() {
        let model = extractor(DataType::Float, &[-1, 4], vec![3, 0, 3]);
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[2, 4], &[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        assert_eq!(y[0].shape(), [2, 3]);
        let y: Vec<f32> = y[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(y, [3.0, 0.0, 3.0, 7.0, 4.0, 7.0]);

        // A 1-D input is one row: [1, k].
        let model = extractor(DataType::String, &[3], vec![2, 1]);
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x = tract_onnx::tract_core::ndarray::arr1(&["a".to_string(), "b".into(), "c".into()])
            .into_tensor();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        assert_eq!(y[0].shape(), [1, 2]);
        let y: Vec<String> = y[0]
            .to_plain_array_view::<String>()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(y, ["c", "b"]);
    }

    #[test]
    fn indices_outside_the_row_are_refused_at_load() {
        for index in [4, -1] {
            let model = extractor(DataType::Float, &[-1, 4], vec![0, index]);
            let error = compile(&model, &BTreeMap::new())
                .err()
                .expect("refused")
                .to_string();
            assert!(
                error.contains(&format!("index {index} is outside the input's 4 features")),
                "{error}"
            );
        }
    }
}
