//! Tree ensembles flattened for speed: every node of every tree in
//! structure-of-arrays form (feature, threshold, mode, children), leaves'
//! weights in one array indexed by a per-node range, and evaluation that
//! walks one tree over many rows before moving to the next, so a tree's
//! nodes stay in cache. No allocation per row, no search for a node: a
//! child is an index.
//!
//! Built from the ONNX-ML attributes (`nodes_*`, `target_*`/`class_*`),
//! which are checked once at load: a child outside its tree, a cycle, a
//! weight on a branch or a bad mode is refused with the node named, so a
//! malformed model never reaches a request.
//!
//! Thresholds may be doubles (`nodes_values_as_tensor`, ai.onnx.ml opset
//! 3). Rows of f64 inputs are compared with them as they are; rows of any
//! other input are f32, compared with each threshold rounded towards the
//! side that keeps the comparison exact (`x <= 0.1` for an f32 `x` is
//! `x <= ` the largest f32 not above 0.1), so both give the answers double
//! arithmetic gives. Weights and base values are summed in f32.

mod shap;

use std::collections::HashMap;
use std::sync::Arc;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

/// How a branch compares the row's feature `x` with its threshold `t`;
/// the true child is taken when the comparison holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// `x <= t`
    Leq,
    /// `x < t`
    Lt,
    /// `x >= t`
    Gte,
    /// `x > t`
    Gt,
    /// `x == t`
    Eq,
    /// `x != t`
    Neq,
    /// A leaf: no comparison, weights instead.
    Leaf,
}

impl Mode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "BRANCH_LEQ" => Self::Leq,
            "BRANCH_LT" => Self::Lt,
            "BRANCH_GTE" => Self::Gte,
            "BRANCH_GT" => Self::Gt,
            "BRANCH_EQ" => Self::Eq,
            "BRANCH_NEQ" => Self::Neq,
            "LEAF" => Self::Leaf,
            _ => return None,
        })
    }
}

/// How the trees' leaf weights combine per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub(super) fn parse(s: &str) -> TractResult<Self> {
        Ok(match s {
            "SUM" => Self::Sum,
            "AVERAGE" => Self::Average,
            "MIN" => Self::Min,
            "MAX" => Self::Max,
            other => bail!("aggregate_function `{other}` is not one of SUM, AVERAGE, MIN, MAX"),
        })
    }
}

/// The nodes as the ONNX attributes give them, one entry per node.
pub(super) struct NodeAttributes {
    pub tree_ids: Vec<i64>,
    pub node_ids: Vec<i64>,
    pub feature_ids: Vec<i64>,
    pub values: Vec<f64>,
    pub modes: Vec<String>,
    pub true_ids: Vec<i64>,
    pub false_ids: Vec<i64>,
    /// Empty, or one flag per node: a missing value (NaN) takes the true
    /// branch.
    pub missing_tracks_true: Vec<i64>,
}

impl NodeAttributes {
    /// Read a node's `nodes_*` attributes.
    pub(super) fn read(ctx: &ParsingContext, node: &NodeProto) -> TractResult<Self> {
        Ok(Self {
            tree_ids: node.get_attr_vec("nodes_treeids")?,
            node_ids: node.get_attr_vec("nodes_nodeids")?,
            feature_ids: node.get_attr_vec("nodes_featureids")?,
            values: floats(ctx, node, "nodes_values")?.unwrap_or_default(),
            modes: node.get_attr_vec("nodes_modes")?,
            true_ids: node.get_attr_vec("nodes_truenodeids")?,
            false_ids: node.get_attr_vec("nodes_falsenodeids")?,
            missing_tracks_true: node
                .get_attr_opt_vec("nodes_missing_value_tracks_true")?
                .unwrap_or_default(),
        })
    }
}

