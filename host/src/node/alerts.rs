//! The alert webhook.

use super::{Node, NodeError};
use std::time::Duration;

/// Where alerts go: drift level changes and automatic rollbacks, posted
/// as JSON to `--alert-webhook`.
#[derive(Clone)]
pub struct Alerts {
    url: String,
    client: reqwest::Client,
}

impl Alerts {
    /// Alerts posted as JSON to `url`.
    pub fn to(url: &str) -> Result<Self, NodeError> {
        reqwest::Url::parse(url).map_err(|e| {
            NodeError::InvalidSetting(format!(
                "--alert-webhook {url} is not a URL ({e}); give e.g. https://hooks.example.com/sluice"
            ))
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| NodeError::Engine(e.to_string()))?;
        Ok(Self {
            url: url.to_string(),
            client,
        })
    }

    pub(super) async fn post(&self, body: &serde_json::Value) {
        let sent = self
            .client
            .post(&self.url)
            .json(body)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        if let Err(e) = sent {
            tracing::warn!(url = %self.url, error = %e, "the alert webhook failed");
        }
    }
}

impl Node {
    /// Post this node's alerts (drift, automatic rollbacks) to `alerts`.
    pub fn alert_to(&self, alerts: Alerts) {
        let _ = self.alerts.set(alerts);
    }
}
