//! `TreeEnsembleRegressor` (ai.onnx.ml): scores per target from a tree
//! ensemble ([`super::trees`]), aggregated (SUM, AVERAGE, MIN, MAX), plus
//! base values, then a post-transform. Input `[N, F]` (cast to f32),
//! output `Y: [N, n_targets]` f32.

use super::trees::{Aggregate, Ensemble, NodeAttributes, PostTransform, WeightAttributes};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, check_input_arity,
    check_output_arity, expand,
};

/// Read a node's tree-ensemble attributes (the `nodes_*` set).
pub(super) fn node_attributes(node: &NodeProto) -> TractResult<NodeAttributes> {
    ensure!(
        node.get_attr_opt::<&TensorProto>("nodes_values_as_tensor")?
            .is_none(),
        "`nodes_values_as_tensor` (double thresholds) is not supported yet; export with float thresholds"
    );
    Ok(NodeAttributes {
        tree_ids: node.get_attr_vec("nodes_treeids")?,
        node_ids: node.get_attr_vec("nodes_nodeids")?,
        feature_ids: node.get_attr_vec("nodes_featureids")?,
        values: node.get_attr_vec("nodes_values")?,
        modes: node.get_attr_vec("nodes_modes")?,
        true_ids: node.get_attr_vec("nodes_truenodeids")?,
        false_ids: node.get_attr_vec("nodes_falsenodeids")?,
        missing_tracks_true: node
            .get_attr_opt_vec("nodes_missing_value_tracks_true")?
            .unwrap_or_default(),
    })
}

use tract_onnx::pb::TensorProto;

pub(super) fn parse(
    _: &ParsingContext,
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
    ensure!(
        node.get_attr_opt::<&TensorProto>("target_weights_as_tensor")?
            .is_none()
            && node
                .get_attr_opt::<&TensorProto>("base_values_as_tensor")?
                .is_none(),
        "TreeEnsembleRegressor `{}`: double weights (`*_as_tensor`) are not supported yet",
        node.name
    );
    let weights = WeightAttributes {
        tree_ids: node.get_attr_vec("target_treeids")?,
        node_ids: node.get_attr_vec("target_nodeids")?,
        targets: node.get_attr_vec("target_ids")?,
        weights: node.get_attr_vec("target_weights")?,
    };
    let ensemble = Ensemble::build(node_attributes(node)?, weights, targets).map_err(refuse)?;
    let base: Vec<f32> = node.get_attr_opt_vec("base_values")?.unwrap_or_default();
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
#[derive(Debug, Clone)]
struct TreeRegressor(Arc<Regressor>);

impl PartialEq for TreeRegressor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TreeRegressor {}

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
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.0.ensemble.targets.to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        if let Ok(width) = fact.shape[1].to_usize() {
            ensure!(
                width >= self.0.ensemble.features,
                "TreeEnsembleRegressor `{prefix}` reads feature {}; the input has {width}",
                self.0.ensemble.features - 1
            );
        }
        let mut x = inputs[0];
        if fact.datum_type != f32::datum_type() {
            x = model.wire_node(format!("{prefix}.to_f32"), cast(f32::datum_type()), &[x])?[0];
        }
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
        let x = &inputs[0];
        let (rows, width) = (x.shape()[0], x.shape()[1]);
        ensure!(
            width >= r.ensemble.features,
            "the input has {width} features; the trees read {}",
            r.ensemble.features
        );
        let targets = r.ensemble.targets;
        let mut scores = vec![0f32; rows * targets];
        let plain = x.try_as_plain_ram()?;
        r.ensemble
            .aggregate(plain.as_slice::<f32>()?, width, r.aggregate, &mut scores);
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