/// A list of reals given as floats (`name`) or, since ai.onnx.ml opset 3,
/// as a float or double tensor (`name_as_tensor`); at most one of the two.
pub(super) fn floats(
    ctx: &ParsingContext,
    node: &NodeProto,
    name: &str,
) -> TractResult<Option<Vec<f64>>> {
    let tensor_name = format!("{name}_as_tensor");
    let listed: Option<Vec<f32>> = node.get_attr_opt_vec(name)?;
    let tensor: Option<&TensorProto> = node.get_attr_opt(&tensor_name)?;
    match (listed, tensor) {
        (Some(_), Some(_)) => bail!("both `{name}` and `{tensor_name}` are given; give one"),
        (Some(values), None) => Ok(Some(values.into_iter().map(f64::from).collect())),
        (None, Some(proto)) => {
            let tensor = ctx.load_tensor(proto)?;
            ensure!(
                matches!(tensor.datum_type(), DatumType::F32 | DatumType::F64),
                "`{tensor_name}` holds {:?}; expected float or double",
                tensor.datum_type()
            );
            let values = tensor.cast_to::<f64>()?;
            Ok(Some(values.try_as_plain_ram()?.as_slice::<f64>()?.to_vec()))
        }
        (None, None) => Ok(None),
    }
}

/// [`floats`] as f32 (weights and base values are summed in f32).
pub(super) fn floats_f32(
    ctx: &ParsingContext,
    node: &NodeProto,
    name: &str,
) -> TractResult<Option<Vec<f32>>> {
    Ok(floats(ctx, node, name)?.map(|v| v.into_iter().map(|x| x as f32).collect()))
}

/// The leaf weights as the ONNX attributes give them (`target_*` or
/// `class_*`), one entry per weight.
pub(super) struct WeightAttributes {
    pub tree_ids: Vec<i64>,
    pub node_ids: Vec<i64>,
    pub targets: Vec<i64>,
    pub weights: Vec<f32>,
}

/// A checked, flattened tree ensemble.
#[derive(Debug)]
pub(super) struct Ensemble {
    roots: Vec<u32>,
    feature: Vec<u32>,
    /// Thresholds for f32 rows, rounded so each comparison is exact.
    threshold: Vec<f32>,
    threshold_f64: Vec<f64>,
    mode: Vec<Mode>,
    true_child: Vec<u32>,
    false_child: Vec<u32>,
    missing_true: Vec<bool>,
    /// Node `i`'s weights are `leaf_start[i]..leaf_start[i + 1]`.
    leaf_start: Vec<u32>,
    leaf_target: Vec<u32>,
    leaf_weight: Vec<f32>,
    /// Per tree, its depth (edges from the root to the deepest leaf).
    depth: Vec<u32>,
    /// Every branch is (rewritten as) `x <= t`: rows walk in lockstep,
    /// branch-free, leaves pointing at themselves.
    lockstep: bool,
    /// Some missing value takes a true branch (the lockstep walk checks).
    any_missing_true: bool,
    /// Features a row needs (the highest feature id + 1).
    pub features: usize,
    /// Scores per row.
    pub targets: usize,
}

