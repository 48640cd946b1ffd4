//! `SVMClassifier` (ai.onnx.ml), as scikit-learn's `SVC`, `NuSVC` (and
//! liblinear-style exports) produce it, computed as onnxruntime does.
//!
//! - **Support vectors** (libsvm): one one-vs-one classifier per pair of
//!   classes `i < j`, scoring a row `x` with the coefficients of both
//!   classes' support vectors times their kernels ([`super::svm_kernel`]),
//!   plus that pair's `rho`. A positive score is a vote for `i`, else for
//!   `j`; the label is the class with the most votes (the first on a tie).
//!   - With `prob_a`/`prob_b` (Platt scaling), each pair's score becomes a
//!     probability `1 - σ(a·s + b)` (clamped to [1e-7, 1 - 1e-7]), and the
//!     pairwise probabilities are coupled into one per class by libsvm's
//!     iterative method (Wu, Lin and Weng 2004), as onnxruntime runs it.
//!     The scores are those class probabilities.
//!   - Without, the scores are the pairs' decision values; with two
//!     classes, `[-s, s]` (`[1 - s, s]` after a post-transform).
//! - **No support vectors** (liblinear): one row of weights per class; the
//!   scores are `x·w + rho[0]` and the label the best class (with two
//!   classes, onnxruntime's rule: class 1 when the best score is above 0,
//!   or at least 0.5 when every weight is non-negative).
//!
//! `post_transform` applies to the scores as onnxruntime applies it.
//! Outputs `label: [N]` (int64 or string labels) and `scores: [N, k]` f32.

use super::class_labels::Labels;
use super::svm_kernel::Kernel;
use super::trees::PostTransform;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

/// How a row is scored.
#[derive(Debug)]
enum Mode {
    /// libsvm's one-vs-one classifiers over support vectors.
    Svc {
        /// The support vectors, row after row, grouped by class.
        support: Vec<f32>,
        /// Where each class's support vectors start, and how many it has.
        groups: Vec<(usize, usize)>,
        /// `[classes - 1, vectors]`: each vector's coefficient against the
        /// other classes (the row of class `j` skips the vector's own).
        coefficients: Vec<f32>,
        /// Platt scaling per pair (`prob_a`, `prob_b`), if probabilities
        /// were exported.
        platt: Option<(Vec<f32>, Vec<f32>)>,
    },
    /// liblinear: one row of `features` weights per class.
    Linear { weights: Vec<f32> },
}

