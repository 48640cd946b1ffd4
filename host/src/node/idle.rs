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
        self.every(tick, move |node| async move {
            node.evict_idle(policy).await;
        });
    }

    /// Run `round` on this node every `period` for as long as the node
    /// lives (a background watch must not keep it alive).
    pub(super) fn every<F, Fut>(self: &Arc<Self>, period: Duration, round: F)
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(node) = node.upgrade() else { return };
                round(node).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;
    use crate::engine::{Engine, EngineConfig};
    use crate::inference::Push;
    use crate::observe::blocking_calls;
    use crate::registry::{Name, Selector};
    use crate::store::FsStore;
    use bytes::Bytes;

    // One worker thread: anything run inline by the node runs on this
    // test's thread.
    #[tokio::test(flavor = "current_thread")]
    async fn status_and_unloading_make_their_blocking_calls_off_the_async_worker() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig {
            pooling: Some(false),
            ..EngineConfig::default()
        })
        .unwrap();
        let store = Arc::new(FsStore::open(dir.path()).unwrap());
        let node = Node::new(engine, store, CacheConfig::default());
        let name = Name::parse("gather").unwrap();
        let file = include_bytes!("../../../examples/models/gather.onnx");
        node.models
            .push(&name, Bytes::from_static(file), Push::default(), None)
            .await
            .unwrap();
        node.models.get(&name, &Selector::Default).await.unwrap();

        let status = node.status(None).await;
        assert!(status.resident_bytes.is_some_and(|b| b > 0));
        let policy = IdlePolicy {
            functions: None,
            models: Some(Duration::ZERO),
        };
        assert_eq!(node.evict_idle(policy).await, (0, 1));

        let calls = blocking_calls::made();
        let worker = std::thread::current().id();
        let inline: Vec<&str> = calls
            .iter()
            .filter(|(_, thread)| *thread == worker)
            .map(|(call, _)| *call)
            .collect();
        assert!(
            inline.is_empty(),
            "blocking calls on the async worker: {inline:?}"
        );
        for call in ["resident", "release_free_memory"] {
            assert!(
                calls.iter().any(|(c, _)| *c == call),
                "{call} was never made"
            );
        }
    }
}