impl Ensemble {
    /// Check and flatten. `targets` is the number of scores per row.
    pub(super) fn build(
        nodes: NodeAttributes,
        weights: WeightAttributes,
        targets: usize,
    ) -> TractResult<Self> {
        let count = nodes.node_ids.len();
        ensure!(count > 0, "the ensemble has no nodes");
        for (name, len) in [
            ("nodes_treeids", nodes.tree_ids.len()),
            ("nodes_featureids", nodes.feature_ids.len()),
            ("nodes_values", nodes.values.len()),
            ("nodes_modes", nodes.modes.len()),
            ("nodes_truenodeids", nodes.true_ids.len()),
            ("nodes_falsenodeids", nodes.false_ids.len()),
        ] {
            ensure!(
                len == count,
                "`{name}` has {len} entries; `nodes_nodeids` has {count}"
            );
        }
        ensure!(
            nodes.missing_tracks_true.is_empty() || nodes.missing_tracks_true.len() == count,
            "`nodes_missing_value_tracks_true` has {} entries; `nodes_nodeids` has {count}",
            nodes.missing_tracks_true.len()
        );
        let mut index: HashMap<(i64, i64), u32> = HashMap::with_capacity(count);
        for (i, key) in nodes.tree_ids.iter().zip(&nodes.node_ids).enumerate() {
            let key = (*key.0, *key.1);
            ensure!(
                index.insert(key, i as u32).is_none(),
                "node {} of tree {} appears twice",
                key.1,
                key.0
            );
        }
        let mut mode = nodes
            .modes
            .iter()
            .zip(nodes.tree_ids.iter().zip(&nodes.node_ids))
            .map(|(m, (t, n))| {
                Mode::parse(m).ok_or_else(|| {
                    format_err!("node {n} of tree {t} has mode `{m}`; expected BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ or LEAF")
                })
            })
            .collect::<TractResult<Vec<_>>>()?;
        let child = |i: usize, id: i64, which: &str| -> TractResult<u32> {
            let tree = nodes.tree_ids[i];
            index.get(&(tree, id)).copied().ok_or_else(|| {
                format_err!(
                    "node {} of tree {tree} has {which} child {id}, which tree {tree} does not have",
                    nodes.node_ids[i]
                )
            })
        };
        let (mut true_child, mut false_child) = (vec![0; count], vec![0; count]);
        let mut feature = vec![0; count];
        let mut features = 0;
        for i in 0..count {
            if mode[i] == Mode::Leaf {
                continue;
            }
            true_child[i] = child(i, nodes.true_ids[i], "true")?;
            false_child[i] = child(i, nodes.false_ids[i], "false")?;
            let f = u32::try_from(nodes.feature_ids[i]).map_err(|_| {
                format_err!(
                    "node {} of tree {} reads feature {}",
                    nodes.node_ids[i],
                    nodes.tree_ids[i],
                    nodes.feature_ids[i]
                )
            })?;
            feature[i] = f;
            features = features.max(f as usize + 1);
        }

        // Roots: per tree (in order of first appearance), the one node no
        // branch points at.
        let mut is_child = vec![false; count];
        for i in (0..count).filter(|i| mode[*i] != Mode::Leaf) {
            is_child[true_child[i] as usize] = true;
            is_child[false_child[i] as usize] = true;
        }
        let mut trees: Vec<i64> = Vec::new();
        let mut roots_of: HashMap<i64, Vec<u32>> = HashMap::new();
        for (i, (tree, child)) in nodes.tree_ids.iter().zip(&is_child).enumerate() {
            let roots = roots_of.entry(*tree).or_insert_with(|| {
                trees.push(*tree);
                Vec::new()
            });
            if !child {
                roots.push(i as u32);
            }
        }
        let roots = trees
            .iter()
            .map(|tree| match roots_of[tree].as_slice() {
                [root] => Ok(*root),
                [] => bail!("tree {tree} has no root: every node is some node's child (a cycle)"),
                many => bail!(
                    "tree {tree} has {} roots (nodes no branch points at); a tree has one",
                    many.len()
                ),
            })
            .collect::<TractResult<Vec<_>>>()?;
        check_acyclic(&roots, &mode, &true_child, &false_child, &nodes)?;
        let depth = roots
            .iter()
            .map(|root| depth_of(*root, &mode, &true_child, &false_child))
            .collect();
        let mut missing_true = if nodes.missing_tracks_true.is_empty() {
            vec![false; count]
        } else {
            nodes.missing_tracks_true.iter().map(|m| *m != 0).collect()
        };
        let mut threshold = Vec::with_capacity(count);
        let mut threshold_f64 = Vec::with_capacity(count);
        for (i, t) in nodes.values.iter().enumerate() {
            match as_leq(mode[i], *t) {
                Some(leq) => {
                    mode[i] = Mode::Leq;
                    threshold.push(leq.f32);
                    threshold_f64.push(leq.f64);
                    if leq.swap {
                        std::mem::swap(&mut true_child[i], &mut false_child[i]);
                        missing_true[i] = !missing_true[i];
                    }
                }
                None => {
                    threshold.push(f32_threshold(mode[i], *t));
                    threshold_f64.push(*t);
                }
            }
        }
        let lockstep = mode.iter().all(|m| matches!(m, Mode::Leq | Mode::Leaf));
        if lockstep {
            for (i, _) in mode.iter().enumerate().filter(|(_, m)| **m == Mode::Leaf) {
                (true_child[i], false_child[i]) = (i as u32, i as u32);
            }
        }

        // Leaf weights, grouped by node.
        let wcount = weights.node_ids.len();
        for (name, len) in [
            ("treeids", weights.tree_ids.len()),
            ("ids", weights.targets.len()),
            ("weights", weights.weights.len()),
        ] {
            ensure!(
                len == wcount,
                "the weights' `{name}` has {len} entries; their `nodeids` has {wcount}"
            );
        }
        let mut per_node: Vec<Vec<(u32, f32)>> = vec![Vec::new(); count];
        for w in 0..wcount {
            let (tree, node) = (weights.tree_ids[w], weights.node_ids[w]);
            let i = *index.get(&(tree, node)).ok_or_else(|| {
                format_err!("a weight names node {node} of tree {tree}, which does not exist")
            })? as usize;
            ensure!(
                mode[i] == Mode::Leaf,
                "a weight is on node {node} of tree {tree}, which is a branch, not a leaf"
            );
            let target = usize::try_from(weights.targets[w])
                .ok()
                .filter(|t| *t < targets)
                .ok_or_else(|| {
                    format_err!(
                        "a weight of node {node} of tree {tree} goes to target {}; there are {targets}",
                        weights.targets[w]
                    )
                })?;
            per_node[i].push((target as u32, weights.weights[w]));
        }
        let mut leaf_start = Vec::with_capacity(count + 1);
        let (mut leaf_target, mut leaf_weight) = (Vec::new(), Vec::new());
        for entries in &per_node {
            leaf_start.push(leaf_target.len() as u32);
            for (t, w) in entries {
                leaf_target.push(*t);
                leaf_weight.push(*w);
            }
        }
        leaf_start.push(leaf_target.len() as u32);
        Ok(Self {
            roots,
            feature,
            threshold,
            threshold_f64,
            any_missing_true: missing_true.iter().any(|m| *m),
            mode,
            true_child,
            false_child,
            missing_true,
            leaf_start,
            leaf_target,
            leaf_weight,
            depth,
            lockstep,
            features,
            targets,
        })
    }

