//! The linear models of ai.onnx.ml, as onnxruntime computes them: scores
//! `X · coefficientsᵀ + intercepts`, one per target, summed in f64 one row
//! at a time. tract's own go through its matrix-product machinery, which on
//! small models costs more than the arithmetic (2-3× onnxruntime's run at
//! 64 rows of 30 features), and its `LinearRegressor` fails to optimise
//! after a `Concat` (scikit-learn's `PolynomialFeatures` before a linear
//! model).
//!
//! - `LinearRegressor`: `[N, targets]` f32, with `post_transform` applied
//!   per row when there are several targets (only `PROBIT` for one).
//! - `LinearClassifier`: the label is the best class (the first on a tie)
//!   and the scores `[N, classes]` after the post-transform. A binary model
//!   with one row of coefficients labels class 1 where its score is above
//!   0 and answers `[1 - s, s]`, as onnxruntime does.

use super::class_labels::Labels;
use super::trees::PostTransform;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

/// Coefficients `[targets, features]` and one intercept per target.
#[derive(Debug)]
struct Affine {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
}

impl Affine {
    fn read(node: &NodeProto, op: &str, targets: Option<usize>) -> TractResult<Self> {
        let name = &node.name;
        let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
        let intercepts: Vec<f32> = match (node.get_attr_opt_vec("intercepts")?, targets) {
            (Some(given), _) => given,
            (None, Some(targets)) => vec![0.0; targets],
            (None, None) => bail!("{op} `{name}` has no intercepts (one per class)"),
        };
        let targets = targets.unwrap_or(intercepts.len());
        ensure!(
            targets >= 1
                && intercepts.len() == targets
                && !coefficients.is_empty()
                && coefficients.len().is_multiple_of(targets),
            "{op} `{name}`: {} coefficients and {} intercepts are not one row and one intercept per target ({targets})",
            coefficients.len(),
            intercepts.len()
        );
        Ok(Self {
            coefficients,
            intercepts,
        })
    }

    fn targets(&self) -> usize {
        self.intercepts.len()
    }

    fn features(&self) -> usize {
        self.coefficients.len() / self.targets()
    }

    /// The scores of `n` rows of `x`: `[n, targets]`.
    fn scores(&self, x: &[f32], n: usize) -> Vec<f32> {
        let features = self.features();
        let mut y = Vec::with_capacity(n * self.targets());
        for row in x.chunks_exact(features).take(n) {
            for (w, b) in self
                .coefficients
                .chunks_exact(features)
                .zip(&self.intercepts)
            {
                y.push((dot(row, w) + f64::from(*b)) as f32);
            }
        }
        y
    }

    /// The number of rows of `x` (`op`'s input), checked.
    fn rows(&self, op: &str, x: &Tensor) -> TractResult<usize> {
        ensure!(
            x.shape().len() == 2 && x.shape()[1] == self.features(),
            "{op}: rows of {} features expected, got shape {:?}",
            self.features(),
            x.shape()
        );
        Ok(x.shape()[0])
    }

    /// Wire `op`'s input as f32 rows, refusing a feature count that does
    /// not fit.
    fn wire_input(
        &self,
        op: &str,
        prefix: &str,
        model: &mut TypedModel,
        input: OutletId,
    ) -> TractResult<OutletId> {
        let fact = model.outlet_fact(input)?.clone();
        ensure!(
            fact.rank() == 2,
            "{op} `{prefix}`: the input needs rows of features (rank 2), it has rank {}",
            fact.rank()
        );
        if let Ok(features) = fact.shape[1].to_usize() {
            ensure!(
                features == self.features(),
                "{op} `{prefix}`: the input has {features} features; the coefficients have {} per row",
                self.features()
            );
        }
        super::wire_f32(prefix, model, input)
    }
}

/// `x · w` in f64, over four running sums so the additions do not wait on
/// each other.
pub(super) fn dot(x: &[f32], w: &[f32]) -> f64 {
    let mut sums = [0f64; 4];
    let (xs, ws) = (x.chunks_exact(4), w.chunks_exact(4));
    let tail: f64 = (xs.remainder().iter().zip(ws.remainder()))
        .map(|(a, c)| f64::from(*a) * f64::from(*c))
        .sum();
    for (x4, w4) in xs.zip(ws) {
        for i in 0..4 {
            sums[i] += f64::from(x4[i]) * f64::from(w4[i]);
        }
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3]) + tail
}

