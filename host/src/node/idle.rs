//! Scale to zero: what a node lets go of when it is not used.

use super::Node;
use crate::cache::idle_time;
use std::sync::Arc;
use std::time::Duration;

/// When a node lets go of what it loaded: after a function has gone
/// `functions` without a call (its template: compiled code and linked
/// instance factory), and a model `models` without a run (its plan). The
/// next call pays a cold start.
#[derive(Debug, Clone, Copy)]
pub struct IdlePolicy {
    /// Idle time before a function is unloaded (`None`: never).
    pub functions: Option<Duration>,
    /// Idle time before a model is unloaded (`None`: never).
    pub models: Option<Duration>,
}

impl IdlePolicy {
    fn shortest(&self) -> Option<Duration> {
        [self.functions, self.models].into_iter().flatten().min()
    }
}

impl Node {
    /// Unload what has been idle past `policy` and give the freed memory
    /// back to the operating system. Returns (functions, models) unloaded.
    pub async fn evict_idle(&self, policy: IdlePolicy) -> (usize, usize) {
        let functions = self
            .templates
            .evict_idle(|loaded| idle_time(loaded.record.idle_secs, policy.functions));
        let models = self.models.evict_idle(policy.models);
        self.prune_gates();
        if functions + models > 0 {
            // Their artifacts and model files were read through the
            // document cache: drop those copies too.
            if let Some(idle) = policy.shortest() {
                self.documents.evict_idle(idle);
            }
            // Trimming walks the allocator's arenas: not on an async worker.
            let _ = tokio::task::spawn_blocking(crate::observe::release_free_memory).await;
            tracing::info!(functions, models, "unloaded idle functions and models");
        }
        (functions, models)
    }

    /// Run [`Self::evict_idle`] in the background for as long as the node
    /// lives, checking a few times per idle period (and every second at
    /// most, for versions with idle times of their own).
    pub fn spawn_idle_reaper(self: &Arc<Self>, policy: IdlePolicy) {
        let tick = policy.shortest().map_or(Duration::from_secs(1), |s| {
            (s / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
        });
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(node) = node.upgrade() else { return };
                node.evict_idle(policy).await;
            }
        });
    }

    /// Forget the concurrency gates of versions no longer loaded, unless
    /// calls are running or waiting in them (a gate holds nothing else, so
    /// the next call makes a fresh one).
    pub(super) fn prune_gates(&self) {
        self.gates
            .retain(|key, gate| gate.busy() || self.templates.contains(key));
    }
}
