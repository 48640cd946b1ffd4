//! `TreeEnsembleClassifier` (ai.onnx.ml) on Sluice's tree evaluator
//! ([`super::trees`]): per-class scores summed over the trees, plus base
//! values; the label is the best class, the probabilities the scores after
//! the post-transform. Outputs `label: [N]` (int64 or string labels) and
//! `probabilities: [N, classes]` f32, as onnxruntime gives them.
//!
//! Binary ensembles that score only one class (what scikit-learn exports
//! for gradient boosting and random forests) follow onnxruntime: the one
//! score `s` (plus the base value) picks class 1 when `s > 0.5` (all
//! weights non-negative: `s` is a probability) or `s > 0` (a margin), and
//! the probabilities are `[1 - s, s]` or `[-s, s]` (NONE) or
//! `[1 - σ(s), σ(s)]` (LOGISTIC). Layouts outside these (a single score with
//! two base values, or another post-transform) go to tract's own operator.

use super::class_labels::Labels;
use super::trees::{
    Aggregate, Ensemble, NodeAttributes, PostTransform, WeightAttributes, floats_f32,
};
use std::sync::OnceLock;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

/// The signature of an ONNX operator parser.
pub(super) type Parser =
    fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own parser, for the layouts Sluice leaves to it.
pub(super) static TRACT_PARSER: OnceLock<Parser> = OnceLock::new();

/// How scores become labels and probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One score per class.
    PerClass,
    /// Two classes, one score: a probability of class 1 (`positive`) or a
    /// margin.
    Binary { positive: bool },
}

#[derive(Debug)]
struct Classifier {
    ensemble: Ensemble,
    labels: Labels,
    base: Vec<f32>,
    post: PostTransform,
    layout: Layout,
}

pub(super) fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let refuse = |e: TractError| format_err!("TreeEnsembleClassifier `{}`: {e}", node.name);
    let labels = Labels::read(node, "TreeEnsembleClassifier", "classlabels_int64s")?;
    let classes = labels.len();
    ensure!(
        classes >= 2,
        "TreeEnsembleClassifier `{}` has {classes} class label(s)",
        node.name
    );
    let weights = WeightAttributes {
        tree_ids: node.get_attr_vec("class_treeids")?,
        node_ids: node.get_attr_vec("class_nodeids")?,
        targets: node.get_attr_vec("class_ids")?,
        weights: floats_f32(ctx, node, "class_weights")
            .map_err(refuse)?
            .unwrap_or_default(),
    };
    let scored: std::collections::BTreeSet<i64> = weights.targets.iter().copied().collect();
    let positive = weights.weights.iter().all(|w| *w >= 0.0);
    let base = floats_f32(ctx, node, "base_values")
        .map_err(refuse)?
        .unwrap_or_default();
    let post = PostTransform::parse(
        &node
            .get_attr_opt::<String>("post_transform")?
            .unwrap_or_else(|| "NONE".into()),
    )
    .map_err(refuse)?;
    let layout = if classes == 2 && scored.len() == 1 {
        let handled = base.len() <= 1
            && matches!(post, PostTransform::None | PostTransform::Logistic)
            && scored.contains(&0);
        if !handled {
            let tract = TRACT_PARSER
                .get()
                .ok_or_else(|| format_err!("tract's TreeEnsembleClassifier is not registered"))?;
            return tract(ctx, node);
        }
        Layout::Binary { positive }
    } else {
        ensure!(
            base.is_empty() || base.len() == classes,
            "TreeEnsembleClassifier `{}`: {} base values for {classes} classes",
            node.name,
            base.len()
        );
        Layout::PerClass
    };
    let nodes = NodeAttributes::read(ctx, node).map_err(refuse)?;
    let ensemble = Ensemble::build(nodes, weights, classes).map_err(refuse)?;
    Ok((
        expand(TreeClassifier(Arc::new(Classifier {
            ensemble,
            labels,
            base,
            post,
            layout,
        }))),
        vec![],
    ))
}