    /// Wire the input of operator `op` (`[N, F]`): checked wide enough
    /// when F is known, cast to f32 unless it is f64.
    pub(super) fn wire_input(
        &self,
        op: &str,
        prefix: &str,
        model: &mut TypedModel,
        input: OutletId,
    ) -> TractResult<OutletId> {
        let fact = model.outlet_fact(input)?.clone();
        if let Ok(width) = fact.shape[1].to_usize() {
            ensure!(
                width >= self.features,
                "{op} `{prefix}` reads feature {}; the input has {width}",
                self.features - 1
            );
        }
        if fact.datum_type == DatumType::F64 {
            return Ok(input);
        }
        super::wire_f32(prefix, model, input)
    }

    /// The aggregated scores (row-major, `targets` per row) of the rows of
    /// `x` (`[N, F]`, f32 or f64, as [`Self::wire_input`] wires it), without
    /// base values or a post-transform: `(N, scores)`.
    pub(super) fn scores(
        &self,
        x: &Tensor,
        aggregate: Aggregate,
    ) -> TractResult<(usize, Vec<f32>)> {
        let (rows, width) = (x.shape()[0], x.shape()[1]);
        ensure!(
            width >= self.features,
            "the input has {width} features; the trees read {}",
            self.features
        );
        let mut scores = vec![0f32; rows * self.targets];
        if rows > 0 {
            let plain = x.try_as_plain_ram()?;
            match x.datum_type() {
                DatumType::F64 => {
                    self.aggregate(plain.as_slice::<f64>()?, width, aggregate, &mut scores)
                }
                _ => self.aggregate(plain.as_slice::<f32>()?, width, aggregate, &mut scores),
            }
        }
        Ok((rows, scores))
    }

    /// The number of trees.
    pub(super) fn trees(&self) -> usize {
        self.roots.len()
    }

    /// The leaf `row` reaches in the tree rooted at `root`.
    #[inline]
    fn leaf<F: Feature>(&self, root: u32, row: &[F]) -> usize {
        let mut n = root as usize;
        while self.mode[n] != Mode::Leaf {
            n = self.step(n, row[self.feature[n] as usize]);
        }
        n
    }

