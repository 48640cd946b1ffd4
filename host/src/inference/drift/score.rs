//! How far what was served is from the baseline: PSI, the
//! Kolmogorov–Smirnov statistic and the Wasserstein distance per feature,
//! and the level they put the model at.

use super::baseline::{Baseline, Histogram, OutputBaseline, Thresholds};
use super::sketch::{Bins, Sketch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The floor of a bin's share in PSI, so a bin empty on one side gives a
/// large but finite term (the usual convention).
const FLOOR: f64 = 1e-4;

/// How far a model (or one feature) has drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Fewer rows than the baseline's `min_rows` in the window: not judged.
    Insufficient,
    /// Every PSI below `psi_warn`.
    Ok,
    /// Some PSI at least `psi_warn`.
    Warn,
    /// Some PSI at least `psi_alert`.
    Alert,
}

impl Level {
    /// Its name, as in reports and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insufficient => "insufficient",
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Alert => "alert",
        }
    }

    /// A number for the `sluice_drift_level` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Insufficient => -1,
            Self::Ok => 0,
            Self::Warn => 1,
            Self::Alert => 2,
        }
    }

    fn of(psi: f64, thresholds: &Thresholds) -> Self {
        if psi >= thresholds.psi_alert {
            Self::Alert
        } else if psi >= thresholds.psi_warn {
            Self::Warn
        } else {
            Self::Ok
        }
    }
}

/// One feature's (or the output's) drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The feature's name.
    pub name: String,
    /// Population stability index.
    pub psi: f64,
    /// The Kolmogorov–Smirnov statistic on the baseline's bins (numeric
    /// values only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ks: Option<f64>,
    /// The Wasserstein-1 distance, in the feature's units, with each bin's
    /// mass at its mean (numeric values only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    /// Where its PSI puts it.
    pub level: Level,
    /// The bins: edges for numbers (one more than the shares)...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// ...or class labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// The baseline's share per bin.
    pub baseline: Vec<f64>,
    /// The window's share per bin.
    pub now: Vec<f64>,
    /// Values in the window that were not numbers.
    #[serde(default)]
    pub missing: u64,
}

/// Scores of every feature and the output, and the model's level.
pub fn judge(baseline: &Baseline, sketch: &Sketch) -> (Level, Vec<Score>, Option<Score>) {
    let judged = sketch.rows >= baseline.thresholds.min_rows;
    let features: Vec<Score> = baseline
        .features
        .iter()
        .zip(&sketch.features)
        .map(|(h, bins)| numeric(h, bins, &baseline.thresholds, judged))
        .collect();
    let output = baseline.output.as_ref().and_then(|output| match output {
        OutputBaseline::Values(h) => sketch
            .output
            .as_ref()
            .map(|bins| numeric(h, bins, &baseline.thresholds, judged)),
        OutputBaseline::Classes { name, classes } => {
            let labels: Vec<String> = classes
                .keys()
                .chain(sketch.classes.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .cloned()
                .collect();
            let base: Vec<u64> = labels
                .iter()
                .map(|l| classes.get(l).copied().unwrap_or(0))
                .collect();
            let now: Vec<u64> = labels
                .iter()
                .map(|l| sketch.classes.get(l).copied().unwrap_or(0))
                .collect();
            let psi = psi(&base, &now);
            Some(Score {
                name: name.clone(),
                psi,
                ks: None,
                wasserstein: None,
                level: level(psi, &baseline.thresholds, judged),
                edges: Vec::new(),
                classes: labels,
                baseline: shares(&base),
                now: shares(&now),
                missing: 0,
            })
        }
    });
    let level = if judged {
        features
            .iter()
            .chain(&output)
            .map(|s| s.level)
            .max()
            .unwrap_or(Level::Ok)
    } else {
        Level::Insufficient
    };
    (level, features, output)
}

fn level(psi: f64, thresholds: &Thresholds, judged: bool) -> Level {
    if judged {
        Level::of(psi, thresholds)
    } else {
        Level::Insufficient
    }
}

fn numeric(h: &Histogram, bins: &Bins, thresholds: &Thresholds, judged: bool) -> Score {
    let psi = psi(&h.counts, &bins.counts);
    Score {
        name: h.name.clone(),
        psi,
        ks: Some(ks(&h.counts, &bins.counts)),
        wasserstein: Some(wasserstein(
            (&h.counts, &h.sums),
            (&bins.counts, &bins.sums),
        )),
        level: level(psi, thresholds, judged),
        edges: h.edges.clone(),
        classes: Vec::new(),
        baseline: shares(&h.counts),
        now: shares(&bins.counts),
        missing: bins.missing,
    }
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| {
            if total == 0 {
                0.0
            } else {
                *c as f64 / total as f64
            }
        })
        .collect()
}

