//! What a node served, as mergeable sketches: per-feature histograms on
//! the baseline's bin edges, in time slots that roll out of a window.

use super::baseline::{Baseline, OutputBaseline, count_labels, values};
use crate::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Counts on a baseline histogram's bins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// Values per bin.
    pub counts: Vec<u64>,
    /// Their sum per bin.
    pub sums: Vec<f64>,
    /// Values that were not numbers (NaN, infinities): counted apart.
    #[serde(default)]
    pub missing: u64,
}

impl Bins {
    fn new(bins: usize) -> Self {
        Self {
            counts: vec![0; bins],
            sums: vec![0.0; bins],
            missing: 0,
        }
    }

    fn add(&mut self, bin: impl Fn(f64) -> usize, value: f64) {
        if value.is_finite() {
            let b = bin(value);
            self.counts[b] += 1;
            self.sums[b] += value;
        } else {
            self.missing += 1;
        }
    }

    fn merge(&mut self, other: &Self) {
        if other.counts.len() != self.counts.len() {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += b;
        }
        self.missing += other.missing;
    }
}

/// The rows one model version served, summarised against its baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Rows seen.
    pub rows: u64,
    /// One per baseline feature.
    pub features: Vec<Bins>,
    /// The output's values, when the baseline's output is numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Bins>,
    /// Rows per output class, when the baseline's output is a label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, u64>,
    /// A uniform sample of the rows (for retraining), when kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<Vec<f64>>,
}

impl Sketch {
    /// An empty sketch shaped by `baseline`.
    pub fn new(baseline: &Baseline) -> Self {
        Self {
            rows: 0,
            features: baseline
                .features
                .iter()
                .map(|h| Bins::new(h.counts.len()))
                .collect(),
            output: match &baseline.output {
                Some(OutputBaseline::Values(h)) => Some(Bins::new(h.counts.len())),
                _ => None,
            },
            classes: BTreeMap::new(),
            sample: Vec::new(),
        }
    }

    /// Count the `rows` of the model's input ([`Rows::of`]) and its
    /// `output` for them; keep up to `sample_rows` rows, uniformly.
    pub fn observe(
        &mut self,
        baseline: &Baseline,
        rows: &Rows,
        output: Option<&TensorData>,
        sample_rows: usize,
    ) {
        let rows = &rows.0;
        for row in rows.chunks_exact(baseline.features.len()) {
            for ((bins, histogram), value) in
                self.features.iter_mut().zip(&baseline.features).zip(row)
            {
                bins.add(|v| histogram.bin(v), *value);
            }
            self.rows += 1;
            keep_sampled(&mut self.sample, row, self.rows, sample_rows);
        }
        let n = rows.len() / baseline.features.len();
        match (&baseline.output, output) {
            (Some(OutputBaseline::Values(histogram)), Some(data)) => {
                if let (Some(bins), Some(values)) = (&mut self.output, values(data))
                    && values.len() == n
                {
                    for v in values {
                        bins.add(|v| histogram.bin(v), v);
                    }
                }
            }
            (Some(OutputBaseline::Classes { .. }), Some(data)) if data.len() == n => {
                count_labels(data, &mut self.classes);
            }
            _ => {}
        }
    }

    /// Add `other` (the same baseline's) to this one; samples are joined
    /// up to `sample_rows`.
    pub fn merge(&mut self, other: &Self, sample_rows: usize) {
        self.rows += other.rows;
        if other.features.len() == self.features.len() {
            for (a, b) in self.features.iter_mut().zip(&other.features) {
                a.merge(b);
            }
        }
        if let (Some(a), Some(b)) = (&mut self.output, &other.output) {
            a.merge(b);
        }
        for (class, n) in &other.classes {
            *self.classes.entry(class.clone()).or_insert(0) += n;
        }
        let room = sample_rows.saturating_sub(self.sample.len());
        self.sample.extend(other.sample.iter().take(room).cloned());
    }
}

/// The values of a `[rows, columns]` (or one-row `[columns]`) numeric
/// tensor as f64, or `None` when it is not one.
/// A watched input's values, row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows(Vec<f64>);

