//! A function's concurrency cap: `max` slots, and a bounded queue of calls
//! waiting for one (in arrival order). Past the queue a call is turned
//! away at once, so an overloaded function sheds load instead of piling up
//! requests until they time out.

use super::{Concurrency, NodeError};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The cap of one function version.
pub(super) struct Gate {
    function: String,
    cap: Concurrency,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicU32>,
}

/// A running call's slot, given back on drop.
pub(super) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Where a function stands against its cap (an autoscaling signal).
#[derive(Debug, Clone, Serialize)]
pub struct GateStats {
    /// `name@version`.
    pub function: String,
    /// Calls running.
    pub running: u32,
    /// Calls waiting for a slot.
    pub queued: u32,
    /// The cap.
    pub max_concurrency: u32,
    /// The queue's length.
    pub max_queue: u32,
}

impl Gate {
    pub(super) fn new(function: String, cap: Concurrency) -> Self {
        Self {
            function,
            cap,
            slots: Arc::new(Semaphore::new(cap.max as usize)),
            waiting: Arc::default(),
        }
    }

    /// A slot: at once if one is free, after waiting in the queue if there
    /// is room in it, else [`NodeError::Busy`].
    pub(super) async fn enter(&self) -> Result<Slot, NodeError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot(permit));
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.cap.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(NodeError::Busy {
                function: self.function.clone(),
                max: self.cap.max,
                queue: self.cap.queue,
            });
        }
        // Leaves the queue however the wait ends (a caller may go away).
        struct Leave(Arc<AtomicU32>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(self.waiting.clone());
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NodeError::Engine("a concurrency gate closed".into()))?;
        Ok(Slot(permit))
    }

    /// Whether calls are running or waiting.
    pub(super) fn busy(&self) -> bool {
        self.slots.available_permits() < self.cap.max as usize
            || self.waiting.load(Ordering::SeqCst) > 0
    }

    pub(super) fn stats(&self) -> GateStats {
        GateStats {
            function: self.function.clone(),
            running: self.cap.max - self.slots.available_permits() as u32,
            queued: self.waiting.load(Ordering::SeqCst),
            max_concurrency: self.cap.max,
            max_queue: self.cap.queue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_past_the_cap_queue_and_past_the_queue_are_turned_away() {
        let gate = Arc::new(Gate::new("f@1".into(), Concurrency { max: 2, queue: 1 }));
        let a = gate.enter().await.expect("slot");
        let _b = gate.enter().await.expect("slot");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(|_| ()) }
        });
        while gate.stats().queued == 0 {
            tokio::task::yield_now().await;
        }
        let refused = gate.enter().await.err().expect("busy");
        assert!(matches!(
            refused,
            NodeError::Busy {
                max: 2,
                queue: 1,
                ..
            }
        ));
        let stats = gate.stats();
        assert_eq!((stats.running, stats.queued), (2, 1));
        drop(a);
        waiter.await.expect("task").expect("the queued call ran");
        assert_eq!(gate.stats().queued, 0);
    }
}