#[derive(Debug)]
struct Classifier {
    kernel: Kernel,
    labels: Labels,
    features: usize,
    mode: Mode,
    rho: Vec<f32>,
    post: PostTransform,
    /// Every coefficient is non-negative (onnxruntime's binary rule).
    positive: bool,
}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let name = &node.name;
    let labels = Labels::read(node, "SVMClassifier", "classlabels_ints")?;
    let classes = labels.len();
    ensure!(
        classes >= 2,
        "SVMClassifier `{name}` has {classes} class label(s); a classifier needs at least 2"
    );
    let pairs = classes * (classes - 1) / 2;
    let floats = |attr: &str| -> TractResult<Vec<f32>> {
        Ok(node.get_attr_opt_vec(attr)?.unwrap_or_default())
    };
    let (coefficients, rho, support) = (
        floats("coefficients")?,
        floats("rho")?,
        floats("support_vectors")?,
    );
    let (prob_a, prob_b) = (floats("prob_a")?, floats("prob_b")?);
    let per_class: Vec<i64> = node
        .get_attr_opt_vec("vectors_per_class")?
        .unwrap_or_default();
    let post = PostTransform::parse(
        &node
            .get_attr_opt::<String>("post_transform")?
            .unwrap_or_else(|| "NONE".into()),
    )
    .map_err(|e| format_err!("SVMClassifier `{name}`: {e}"))?;
    ensure!(
        !coefficients.is_empty(),
        "SVMClassifier `{name}` has no coefficients"
    );
    ensure!(
        prob_a.len() == prob_b.len(),
        "SVMClassifier `{name}`: prob_a has {} values and prob_b {}; they go in pairs",
        prob_a.len(),
        prob_b.len()
    );
    let vectors = per_class.iter().map(|n| *n.max(&0) as usize).sum::<usize>();
    let (features, mode, kernel) = if vectors > 0 {
        ensure!(
            per_class.len() == classes && per_class.iter().all(|n| *n >= 0),
            "SVMClassifier `{name}`: vectors_per_class needs one count (≥ 0) per class ({classes}), it has {:?}",
            per_class
        );
        ensure!(
            !support.is_empty() && support.len().is_multiple_of(vectors),
            "SVMClassifier `{name}`: {vectors} support vectors need a whole number of rows of support_vectors ({} values)",
            support.len()
        );
        ensure!(
            coefficients.len() == (classes - 1) * vectors,
            "SVMClassifier `{name}`: {vectors} support vectors and {classes} classes need {} coefficients, it has {}",
            (classes - 1) * vectors,
            coefficients.len()
        );
        ensure!(
            rho.len() == pairs,
            "SVMClassifier `{name}`: {classes} classes make {pairs} one-vs-one pairs, each with a rho; it has {}",
            rho.len()
        );
        ensure!(
            prob_a.is_empty() || prob_a.len() == pairs,
            "SVMClassifier `{name}`: Platt scaling needs one prob_a and prob_b per pair ({pairs}), it has {}",
            prob_a.len()
        );
        let platt = (!prob_a.is_empty()).then_some((prob_a, prob_b));
        ensure!(
            !(classes == 2 && platt.is_none() && post == PostTransform::Probit),
            "SVMClassifier `{name}`: post_transform PROBIT on a binary classifier without probabilities is not supported (onnxruntime leaves its second score undefined)"
        );
        let mut groups = Vec::with_capacity(classes);
        let mut start = 0;
        for n in &per_class {
            groups.push((start, *n as usize));
            start += *n as usize;
        }
        let features = support.len() / vectors;
        let mode = Mode::Svc {
            support,
            groups,
            coefficients,
            platt,
        };
        (features, mode, Kernel::read(node, "SVMClassifier")?)
    } else {
        ensure!(
            coefficients.len().is_multiple_of(classes) && !rho.is_empty() && prob_a.is_empty(),
            "SVMClassifier `{name}`: a linear model (no support vectors) needs one row of coefficients per class ({classes}; it has {} values) and a rho, and no Platt scaling",
            coefficients.len()
        );
        let features = coefficients.len() / classes;
        (
            features,
            Mode::Linear {
                weights: coefficients,
            },
            Kernel::Linear,
        )
    };
    let positive = match &mode {
        Mode::Svc { coefficients, .. } => coefficients.iter().all(|c| *c >= 0.0),
        Mode::Linear { weights } => weights.iter().all(|c| *c >= 0.0),
    };
    Ok((
        expand(SvmClassifier(Arc::new(Classifier {
            kernel,
            labels,
            features,
            mode,
            rho,
            post,
            positive,
        }))),
        vec![],
    ))
}

impl Classifier {
    /// Scores per row.
    fn width(&self) -> usize {
        let classes = self.labels.len();
        match &self.mode {
            Mode::Svc { platt: None, .. } if classes == 2 => 2,
            Mode::Svc { platt: None, .. } => classes * (classes - 1) / 2,
            _ => classes,
        }
    }

    /// The best class of row `x`, and its scores written to `out`.
    fn classify(&self, x: &[f32], scratch: &mut Scratch, out: &mut [f32]) -> usize {
        match &self.mode {
            Mode::Linear { weights } => self.classify_linear(weights, x, out),
            Mode::Svc {
                support,
                groups,
                coefficients,
                platt,
            } => {
                scratch.kernels.clear();
                scratch.kernels.extend(
                    support
                        .chunks_exact(self.features)
                        .map(|v| self.kernel.of(x, v)),
                );
                self.classify_svc(groups, coefficients, platt.as_ref(), scratch, out)
            }
        }
    }

