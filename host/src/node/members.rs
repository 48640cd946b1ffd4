//! Which nodes share the store: each node writes a heartbeat and counts
//! the others' recent ones, so that a rate limit can be shared out
//! evenly (`guard.rs`).
//!
//! ```text
//! nodes/<node>.json   {"node": ..., "at": <unix seconds>}, rewritten every period
//! ```
//!
//! A node counts as live while its heartbeat is younger than three
//! periods; a heartbeat older than an hour is removed by whoever reads it.

use super::Node;
use crate::store::{PutMode, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "nodes/";

#[derive(Serialize, Deserialize)]
struct Heartbeat {
    node: String,
    at: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Node {
    /// Write this node's heartbeat every `period` and count the live
    /// nodes, for as long as the node lives.
    pub fn spawn_heartbeat(self: &Arc<Self>, period: Duration) {
        self.every(period, move |node| async move {
            match node.heartbeat(period).await {
                Ok(live) => node.guards.set_live_nodes(live),
                Err(e) => tracing::warn!(error = %e, "cannot write or read node heartbeats"),
            }
        });
    }

    /// One round: write this node's heartbeat, and count the nodes whose
    /// heartbeat is younger than three `period`s (this one included).
    pub async fn heartbeat(&self, period: Duration) -> Result<u32, StoreError> {
        let store = self.store();
        let me = crate::observe::node_id();
        let now = unix_now();
        let beat = Heartbeat {
            node: me.to_string(),
            at: now,
        };
        let key = format!("{PREFIX}{me}.json");
        let bytes = serde_json::to_vec(&beat).map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        store.put(&key, bytes.into(), PutMode::Overwrite).await?;
        let live_for = 3 * period.as_secs().max(1);
        let mut live = 0;
        for key in store.list(PREFIX).await? {
            let Some(object) = store.get(&key).await? else {
                continue;
            };
            let Ok(beat) = serde_json::from_slice::<Heartbeat>(&object.bytes) else {
                tracing::warn!(%key, "skipping an unreadable heartbeat");
                continue;
            };
            let age = now.saturating_sub(beat.at);
            if age < live_for || beat.node == me {
                live += 1;
            } else if age > 3600 {
                store.delete(&key).await?;
            }
        }
        Ok(live.max(1))
    }

    /// The nodes this node counts as sharing its store (1 until its first
    /// heartbeat).
    pub fn live_nodes(&self) -> u32 {
        self.guards.live_nodes()
    }
}
