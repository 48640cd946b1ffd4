//! `ReduceLogSumExp` (the default domain), computed as onnxruntime does:
//! `max + log(sum(exp(x - max)))`. tract's own is `log(sum(exp(x)))`,
//! which underflows to `log(0) = -inf` when every value is a large
//! negative number: the joint log-likelihoods of a naive Bayes model, for
//! one (scikit-learn's `MultinomialNB` exports `ReduceLogSumExp → Sub →
//! Exp`, and served `inf` for every probability).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::nn::{Reduce, Reducer};

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct LogSumExp {
    /// The `axes` attribute (before opset 18; `None`: every axis).
    axes: Option<Vec<i64>>,
    /// From opset 18 the axes are a second (constant) input.
    axes_input: bool,
    keep_dims: bool,
    /// With empty axes: the input unchanged, not reduced over every axis.
    noop_with_empty_axes: bool,
}

pub(super) fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let keep_dims = node.get_attr_opt("keepdims")?.unwrap_or(1i64) == 1;
    let op = if ctx.onnx_operator_set_version >= 18 {
        LogSumExp {
            axes: None,
            axes_input: node.input.len() == 2,
            keep_dims,
            noop_with_empty_axes: node.get_attr_opt("noop_with_empty_axes")?.unwrap_or(0i64) == 1,
        }
    } else {
        LogSumExp {
            axes: node.get_attr_opt_vec("axes")?,
            axes_input: false,
            keep_dims,
            noop_with_empty_axes: false,
        }
    };
    Ok((expand(op), vec![]))
}

impl LogSumExp {
    /// The axes to reduce given the axes input (`None`: every axis; an
    /// empty list: none, for `noop_with_empty_axes`).
    fn resolve(&self, given: Option<Vec<i64>>) -> Option<Vec<i64>> {
        match given {
            Some(axes) if axes.is_empty() && !self.noop_with_empty_axes => None,
            Some(axes) => Some(axes),
            None if self.axes_input && self.noop_with_empty_axes => Some(vec![]),
            None => self.axes.clone(),
        }
    }

    fn reduce(axes: &Option<Vec<i64>>, keep_dims: bool, reducer: Reducer) -> Reduce {
        Reduce::new(axes.clone(), keep_dims, reducer)
    }
}

impl Expansion for LogSumExp {
    fn name(&self) -> StaticName {
        "SluiceReduceLogSumExp".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1 + usize::from(self.axes_input))?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        let shape_rule = move |s: &mut Solver<'r>, axes: Option<Vec<i64>>| {
            let op = Self::reduce(&axes, self.keep_dims, Reducer::LogSumExp);
            s.given(&inputs[0].shape, move |s, shape| {
                s.equals(&outputs[0].shape, op.output_shape(&shape))
            })
        };
        if self.axes_input {
            s.given(&inputs[1].value, move |s, axes| {
                let axes = axes
                    .cast_to::<i64>()?
                    .try_as_plain_ram()?
                    .as_slice::<i64>()?
                    .to_vec();
                shape_rule(s, self.resolve(Some(axes)))
            })
        } else {
            shape_rule(s, self.resolve(None))
        }
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let given = match self.axes_input {
            true => Some(
                model
                    .outlet_fact(inputs[1])?
                    .konst
                    .as_ref()
                    .context("ReduceLogSumExp needs its axes as a constant")?
                    .cast_to::<i64>()?
                    .try_as_plain_ram()?
                    .as_slice::<i64>()?
                    .to_vec(),
            ),
            false => None,
        };
        let axes = self.resolve(given);
        let x = inputs[0];
        if axes.as_ref().is_some_and(|a| a.is_empty()) {
            return Ok(tvec!(x));
        }
        let max = Self::reduce(&axes, true, Reducer::Max);
        let m = max.wire(&format!("{prefix}.max"), model, &[x])?[0];
        let shifted = model.wire_node(format!("{prefix}.shift"), math::sub(), &[x, m])?[0];
        let lse = Self::reduce(&axes, self.keep_dims, Reducer::LogSumExp);
        let lse = lse.wire(&format!("{prefix}.lse"), model, &[shifted])?[0];
        let m = match self.keep_dims {
            true => m,
            false => {
                let max = Self::reduce(&axes, false, Reducer::Max);
                max.wire(&format!("{prefix}.max_out"), model, &[x])?[0]
            }
        };
        model.wire_node(prefix, math::add(), &[lse, m])
    }
}

#[cfg(test)]
mod tests {
    use super::super::graph::{Attr, Constant, one_node, one_node_with};
    use crate::inference::compile;
    use prost::Message;
    use std::collections::BTreeMap;
    use tract_onnx::pb::ModelProto;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::prelude::*;

    fn run(model: &[u8], x: Tensor) -> (Vec<usize>, Vec<f32>) {
        let (plan, _, _) = compile(model, &BTreeMap::new()).expect("compiles");
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let view = y[0].to_plain_array_view::<f32>().unwrap();
        (view.shape().to_vec(), view.iter().copied().collect())
    }

    /// log(e^a + e^b), the way it does not underflow.
    fn lse(a: f32, b: f32) -> f32 {
        let m = a.max(b);
        m + ((a - m).exp() + (b - m).exp()).ln()
    }

    fn naive_bayes_like() -> Tensor {
        // Joint log-likelihoods of two rows over two classes: exp of each
        // underflows f32, yet their log-sum-exp is finite.
        Tensor::from_shape(&[2, 2], &[-1200.0f32, -1201.0, -3.0, -4.5]).unwrap()
    }

    #[test]
    fn large_negative_values_do_not_underflow() {
        let model = one_node(
            "ReduceLogSumExp",
            DataType::Float,
            &[-1, 2],
            &[("Y", DataType::Float)],
            vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))],
        );
        let (shape, y) = run(&model, naive_bayes_like());
        assert_eq!(shape, [2, 1]);
        for (got, want) in y.iter().zip([lse(-1200.0, -1201.0), lse(-3.0, -4.5)]) {
            assert!((got - want).abs() < 1e-4, "{y:?}");
        }
        assert!(y[0].is_finite(), "tract's own gives -inf here: {y:?}");
    }

    #[test]
    fn axes_as_an_input_from_opset_18_and_dropped_dims() {
        let model = one_node_with(
            "ReduceLogSumExp",
            DataType::Float,
            &[-1, 2],
            &[("Y", DataType::Float)],
            vec![("keepdims", Attr::Int(0))],
            vec![Constant::Ints("axes", vec![-1])],
        );
        let mut proto = ModelProto::decode(model.as_slice()).expect("model");
        for opset in &mut proto.opset_import {
            if opset.domain.is_empty() {
                opset.version = 18;
            }
        }
        let (shape, y) = run(&proto.encode_to_vec(), naive_bayes_like());
        assert_eq!(shape, [2]);
        assert!((y[0] - lse(-1200.0, -1201.0)).abs() < 1e-4, "{y:?}");
        assert!((y[1] - lse(-3.0, -4.5)).abs() < 1e-4, "{y:?}");
    }
}
