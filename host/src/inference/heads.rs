//! Classifier heads: `Softmax` and `ArgMax` over short rows, swapped into
//! optimised plans in place of tract's generic operators.
//!
//! A tabular classifier ends in a softmax and an argmax over a few classes.
//! tract dispatches a SIMD kernel per softmax row and walks ndarray lanes
//! for argmax: about 120 ns per row each on rows of 3 or 10 floats, 16 of
//! the 22 µs a logistic regression takes on 64 rows (BENCHMARKS.md). Plain
//! loops over contiguous rows do the same in a few nanoseconds per row.
//! Anything else (long rows, other axes, other types, non-contiguous data)
//! stays with tract's operator, which each head keeps as its fallback.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

/// Rows up to this length take the plain loops; longer rows amortise
/// tract's vectorised kernels.
const SHORT_ROW: usize = 64;

/// Replace the softmax and argmax nodes of `model` that reduce the last
/// axis of short f32 rows.
pub(super) fn install(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let Some(fact) = model.node_input_facts(id)?.first().map(|f| (*f).clone()) else {
            continue;
        };
        let rank = fact.rank();
        let short = fact.datum_type == f32::datum_type()
            && rank > 0
            && fact.shape[rank - 1]
                .to_usize()
                .is_ok_and(|n| (1..=SHORT_ROW).contains(&n));
        if !short {
            continue;
        }
        let node = model.node_mut(id);
        let head: Option<Box<dyn TypedOp>> = if let Some(softmax) = node.op_as::<Softmax>() {
            (softmax.kind == SoftmaxKind::Softmax
                && softmax.quant_output_dt.is_none()
                && *softmax.axes == [rank - 1])
            .then(|| Box::new(RowSoftmax(softmax.clone())) as _)
        } else if let Some(reduce) = node.op_as::<Reduce>() {
            match reduce.reducer {
                Reducer::ArgMax(last) if *reduce.axes == [rank - 1] => Some(Box::new(RowArgMax {
                    last,
                    fallback: reduce.clone(),
                })
                    as _),
                _ => None,
            }
        } else {
            None
        };
        if let Some(head) = head {
            node.op = head;
        }
    }
    Ok(())
}

/// The rows of a plain f32 tensor along its last axis, if it is one and
/// `axes` names that axis.
fn rows(tensor: &Tensor, axes: &[usize]) -> Option<(usize, usize)> {
    let row = *tensor.shape().last()?;
    let plain = *axes == [tensor.rank() - 1]
        && tensor.datum_type() == f32::datum_type()
        && tensor.is_plain_ram()
        && tensor.strides() == &*Tensor::natural_strides(tensor.shape());
    (plain && row > 0).then(|| (tensor.len() / row, row))
}

/// Softmax over the last axis, one short row at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowSoftmax(Softmax);

