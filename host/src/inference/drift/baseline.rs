//! Baseline statistics of a model's training data: what drift is measured
//! against. Written by the training scripts in `examples/` and by
//! `sluice models baseline`, stored as a blob with the model version.

use crate::tensor::{Signature, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` of a baseline this node reads.
pub const FORMAT: &str = "sluice.baseline/1";

/// Bins per feature when `sluice models baseline` is not told otherwise:
/// deciles, the usual grain of PSI.
pub const DEFAULT_BINS: usize = 10;

/// Training rows kept as the background of explanations, at most.
pub const BACKGROUND_ROWS: usize = 100;

/// Per-feature histograms of one input, the output's distribution, the
/// thresholds drift is judged by, and a background sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Always [`FORMAT`].
    pub format: String,
    /// The model input whose columns are the features (`[rows, features]`).
    pub input: String,
    /// Rows the statistics were computed from.
    pub rows: u64,
    /// One histogram per column of `input`, in column order.
    pub features: Vec<Histogram>,
    /// The distribution of one output, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputBaseline>,
    /// When drift warns and alerts.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Training rows (each `features.len()` values): what explanations
    /// measure a prediction against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub background: Vec<Vec<f64>>,
}

/// A histogram on fixed bin edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The feature's (or output's) name.
    pub name: String,
    /// `bins + 1` ascending edges: the sample's minimum, its quantiles, its
    /// maximum. The outer bins are open: a value below the second edge
    /// counts in the first bin, one above the second-to-last in the last.
    pub edges: Vec<f64>,
    /// Values per bin.
    pub counts: Vec<u64>,
    /// The values' sum per bin (bin means place mass for the Wasserstein
    /// distance).
    pub sums: Vec<f64>,
}

/// The distribution of a model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OutputBaseline {
    /// A label output: rows per class.
    Classes {
        /// The output's name.
        name: String,
        /// Rows per class label.
        classes: BTreeMap<String, u64>,
    },
    /// A numeric output with one value per row.
    Values(Histogram),
}

impl OutputBaseline {
    /// The output's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Classes { name, .. } => name,
            Self::Values(h) => &h.name,
        }
    }
}

/// When drift warns and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// A feature with a PSI at least this drifts (warn).
    pub psi_warn: f64,
    /// A feature with a PSI at least this alerts.
    pub psi_alert: f64,
    /// Rows a window needs before it is judged at all.
    pub min_rows: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            psi_warn: 0.1,
            psi_alert: 0.25,
            min_rows: 100,
        }
    }
}

impl Histogram {
    /// Which bin `value` falls in: the number of interior edges below it.
    pub fn bin(&self, value: f64) -> usize {
        let interior = &self.edges[1..self.edges.len() - 1];
        interior.partition_point(|edge| *edge < value)
    }

    /// A histogram of `values` on edges at `bins` quantiles of them
    /// (linear interpolation, as numpy's default; repeated edges merged).
    pub fn of(name: &str, values: &[f64], bins: usize) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = (0..=bins)
            .map(|i| quantile(&sorted, i as f64 / bins as f64))
            .collect();
        edges.dedup();
        if edges.len() < 2 {
            // A constant (or empty) column: one bin.
            edges = vec![edges.first().copied().unwrap_or(0.0); 2];
        }
        let mut histogram = Self {
            name: name.to_string(),
            counts: vec![0; edges.len() - 1],
            sums: vec![0.0; edges.len() - 1],
            edges,
        };
        for &v in &sorted {
            let bin = histogram.bin(v);
            histogram.counts[bin] += 1;
            histogram.sums[bin] += v;
        }
        histogram
    }

    fn check(&self, what: &str) -> Result<(), String> {
        if self.edges.len() < 2 {
            return Err(format!("{what} `{}` needs at least 2 edges", self.name));
        }
        if self.edges.iter().any(|e| !e.is_finite()) || self.edges.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!(
                "{what} `{}`: edges must be finite and ascending",
                self.name
            ));
        }
        let bins = self.edges.len() - 1;
        if self.counts.len() != bins || self.sums.len() != bins {
            return Err(format!(
                "{what} `{}`: {} edges make {bins} bins, but there are {} counts and {} sums",
                self.name,
                self.edges.len(),
                self.counts.len(),
                self.sums.len()
            ));
        }
        Ok(())
    }
}

/// The `q` quantile of ascending `sorted` values, numpy's linear method.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let (low, high) = (h.floor() as usize, h.ceil() as usize);
    sorted[low] + (h - low as f64) * (sorted[high] - sorted[low])
}

impl Baseline {
    /// Parse a baseline and check it against the model's signature.
    pub fn parse(bytes: &[u8], signature: &Signature) -> Result<Self, String> {
        let baseline: Self = serde_json::from_slice(bytes).map_err(|e| {
            format!("the baseline is not a Sluice baseline ({e}); make one with `sluice models baseline MODEL SAMPLE.csv`")
        })?;
        baseline.check(signature)?;
        Ok(baseline)
    }

    fn check(&self, signature: &Signature) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "the baseline's format is `{}`; this node reads `{FORMAT}` (make one with `sluice models baseline`)",
                self.format
            ));
        }
        let names = |specs: &[crate::tensor::TensorSpec]| {
            specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let input = signature
            .inputs
            .iter()
            .find(|s| s.name == self.input)
            .ok_or_else(|| {
                format!(
                    "the baseline describes input `{}`, which the model does not have; its inputs are {}",
                    self.input,
                    names(&signature.inputs)
                )
            })?;
        let columns = match input.shape.as_slice() {
            [_, columns] => *columns,
            _ => {
                return Err(format!(
                    "the baseline describes input `{}`, but only a [rows, features] input has features; its shape is {}",
                    self.input,
                    crate::tensor::shape_text(&input.shape)
                ));
            }
        };
        if self.features.is_empty() {
            return Err("the baseline has no features".into());
        }
        if columns > 0 && columns as usize != self.features.len() {
            return Err(format!(
                "the baseline has {} features, but input `{}` has {columns} columns",
                self.features.len(),
                self.input
            ));
        }
        for feature in &self.features {
            feature.check("feature")?;
        }
        if let Some(output) = &self.output {
            if !signature.outputs.iter().any(|s| s.name == output.name()) {
                return Err(format!(
                    "the baseline describes output `{}`, which the model does not have; its outputs are {}",
                    output.name(),
                    names(&signature.outputs)
                ));
            }
            if let OutputBaseline::Values(h) = output {
                h.check("output")?;
            }
        }
        let t = &self.thresholds;
        if !(t.psi_warn > 0.0 && t.psi_warn <= t.psi_alert && t.psi_alert.is_finite()) {
            return Err(format!(
                "the baseline's thresholds need 0 < psi_warn <= psi_alert; they are {} and {}",
                t.psi_warn, t.psi_alert
            ));
        }
        if let Some(row) = self
            .background
            .iter()
            .find(|row| row.len() != self.features.len())
        {
            return Err(format!(
                "a background row has {} values; the baseline has {} features",
                row.len(),
                self.features.len()
            ));
        }
        Ok(())
    }

    /// A baseline of `rows` (each one value per column of `input`) and the
    /// model's answers to them (`output`, one value per row, if any).
    pub fn of_rows(
        input: &str,
        names: &[String],
        rows: &[Vec<f64>],
        output: Option<(&str, &TensorData)>,
        bins: usize,
    ) -> Self {
        let column = |c: usize| rows.iter().map(|r| r[c]).collect::<Vec<_>>();
        let features = names
            .iter()
            .enumerate()
            .map(|(c, name)| Histogram::of(name, &column(c), bins))
            .collect();
        let output = output.map(|(name, data)| match values(data) {
            Some(values) => OutputBaseline::Values(Histogram::of(name, &values, bins)),
            None => {
                let mut classes = BTreeMap::new();
                count_labels(data, &mut classes);
                OutputBaseline::Classes {
                    name: name.to_string(),
                    classes,
                }
            }
        });
        // Evenly spread over the sample, so a sorted file still gives a
        // representative background.
        let step = rows.len().div_ceil(BACKGROUND_ROWS).max(1);
        Self {
            format: FORMAT.into(),
            input: input.into(),
            rows: rows.len() as u64,
            features,
            output,
            thresholds: Thresholds::default(),
            background: rows.iter().step_by(step).cloned().collect(),
        }
    }
}

/// A numeric output's values (floats); `None` for labels.
pub(super) fn values(data: &TensorData) -> Option<Vec<f64>> {
    match data {
        TensorData::F32(v) => Some(v.iter().map(|x| f64::from(*x)).collect()),
        TensorData::F64(v) => Some(v.clone()),
        _ => None,
    }
}

/// Count each label (integer, boolean or string, as text) into
/// `classes`: a label already there costs no allocation.
pub(super) fn count_labels(data: &TensorData, classes: &mut BTreeMap<String, u64>) {
    fn bump(classes: &mut BTreeMap<String, u64>, label: &str) {
        match classes.get_mut(label) {
            Some(count) => *count += 1,
            None => {
                classes.insert(label.to_string(), 1);
            }
        }
    }
    let mut text = String::new();
    let mut each = |label: &dyn std::fmt::Display| {
        use std::fmt::Write as _;
        text.clear();
        // Writing to a String cannot fail.
        let _ = write!(text, "{label}");
        bump(classes, &text);
    };
    match data {
        TensorData::I64(v) => v.iter().for_each(|x| each(x)),
        TensorData::I32(v) => v.iter().for_each(|x| each(x)),
        TensorData::U8(v) => v.iter().for_each(|x| each(x)),
        TensorData::Bool(v) => v.iter().for_each(|x| each(x)),
        TensorData::F32(v) => v.iter().for_each(|x| each(x)),
        TensorData::F64(v) => v.iter().for_each(|x| each(x)),
        TensorData::String(v) => v.iter().for_each(|x| bump(classes, x)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_quantiles_as_numpy_computes_them() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        let h = Histogram::of("x", &values, 4);
        // np.quantile(range(1, 11), [0, .25, .5, .75, 1])
        assert_eq!(h.edges, vec![1.0, 3.25, 5.5, 7.75, 10.0]);
        assert_eq!(h.counts, vec![3, 2, 2, 3]);
        assert_eq!(h.sums, vec![6.0, 9.0, 13.0, 27.0]);
        assert_eq!(h.bin(-100.0), 0);
        assert_eq!(h.bin(3.25), 0);
        assert_eq!(h.bin(1e9), 3);
    }

    #[test]
    fn a_constant_column_is_one_bin() {
        let h = Histogram::of("x", &[2.0; 5], 10);
        assert_eq!(h.edges, vec![2.0, 2.0]);
        assert_eq!(h.counts, vec![5]);
    }
}