impl Rows {
    /// The values of `input` when it is `[rows, columns]` (or one row of
    /// `columns`) and numeric.
    pub fn of(input: &Tensor, columns: usize) -> Option<Self> {
        if input.shape.last() != Some(&(columns as u64)) || input.shape.len() > 2 {
            return None;
        }
        Some(Self(match &input.data {
            TensorData::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::U8(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::Bool(v) => v.iter().map(|x| f64::from(u8::from(*x))).collect(),
            TensorData::String(_) => return None,
        }))
    }
}

/// Reservoir sampling (algorithm R): the `seen`-th row replaces a kept one
/// with probability `capacity / seen`, so every row is equally likely kept.
fn keep_sampled(sample: &mut Vec<Vec<f64>>, row: &[f64], seen: u64, capacity: usize) {
    if capacity == 0 {
        return;
    }
    if sample.len() < capacity {
        sample.push(row.to_vec());
        return;
    }
    // A hash of the count is random enough to pick a slot, and needs no
    // generator state.
    let mut x = seen.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let pick = x % seen;
    if let Some(slot) = sample.get_mut(pick as usize) {
        *slot = row.to_vec();
    }
}

/// Slots a window is cut into: the window rolls forward one slot at a
/// time.
pub const SLOTS: u64 = 12;

/// One slot of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Its start, in seconds since the Unix epoch (a multiple of its
    /// length).
    pub start: u64,
    /// What was served in it.
    pub sketch: Sketch,
}

/// A bounded rolling window: [`SLOTS`] sketches covering `window_secs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The window's length in seconds.
    pub window_secs: u64,
    /// The slots, oldest first.
    pub slots: VecDeque<Slot>,
}

impl Window {
    /// An empty window of `window_secs`.
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_secs: window_secs.max(1),
            slots: VecDeque::new(),
        }
    }

    fn slot_secs(&self) -> u64 {
        self.window_secs.div_ceil(SLOTS).max(1)
    }

    /// The sketch of the slot `now` (seconds) falls in, created (shaped by
    /// `baseline`) when new; slots that left the window are dropped.
    pub fn current(&mut self, now: u64, baseline: &Baseline) -> &mut Sketch {
        self.expire(now);
        let start = now - now % self.slot_secs();
        if self.slots.back().is_none_or(|s| s.start < start) {
            self.slots.push_back(Slot {
                start,
                sketch: Sketch::new(baseline),
            });
        }
        let last = self.slots.len() - 1;
        &mut self.slots[last].sketch
    }

    /// Drop the slots that ended before the window that ends at `now`.
    pub fn expire(&mut self, now: u64) {
        let oldest = now.saturating_sub(self.window_secs);
        let slot = self.slot_secs();
        while self.slots.front().is_some_and(|s| s.start + slot <= oldest) {
            self.slots.pop_front();
        }
    }

    /// Its slots merged into one sketch.
    pub fn merged(&self, baseline: &Baseline, sample_rows: usize) -> Sketch {
        let mut all = Sketch::new(baseline);
        for slot in &self.slots {
            all.merge(&slot.sketch, sample_rows);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> Baseline {
        let rows: Vec<Vec<f64>> = (0..100).map(|i| vec![f64::from(i), 1.0]).collect();
        Baseline::of_rows("x", &["a".into(), "b".into()], &rows, None, 4)
    }

    #[test]
    fn observed_rows_land_in_the_baselines_bins_and_merge() {
        let baseline = baseline();
        let input = Tensor {
            shape: vec![3, 2],
            data: TensorData::F32(vec![-5.0, 1.0, 30.0, 1.0, f32::NAN, 1.0]),
        };
        let mut a = Sketch::new(&baseline);
        a.observe(&baseline, &Rows::of(&input, 2).unwrap(), None, 2);
        assert_eq!(a.rows, 3);
        assert_eq!(a.features[0].counts, vec![1, 1, 0, 0]);
        assert_eq!(a.features[0].missing, 1);
        assert_eq!(a.sample.len(), 2);
        let mut b = a.clone();
        b.merge(&a, 3);
        assert_eq!(b.rows, 6);
        assert_eq!(b.features[0].counts, vec![2, 2, 0, 0]);
        assert_eq!(b.sample.len(), 3);
    }

    #[test]
    fn a_window_rolls_slot_by_slot() {
        let baseline = baseline();
        let mut window = Window::new(120); // 10-second slots
        window.current(1000, &baseline).rows += 1;
        window.current(1005, &baseline).rows += 1;
        window.current(1010, &baseline).rows += 1;
        assert_eq!(window.slots.len(), 2);
        assert_eq!(window.merged(&baseline, 0).rows, 3);
        window.expire(1000 + 120 + 5);
        assert_eq!(window.slots.len(), 2, "1000..1010 overlaps 1005..1125");
        window.expire(1000 + 120 + 10);
        assert_eq!(
            window.slots.len(),
            1,
            "the slot of 1000..1010 left the window"
        );
        window.expire(1010 + 130);
        assert!(window.slots.is_empty());
    }
}
