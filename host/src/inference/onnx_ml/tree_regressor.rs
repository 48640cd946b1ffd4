//! `TreeEnsembleRegressor` (ai.onnx.ml): scores per target from a tree
//! ensemble ([`super::trees`]), aggregated (SUM, AVERAGE, MIN, MAX), plus
//! base values, then a post-transform. Input `[N, F]` (f64, or cast to f32),
//! output `Y: [N, n_targets]` f32.

use super::trees::{
    Aggregate, Ensemble, NodeAttributes, PostTransform, WeightAttributes, floats_f32,
};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

pub(super) fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let refuse = |e: TractError| format_err!("TreeEnsembleRegressor `{}`: {e}", node.name);
    let targets: i64 = node.get_attr_opt("n_targets")?.unwrap_or(1);
    let targets = usize::try_from(targets)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| {
            format_err!(
                "TreeEnsembleRegressor `{}`: n_targets is {targets}",
                node.name
            )
        })?;
    let weights = WeightAttributes {
        tree_ids: node.get_attr_vec("target_treeids")?,
        node_ids: node.get_attr_vec("target_nodeids")?,
        targets: node.get_attr_vec("target_ids")?,
        weights: floats_f32(ctx, node, "target_weights")
            .map_err(refuse)?
            .unwrap_or_default(),
    };
    let nodes = NodeAttributes::read(ctx, node).map_err(refuse)?;
    let ensemble = Ensemble::build(nodes, weights, targets).map_err(refuse)?;
    let base = floats_f32(ctx, node, "base_values")
        .map_err(refuse)?
        .unwrap_or_default();
    ensure!(
        base.is_empty() || base.len() == targets,
        "TreeEnsembleRegressor `{}`: {} base values for {targets} targets",
        node.name,
        base.len()
    );
    let aggregate = Aggregate::parse(
        &node
            .get_attr_opt::<String>("aggregate_function")?
            .unwrap_or_else(|| "SUM".into()),
    )
    .map_err(refuse)?;
    let post = PostTransform::parse(
        &node
            .get_attr_opt::<String>("post_transform")?
            .unwrap_or_else(|| "NONE".into()),
    )
    .map_err(refuse)?;
    Ok((
        expand(TreeRegressor(Arc::new(Regressor {
            ensemble,
            aggregate,
            base,
            post,
        }))),
        vec![],
    ))
}

/// A checked regressor, shared by the expansion and the op it wires.
#[derive(Debug)]
struct Regressor {
    ensemble: Ensemble,
    aggregate: Aggregate,
    base: Vec<f32>,
    post: PostTransform,
}

/// One regressor, as the parser's expansion and as a typed operator.
/// Equal when it is the same regressor.
impl super::trees::Additive for Regressor {
    fn ensemble(&self) -> &Ensemble {
        &self.ensemble
    }

    fn base(&self) -> &[f32] {
        &self.base
    }

    fn scale(&self) -> Option<f64> {
        match self.aggregate {
            Aggregate::Sum => Some(1.0),
            Aggregate::Average => Some(1.0 / self.ensemble.trees().max(1) as f64),
            Aggregate::Min | Aggregate::Max => None,
        }
    }

    fn target_names(&self) -> Vec<String> {
        match self.ensemble.targets {
            1 => vec!["value".into()],
            n => (0..n).map(|t| format!("value {t}")).collect(),
        }
    }
}

/// The regressor of a typed node, if it is one and its score is a sum.
pub(super) fn additive(node: &TypedNode) -> Option<Arc<dyn super::trees::Additive>> {
    node.op_as::<TreeRegressor>()
        .filter(|r| super::trees::Additive::scale(r.0.as_ref()).is_some())
        .map(|r| r.0.clone() as Arc<dyn super::trees::Additive>)
}

#[derive(Debug, Clone)]
struct TreeRegressor(Arc<Regressor>);

super::same_by_arc!(TreeRegressor);

impl Expansion for TreeRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::regressor_rules(s, inputs, outputs, self.0.ensemble.targets)
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
            .wire_input("TreeEnsembleRegressor", prefix, model, inputs[0])?;
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for TreeRegressor {
    fn name(&self) -> StaticName {
        "SluiceTreeEnsembleRegressor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeRegressor {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let r = &self.0;
        let (rows, mut scores) = r.ensemble.scores(&inputs[0], r.aggregate)?;
        let targets = r.ensemble.targets;
        for row in scores.chunks_exact_mut(targets) {
            for (s, b) in row.iter_mut().zip(&r.base) {
                *s += b;
            }
            r.post.apply(row);
        }
        Ok(tvec!(
            Tensor::from_shape(&[rows, targets], &scores)?.into_tvalue()
        ))
    }
}