impl Op for RowSoftmax {
    fn name(&self) -> StaticName {
        "RowSoftmax".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowSoftmax {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if rows(&inputs[0], &self.0.axes).is_none() {
            return self.0.eval(ctx, inputs);
        }
        let mut output = args_1!(inputs).into_tensor();
        let row = *output.shape().last().unwrap_or(&1);
        let mut plain = output.try_as_plain_ram_mut()?;
        let data = plain.as_slice_mut::<f32>()?;
        // Three passes so the exponentials run over the whole buffer in one
        // loop the compiler vectorises, not row by row.
        for values in data.chunks_exact_mut(row) {
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            values.iter_mut().for_each(|v| *v -= max);
        }
        data.iter_mut().for_each(|v| *v = exp_nonpositive(*v));
        for values in data.chunks_exact_mut(row) {
            let scale = values.iter().sum::<f32>().recip();
            values.iter_mut().for_each(|v| *v *= scale);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for RowSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.0.output_facts(inputs)
    }

    as_op!();
}

/// `e^x` for `x <= 0` (a softmax input less its row's maximum), within
/// 5e-7 relative of `f32::exp` (a few ulp), written so that a loop of it vectorises with SSE2
/// alone (no libm call, no `round`).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    // Below this e^x is under f32's smallest normal: call it e^-87.
    let x = x.max(-87.0);
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series to r^6 on |r| <= ln2 / 2: error below 1.3e-7.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from its exponent bits; n is in [-126, 0].
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

/// ArgMax over the last axis, keeping it (length 1), one short row at a
/// time. `last` picks the last of equal maxima, as ONNX's
/// `select_last_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowArgMax {
    last: bool,
    fallback: Reduce,
}

impl Op for RowArgMax {
    fn name(&self) -> StaticName {
        "RowArgMax".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowArgMax {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let Some((count, row)) = rows(&inputs[0], &self.fallback.axes) else {
            return self.fallback.eval(ctx, inputs);
        };
        let input = inputs[0].try_as_plain_ram()?;
        let mut indices = Vec::with_capacity(count);
        for values in input.as_slice::<f32>()?.chunks_exact(row) {
            let mut best = 0;
            for (i, v) in values.iter().enumerate().skip(1) {
                let better = if self.last {
                    *v >= values[best]
                } else {
                    *v > values[best]
                };
                if better {
                    best = i;
                }
            }
            indices.push(best as i64);
        }
        let mut shape: TVec<usize> = inputs[0].shape().into();
        if let Some(axis) = shape.last_mut() {
            *axis = 1;
        }
        Ok(tvec!(Tensor::from_shape(&shape, &indices)?.into_tvalue()))
    }
}

impl TypedOp for RowArgMax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.fallback.output_facts(inputs)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_both(op: &dyn TypedOp, head: &dyn TypedOp, input: Tensor) -> (Tensor, Tensor) {
        let ctx = EvalContext::out_of_plan();
        let eval = |op: &dyn TypedOp| {
            op.as_op()
                .eval(&ctx, tvec!(input.clone().into_tvalue()))
                .expect("eval")
                .remove(0)
                .into_tensor()
        };
        (eval(op), eval(head))
    }

    #[test]
    fn exp_matches_the_standard_library() {
        let mut x = 0.0f32;
        while x > -100.0 {
            let (want, got) = (x.exp(), exp_nonpositive(x));
            let tolerance = if x < -87.0 { 1.7e-38 } else { want * 5e-7 };
            assert!((want - got).abs() <= tolerance, "e^{x}: {want} vs {got}");
            x -= 0.001_7;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn heads_agree_with_tracts_operators() {
        // Rows with ties, negatives and large values.
        let data: Vec<f32> = vec![
            1.0, 3.0, 3.0, -2.0, -1.0, -1.5, 80.0, 0.0, 80.0, 0.25, 0.5, 0.125,
        ];
        let input = Tensor::from_shape(&[4, 3], &data).unwrap();
        let softmax = Softmax::new(tvec!(1), None, SoftmaxKind::Softmax);
        let (want, got) = run_both(&softmax, &RowSoftmax(softmax.clone()), input.clone());
        let (want, got) = (
            want.to_plain_array_view::<f32>().unwrap().to_owned(),
            got.to_plain_array_view::<f32>().unwrap().to_owned(),
        );
        assert_eq!(want.shape(), got.shape());
        for (w, g) in want.iter().zip(got.iter()) {
            assert!((w - g).abs() <= 1e-6, "{want} vs {got}");
        }
        for last in [false, true] {
            let reduce = Reduce::new(tvec!(1), Reducer::ArgMax(last));
            let head = RowArgMax {
                last,
                fallback: reduce.clone(),
            };
            let (want, got) = run_both(&reduce, &head, input.clone());
            assert_eq!(want, got, "select_last_index = {last}");
        }
        // Not the last axis: the fallback answers.
        let reduce = Reduce::new(tvec!(0), Reducer::ArgMax(false));
        let head = RowArgMax {
            last: false,
            fallback: reduce.clone(),
        };
        let column = Tensor::from_shape(&[3, 1], &[1.0f32, 5.0, 2.0]).unwrap();
        let (want, got) = run_both(&reduce, &head, column);
        assert_eq!(want, got);
    }
}
