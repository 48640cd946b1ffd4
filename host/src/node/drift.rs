//! Drift on a node: writing its windows to the store, judging every node's
//! windows merged, and announcing level changes to a webhook (and the
//! metrics), once across the nodes.

use super::{Node, NodeError};
use crate::inference::drift::{DriftSettings, Level, Monitor, Report};
use crate::inference::{InferenceError, ModelVersion};
use crate::observe::metrics::{AlertLabels, FeatureLabels, ModelLabels, metrics};
use crate::registry::{Name, Selector};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Keep drift windows as `settings` say, then write and judge them
    /// every `every` for as long as the node lives, announcing level
    /// changes to the node's alert webhook.
    pub fn spawn_drift_watch(self: &Arc<Self>, settings: DriftSettings, every: Duration) {
        self.models.drift().configure(settings);
        self.every(every, |node| async move { node.watch_drift().await });
    }

    /// One round: every monitored version's window written, judged, and
    /// its level announced when it changed. Also run when the node stops.
    pub async fn watch_drift(&self) {
        for monitor in self.models.drift().all() {
            if let Err(e) = self.judge(&monitor).await {
                tracing::warn!(model = %monitor.model, version = monitor.version, error = %e, "drift check failed");
            }
        }
    }

    async fn judge(&self, monitor: &Monitor) -> Result<(), NodeError> {
        let store = self.store().as_ref();
        let monitors = self.models.drift();
        monitors.flush(store, monitor).await?;
        let baseline = monitor.baseline();
        let report = monitors
            .report(store, &monitor.model, monitor.version, baseline)
            .await?;
        let model: Arc<str> = monitor.model.as_str().into();
        let m = metrics();
        m.drift_level
            .get_or_create(&ModelLabels {
                model: model.clone(),
                version: monitor.version,
            })
            .set(report.level.gauge());
        for score in report.features.iter().chain(&report.output) {
            m.drift_psi
                .get_or_create(&FeatureLabels {
                    model: model.clone(),
                    version: monitor.version,
                    feature: score.name.clone(),
                })
                .set(score.psi);
        }
        if report.level == Level::Insufficient {
            return Ok(());
        }
        let state = monitors
            .state(store, &monitor.model, monitor.version)
            .await?;
        let previous = state.as_ref().map_or(Level::Ok, |(s, _)| s.level);
        if previous == report.level {
            return Ok(());
        }
        let won = monitors
            .change_state(
                store,
                &monitor.model,
                monitor.version,
                report.level,
                state.map(|(_, etag)| etag),
            )
            .await?;
        if !won {
            // Another node announced a change first.
            return Ok(());
        }
        m.drift_alerts
            .get_or_create(&AlertLabels {
                model,
                version: monitor.version,
                level: report.level.as_str(),
            })
            .inc();
        tracing::warn!(model = %monitor.model, version = monitor.version, level = report.level.as_str(), previous = previous.as_str(), rows = report.rows, "model drift level changed");
        let Some(alerts) = self.alerts.get() else {
            return Ok(());
        };
        let sample = if report.level > previous && !report.sample.is_empty() {
            let key = monitors.write_sample(store, &report, baseline).await?;
            Some(json!({
                "key": key,
                "store": self.store().describe(),
                "rows": report.sample.len(),
            }))
        } else {
            None
        };
        alerts
            .post(&json!({
                "event": "drift",
                "model": monitor.model,
                "version": monitor.version,
                "level": report.level,
                "previous": previous,
                "rows": report.rows,
                "nodes": report.nodes,
                "window_secs": report.window_secs,
                "features": report.features,
                "output": report.output,
                "sample": sample,
            }))
            .await;
        Ok(())
    }

    /// The drift of the version of model `name` that `selector` picks,
    /// over the window, every node's rows merged (this node's written
    /// first).
    pub async fn drift(&self, name: &str, selector: &Selector) -> Result<Report, NodeError> {
        let name = Name::parse(name)?;
        let registry = self.models.registry();
        let version = registry.resolve_number(&name, selector).await?;
        let record: ModelVersion = registry.record_of(&name, version).await?;
        let digest = record.baseline.as_ref().ok_or_else(|| {
            InferenceError::InvalidInput(format!(
                "model {name} version {version} has no baseline, so nothing to measure drift against; push it with --baseline (make one with `sluice models baseline`)"
            ))
        })?;
        let monitors = self.models.drift();
        let store = self.store().as_ref();
        let monitor = monitors.get(name.as_str(), version);
        let baseline = match &monitor {
            Some(monitor) => {
                monitors.flush(store, monitor).await?;
                monitor.baseline().clone()
            }
            None => {
                let bytes = self.documents.fetch_blob(digest).await?.ok_or_else(|| {
                    crate::store::StoreError::Corrupt {
                        key: digest.blob_key(),
                        reason: format!(
                            "the baseline of model {name} version {version} is missing"
                        ),
                    }
                })?;
                let baseline = crate::inference::drift::Baseline::parse(&bytes, &record.signature)
                    .map_err(InferenceError::InvalidInput)?;
                Arc::new(baseline)
            }
        };
        Ok(monitors
            .report(store, name.as_str(), version, &baseline)
            .await?)
    }
}
