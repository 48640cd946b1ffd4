//! Drift detection in the request path.
//!
//! A model version pushed with a baseline (`baseline.rs`) gets a
//! [`Monitor`] on every node that runs it. Each successful run adds its
//! rows to the node's rolling window (`sketch.rs`): per-feature histograms
//! on the baseline's bin edges, in [`sketch::SLOTS`] time slots, a few
//! microseconds under one short lock. Nodes write their windows to the
//! store periodically:
//!
//! ```text
//! drift/<model>/<version>/nodes/<node>.json   one node's window (slots)
//! drift/<model>/<version>/state.json          the level last alerted (CAS)
//! drift/<model>/<version>/samples/<t>.csv     served rows, written on alert
//! ```
//!
//! and a report merges every node's slots still in the window, then scores
//! each feature against the baseline (`score.rs`).

mod baseline;
mod score;
mod sketch;

pub use baseline::{
    BACKGROUND_ROWS, Baseline, DEFAULT_BINS, FORMAT, Histogram, OutputBaseline, Thresholds,
};
pub use score::{Level, Score};
pub use sketch::{Rows, Sketch, Window};

use crate::store::{ETag, ObjectStore, PutMode, StoreError};
use crate::tensor::NamedTensor;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a node keeps its windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftSettings {
    /// The window drift is judged over.
    pub window: Duration,
    /// Served rows each node keeps per window as a sample for retraining
    /// (0: none).
    pub sample_rows: usize,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3600),
            sample_rows: 0,
        }
    }
}

/// The monitors of the model versions this node ran, kept while the node
/// lives (a window outlasts its plan's unloading).
pub struct Monitors {
    /// This node's name in the store's keys: unique per process.
    node: String,
    settings: Mutex<DriftSettings>,
    monitors: DashMap<(String, u64), Arc<Monitor>>,
}

impl Default for Monitors {
    fn default() -> Self {
        Self {
            node: crate::observe::node_id().to_string(),
            settings: Mutex::new(DriftSettings::default()),
            monitors: DashMap::new(),
        }
    }
}

/// One model version's window on this node.
pub struct Monitor {
    /// The model.
    pub model: String,
    /// Its version.
    pub version: u64,
    baseline: Arc<Baseline>,
    /// Rows kept per slot for the retraining sample.
    sample_per_slot: usize,
    window: Mutex<Window>,
    /// Rows observed since the last flush.
    unflushed: AtomicU64,
}

/// One node's window as stored.
#[derive(Debug, Serialize, Deserialize)]
struct NodeWindow {
    node: String,
    /// When it was written (seconds since the Unix epoch).
    written_at: u64,
    window: Window,
}

/// The level a model version was last alerted at, shared by the nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertState {
    /// The level.
    pub level: Level,
    /// When it was reached (RFC 3339).
    pub since: String,
    /// The node that saw it first.
    pub node: String,
}

/// The drift of one model version over the window, every node's rows
/// merged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The model.
    pub model: String,
    /// Its version.
    pub version: u64,
    /// The worst feature's (or the output's) level.
    pub level: Level,
    /// Rows served in the window.
    pub rows: u64,
    /// Rows the baseline was computed from.
    pub baseline_rows: u64,
    /// Nodes whose windows held rows.
    pub nodes: usize,
    /// The window, in seconds.
    pub window_secs: u64,
    /// The thresholds judged by.
    pub thresholds: Thresholds,
    /// One score per feature.
    pub features: Vec<Score>,
    /// The output's score, when the baseline records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Score>,
    /// Served rows sampled across the nodes (when they keep samples).
    #[serde(skip)]
    pub sample: Vec<Vec<f64>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where a model version's drift documents live.
fn prefix(model: &str, version: u64) -> String {
    format!("drift/{model}/{version}/")
}

