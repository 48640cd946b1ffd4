//! Compaction and the sweep: small history segments of one event date are
//! merged into one (sorted by event time, then key), and objects no
//! manifest needs any more are deleted once no reader can still be using
//! them.
//!
//! A merge is one compare-and-swap like any commit: the manifest swaps the
//! small segments for the merged one only if it still names all of them,
//! so a compaction racing ingests (or another compaction) never loses a
//! row or counts one twice. The replaced segments are *retired* in the
//! manifest with the time, and deleted by a later sweep once older than
//! the grace period, so an export that read the old manifest still finds
//! its segments.

use super::data::{self, Location, Manifest, Retired, Segment};
use super::row::now_ms;
use super::schema::Table;
use super::{FeatureError, FeatureStore, segment};
use crate::registry::now_rfc3339;
use crate::store::{ObjectStore, PutMode, StoreError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a replaced object is kept for readers of older manifests
/// (an export running longer than this may find a segment gone).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// A segment smaller than this is worth merging.
const SMALL_ROWS: u64 = 256 * 1024;
/// Merge small segments of one date until a merged one holds this many.
const MERGED_ROWS: u64 = 1 << 20;
/// An object no manifest names that was written less than this long ago may
/// belong to an ingest still running: never swept.
const INGEST_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compacted {
    /// The table.
    pub table: String,
    /// The data generation compacted.
    pub generation: u64,
    /// History segments before.
    pub segments_before: usize,
    /// History segments after.
    pub segments_after: usize,
    /// Rows rewritten into merged segments.
    pub rows_merged: u64,
    /// Objects deleted by the sweep.
    pub swept: usize,
    /// Bytes they held (of those whose size the manifest knew).
    pub swept_bytes: u64,
    /// Retired objects kept because they are younger than the grace period.
    pub retired_kept: usize,
}

impl FeatureStore {
    /// Merge `table`'s small history segments (`TABLE` or `TABLE@VERSION`)
    /// and sweep objects no reader needs: retired ones older than `grace`,
    /// superseded online partitions written more than `grace` ago, and
    /// segments of ingests that never committed, once a day old.
    pub async fn compact(&self, table: &str, grace: Duration) -> Result<Compacted, FeatureError> {
        let view = self.load_view(table.to_string(), None).await?;
        let store = self.documents.store().clone();
        let schema = &view.version.table;
        let location = &view.location;
        let mut report = Compacted {
            table: view.version.name.clone(),
            generation: location.generation,
            segments_before: view.manifest.segments.len(),
            ..Compacted::default()
        };
        let mut merged = Vec::new();
        for group in plan(&view.manifest.segments) {
            let segment = merge(store.as_ref(), location, schema, &group).await?;
            merged.push((group, segment));
        }
        let manifest = swap(&store, location, schema, &merged, &mut report).await?;
        report.segments_after = manifest.segments.len();
        self.views.remove(&view.version.name);
        sweep(&store, location, schema, manifest, grace, &mut report).await?;
        tracing::info!(
            table = %report.table,
            before = report.segments_before,
            after = report.segments_after,
            swept = report.swept,
            "features compacted"
        );
        Ok(report)
    }
}

/// Groups of small segments of one date to merge, each of at least two.
fn plan(segments: &[Segment]) -> Vec<Vec<Segment>> {
    let mut small: Vec<&Segment> = segments.iter().filter(|s| s.rows < SMALL_ROWS).collect();
    small.sort_by(|a, b| a.date.cmp(&b.date));
    let mut groups: Vec<Vec<Segment>> = Vec::new();
    let mut current: Vec<Segment> = Vec::new();
    let mut rows = 0;
    for segment in small {
        let full = rows >= MERGED_ROWS;
        if current
            .first()
            .is_some_and(|first| first.date != segment.date)
            || full
        {
            groups.push(std::mem::take(&mut current));
            rows = 0;
        }
        rows += segment.rows;
        current.push(segment.clone());
    }
    groups.push(current);
    groups.retain(|g| g.len() > 1);
    groups
}

/// Read a group's segments and write their rows as one, sorted by event
/// time then key (so readers that prune by time read less).
async fn merge(
    store: &dyn ObjectStore,
    location: &Location,
    table: &Table,
    group: &[Segment],
) -> Result<Segment, FeatureError> {
    let mut rows = Vec::with_capacity(group.iter().map(|s| s.rows as usize).sum());
    for segment in group {
        let object = store
            .get(&segment.key)
            .await?
            .ok_or_else(|| FeatureError::Corrupt {
                key: segment.key.clone(),
                reason: "the manifest names it but it is gone".into(),
            })?;
        let (table, key) = (table.clone(), segment.key.clone());
        let decoded =
            tokio::task::spawn_blocking(move || segment::decode_all(&table, object.bytes))
                .await
                .map_err(|e| FeatureError::Internal(e.to_string()))?
                .map_err(|reason| FeatureError::Corrupt { key, reason })?;
        rows.extend(decoded);
    }
    rows.sort_by(|a, b| (a.ts, &a.key).cmp(&(b.ts, &b.key)));
    let date = group[0].date.clone();
    data::write_segment(store, location, table, date, rows).await
}

/// Swap each merged group into the manifest if it still names every
/// segment of the group; a group another compaction got first is dropped
/// (and its merged segment deleted).
async fn swap(
    store: &Arc<dyn ObjectStore>,
    location: &Location,
    table: &Table,
    merged: &[(Vec<Segment>, Segment)],
    report: &mut Compacted,
) -> Result<Manifest, FeatureError> {
    for _ in 0..data::COMMIT_ATTEMPTS {
        let (mut manifest, etag) =
            data::read_manifest(store.as_ref(), location, table.partitions).await?;
        if merged.is_empty() {
            return Ok(manifest);
        }
        let named: HashSet<&str> = manifest.segments.iter().map(|s| s.key.as_str()).collect();
        let (applied, lost): (Vec<_>, Vec<_>) = merged
            .iter()
            .partition(|(group, _)| group.iter().all(|s| named.contains(s.key.as_str())));
        let now = now_ms();
        let mut rows = 0;
        for (group, segment) in &applied {
            let replaced: HashSet<&str> = group.iter().map(|s| s.key.as_str()).collect();
            let at = manifest
                .segments
                .iter()
                .position(|s| replaced.contains(s.key.as_str()))
                .unwrap_or(manifest.segments.len());
            manifest
                .segments
                .retain(|s| !replaced.contains(s.key.as_str()));
            manifest
                .segments
                .insert(at.min(manifest.segments.len()), segment.clone());
            manifest.retired.extend(group.iter().map(|s| Retired {
                key: s.key.clone(),
                bytes: s.bytes,
                at_ms: now,
            }));
            rows += segment.rows;
        }
        manifest.updated_at = now_rfc3339();
        let bytes = Bytes::from(
            serde_json::to_vec(&manifest).map_err(|e| FeatureError::Internal(e.to_string()))?,
        );
        let mode = etag.map_or(PutMode::IfAbsent, PutMode::IfMatch);
        match store.put(&location.manifest(), bytes, mode).await {
            Ok(_) => {
                for (_, segment) in lost {
                    let _ = store.delete(&segment.key).await;
                }
                report.rows_merged = rows;
                return Ok(manifest);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FeatureError::Contended(location.table.clone()))
}

/// Delete what no reader needs any more, then drop the deleted retirees
/// from the manifest (one more compare-and-swap; on a lost race they stay
/// listed and the next sweep drops them).
async fn sweep(
    store: &Arc<dyn ObjectStore>,
    location: &Location,
    table: &Table,
    mut manifest: Manifest,
    grace: Duration,
    report: &mut Compacted,
) -> Result<(), FeatureError> {
    let now = now_ms();
    let grace_ms = grace.as_millis() as i64;
    let named: HashSet<&str> = manifest
        .segments
        .iter()
        .map(|s| s.key.as_str())
        .chain(manifest.online.iter().flatten().map(|o| o.key.as_str()))
        .collect();
    let retired: HashSet<&str> = manifest.retired.iter().map(|r| r.key.as_str()).collect();
    let mut deleted = HashSet::new();
    for retiree in &manifest.retired {
        if now - retiree.at_ms >= grace_ms {
            store.delete(&retiree.key).await?;
            report.swept += 1;
            report.swept_bytes += retiree.bytes;
            deleted.insert(retiree.key.clone());
        } else {
            report.retired_kept += 1;
        }
    }
    for key in store.list(&location.prefix()).await? {
        if key == location.manifest()
            || named.contains(key.as_str())
            || retired.contains(key.as_str())
        {
            continue;
        }
        let Some(written) = written_ms(&key) else {
            continue;
        };
        // Superseded online partitions are only read by views older than
        // the grace period; unnamed history belongs to an ingest that
        // failed, or one still running.
        let horizon = if key.contains("/online/") {
            grace_ms
        } else {
            grace_ms.max(INGEST_HORIZON.as_millis() as i64)
        };
        if now - written >= horizon {
            store.delete(&key).await?;
            report.swept += 1;
        }
    }
    if deleted.is_empty() {
        return Ok(());
    }
    for _ in 0..data::COMMIT_ATTEMPTS {
        let (current, etag) =
            data::read_manifest(store.as_ref(), location, table.partitions).await?;
        manifest = current;
        manifest.retired.retain(|r| !deleted.contains(&r.key));
        let bytes = Bytes::from(
            serde_json::to_vec(&manifest).map_err(|e| FeatureError::Internal(e.to_string()))?,
        );
        let mode = etag.map_or(PutMode::IfAbsent, PutMode::IfMatch);
        match store.put(&location.manifest(), bytes, mode).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// When an object was written, from the writer id its name starts with
/// (hex nanoseconds, see [`data::writer_id`]).
fn written_ms(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?.strip_suffix(".parquet")?;
    let id = match name.strip_prefix('p') {
        Some(rest) if key.contains("/online/") => rest.split_once('-')?.1,
        _ => name,
    };
    let nanos = u128::from_str_radix(id.split('-').next()?, 16).ok()?;
    Some((nanos / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(key: &str, date: &str, rows: u64) -> Segment {
        Segment {
            key: key.into(),
            date: date.into(),
            rows,
            bytes: rows * 10,
            min_ts: 0,
            max_ts: 0,
        }
    }

    #[test]
    fn plans_merge_small_segments_of_one_date() {
        let segments = [
            segment("a", "2026-01-01", 10),
            segment("big", "2026-01-01", SMALL_ROWS),
            segment("b", "2026-01-01", 10),
            segment("c", "2026-01-02", 10),
            segment("d", "2026-01-03", 10),
            segment("e", "2026-01-03", 10),
        ];
        let keys: Vec<Vec<String>> = plan(&segments)
            .into_iter()
            .map(|g| g.into_iter().map(|s| s.key).collect())
            .collect();
        assert_eq!(keys, [vec!["a", "b"], vec!["d", "e"]]);
    }

    #[test]
    fn write_times_come_from_writer_ids() {
        let id = data::writer_id();
        let written = written_ms(&format!(
            "features/t/data/1/history/event_date=2026-01-01/{id}.parquet"
        ))
        .expect("a time");
        assert!((now_ms() - written).abs() < 60_000);
        let online =
            written_ms(&format!("features/t/data/1/online/p3-{id}.parquet")).expect("a time");
        assert_eq!(online, written);
        assert_eq!(written_ms("features/t/data/1/history/x.json"), None);
    }
}