    /// Aggregate the trees' weights for `rows` (row-major, `width` features
    /// each) into `scores` (row-major, `targets` each).
    fn aggregate<F: Feature>(
        &self,
        rows: &[F],
        width: usize,
        aggregate: Aggregate,
        scores: &mut [f32],
    ) {
        let start = match aggregate {
            Aggregate::Sum | Aggregate::Average => 0.0,
            Aggregate::Min => f32::INFINITY,
            Aggregate::Max => f32::NEG_INFINITY,
        };
        scores.fill(start);
        let mut leaves = vec![0u32; rows.len() / width];
        // Tree by tree over all rows: one tree's nodes stay in cache.
        for (tree, root) in self.roots.iter().enumerate() {
            if self.lockstep && self.any_missing_true {
                self.leaves_in_lockstep::<F, true>(
                    *root,
                    self.depth[tree],
                    rows,
                    width,
                    &mut leaves,
                );
            } else if self.lockstep {
                self.leaves_in_lockstep::<F, false>(
                    *root,
                    self.depth[tree],
                    rows,
                    width,
                    &mut leaves,
                );
            } else {
                for (row, leaf) in rows.chunks_exact(width).zip(leaves.iter_mut()) {
                    *leaf = self.leaf(*root, row) as u32;
                }
            }
            for (leaf, out) in leaves.iter().zip(scores.chunks_exact_mut(self.targets)) {
                let leaf = *leaf as usize;
                let range = self.leaf_start[leaf] as usize..self.leaf_start[leaf + 1] as usize;
                for (t, w) in self.leaf_target[range.clone()]
                    .iter()
                    .zip(&self.leaf_weight[range])
                {
                    let s = &mut out[*t as usize];
                    *s = match aggregate {
                        Aggregate::Sum | Aggregate::Average => *s + w,
                        Aggregate::Min => s.min(*w),
                        Aggregate::Max => s.max(*w),
                    };
                }
            }
        }
        match aggregate {
            Aggregate::Average => {
                let n = self.trees() as f32;
                scores.iter_mut().for_each(|s| *s /= n);
            }
            // A target no leaf scored counts as 0.
            Aggregate::Min | Aggregate::Max => scores
                .iter_mut()
                .filter(|s| s.is_infinite())
                .for_each(|s| *s = 0.0),
            Aggregate::Sum => {}
        }
    }
}

impl Ensemble {
    /// The leaves of one `x <= t` tree for every row: eight rows advance
    /// together for exactly `depth` steps (a leaf is its own child), with
    /// a select instead of a branch, so nothing mispredicts.
    fn leaves_in_lockstep<F: Feature, const MISSING: bool>(
        &self,
        root: u32,
        depth: u32,
        rows: &[F],
        width: usize,
        leaves: &mut [u32],
    ) {
        const LANES: usize = 8;
        let thresholds = F::thresholds(self);
        for (block, out) in rows.chunks(width * LANES).zip(leaves.chunks_mut(LANES)) {
            let mut n = [root; LANES];
            for _ in 0..depth {
                for (k, row) in block.chunks_exact(width).enumerate() {
                    let i = n[k] as usize;
                    let x = row[self.feature[i] as usize];
                    let holds =
                        x <= thresholds[i] || (MISSING && x.is_nan() && self.missing_true[i]);
                    n[k] = if holds {
                        self.true_child[i]
                    } else {
                        self.false_child[i]
                    };
                }
            }
            out.copy_from_slice(&n[..out.len()]);
        }
    }
}

/// A tree operator whose raw score is its trees' weights summed (times a
/// scale) plus base values: what TreeSHAP explains.
pub(super) trait Additive: Send + Sync + std::fmt::Debug {
    /// The trees.
    fn ensemble(&self) -> &Ensemble;
    /// The base value per target.
    fn base(&self) -> &[f32];
    /// What each leaf weight counts for (1, or 1/trees for an average);
    /// `None` when the score is not a sum (MIN, MAX).
    fn scale(&self) -> Option<f64>;
    /// The targets' names (class labels, or `value`).
    fn target_names(&self) -> Vec<String>;
}

/// A tree ensemble of a loaded model, explained by exact TreeSHAP.
#[derive(Debug, Clone)]
pub struct TreeModel(pub(super) Arc<dyn Additive>);

impl TreeModel {
    /// Features a row needs.
    pub fn features(&self) -> usize {
        self.0.ensemble().features
    }

