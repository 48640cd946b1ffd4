//! Explanations: how much each input feature moved a tabular model's
//! answer, against the background rows of its baseline.
//!
//! - A model whose score is one tree ensemble fed straight from its input
//!   (`onnx_ml::tree_model`) gets exact interventional TreeSHAP of the
//!   ensemble's raw score (a boosted classifier's margin, a forest's
//!   probability, a regressor's value), as `shap`'s `TreeExplainer`.
//! - Any other model gets Kernel SHAP of its first float output: the model
//!   run on coalitions of the row's and the background's values, every
//!   coalition when there are at most [`MAX_COALITIONS`] (exact Shapley
//!   values), else that many sampled in complementary pairs, and never more
//!   than [`MAX_ROWS`] rows run per explained row.
//!
//! Either way the attributions of a row sum to its answer minus the
//! expected answer over the background.
//!
//! A request asks with `?explain=true` (or OIP's `explain` parameter); the
//! model runs it makes are recorded ([`recording`]) and explained after it.

use super::drift::Baseline;
use super::{InferenceError, Model, Models, TreeModel};
use crate::tensor::{NamedTensor, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Coalitions Kernel SHAP evaluates per explained row, at most.
pub const MAX_COALITIONS: usize = 2048;
/// Model rows Kernel SHAP runs per explained row, at most (coalitions ×
/// background rows).
pub const MAX_ROWS: usize = 65_536;

/// The attributions of one model run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The model.
    pub model: String,
    /// Its version.
    pub version: u64,
    /// `tree_shap` or `kernel_shap`.
    pub method: String,
    /// What is explained: the trees' raw score, or an output's name.
    pub explains: String,
    /// Whether the values are exact Shapley values (TreeSHAP, or every
    /// coalition evaluated).
    pub exact: bool,
    /// Coalitions evaluated per row (Kernel SHAP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalitions: Option<usize>,
    /// The feature names, from the baseline.
    pub features: Vec<String>,
    /// The explained values' names (classes, `value`, or an output's
    /// columns).
    pub targets: Vec<String>,
    /// The expected value per target over the background.
    pub expected_value: Vec<f64>,
    /// Per row, per feature, per target.
    pub attributions: Vec<Vec<Vec<f64>>>,
}

/// How a loaded model is explained, decided once at load.
pub(super) enum Explainer {
    /// Exact TreeSHAP on the model's tree ensemble.
    Trees(TreeModel),
    /// Kernel SHAP on the model's first float output.
    Kernel,
}

impl Explainer {
    /// The explainer of a plan whose baseline describes `input`.
    pub(super) fn of(plan: &super::Runner, baseline: &Baseline) -> Self {
        match plan
            .tract_model()
            .and_then(|model| super::onnx_ml::tree_model(model, &baseline.input))
        {
            Some(trees) => Self::Trees(trees),
            None => Self::Kernel,
        }
    }
}

tokio::task_local! {
    static RECORDED: Arc<Mutex<Vec<(Arc<Model>, Vec<NamedTensor>)>>>;
}

/// Run `work`, keeping every model run it makes (model and inputs), for
/// explaining afterwards.
pub async fn recording<F: Future>(work: F) -> (F::Output, Vec<(Arc<Model>, Vec<NamedTensor>)>) {
    let runs: Arc<Mutex<Vec<_>>> = Arc::default();
    let output = RECORDED.scope(runs.clone(), work).await;
    let runs = std::mem::take(&mut *runs.lock().unwrap_or_else(|e| e.into_inner()));
    (output, runs)
}

/// Keep this run when the request is being recorded (a copy of its
/// inputs; nothing otherwise).
pub(super) fn record(model: &Arc<Model>, inputs: &[NamedTensor]) {
    let _ = RECORDED.try_with(|runs| {
        if let Ok(mut runs) = runs.lock() {
            runs.push((model.clone(), inputs.to_vec()));
        }
    });
}

/// The rows of a `[rows, features]` numeric tensor, as f64.
fn rows_of(tensor: &Tensor, features: usize) -> Option<Vec<Vec<f64>>> {
    let values: Vec<f64> = match &tensor.data {
        TensorData::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        _ => return None,
    };
    if tensor.shape.last() != Some(&(features as u64)) || tensor.shape.len() > 2 {
        return None;
    }
    Some(values.chunks_exact(features).map(<[f64]>::to_vec).collect())
}