fn post_transform(node: &NodeProto, op: &str) -> TractResult<PostTransform> {
    PostTransform::parse(
        &node
            .get_attr_opt::<String>("post_transform")?
            .unwrap_or_else(|| "NONE".into()),
    )
    .map_err(|e| format_err!("{op} `{}`: {e}", node.name))
}

#[derive(Debug)]
struct Regressor {
    affine: Affine,
    post: PostTransform,
}

pub(super) fn parse_regressor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets = node.get_attr_opt::<i64>("targets")?.unwrap_or(1);
    ensure!(
        targets >= 1,
        "LinearRegressor `{}`: {targets} targets",
        node.name
    );
    let affine = Affine::read(node, "LinearRegressor", Some(targets as usize))?;
    let post = post_transform(node, "LinearRegressor")?;
    Ok((
        expand(LinearRegressor(Arc::new(Regressor { affine, post }))),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct LinearRegressor(Arc<Regressor>);

super::same_by_arc!(LinearRegressor);

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
        super::regressor_rules(s, inputs, outputs, self.0.affine.targets())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = (self.0.affine).wire_input("LinearRegressor", prefix, model, inputs[0])?;
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
        let n = r.affine.rows("LinearRegressor", &x)?;
        let targets = r.affine.targets();
        let mut y = r.affine.scores(x.try_as_plain_ram()?.as_slice::<f32>()?, n);
        // As onnxruntime: one target takes only PROBIT.
        if targets > 1 || r.post == PostTransform::Probit {
            y.chunks_exact_mut(targets)
                .for_each(|row| r.post.apply(row));
        }
        Ok(tvec!(Tensor::from_shape(&[n, targets], &y)?.into_tvalue()))
    }
}

impl TypedOp for LinearRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([rows, self.0.affine.targets().to_dim()])))
    }

    as_op!();
}

#[derive(Debug)]
struct Classifier {
    affine: Affine,
    labels: Labels,
    post: PostTransform,
}

impl Classifier {
    /// One score for two labels: onnxruntime's binary layout.
    fn binary(&self) -> bool {
        self.affine.targets() == 1
    }

    /// Scores per row in the output.
    fn width(&self) -> usize {
        match self.binary() {
            true => 2,
            false => self.affine.targets(),
        }
    }
}

pub(super) fn parse_classifier(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op = "LinearClassifier";
    let name = &node.name;
    let labels = Labels::read(node, op, "classlabels_ints")?;
    let affine = Affine::read(node, op, None)?;
    let post = post_transform(node, op)?;
    let classifier = Classifier {
        affine,
        labels,
        post,
    };
    match classifier.binary() {
        true => ensure!(
            classifier.labels.len() == 2 && post != PostTransform::Probit,
            "LinearClassifier `{name}`: one row of coefficients needs two class labels (it has {}) and a post_transform other than PROBIT",
            classifier.labels.len()
        ),
        false => ensure!(
            classifier.labels.len() == classifier.affine.targets(),
            "LinearClassifier `{name}`: {} class labels for {} rows of coefficients",
            classifier.labels.len(),
            classifier.affine.targets()
        ),
    }
    Ok((expand(LinearClassifier(Arc::new(classifier))), vec![]))
}

#[derive(Debug, Clone)]
struct LinearClassifier(Arc<Classifier>);

super::same_by_arc!(LinearClassifier);