    /// The names of the raw scores explained.
    pub fn targets(&self) -> Vec<String> {
        self.0.target_names()
    }

    /// The attributions (`features × targets`, row-major) of `row` against
    /// `background`, averaged, and the expected raw score (base values
    /// included) over the background. Rows are compared in `double`'s
    /// precision when `double`, else rounded to f32 as the model does.
    pub fn shap(&self, row: &[f64], background: &[Vec<f64>], double: bool) -> (Vec<f64>, Vec<f64>) {
        let ensemble = self.0.ensemble();
        let scale = self.0.scale().unwrap_or(1.0);
        let targets = ensemble.targets;
        let mut phi = vec![0.0; ensemble.features.max(row.len()) * targets];
        let mut expected = vec![0.0; targets];
        let single = |r: &[f64]| r.iter().map(|v| *v as f32).collect::<Vec<f32>>();
        let x32 = single(row);
        for z in background {
            if double {
                ensemble.shap(row, z, scale, &mut phi);
                ensemble.raw(z.as_slice(), scale, &mut expected);
            } else {
                let z32 = single(z);
                ensemble.shap(&x32, &z32, scale, &mut phi);
                ensemble.raw(&z32, scale, &mut expected);
            }
        }
        let count = background.len().max(1) as f64;
        phi.iter_mut().for_each(|p| *p /= count);
        for (e, b) in expected
            .iter_mut()
            .zip(self.0.base().iter().chain(std::iter::repeat(&0.0)))
        {
            *e = *e / count + f64::from(*b);
        }
        (phi, expected)
    }
}

/// The element type of rows the trees compare: f32, or f64 (double inputs).
trait Feature: Copy + PartialOrd {
    fn is_nan(self) -> bool;
    /// The ensemble's thresholds in this type.
    fn thresholds(ensemble: &Ensemble) -> &[Self];
}

impl Feature for f32 {
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    fn thresholds(ensemble: &Ensemble) -> &[f32] {
        &ensemble.threshold
    }
}

impl Feature for f64 {
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    fn thresholds(ensemble: &Ensemble) -> &[f64] {
        &ensemble.threshold_f64
    }
}

/// A branch rewritten as `x <= t`: the thresholds for f32 and f64 rows,
/// and whether the children trade places (a `>` or `>=` branch is the
/// negation of a `<=` or `<` one).
struct Leq {
    f32: f32,
    f64: f64,
    swap: bool,
}

/// `x < t` is `x <= ` the value just below `t` (for f32 rows, just below
/// the smallest f32 not under `t`), so `<`, `>` and `>=` branches become
/// `<=` ones, exactly, for every f32 or f64 `x` including infinities and
/// NaN (whose track the caller flips with the children). Not for NaN
/// thresholds, nor `<`/`>=` against -∞ (nothing is below it): those stay
/// as they are.
fn as_leq(mode: Mode, t: f64) -> Option<Leq> {
    let below = |t: f64| Leq {
        f32: f32_threshold(Mode::Lt, t).next_down(),
        f64: t.next_down(),
        swap: false,
    };
    let at = |t: f64| Leq {
        f32: f32_threshold(Mode::Leq, t),
        f64: t,
        swap: false,
    };
    match mode {
        Mode::Leq => Some(at(t)),
        Mode::Gt if !t.is_nan() => Some(Leq {
            swap: true,
            ..at(t)
        }),
        Mode::Lt if t > f64::NEG_INFINITY => Some(below(t)),
        Mode::Gte if t > f64::NEG_INFINITY => Some(Leq {
            swap: true,
            ..below(t)
        }),
        _ => None,
    }
}

/// The f32 threshold that, for every f32 `x`, compares under `mode` as
/// `x` (widened) does with the double `t`: the largest f32 not above `t`
/// for `<=` and `>`, the smallest not below it for `<` and `>=`; for `==`
/// and `!=`, `t` itself when it is an f32, else NaN (no f32 equals it).
fn f32_threshold(mode: Mode, t: f64) -> f32 {
    let nearest = t as f32;
    let (below, above) = match f64::from(nearest).partial_cmp(&t) {
        Some(std::cmp::Ordering::Greater) => (nearest.next_down(), nearest),
        Some(std::cmp::Ordering::Less) => (nearest, nearest.next_up()),
        _ => (nearest, nearest),
    };
    match mode {
        Mode::Leq | Mode::Gt => below,
        Mode::Lt | Mode::Gte => above,
        Mode::Eq | Mode::Neq if below == above => nearest,
        Mode::Eq | Mode::Neq => f32::NAN,
        Mode::Leaf => 0.0,
    }
}