/// Population stability index: Σ (now − base) · ln(now / base) over bins.
pub fn psi(base: &[u64], now: &[u64]) -> f64 {
    if base.iter().sum::<u64>() == 0 || now.iter().sum::<u64>() == 0 {
        return 0.0;
    }
    shares(base)
        .into_iter()
        .zip(shares(now))
        .map(|(b, n)| {
            let (b, n) = (b.max(FLOOR), n.max(FLOOR));
            (n - b) * (n / b).ln()
        })
        .sum()
}

/// The largest gap between the two cumulative distributions, at the bins'
/// edges.
pub fn ks(base: &[u64], now: &[u64]) -> f64 {
    if now.iter().sum::<u64>() == 0 {
        return 0.0;
    }
    let (mut fb, mut fn_, mut gap) = (0.0, 0.0, 0.0f64);
    for (b, n) in shares(base).into_iter().zip(shares(now)) {
        fb += b;
        fn_ += n;
        gap = gap.max((fb - fn_).abs());
    }
    gap
}

/// The Wasserstein-1 distance between two binned samples, each bin's mass
/// placed at its mean: ∫ |F_base − F_now| between those points.
pub fn wasserstein(base: (&[u64], &[f64]), now: (&[u64], &[f64])) -> f64 {
    let points = |(counts, sums): (&[u64], &[f64]), side: usize| {
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .zip(sums)
            .filter(|(c, _)| **c > 0)
            .map(move |(c, s)| (s / *c as f64, side, *c as f64 / total as f64))
            .collect::<Vec<_>>()
    };
    let mut all = points(base, 0);
    let live = points(now, 1);
    if all.is_empty() || live.is_empty() {
        return 0.0;
    }
    all.extend(live);
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut cdf, mut distance) = ([0.0; 2], 0.0);
    for pair in all.windows(2) {
        let (x, side, mass) = pair[0];
        cdf[side] += mass;
        distance += (cdf[0] - cdf[1]).abs() * (pair[1].0 - x);
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_score_zero() {
        let counts = [10, 20, 30, 40];
        assert_eq!(psi(&counts, &counts), 0.0);
        assert_eq!(ks(&counts, &counts), 0.0);
        let sums = [5.0, 30.0, 75.0, 140.0];
        assert!(wasserstein((&counts, &sums), (&counts, &sums)).abs() < 1e-12);
    }

    #[test]
    fn scores_match_their_definitions() {
        // PSI of [.5, .5] against [.25, .75]: (.25-.5)ln(.5) + (.75-.5)ln(1.5).
        let expected = -0.25 * 0.5f64.ln() + 0.25 * 1.5f64.ln();
        assert!((psi(&[50, 50], &[25, 75]) - expected).abs() < 1e-12);
        assert!((ks(&[50, 50], &[25, 75]) - 0.25).abs() < 1e-12);
        // Everything moved by 3 (means 1 and 2 → 4 and 5): W1 = 3.
        let w = wasserstein((&[1, 1], &[1.0, 2.0]), (&[1, 1], &[4.0, 5.0]));
        assert!((w - 3.0).abs() < 1e-12, "{w}");
    }

    #[test]
    fn a_bin_empty_on_one_side_gives_a_finite_psi() {
        let p = psi(&[100, 0], &[0, 100]);
        assert!(p.is_finite() && p > 5.0, "{p}");
    }
}