    fn classify_linear(&self, weights: &[f32], x: &[f32], out: &mut [f32]) -> usize {
        for (score, w) in out.iter_mut().zip(weights.chunks_exact(self.features)) {
            *score = (super::linear::dot(x, w) + f64::from(self.rho[0])) as f32;
        }
        let best = first_max(out);
        let top = out[best];
        self.post.apply(out);
        if self.labels.len() == 2 {
            let one = match self.positive {
                true => top >= 0.5,
                false => top > 0.0,
            };
            if one {
                return 1;
            }
        }
        best
    }

    fn classify_svc(
        &self,
        groups: &[(usize, usize)],
        coefficients: &[f32],
        platt: Option<&(Vec<f32>, Vec<f32>)>,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> usize {
        let classes = groups.len();
        let Scratch {
            kernels,
            votes,
            decisions,
            coupling,
        } = scratch;
        let vectors = kernels.len();
        votes.clear();
        votes.resize(classes, 0);
        decisions.clear();
        let weighted = |row: usize, (start, n): (usize, usize)| -> f64 {
            let c = &coefficients[row * vectors + start..][..n];
            (c.iter().zip(&kernels[start..start + n]))
                .map(|(c, k)| f64::from(*c) * k)
                .sum()
        };
        for i in 0..classes {
            for j in i + 1..classes {
                // Class i's vectors weigh in with row j - 1, class j's with row i.
                let score = weighted(j - 1, groups[i])
                    + weighted(i, groups[j])
                    + f64::from(self.rho[decisions.len()]);
                votes[if score > 0.0 { i } else { j }] += 1;
                decisions.push(score as f32);
            }
        }
        let best = (0..classes).fold(0, |b, c| if votes[c] > votes[b] { c } else { b });
        match platt {
            Some((a, b)) => {
                coupling.couple(classes, decisions, a, b, out);
                self.post.apply(out);
            }
            None if classes == 2 => {
                let s = decisions[0];
                out[0] = if self.post == PostTransform::None {
                    -s
                } else {
                    1.0 - s
                };
                out[1] = s;
            }
            None => {
                out.copy_from_slice(decisions);
                self.post.apply(out);
            }
        }
        best
    }
}

/// The index of the first largest value.
fn first_max(values: &[f32]) -> usize {
    (0..values.len()).fold(0, |b, i| if values[i] > values[b] { i } else { b })
}

/// Buffers one evaluation reuses from row to row.
#[derive(Default)]
struct Scratch {
    /// The row's kernel with each support vector.
    kernels: Vec<f64>,
    votes: Vec<usize>,
    /// One per pair of classes.
    decisions: Vec<f32>,
    coupling: Coupling,
}

/// libsvm's pairwise coupling's matrices.
#[derive(Default)]
struct Coupling {
    /// `r[i][j]`: the probability of `i` against `j`.
    r: Vec<f32>,
    q: Vec<f32>,
    qp: Vec<f32>,
}

impl Coupling {
    /// Class probabilities from the pairs' decision values: Platt's sigmoid per
    /// pair, then libsvm's pairwise coupling, in f32 as onnxruntime runs it.
    fn couple(&mut self, classes: usize, decisions: &[f32], a: &[f32], b: &[f32], p: &mut [f32]) {
        let k = classes;
        let Self { r, q, qp } = self;
        for buffer in [&mut *r, &mut *q] {
            buffer.clear();
            buffer.resize(k * k, 0.0);
        }
        qp.clear();
        qp.resize(k, 0.0);
        let mut pair = 0;
        for i in 0..k {
            for j in i + 1..k {
                let v = decisions[pair] * a[pair] + b[pair];
                let sigma = 1.0 / (1.0 + (-v.abs()).exp());
                let logistic = if v < 0.0 { 1.0 - sigma } else { sigma };
                let q = (1.0 - logistic).clamp(1e-7, 1.0 - 1e-7);
                (r[i * k + j], r[j * k + i]) = (q, 1.0 - q);
                pair += 1;
            }
        }
        for i in 0..k {
            p[i] = 1.0 / k as f32;
            for j in 0..k {
                if j == i {
                    continue;
                }
                q[i * k + i] += r[j * k + i] * r[j * k + i];
                if j < i {
                    q[i * k + j] = q[j * k + i];
                } else {
                    q[i * k + j] = -r[j * k + i] * r[i * k + j];
                }
            }
        }
        let eps = 0.005 / k as f32;
        for _ in 0..100 {
            let mut pqp = 0.0;
            for i in 0..k {
                qp[i] = (0..k).map(|j| q[i * k + j] * p[j]).sum();
                pqp += p[i] * qp[i];
            }
            let error = qp.iter().map(|v| (v - pqp).abs()).fold(0.0, f32::max);
            if error < eps {
                break;
            }
            for i in 0..k {
                let diff = (-qp[i] + pqp) / q[i * k + i];
                p[i] += diff;
                pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i]))
                    / (1.0 + diff)
                    / (1.0 + diff);
                for j in 0..k {
                    qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                    p[j] /= 1.0 + diff;
                }
            }
        }
    }
}