impl Expansion for LinearClassifier {
    fn name(&self) -> StaticName {
        "LinearClassifier".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::classifier_rules(
            s,
            inputs,
            outputs,
            self.0.labels.datum_type(),
            self.0.width(),
        )
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = (self.0.affine).wire_input("LinearClassifier", prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for LinearClassifier {
    fn name(&self) -> StaticName {
        "SluiceLinearClassifier".into()
    }

    op_as_typed_op!();
}

impl EvalOp for LinearClassifier {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let c = &self.0;
        let x = args_1!(inputs);
        let n = c.affine.rows("LinearClassifier", &x)?;
        let scores = c.affine.scores(x.try_as_plain_ram()?.as_slice::<f32>()?, n);
        let (best, out): (Vec<usize>, Vec<f32>) = match c.binary() {
            true => (
                scores.iter().map(|s| usize::from(*s > 0.0)).collect(),
                scores.iter().flat_map(|s| [1.0 - s, *s]).collect(),
            ),
            false => {
                let mut scores = scores;
                let width = c.affine.targets();
                let best = scores
                    .chunks_exact_mut(width)
                    .map(|row| {
                        let top = (0..width).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                        c.post.apply(row);
                        top
                    })
                    .collect();
                (best, scores)
            }
        };
        Ok(tvec!(
            c.labels.pick(&best).into_tvalue(),
            Tensor::from_shape(&[n, c.width()], &out)?.into_tvalue()
        ))
    }
}

impl TypedOp for LinearClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        Ok(tvec!(
            self.0.labels.datum_type().fact([rows.clone()]),
            f32::fact([rows, self.0.width().to_dim()])
        ))
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
            format!("{error:#}").contains("not one row and one intercept per target"),
            "{error:#}"
        );
    }

    fn classify(attributes: Vec<(&str, Attr)>, rows: &[f32]) -> (Vec<i64>, Vec<f32>) {
        let model = one_node(
            "LinearClassifier",
            DataType::Float,
            &[-1, 2],
            &[("label", DataType::Int64), ("scores", DataType::Float)],
            attributes,
        );
        let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[rows.len() / 2, 2], rows).unwrap();
        let out = plan.run(tvec!(x.into_tvalue())).expect("runs");
        (
            out[0]
                .to_plain_array_view::<i64>()
                .unwrap()
                .iter()
                .copied()
                .collect(),
            out[1]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect(),
        )
    }

    #[test]
    fn a_classifier_labels_the_best_class_and_transforms_its_scores() {
        let (labels, scores) = classify(
            vec![
                ("classlabels_ints", Attr::Ints(vec![7, 8, 9])),
                (
                    "coefficients",
                    Attr::Floats(vec![1.0, 0.0, 0.0, 1.0, -1.0, -1.0]),
                ),
                ("intercepts", Attr::Floats(vec![0.0, 0.0, 0.0])),
                ("post_transform", Attr::String("LOGISTIC")),
            ],
            &[2.0, 1.0, -1.0, -2.0],
        );
        assert_eq!(labels, [7, 9]);
        let sigma = |v: f32| 1.0 / (1.0 + (-v).exp());
        let want = [
            sigma(2.0),
            sigma(1.0),
            sigma(-3.0),
            sigma(-1.0),
            sigma(-2.0),
            sigma(3.0),
        ];
        for (g, w) in scores.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{scores:?}");
        }
    }

    #[test]
    fn one_row_of_coefficients_is_a_binary_classifier() {
        let (labels, scores) = classify(
            vec![
                ("classlabels_ints", Attr::Ints(vec![0, 1])),
                ("coefficients", Attr::Floats(vec![0.5, -0.5])),
                ("intercepts", Attr::Floats(vec![0.25])),
            ],
            &[1.0, 0.0, 0.0, 1.0],
        );
        assert_eq!(labels, [1, 0]);
        assert_eq!(scores, [0.25, 0.75, 1.25, -0.25]);
    }

    #[test]
    fn labels_that_do_not_fit_the_coefficients_are_refused() {
        let model = one_node(
            "LinearClassifier",
            DataType::Float,
            &[-1, 2],
            &[("label", DataType::Int64), ("scores", DataType::Float)],
            vec![
                ("classlabels_ints", Attr::Ints(vec![0, 1, 2])),
                ("coefficients", Attr::Floats(vec![1.0, 0.0, 0.0, 1.0])),
                ("intercepts", Attr::Floats(vec![0.0, 0.0])),
            ],
        );
        let error = compile(&model, &BTreeMap::new()).err().expect("refused");
        assert!(
            format!("{error:#}").contains("3 class labels for 2 rows"),
            "{error:#}"
        );
    }
}
