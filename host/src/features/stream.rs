//! Streaming appends: rows that arrive in many small requests are joined
//! into one commit per table (group commit), flushed when enough rows are
//! waiting or the first of them has waited long enough. Each request is
//! answered only once its rows are durable in the store.

use super::row::Row;
use super::{FeatureError, FeatureStore, Ingested, View};
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// Rows waiting that trigger a flush at once.
const FLUSH_ROWS: usize = 64 * 1024;
/// The longest the first waiting row waits for others.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

type Reply = oneshot::Sender<Result<Ingested, FeatureError>>;

/// Rows waiting for one table version's next commit.
struct Pending {
    view: Arc<View>,
    rows: Vec<Row>,
    waiting: Vec<Reply>,
    full: Arc<Notify>,
}

/// The waiting rows of every table, by table and schema version.
#[derive(Default)]
pub(super) struct Streams {
    pending: DashMap<(String, u64), Pending>,
}

/// Add `rows` (checked against `view`'s schema) to the table's next
/// commit and wait for it.
pub(super) async fn append(
    store: &Arc<FeatureStore>,
    view: Arc<View>,
    rows: Vec<Row>,
) -> Result<Ingested, FeatureError> {
    let key = (view.version.name.clone(), view.version.version);
    let (reply, answer) = oneshot::channel();
    let flush = {
        let mut entry = store
            .streams
            .pending
            .entry(key.clone())
            .or_insert_with(|| Pending {
                view: view.clone(),
                rows: Vec::new(),
                waiting: Vec::new(),
                full: Arc::new(Notify::new()),
            });
        let first = entry.waiting.is_empty();
        entry.rows.extend(rows);
        entry.waiting.push(reply);
        if entry.rows.len() >= FLUSH_ROWS {
            entry.full.notify_one();
        }
        first.then(|| entry.full.clone())
    };
    if let Some(full) = flush {
        // The first request's task flushes for everyone; spawned, so a
        // client that goes away does not strand the others.
        let store = store.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(FLUSH_AFTER, full.notified()).await;
            let Some((_, pending)) = store.streams.pending.remove(&key) else {
                return;
            };
            let result = store.commit_rows(&pending.view, pending.rows).await;
            for waiting in pending.waiting {
                let _ = waiting.send(result.clone());
            }
        });
    }
    answer
        .await
        .map_err(|_| FeatureError::Internal("the flush of streamed rows was lost".into()))?
}