impl Monitors {
    /// Keep windows of `settings.window` and samples of
    /// `settings.sample_rows` for versions loaded from now on.
    pub fn configure(&self, settings: DriftSettings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    fn settings(&self) -> DriftSettings {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The monitor of `model` `version`, made on first use.
    pub fn monitor(&self, model: &str, version: u64, baseline: Arc<Baseline>) -> Arc<Monitor> {
        let settings = self.settings();
        self.monitors
            .entry((model.to_string(), version))
            .or_insert_with(|| {
                Arc::new(Monitor {
                    model: model.to_string(),
                    version,
                    baseline,
                    sample_per_slot: settings.sample_rows.div_ceil(sketch::SLOTS as usize),
                    window: Mutex::new(Window::new(settings.window.as_secs())),
                    unflushed: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// The monitor of `model` `version`, if this node has one.
    pub fn get(&self, model: &str, version: u64) -> Option<Arc<Monitor>> {
        self.monitors
            .get(&(model.to_string(), version))
            .map(|m| m.value().clone())
    }

    /// Every monitor.
    pub fn all(&self) -> Vec<Arc<Monitor>> {
        self.monitors.iter().map(|e| e.value().clone()).collect()
    }

    /// Forget the monitor of a deleted version.
    pub fn forget(&self, model: &str, version: u64) {
        self.monitors.remove(&(model.to_string(), version));
    }

    /// Write `monitor`'s window to the store when it saw rows since the
    /// last write (or still holds some).
    pub async fn flush(
        &self,
        store: &dyn ObjectStore,
        monitor: &Monitor,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let unflushed = monitor.unflushed.swap(0, Ordering::Relaxed);
        let window = {
            let mut window = monitor.window.lock().unwrap_or_else(|e| e.into_inner());
            window.expire(now);
            if unflushed == 0 && window.slots.is_empty() {
                return Ok(());
            }
            window.clone()
        };
        let doc = NodeWindow {
            node: self.node.clone(),
            written_at: now,
            window,
        };
        let key = format!(
            "{}nodes/{}.json",
            prefix(&monitor.model, monitor.version),
            self.node
        );
        let bytes = encode(&key, &doc)?;
        store.put(&key, bytes, PutMode::Overwrite).await?;
        Ok(())
    }

    /// Every node's window of `model` `version` merged and scored against
    /// `baseline`. Windows whose slots all left the window are removed.
    pub async fn report(
        &self,
        store: &dyn ObjectStore,
        model: &str,
        version: u64,
        baseline: &Baseline,
    ) -> Result<Report, StoreError> {
        let now = unix_now();
        let settings = self.settings();
        let mut merged = Sketch::new(baseline);
        let mut nodes = 0;
        let mut window_secs = settings.window.as_secs();
        for key in store
            .list(&format!("{}nodes/", prefix(model, version)))
            .await?
        {
            let Some(object) = store.get(&key).await? else {
                continue;
            };
            let mut doc: NodeWindow = match serde_json::from_slice(&object.bytes) {
                Ok(doc) => doc,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "skipping an unreadable drift window");
                    continue;
                }
            };
            doc.window.expire(now);
            if doc.window.slots.is_empty() {
                // A node gone (or idle) for a whole window.
                store.delete(&key).await?;
                continue;
            }
            window_secs = doc.window.window_secs;
            let sketch = doc.window.merged(baseline, usize::MAX);
            if sketch.rows > 0 {
                nodes += 1;
            }
            merged.merge(&sketch, usize::MAX);
        }
        let (level, features, output) = score::judge(baseline, &merged);
        Ok(Report {
            model: model.to_string(),
            version,
            level,
            rows: merged.rows,
            baseline_rows: baseline.rows,
            nodes,
            window_secs,
            thresholds: baseline.thresholds,
            features,
            output,
            sample: merged.sample,
        })
    }

    /// The level last alerted for `model` `version`, and its tag.
    pub async fn state(
        &self,
        store: &dyn ObjectStore,
        model: &str,
        version: u64,
    ) -> Result<Option<(AlertState, ETag)>, StoreError> {
        let key = format!("{}state.json", prefix(model, version));
        let Some(object) = store.get(&key).await? else {
            return Ok(None);
        };
        let state = serde_json::from_slice(&object.bytes).map_err(|e| StoreError::Corrupt {
            key,
            reason: e.to_string(),
        })?;
        Ok(Some((state, object.etag)))
    }

    /// Move the alerted level of `model` `version` to `level` if it is
    /// still what `seen` says: exactly one node wins a change.
    pub async fn change_state(
        &self,
        store: &dyn ObjectStore,
        model: &str,
        version: u64,
        level: Level,
        seen: Option<ETag>,
    ) -> Result<bool, StoreError> {
        let key = format!("{}state.json", prefix(model, version));
        let state = AlertState {
            level,
            since: crate::registry::now_rfc3339(),
            node: self.node.clone(),
        };
        let bytes = encode(&key, &state)?;
        let mode = seen.map_or(PutMode::IfAbsent, PutMode::IfMatch);
        match store.put(&key, bytes, mode).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Write served rows as CSV (a header of the feature names) for
    /// retraining; the key.
    pub async fn write_sample(
        &self,
        store: &dyn ObjectStore,
        report: &Report,
        baseline: &Baseline,
    ) -> Result<String, StoreError> {
        let mut csv = baseline
            .features
            .iter()
            .map(|f| csv_field(&f.name))
            .collect::<Vec<_>>()
            .join(",");
        csv.push('\n');
        for row in &report.sample {
            let values: Vec<String> = row.iter().map(f64::to_string).collect();
            csv.push_str(&values.join(","));
            csv.push('\n');
        }
        let key = format!(
            "{}samples/{}-{}.csv",
            prefix(&report.model, report.version),
            unix_now(),
            self.node
        );
        store.put(&key, csv.into(), PutMode::Overwrite).await?;
        Ok(key)
    }
}

fn encode(key: &str, value: &impl Serialize) -> Result<bytes::Bytes, StoreError> {
    serde_json::to_vec(value)
        .map(Into::into)
        .map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

impl Monitor {
    /// The baseline it judges by.
    pub fn baseline(&self) -> &Arc<Baseline> {
        &self.baseline
    }

    /// The rows of the input it watches, copied from a request's inputs
    /// (`None` when they do not fit the baseline).
    pub fn watched(&self, inputs: &[NamedTensor]) -> Option<Rows> {
        let input = inputs.iter().find(|t| t.name == self.baseline.input)?;
        Rows::of(&input.tensor, self.baseline.features.len())
    }

    /// Count one successful run: its watched input and its outputs.
    pub fn observe(&self, input: &Rows, outputs: &[NamedTensor]) {
        let output = self
            .baseline
            .output
            .as_ref()
            .and_then(|o| outputs.iter().find(|t| t.name == o.name()))
            .map(|t| &t.tensor.data);
        let now = unix_now();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let sketch = window.current(now, &self.baseline);
        let before = sketch.rows;
        sketch.observe(&self.baseline, input, output, self.sample_per_slot);
        let added = sketch.rows - before;
        drop(window);
        self.unflushed.fetch_add(added, Ordering::Relaxed);
    }
}