impl Models {
    /// The attributions of `model`'s answer to `inputs`.
    pub async fn explain(
        &self,
        model: &Arc<Model>,
        inputs: &[NamedTensor],
    ) -> Result<Explanation, InferenceError> {
        let name = format!(
            "model {} version {}",
            model.record.name, model.record.version
        );
        let (baseline, explainer) = match (model.baseline(), &model.explainer) {
            (Some(b), Some(e)) if !b.background.is_empty() => (b.clone(), e),
            _ => {
                return Err(InferenceError::InvalidInput(format!(
                    "{name} has no baseline with background rows to explain against; push it with --baseline (made by `sluice models baseline`)"
                )));
            }
        };
        let features = baseline.features.len();
        let rows = inputs
            .iter()
            .find(|t| t.name == baseline.input)
            .and_then(|t| rows_of(&t.tensor, features))
            .ok_or_else(|| {
                InferenceError::InvalidInput(format!(
                    "{name} is explained in the {features} columns of input `{}`; send it as a [rows, {features}] numeric tensor",
                    baseline.input
                ))
            })?;
        let names = baseline.features.iter().map(|f| f.name.clone()).collect();
        let explanation = |method: &str,
                           explains: String,
                           exact,
                           coalitions,
                           targets,
                           expected_value,
                           attributions| Explanation {
            model: model.record.name.clone(),
            version: model.record.version,
            method: method.into(),
            explains,
            exact,
            coalitions,
            features: names,
            targets,
            expected_value,
            attributions,
        };
        match explainer {
            Explainer::Trees(trees) => {
                if trees.features() > features {
                    return Err(InferenceError::Internal(format!(
                        "{name}'s trees read {} features; its baseline has {features}",
                        trees.features()
                    )));
                }
                let double = model
                    .input_types
                    .contains(&tract_onnx::prelude::DatumType::F64);
                let targets = trees.targets();
                let explained = targets.len();
                let (trees, background) = (trees.clone(), baseline.background.clone());
                let worked = tokio::task::spawn_blocking(move || {
                    let mut expected = Vec::new();
                    let attributions = rows
                        .iter()
                        .map(|row| {
                            let (phi, mut e) = trees.shap(row, &background, double);
                            // A binary classifier's one score is its first.
                            e.truncate(explained);
                            expected = e;
                            phi.chunks(phi.len() / features.max(1))
                                .map(|scores| scores[..explained].to_vec())
                                .collect()
                        })
                        .collect();
                    (expected, attributions)
                })
                .await
                .map_err(|e| InferenceError::Internal(e.to_string()))?;
                let (expected, attributions) = worked;
                Ok(explanation("tree_shap", "the raw score of the tree ensemble (base values included, before the post-transform)".into(), true, None, targets, expected, attributions))
            }
            Explainer::Kernel => {
                let kernel = self.kernel(model, &baseline, &rows).await?;
                Ok(explanation(
                    "kernel_shap",
                    format!("output `{}`", kernel.output),
                    kernel.exact,
                    Some(kernel.coalitions),
                    kernel.targets,
                    kernel.expected,
                    kernel.attributions,
                ))
            }
        }
    }
}

/// What Kernel SHAP found.
struct Kernel {
    output: String,
    exact: bool,
    coalitions: usize,
    targets: Vec<String>,
    expected: Vec<f64>,
    attributions: Vec<Vec<Vec<f64>>>,
}

