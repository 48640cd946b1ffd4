//! Exact interventional TreeSHAP: what each feature of a row adds to an
//! ensemble's raw score, against each row of a background sample, averaged
//! (the Shapley values of "features in the coalition take the row's
//! values, the others the background row's", as `shap`'s
//! `TreeExplainer(feature_perturbation="interventional")` computes them).
//!
//! For one row `x`, one background row `z` and one tree, only the features
//! on which `x` and `z` take different branches matter. Walking both at
//! once, each such branch splits the walk: the feature joins the features
//! taken from `x` (follow `x`) or those taken from `z` (follow `z`); a
//! feature met again follows its earlier choice. A leaf reached with `a`
//! features from `x` and `b` from `z` is the game's value exactly for the
//! coalitions holding all `a` and none of the `b`, so its weight `v` gives
//! each of the `a` `v·(a−1)!·b!/(a+b)!` and takes from each of the `b`
//! `v·a!·(b−1)!/(a+b)!`. The cost is one walk per (row, background row,
//! tree), splitting only where the two rows disagree.

use super::{Ensemble, Feature, Mode};

/// `n!` as f64 for the path lengths a tree can have.
fn factorial(n: usize) -> f64 {
    (1..=n).map(|k| k as f64).product()
}

impl Ensemble {
    /// The child `value` goes to at branch `n`.
    pub(super) fn step<F: Feature>(&self, n: usize, value: F) -> usize {
        let t = F::thresholds(self)[n];
        let holds = match self.mode[n] {
            Mode::Leq => value <= t,
            Mode::Lt => value < t,
            Mode::Gte => value >= t,
            Mode::Gt => value > t,
            Mode::Eq => value == t,
            Mode::Neq => value != t,
            Mode::Leaf => return n,
        };
        let take_true = holds || (value.is_nan() && self.missing_true[n]);
        if take_true {
            self.true_child[n] as usize
        } else {
            self.false_child[n] as usize
        }
    }

    /// Add to `phi` (`features × targets`, row-major) the attributions of
    /// row `x` against background row `z`, each leaf weight times `scale`.
    pub(super) fn shap<F: Feature>(&self, x: &[F], z: &[F], scale: f64, phi: &mut [f64]) {
        let mut path = Vec::new();
        for &root in &self.roots {
            self.walk(root as usize, x, z, scale, &mut path, phi);
        }
    }

    /// The raw score (`targets` values, without base values) of row `x`,
    /// each leaf weight times `scale`.
    pub(super) fn raw<F: Feature>(&self, x: &[F], scale: f64, out: &mut [f64]) {
        for &root in &self.roots {
            let mut n = root as usize;
            while self.mode[n] != Mode::Leaf {
                n = self.step(n, x[self.feature[n] as usize]);
            }
            for w in self.leaf_start[n] as usize..self.leaf_start[n + 1] as usize {
                out[self.leaf_target[w] as usize] += f64::from(self.leaf_weight[w]) * scale;
            }
        }
    }

    fn walk<F: Feature>(
        &self,
        n: usize,
        x: &[F],
        z: &[F],
        scale: f64,
        path: &mut Vec<(u32, bool)>,
        phi: &mut [f64],
    ) {
        if self.mode[n] == Mode::Leaf {
            let a = path.iter().filter(|(_, from_x)| *from_x).count();
            let b = path.len() - a;
            if a + b == 0 {
                return;
            }
            let all = factorial(a + b);
            let gain = if a > 0 {
                factorial(a - 1) * factorial(b) / all
            } else {
                0.0
            };
            let loss = if b > 0 {
                factorial(a) * factorial(b - 1) / all
            } else {
                0.0
            };
            for w in self.leaf_start[n] as usize..self.leaf_start[n + 1] as usize {
                let target = self.leaf_target[w] as usize;
                let v = f64::from(self.leaf_weight[w]) * scale;
                for &(feature, from_x) in path.iter() {
                    let at = feature as usize * self.targets + target;
                    if from_x {
                        phi[at] += v * gain;
                    } else {
                        phi[at] -= v * loss;
                    }
                }
            }
            return;
        }
        let feature = self.feature[n];
        let (to_x, to_z) = (
            self.step(n, x[feature as usize]),
            self.step(n, z[feature as usize]),
        );
        if let Some(&(_, from_x)) = path.iter().find(|(f, _)| *f == feature) {
            let next = if from_x { to_x } else { to_z };
            return self.walk(next, x, z, scale, path, phi);
        }
        if to_x == to_z {
            return self.walk(to_x, x, z, scale, path, phi);
        }
        for (next, from_x) in [(to_x, true), (to_z, false)] {
            path.push((feature, from_x));
            self.walk(next, x, z, scale, path, phi);
            path.pop();
        }
    }
}