/// One classifier, as the parser's expansion and as a typed operator.
#[derive(Debug, Clone)]
struct SvmClassifier(Arc<Classifier>);

super::same_by_arc!(SvmClassifier);

impl Expansion for SvmClassifier {
    fn name(&self) -> StaticName {
        "SVMClassifier".into()
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
        let fact = model.outlet_fact(inputs[0])?.clone();
        if let Ok(features) = fact.shape[1].to_usize() {
            ensure!(
                features == self.0.features,
                "SVMClassifier `{prefix}`: the input has {features} features; the model's support vectors or coefficients have {}",
                self.0.features
            );
        }
        let x = super::wire_f32(prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for SvmClassifier {
    fn name(&self) -> StaticName {
        "SluiceSVMClassifier".into()
    }

    op_as_typed_op!();
}

impl EvalOp for SvmClassifier {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let c = &self.0;
        let x = args_1!(inputs);
        ensure!(
            x.shape().len() == 2 && x.shape()[1] == c.features,
            "SVMClassifier: rows of {} features expected, got shape {:?}",
            c.features,
            x.shape()
        );
        let rows = x.shape()[0];
        let width = c.width();
        let plain = x.try_as_plain_ram()?;
        let values = plain.as_slice::<f32>()?;
        let mut scores = vec![0f32; rows * width];
        let mut scratch = Scratch::default();
        let best: Vec<usize> = (0..rows)
            .map(|r| {
                let row = &values[r * c.features..][..c.features];
                c.classify(row, &mut scratch, &mut scores[r * width..][..width])
            })
            .collect();
        Ok(tvec!(
            c.labels.pick(&best).into_tvalue(),
            Tensor::from_shape(&[rows, width], &scores)?.into_tvalue()
        ))
    }
}

impl TypedOp for SvmClassifier {
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

    fn svc(attributes: Vec<(&str, Attr)>) -> Vec<u8> {
        one_node(
            "SVMClassifier",
            DataType::Float,
            &[-1, 2],
            &[("label", DataType::Int64), ("scores", DataType::Float)],
            attributes,
        )
    }

    /// Labels and scores (row after row) for rows of two features.
    fn classify(model: &[u8], rows: &[f32]) -> (Vec<i64>, Vec<f32>) {
        let (plan, _, _) = compile(model, &BTreeMap::new()).expect("compiles");
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

    fn close(got: &[f32], want: &[f64], tolerance: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} against {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (f64::from(*g) - w).abs() < tolerance,
                "{got:?} against {want:?}"
            );
        }
    }

    /// Two classes, one support vector each: `[1, 0]` for class 10 and
    /// `[0, 1]` for class 20, so the decision value is `x₀ - x₁ + 0.5`.
    fn binary(extra: Vec<(&'static str, Attr)>) -> Vec<u8> {
        let mut attributes = vec![
            ("classlabels_ints", Attr::Ints(vec![10, 20])),
            ("vectors_per_class", Attr::Ints(vec![1, 1])),
            ("support_vectors", Attr::Floats(vec![1.0, 0.0, 0.0, 1.0])),
            ("coefficients", Attr::Floats(vec![1.0, -1.0])),
            ("rho", Attr::Floats(vec![0.5])),
        ];
        attributes.extend(extra);
        svc(attributes)
    }

    #[test]
    fn binary_linear_kernel_votes_on_the_sign_of_the_decision() {
        let (labels, scores) = classify(&binary(vec![]), &[2.0, 0.0, 0.0, 3.0]);
        assert_eq!(labels, [10, 20]);
        close(&scores, &[-2.5, 2.5, 2.5, -2.5], 1e-6);
    }

    #[test]
    fn binary_probabilities_follow_platt_scaling() {
        // prob_a = -1, prob_b = 0: P(class 10) = 1 - σ(-s) = σ(s).
        let model = binary(vec![
            ("prob_a", Attr::Floats(vec![-1.0])),
            ("prob_b", Attr::Floats(vec![0.0])),
        ]);
        let (labels, scores) = classify(&model, &[2.0, 0.0, 0.0, 3.0]);
        assert_eq!(labels, [10, 20]);
        let sigma = |s: f64| 1.0 / (1.0 + (-s).exp());
        // Pairwise coupling stops within libsvm's tolerance (0.005 / k).
        close(
            &scores,
            &[sigma(2.5), sigma(-2.5), sigma(-2.5), sigma(2.5)],
            2.5e-3,
        );
        for row in scores.chunks(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-6, "{scores:?}");
        }
    }

    /// Three classes with an RBF kernel (γ = 1), one support vector each at
    /// `[0, 0]`, `[1, 0]` and `[0, 1]`; each pair's decision is the
    /// difference of the two classes' kernels.
    fn three_classes(extra: Vec<(&'static str, Attr)>) -> Vec<u8> {
        let mut attributes = vec![
            ("classlabels_ints", Attr::Ints(vec![0, 1, 2])),
            ("kernel_type", Attr::String("RBF")),
            ("kernel_params", Attr::Floats(vec![1.0, 0.0, 0.0])),
            ("vectors_per_class", Attr::Ints(vec![1, 1, 1])),
            (
                "support_vectors",
                Attr::Floats(vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
            ),
            // Rows [classes - 1, vectors]: pair (i, j) weighs class i's
            // vector by row j - 1 and class j's by row i.
            (
                "coefficients",
                Attr::Floats(vec![1.0, -1.0, -1.0, 1.0, 1.0, -1.0]),
            ),
            ("rho", Attr::Floats(vec![0.0, 0.0, 0.0])),
        ];
        attributes.extend(extra);
        svc(attributes)
    }

    #[test]
    fn multiclass_rbf_votes_one_against_one() {
        let (labels, scores) = classify(&three_classes(vec![]), &[0.9, 0.1, 0.1, 0.8]);
        assert_eq!(labels, [1, 2]);
        let k = |d2: f64| (-d2).exp();
        // Squared distances of (0.9, 0.1) to the three vectors: 0.82, 0.02, 1.62.
        let (a0, a1, a2) = (k(0.82), k(0.02), k(1.62));
        // ... and of (0.1, 0.8): 0.65, 1.45, 0.05.
        let (b0, b1, b2) = (k(0.65), k(1.45), k(0.05));
        close(
            &scores,
            &[a0 - a1, a0 - a2, a1 - a2, b0 - b1, b0 - b2, b1 - b2],
            1e-6,
        );
    }

    #[test]
    fn multiclass_probabilities_are_coupled_into_one_distribution() {
        let model = three_classes(vec![
            ("prob_a", Attr::Floats(vec![-4.0; 3])),
            ("prob_b", Attr::Floats(vec![0.0; 3])),
        ]);
        let (labels, scores) = classify(&model, &[0.9, 0.1, 0.1, 0.8, 0.0, 0.0]);
        assert_eq!(labels, [1, 2, 0]);
        for (row, best) in scores.chunks(3).zip([1, 2, 0]) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
            let top = (0..3).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            assert_eq!(top, best, "{row:?}");
        }
        // At the origin classes 1 and 2 tie, and so do their probabilities,
        // within the coupling's tolerance (0.005 / k).
        assert!((scores[7] - scores[8]).abs() < 5e-3 / 3.0, "{scores:?}");
    }

    #[test]
    fn polynomial_and_sigmoid_kernels_score_pairs() {
        for (kind, kernel) in [
            ("POLY", (|d: f64| (0.5 * d + 1.0).powi(2)) as fn(f64) -> f64),
            ("SIGMOID", |d: f64| (0.5 * d + 1.0).tanh()),
        ] {
            let model = binary(vec![
                ("kernel_type", Attr::String(kind)),
                ("kernel_params", Attr::Floats(vec![0.5, 1.0, 2.0])),
            ]);
            // x = (2, 1): x·[1, 0] = 2 and x·[0, 1] = 1.
            let (_, scores) = classify(&model, &[2.0, 1.0]);
            let s = kernel(2.0) - kernel(1.0) + 0.5;
            close(&scores, &[-s, s], 1e-6);
        }
    }

    #[test]
    fn linear_models_without_support_vectors_score_each_class() {
        let model = svc(vec![
            ("classlabels_ints", Attr::Ints(vec![0, 1, 2])),
            (
                "coefficients",
                Attr::Floats(vec![1.0, 0.0, 0.0, 1.0, -1.0, -1.0]),
            ),
            ("rho", Attr::Floats(vec![0.25])),
            ("post_transform", Attr::String("SOFTMAX")),
        ]);
        let (labels, scores) = classify(&model, &[3.0, 1.0, -2.0, -2.0]);
        assert_eq!(labels, [0, 2]);
        let softmax = |s: [f64; 3]| {
            let sum: f64 = s.iter().map(|v| v.exp()).sum();
            s.map(|v| v.exp() / sum)
        };
        let mut want = softmax([3.25, 1.25, -3.75]).to_vec();
        want.extend(softmax([-1.75, -1.75, 4.25]));
        close(&scores, &want, 1e-6);
    }

    #[test]
    fn inconsistent_models_are_refused_with_the_reason() {
        for (attributes, says) in [
            (
                vec![("vectors_per_class", Attr::Ints(vec![1, 1, 1]))],
                "one count (≥ 0) per class",
            ),
            (
                vec![("rho", Attr::Floats(vec![0.5, 1.0]))],
                "each with a rho",
            ),
            (
                vec![("prob_a", Attr::Floats(vec![1.0]))],
                "they go in pairs",
            ),
            (
                vec![("post_transform", Attr::String("PROBIT"))],
                "PROBIT on a binary classifier",
            ),
            (
                vec![("kernel_type", Attr::String("CUBIC"))],
                "unknown kernel_type",
            ),
        ] {
            let mut base = vec![
                ("classlabels_ints", Attr::Ints(vec![10, 20])),
                ("vectors_per_class", Attr::Ints(vec![1, 1])),
                ("support_vectors", Attr::Floats(vec![1.0, 0.0, 0.0, 1.0])),
                ("coefficients", Attr::Floats(vec![1.0, -1.0])),
                ("rho", Attr::Floats(vec![0.5])),
            ];
            base.retain(|(name, _)| attributes.iter().all(|(n, _)| n != name));
            base.extend(attributes);
            let error = compile(&svc(base), &BTreeMap::new())
                .err()
                .expect("refused");
            assert!(format!("{error:#}").contains(says), "{error:#}");
        }
    }
}