impl Models {
    /// Kernel SHAP of `model`'s first float output for each of `rows`.
    async fn kernel(
        &self,
        model: &Arc<Model>,
        baseline: &Baseline,
        rows: &[Vec<f64>],
    ) -> Result<Kernel, InferenceError> {
        let name = format!(
            "model {} version {}",
            model.record.name, model.record.version
        );
        if model.signature().inputs.len() != 1 {
            return Err(InferenceError::InvalidInput(format!(
                "{name} takes {} inputs; Kernel SHAP explains models of one input",
                model.signature().inputs.len()
            )));
        }
        let m = baseline.features.len();
        let background = &baseline.background;
        let budget = MAX_COALITIONS
            .min(MAX_ROWS / background.len().max(1))
            .max(2);
        let all = if m < 63 { (1u64 << m) - 2 } else { u64::MAX };
        let exact = all as usize <= budget;
        let mut attributions = Vec::with_capacity(rows.len());
        let (mut expected, mut targets, mut output) = (Vec::new(), Vec::new(), String::new());
        let mut coalitions_used = 0;
        for (r, row) in rows.iter().enumerate() {
            let coalitions = if exact {
                exhaustive(m)
            } else {
                sampled(m, budget, 0x5eed ^ r as u64)
            };
            coalitions_used = coalitions.len();
            // Every coalition's rows, then the row itself, then the
            // background alone: one run per chunk.
            let mut batch = Vec::with_capacity(
                (coalitions.len() * background.len() + 1 + background.len()) * m,
            );
            for (mask, _) in &coalitions {
                for z in background {
                    batch.extend((0..m).map(|i| if mask[i] { row[i] } else { z[i] }));
                }
            }
            batch.extend(row.iter().copied());
            for z in background {
                batch.extend(z.iter().copied());
            }
            let (out, width, out_name) = self.run_rows(model, baseline, batch, m).await?;
            output = out_name;
            let b = background.len();
            let value = |start: usize, count: usize, t: usize| {
                (start..start + count)
                    .map(|i| out[i * width + t])
                    .sum::<f64>()
                    / count as f64
            };
            let n = coalitions.len();
            let fx: Vec<f64> = (0..width).map(|t| value(n * b, 1, t)).collect();
            let base: Vec<f64> = (0..width).map(|t| value(n * b + 1, b, t)).collect();
            let mut phi = vec![vec![0.0; width]; m];
            for t in 0..width {
                let values: Vec<f64> = (0..n).map(|c| value(c * b, b, t)).collect();
                let solved = solve_constrained(&coalitions, &values, base[t], fx[t], m);
                for (i, p) in solved.into_iter().enumerate() {
                    phi[i][t] = p;
                }
            }
            attributions.push(phi);
            expected = base;
            targets = (0..width).map(|t| t.to_string()).collect();
        }
        Ok(Kernel {
            output,
            exact,
            coalitions: coalitions_used,
            targets,
            expected,
            attributions,
        })
    }

    /// Run `model` on `values` (rows of `m` features, in its input's
    /// type): its first float output, row-major, its width and name.
    async fn run_rows(
        &self,
        model: &Arc<Model>,
        baseline: &Baseline,
        values: Vec<f64>,
        m: usize,
    ) -> Result<(Vec<f64>, usize, String), InferenceError> {
        let rows = values.len() / m;
        let double = model.input_types.first() == Some(&tract_onnx::prelude::DatumType::F64);
        let data = if double {
            TensorData::F64(values)
        } else {
            TensorData::F32(values.into_iter().map(|v| v as f32).collect())
        };
        let input = NamedTensor {
            name: baseline.input.clone(),
            tensor: Tensor {
                shape: vec![rows as u64, m as u64],
                data,
            },
        };
        let arranged = super::arrange(&model.signature().inputs, &model.input_types, vec![input])?;
        // Straight to the engine: not batched with requests, not counted
        // as served rows by drift.
        let outputs = self.run_alone(model, arranged).await?;
        let outputs = super::named_outputs(model.signature(), &outputs)?;
        outputs
            .into_iter()
            .find_map(|o| {
                let values = match o.tensor.data {
                    TensorData::F32(v) => v.into_iter().map(f64::from).collect::<Vec<_>>(),
                    TensorData::F64(v) => v,
                    _ => return None,
                };
                let width = values.len() / rows.max(1);
                (width * rows == values.len() && width > 0).then_some((values, width, o.name))
            })
            .ok_or_else(|| {
                InferenceError::InvalidInput(
                    "the model has no float output with a value per row to explain".into(),
                )
            })
    }
}

/// A coalition (which features take the row's values) and its weight.
type Coalition = (Vec<bool>, f64);

/// Every coalition but the empty and the full one, with its Shapley
/// kernel weight: with all of them the regression gives exact Shapley
/// values.
fn exhaustive(m: usize) -> Vec<Coalition> {
    (1..(1u64 << m) - 1)
        .map(|bits| {
            let mask: Vec<bool> = (0..m).map(|i| bits >> i & 1 == 1).collect();
            let k = mask.iter().filter(|b| **b).count();
            (mask, kernel_weight(m, k))
        })
        .collect()
}