/// Edges from `root` to its deepest leaf (the tree is acyclic).
fn depth_of(root: u32, mode: &[Mode], true_child: &[u32], false_child: &[u32]) -> u32 {
    let mut deepest = 0;
    let mut stack = vec![(root, 0u32)];
    while let Some((n, d)) = stack.pop() {
        deepest = deepest.max(d);
        if mode[n as usize] != Mode::Leaf {
            stack.push((true_child[n as usize], d + 1));
            stack.push((false_child[n as usize], d + 1));
        }
    }
    deepest
}

/// Refuse a cycle: walking from the roots must never come back to a node
/// on the current path.
fn check_acyclic(
    roots: &[u32],
    mode: &[Mode],
    true_child: &[u32],
    false_child: &[u32],
    nodes: &NodeAttributes,
) -> TractResult<()> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; mode.len()];
    for root in roots {
        // (node, children visited)
        let mut stack = vec![(*root as usize, false)];
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                mark[n] = Mark::Done;
                continue;
            }
            match mark[n] {
                Mark::Done => continue,
                Mark::OnPath => bail!(
                    "tree {} has a cycle through node {}",
                    nodes.tree_ids[n],
                    nodes.node_ids[n]
                ),
                Mark::New => {}
            }
            mark[n] = Mark::OnPath;
            stack.push((n, true));
            if mode[n] != Mode::Leaf {
                for c in [true_child[n], false_child[n]] {
                    match mark[c as usize] {
                        Mark::OnPath => bail!(
                            "tree {} has a cycle through node {}",
                            nodes.tree_ids[n],
                            nodes.node_ids[c as usize]
                        ),
                        Mark::New => stack.push((c as usize, false)),
                        Mark::Done => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// What is applied to a row's scores after the base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub(super) fn parse(s: &str) -> TractResult<Self> {
        Ok(match s {
            "NONE" => Self::None,
            "LOGISTIC" => Self::Logistic,
            "SOFTMAX" => Self::Softmax,
            "SOFTMAX_ZERO" => Self::SoftmaxZero,
            "PROBIT" => Self::Probit,
            other => bail!(
                "post_transform `{other}` is not one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT"
            ),
        })
    }

    /// Transform one row's scores in place.
    pub(super) fn apply(self, row: &mut [f32]) {
        match self {
            Self::None => {}
            Self::Logistic => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Self::Softmax => {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                row.iter_mut().for_each(|v| *v = (*v - max).exp());
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
            // As onnxruntime: zeros stay zero and take no share.
            Self::SoftmaxZero => {
                let max = row
                    .iter()
                    .copied()
                    .filter(|v| *v != 0.0)
                    .fold(f32::NEG_INFINITY, f32::max);
                row.iter_mut()
                    .filter(|v| **v != 0.0)
                    .for_each(|v| *v = (*v - max).exp());
                let sum: f32 = row.iter().sum();
                if sum > 0.0 {
                    row.iter_mut().for_each(|v| *v /= sum);
                }
            }
            Self::Probit => row
                .iter_mut()
                .for_each(|v| *v = std::f32::consts::SQRT_2 * erf_inv(2.0 * *v - 1.0)),
        }
    }
}

/// The inverse error function, by the approximation onnxruntime uses for
/// PROBIT (Winitzki, a = 0.147), so both give the same numbers.
fn erf_inv(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let ln = ((1.0 - x) * (1.0 + x)).ln();
    // 3.14159, not π: the constant onnxruntime writes.
    #[allow(clippy::approx_constant)]
    let v = 2.0 / (3.14159 * 0.147) + 0.5 * ln;
    let v2 = ln / 0.147;
    sign * (-v + (v * v - v2).sqrt()).sqrt()
}