impl TypedOp for TreeRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([rows, self.0.ensemble.targets.to_dim()])))
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

    /// `(tree, node, feature, threshold, mode, true child, false child)`
    type Node = (i64, i64, i64, f32, &'static str, i64, i64);
    /// `(tree, node, target, weight)`
    type Weight = (i64, i64, i64, f32);

    fn regressor(nodes: &[Node], weights: &[Weight], extra: Vec<(&str, Attr)>) -> Vec<u8> {
        regressor_of(DataType::Float, nodes, weights, extra)
    }

    /// A regressor reading `elem_type` rows; an `X_as_tensor` attribute in
    /// `extra` replaces `X`.
    fn regressor_of(
        elem_type: DataType,
        nodes: &[Node],
        weights: &[Weight],
        mut extra: Vec<(&str, Attr)>,
    ) -> Vec<u8> {
        let mut attributes = vec![
            (
                "nodes_treeids",
                Attr::Ints(nodes.iter().map(|n| n.0).collect()),
            ),
            (
                "nodes_nodeids",
                Attr::Ints(nodes.iter().map(|n| n.1).collect()),
            ),
            (
                "nodes_featureids",
                Attr::Ints(nodes.iter().map(|n| n.2).collect()),
            ),
            (
                "nodes_values",
                Attr::Floats(nodes.iter().map(|n| n.3).collect()),
            ),
            (
                "nodes_modes",
                Attr::Strings(nodes.iter().map(|n| n.4).collect()),
            ),
            (
                "nodes_truenodeids",
                Attr::Ints(nodes.iter().map(|n| n.5).collect()),
            ),
            (
                "nodes_falsenodeids",
                Attr::Ints(nodes.iter().map(|n| n.6).collect()),
            ),
            (
                "target_treeids",
                Attr::Ints(weights.iter().map(|w| w.0).collect()),
            ),
            (
                "target_nodeids",
                Attr::Ints(weights.iter().map(|w| w.1).collect()),
            ),
            (
                "target_ids",
                Attr::Ints(weights.iter().map(|w| w.2).collect()),
            ),
            (
                "target_weights",
                Attr::Floats(weights.iter().map(|w| w.3).collect()),
            ),
        ];
        attributes.retain(|(name, _)| {
            let replaced = format!("{name}_as_tensor");
            !extra.iter().any(|(e, _)| *e == replaced)
        });
        attributes.append(&mut extra);
        one_node(
            "TreeEnsembleRegressor",
            elem_type,
            &[-1, 2],
            &[("Y", DataType::Float)],
            attributes,
        )
    }

    /// One stump on feature 0 at 1.0: 10 when the mode holds, else 20.
    fn stump(mode: &'static str, extra: Vec<(&str, Attr)>) -> Vec<u8> {
        regressor(
            &[
                (0, 0, 0, 1.0, mode, 1, 2),
                (0, 1, 0, 0.0, "LEAF", 0, 0),
                (0, 2, 0, 0.0, "LEAF", 0, 0),
            ],
            &[(0, 1, 0, 10.0), (0, 2, 0, 20.0)],
            extra,
        )
    }

    fn predict(model: &[u8], rows: &[[f32; 2]]) -> Vec<f32> {
        let (plan, _, _) = compile(model, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[rows.len(), 2], rows.as_flattened()).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        y[0].to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    fn refusal(model: &[u8]) -> String {
        compile(model, &BTreeMap::new())
            .err()
            .expect("refused")
            .to_string()
    }

    #[test]
    fn every_branch_mode_compares_as_named() {
        let rows = [[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]];
        for (mode, want) in [
            ("BRANCH_LEQ", [10.0, 10.0, 20.0]),
            ("BRANCH_LT", [10.0, 20.0, 20.0]),
            ("BRANCH_GTE", [20.0, 10.0, 10.0]),
            ("BRANCH_GT", [20.0, 20.0, 10.0]),
            ("BRANCH_EQ", [20.0, 10.0, 20.0]),
            ("BRANCH_NEQ", [10.0, 20.0, 10.0]),
        ] {
            assert_eq!(predict(&stump(mode, vec![]), &rows), want, "{mode}");
        }
        // More rows than one lockstep block of eight, and a partial block.
        let rows: Vec<[f32; 2]> = (0..19).map(|i| [i as f32 * 0.25, 0.0]).collect();
        let want: Vec<f32> = rows
            .iter()
            .map(|r| if r[0] <= 1.0 { 10.0 } else { 20.0 })
            .collect();
        assert_eq!(predict(&stump("BRANCH_LEQ", vec![]), &rows), want);
    }

    #[test]
    fn double_thresholds_compare_exactly_for_float_and_double_rows() {
        // 0.1 is no f32: the f32 nearest it (0.100000001…) is above it.
        let near = 0.1f32;
        let below = near.next_down();
        for (mode, want) in [
            ("BRANCH_LEQ", [20.0, 10.0]),
            ("BRANCH_LT", [20.0, 10.0]),
            ("BRANCH_GTE", [10.0, 20.0]),
            ("BRANCH_GT", [10.0, 20.0]),
            ("BRANCH_EQ", [20.0, 20.0]),
            ("BRANCH_NEQ", [10.0, 10.0]),
        ] {
            let nodes = [
                (0, 0, 0, 0.0, mode, 1, 2),
                (0, 1, 0, 0.0, "LEAF", 0, 0),
                (0, 2, 0, 0.0, "LEAF", 0, 0),
            ];
            let weights = [(0, 1, 0, 10.0), (0, 2, 0, 20.0)];
            let thresholds = vec![0.1, 0.0, 0.0];
            let extra = vec![
                ("nodes_values_as_tensor", Attr::Doubles(thresholds.clone())),
                ("target_weights_as_tensor", Attr::Doubles(vec![10.0, 20.0])),
            ];
            let model = regressor_of(DataType::Float, &nodes, &weights, extra);
            assert_eq!(
                predict(&model, &[[near, 0.0], [below, 0.0]]),
                want,
                "{mode}"
            );

            // Double rows compare with the double thresholds as they are.
            let extra = vec![("nodes_values_as_tensor", Attr::Doubles(thresholds))];
            let model = regressor_of(DataType::Double, &nodes, &weights, extra);
            let (plan, _, _) = compile(&model, &BTreeMap::new()).expect("compiles");
            let x = Tensor::from_shape(
                &[3, 2],
                &[0.1f64, 0.0, f64::from(near), 0.0, 0.0999999, 0.0],
            )
            .unwrap();
            let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
            let y: Vec<f32> = y[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            let holds = |x: f64| match mode {
                "BRANCH_LEQ" => x <= 0.1,
                "BRANCH_LT" => x < 0.1,
                "BRANCH_GTE" => x >= 0.1,
                "BRANCH_GT" => x > 0.1,
                "BRANCH_EQ" => x == 0.1,
                _ => x != 0.1,
            };
            let want: Vec<f32> = [0.1, f64::from(near), 0.0999999]
                .into_iter()
                .map(|x| if holds(x) { 10.0 } else { 20.0 })
                .collect();
            assert_eq!(y, want, "{mode} on doubles");
        }
    }

    #[test]
    fn missing_values_follow_their_track_and_infinities_compare() {
        let nan = [[f32::NAN, 0.0]];
        for mode in ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"] {
            assert_eq!(predict(&stump(mode, vec![]), &nan), [20.0], "{mode}");
            let tracks = vec![("nodes_missing_value_tracks_true", Attr::Ints(vec![1, 0, 0]))];
            assert_eq!(predict(&stump(mode, tracks), &nan), [10.0], "{mode}");
        }
        // `<`, `>` and `>=` are walked as `<=` with moved thresholds: the
        // edges of the f32 range still compare as written.
        let rows = [
            [f32::INFINITY, 0.0],
            [f32::NEG_INFINITY, 0.0],
            [1.0f32.next_down(), 0.0],
            [1.0f32.next_up(), 0.0],
        ];
        for (mode, holds) in [
            ("BRANCH_LT", (|x, t| x < t) as fn(f32, f32) -> bool),
            ("BRANCH_GTE", |x, t| x >= t),
            ("BRANCH_GT", |x, t| x > t),
        ] {
            let want: Vec<f32> = rows
                .iter()
                .map(|r| if holds(r[0], 1.0) { 10.0 } else { 20.0 })
                .collect();
            assert_eq!(predict(&stump(mode, vec![]), &rows), want, "{mode}");
        }
    }

    #[test]
    fn aggregates_and_base_values_combine_the_trees() {
        // Tree 0: a stump on feature 1 (≤ 0: 1.0, else 5.0); tree 1: a
        // single leaf (depth 0) worth 3.0.
        let nodes = [
            (0, 0, 1, 0.0, "BRANCH_LEQ", 1, 2),
            (0, 1, 0, 0.0, "LEAF", 0, 0),
            (0, 2, 0, 0.0, "LEAF", 0, 0),
            (1, 0, 0, 0.0, "LEAF", 0, 0),
        ];
        let weights = [(0, 1, 0, 1.0), (0, 2, 0, 5.0), (1, 0, 0, 3.0)];
        let rows = [[0.0, -1.0], [0.0, 1.0]];
        for (aggregate, want) in [
            ("SUM", [4.0, 8.0]),
            ("AVERAGE", [2.0, 4.0]),
            ("MIN", [1.0, 3.0]),
            ("MAX", [3.0, 5.0]),
        ] {
            let model = regressor(
                &nodes,
                &weights,
                vec![("aggregate_function", Attr::String(aggregate))],
            );
            assert_eq!(predict(&model, &rows), want, "{aggregate}");
        }
        let model = regressor(
            &nodes,
            &weights,
            vec![("base_values", Attr::Floats(vec![0.5]))],
        );
        assert_eq!(predict(&model, &rows), [4.5, 8.5]);
    }

    #[test]
    fn post_transforms_apply_per_row() {
        // Two targets from one leaf: (w0, w1).
        let two = |w0: f32, w1: f32, post: &'static str| {
            regressor(
                &[(0, 0, 0, 0.0, "LEAF", 0, 0)],
                &[(0, 0, 0, w0), (0, 0, 1, w1)],
                vec![
                    ("n_targets", Attr::Int(2)),
                    ("post_transform", Attr::String(post)),
                ],
            )
        };
        let row = [[0.0, 0.0]];
        assert_eq!(predict(&two(0.0, 2.0, "NONE"), &row), [0.0, 2.0]);
        assert_eq!(predict(&two(0.0, 0.0, "LOGISTIC"), &row), [0.5, 0.5]);
        assert_eq!(predict(&two(1.0, 1.0, "SOFTMAX"), &row), [0.5, 0.5]);
        assert_eq!(predict(&two(0.0, 2.0, "SOFTMAX_ZERO"), &row), [0.0, 1.0]);
        let probit = predict(&two(0.5, 0.975, "PROBIT"), &row);
        assert!(probit[0].abs() < 1e-6, "{probit:?}");
        assert!((probit[1] - 1.96).abs() < 5e-3, "{probit:?}");
    }

    #[test]
    fn malformed_trees_are_refused_naming_the_node() {
        let leaves = [(0, 1, 0, 0.0, "LEAF", 0, 0), (0, 2, 0, 0.0, "LEAF", 0, 0)];
        let weights = [(0, 1, 0, 1.0)];
        // A child outside the tree.
        let outside = regressor(
            &[(0, 0, 0, 1.0, "BRANCH_LEQ", 1, 7), leaves[0], leaves[1]],
            &weights,
            vec![],
        );
        let error = refusal(&outside);
        assert!(
            error.contains("false child 7, which tree 0 does not have"),
            "{error}"
        );
        // A branch pointing back at itself.
        let cycle = regressor(
            &[
                (0, 0, 0, 1.0, "BRANCH_LEQ", 1, 3),
                (0, 1, 0, 0.0, "LEAF", 0, 0),
                (0, 3, 0, 2.0, "BRANCH_LEQ", 1, 3),
            ],
            &weights,
            vec![],
        );
        let error = refusal(&cycle);
        assert!(error.contains("cycle through node 3"), "{error}");
        // Every node somebody's child: no root.
        let ring = regressor(
            &[
                (0, 0, 0, 1.0, "BRANCH_LEQ", 1, 1),
                (0, 1, 0, 1.0, "BRANCH_LEQ", 0, 0),
            ],
            &[],
            vec![],
        );
        assert!(refusal(&ring).contains("tree 0 has no root"));
        // A weight on a branch, an unknown mode, a feature the input lacks.
        let on_branch = regressor(
            &[(0, 0, 0, 1.0, "BRANCH_LEQ", 1, 2), leaves[0], leaves[1]],
            &[(0, 0, 0, 1.0)],
            vec![],
        );
        assert!(refusal(&on_branch).contains("which is a branch, not a leaf"));
        let bad_mode = stump("BRANCH_SOMETIMES", vec![]);
        assert!(refusal(&bad_mode).contains("mode `BRANCH_SOMETIMES`"));
        let wide = regressor(
            &[(0, 0, 5, 1.0, "BRANCH_LEQ", 1, 2), leaves[0], leaves[1]],
            &weights,
            vec![],
        );
        assert!(
            refusal(&wide).contains("reads feature 5; the input has 2"),
            "{}",
            refusal(&wide)
        );
    }
}