/// `budget` coalitions drawn in complementary pairs, sizes in proportion
/// to the kernel's mass per size, each then weighted equally.
fn sampled(m: usize, budget: usize, seed: u64) -> Vec<Coalition> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = state;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let mass: Vec<f64> = (1..m)
        .map(|k| (m - 1) as f64 / (k * (m - k)) as f64)
        .collect();
    let total: f64 = mass.iter().sum();
    let mut out = Vec::with_capacity(budget);
    while out.len() + 1 < budget {
        let mut u = (next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut k = 1;
        for (i, w) in mass.iter().enumerate() {
            if u < *w {
                k = i + 1;
                break;
            }
            u -= w;
        }
        // k distinct features, by a partial shuffle.
        let mut order: Vec<usize> = (0..m).collect();
        for i in 0..k {
            let j = i + (next() % (m - i) as u64) as usize;
            order.swap(i, j);
        }
        let mut mask = vec![false; m];
        for &i in &order[..k] {
            mask[i] = true;
        }
        let complement = mask.iter().map(|b| !b).collect();
        out.push((mask, 1.0));
        out.push((complement, 1.0));
    }
    out
}

/// The Shapley kernel's weight of a coalition of `k` of `m` features.
fn kernel_weight(m: usize, k: usize) -> f64 {
    let choose: f64 = (0..k).map(|i| (m - i) as f64 / (i + 1) as f64).product();
    (m - 1) as f64 / (choose * k as f64 * (m - k) as f64)
}

/// The weighted least-squares attributions with Σφ = `fx` − `base`: the
/// last feature's is that difference minus the others', so the others
/// solve an unconstrained system.
fn solve_constrained(
    coalitions: &[Coalition],
    values: &[f64],
    base: f64,
    fx: f64,
    m: usize,
) -> Vec<f64> {
    let delta = fx - base;
    if m == 1 {
        return vec![delta];
    }
    let k = m - 1;
    let mut a = vec![vec![0.0; k]; k];
    let mut rhs = vec![0.0; k];
    for ((mask, w), v) in coalitions.iter().zip(values) {
        let last = f64::from(u8::from(mask[k]));
        let x: Vec<f64> = (0..k)
            .map(|i| f64::from(u8::from(mask[i])) - last)
            .collect();
        let y = v - base - last * delta;
        for i in 0..k {
            rhs[i] += w * x[i] * y;
            for j in 0..k {
                a[i][j] += w * x[i] * x[j];
            }
        }
    }
    let mut phi = gauss(a, rhs);
    let rest: f64 = phi.iter().sum();
    phi.push(delta - rest);
    phi
}

/// Solve `a x = b` by Gaussian elimination with partial pivoting (a
/// singular direction, from too few coalitions, gets 0).
fn gauss(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|i, j| a[*i][col].abs().total_cmp(&a[*j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        if a[col][col].abs() < 1e-12 {
            continue;
        }
        let (above, below) = a.split_at_mut(col + 1);
        let pivot_row = &above[col];
        for (offset, row) in below.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (r, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *r -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        if a[row][row].abs() < 1e-12 {
            continue;
        }
        let s: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_coalitions_give_exact_shapley_values_of_a_game() {
        // v(S) = 3·x0 + 2·x1·x2 (x = 1 in S, 0 outside): Shapley values
        // 3, 1, 1.
        let m = 3;
        let coalitions = exhaustive(m);
        let v = |mask: &[bool]| {
            3.0 * f64::from(u8::from(mask[0])) + 2.0 * f64::from(u8::from(mask[1] && mask[2]))
        };
        let values: Vec<f64> = coalitions.iter().map(|(mask, _)| v(mask)).collect();
        let phi = solve_constrained(&coalitions, &values, 0.0, 5.0, m);
        for (got, want) in phi.iter().zip([3.0, 1.0, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{phi:?}");
        }
    }

    #[test]
    fn sampled_coalitions_come_in_complementary_pairs() {
        let c = sampled(10, 64, 7);
        assert_eq!(c.len(), 64);
        for pair in c.chunks(2) {
            assert!(pair[0].0.iter().zip(&pair[1].0).all(|(a, b)| a != b));
            let k = pair[0].0.iter().filter(|b| **b).count();
            assert!((1..10).contains(&k));
        }
    }
}