impl super::trees::Additive for Classifier {
    fn ensemble(&self) -> &Ensemble {
        &self.ensemble
    }

    fn base(&self) -> &[f32] {
        &self.base
    }

    fn scale(&self) -> Option<f64> {
        Some(1.0)
    }

    fn target_names(&self) -> Vec<String> {
        let label = |i: usize| self.labels.name(i);
        match self.layout {
            // One score: class 1's margin or probability.
            Layout::Binary { .. } => vec![label(1)],
            Layout::PerClass => (0..self.labels.len()).map(label).collect(),
        }
    }
}

/// The classifier of a typed node, if it is one.
pub(super) fn additive(node: &TypedNode) -> Option<Arc<dyn super::trees::Additive>> {
    node.op_as::<TreeClassifier>()
        .map(|c| c.0.clone() as Arc<dyn super::trees::Additive>)
}

/// One classifier, as the parser's expansion and as a typed operator.
#[derive(Debug, Clone)]
struct TreeClassifier(Arc<Classifier>);

super::same_by_arc!(TreeClassifier);

impl Expansion for TreeClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
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
            self.0.labels.len(),
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
        let x = self
            .0
            .ensemble
            .wire_input("TreeEnsembleClassifier", prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for TreeClassifier {
    fn name(&self) -> StaticName {
        "SluiceTreeEnsembleClassifier".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeClassifier {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let c = &self.0;
        let (rows, mut scores) = c.ensemble.scores(&inputs[0], Aggregate::Sum)?;
        let classes = c.labels.len();
        let mut best = Vec::with_capacity(rows);
        for row in scores.chunks_exact_mut(classes) {
            for (s, b) in row.iter_mut().zip(&c.base) {
                *s += b;
            }
            match c.layout {
                Layout::PerClass => {
                    let mut top = 0;
                    for (i, s) in row.iter().enumerate() {
                        if *s > row[top] {
                            top = i;
                        }
                    }
                    best.push(top);
                    c.post.apply(row);
                }
                Layout::Binary { positive } => {
                    let s = row[0];
                    let one = if positive { s > 0.5 } else { s > 0.0 };
                    best.push(usize::from(one));
                    let p = match c.post {
                        PostTransform::Logistic => 1.0 / (1.0 + (-s).exp()),
                        _ => s,
                    };
                    row[1] = p;
                    row[0] = if positive || c.post == PostTransform::Logistic {
                        1.0 - p
                    } else {
                        -p
                    };
                }
            }
        }
        Ok(tvec!(
            c.labels.pick(&best).into_tvalue(),
            Tensor::from_shape(&[rows, classes], &scores)?.into_tvalue()
        ))
    }
}

impl TypedOp for TreeClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        Ok(tvec!(
            self.0.labels.datum_type().fact([rows.clone()]),
            f32::fact([rows, self.0.labels.len().to_dim()])
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

    /// One stump on feature 0 at 0.0 (true: node 1, false: node 2) with
    /// `(node, class, weight)` weights and `extra` attributes.
    fn stump(
        label_type: DataType,
        weights: &[(i64, i64, f32)],
        extra: Vec<(&str, Attr)>,
    ) -> Vec<u8> {
        let mut attributes = vec![
            ("nodes_treeids", Attr::Ints(vec![0, 0, 0])),
            ("nodes_nodeids", Attr::Ints(vec![0, 1, 2])),
            ("nodes_featureids", Attr::Ints(vec![0, 0, 0])),
            ("nodes_values", Attr::Floats(vec![0.0, 0.0, 0.0])),
            (
                "nodes_modes",
                Attr::Strings(vec!["BRANCH_LEQ", "LEAF", "LEAF"]),
            ),
            ("nodes_truenodeids", Attr::Ints(vec![1, 0, 0])),
            ("nodes_falsenodeids", Attr::Ints(vec![2, 0, 0])),
            (
                "class_treeids",
                Attr::Ints(weights.iter().map(|_| 0).collect()),
            ),
            (
                "class_nodeids",
                Attr::Ints(weights.iter().map(|w| w.0).collect()),
            ),
            (
                "class_ids",
                Attr::Ints(weights.iter().map(|w| w.1).collect()),
            ),
            (
                "class_weights",
                Attr::Floats(weights.iter().map(|w| w.2).collect()),
            ),
        ];
        attributes.extend(extra);
        one_node(
            "TreeEnsembleClassifier",
            DataType::Float,
            &[-1, 1],
            &[("label", label_type), ("probabilities", DataType::Float)],
            attributes,
        )
    }

    /// Labels (as text) and probabilities for rows of one feature.
    fn classify(model: &[u8], xs: &[f32]) -> (Vec<String>, Vec<f32>) {
        let (plan, _, _) = compile(model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[xs.len(), 1], xs).unwrap();
        let out = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let labels = match out[0].datum_type() {
            DatumType::String => out[0]
                .to_plain_array_view::<String>()
                .unwrap()
                .iter()
                .cloned()
                .collect(),
            _ => out[0]
                .to_plain_array_view::<i64>()
                .unwrap()
                .iter()
                .map(|l| l.to_string())
                .collect(),
        };
        let probabilities = out[1]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        (labels, probabilities)
    }

    #[test]
    fn string_labels_name_the_best_class_and_softmax_gives_probabilities() {
        let model = stump(
            DataType::String,
            &[(1, 0, 2.0), (1, 1, 0.0), (2, 2, 1.0)],
            vec![
                (
                    "classlabels_strings",
                    Attr::Strings(vec!["cat", "dog", "eel"]),
                ),
                ("post_transform", Attr::String("SOFTMAX")),
            ],
        );
        let (labels, p) = classify(&model, &[-1.0, 1.0]);
        assert_eq!(labels, ["cat", "eel"]);
        // Row 1 scores [2, 0, 0], row 2 [0, 0, 1]; softmax over each.
        let (e2, e1) = (2f32.exp(), 1f32.exp());
        let want = [
            e2 / (e2 + 2.0),
            1.0 / (e2 + 2.0),
            1.0 / (e2 + 2.0),
            1.0 / (e1 + 2.0),
            1.0 / (e1 + 2.0),
            e1 / (e1 + 2.0),
        ];
        for (got, want) in p.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{p:?}");
        }
    }

    #[test]
    fn one_score_binary_classifiers_follow_onnxruntime() {
        let labels = || ("classlabels_int64s", Attr::Ints(vec![7, 9]));
        // Non-negative weights: the score is the probability of class 1.
        let probability = stump(
            DataType::Int64,
            &[(1, 0, 0.25), (2, 0, 0.75)],
            vec![labels()],
        );
        let (l, p) = classify(&probability, &[-1.0, 1.0]);
        assert_eq!(l, ["7", "9"]);
        assert_eq!(p, [0.75, 0.25, 0.25, 0.75]);
        // A margin (some weight negative), as is: [-s, s].
        let margin = stump(
            DataType::Int64,
            &[(1, 0, -0.5), (2, 0, 1.5)],
            vec![labels()],
        );
        let (l, p) = classify(&margin, &[-1.0, 1.0]);
        assert_eq!(l, ["7", "9"]);
        assert_eq!(p, [0.5, -0.5, -1.5, 1.5]);
        // The same through LOGISTIC, with a base value.
        let logistic = stump(
            DataType::Int64,
            &[(1, 0, -0.5), (2, 0, 1.5)],
            vec![
                labels(),
                ("post_transform", Attr::String("LOGISTIC")),
                ("base_values", Attr::Floats(vec![0.5])),
            ],
        );
        let (l, p) = classify(&logistic, &[-1.0, 1.0]);
        assert_eq!(l, ["7", "9"]);
        let sigmoid = |s: f32| 1.0 / (1.0 + (-s).exp());
        assert!(
            (p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6,
            "{p:?}"
        );
        assert!(
            (p[3] - sigmoid(2.0)).abs() < 1e-6 && (p[2] - (1.0 - sigmoid(2.0))).abs() < 1e-6,
            "{p:?}"
        );
    }
}
