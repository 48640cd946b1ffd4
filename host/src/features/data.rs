//! A table's data in the object store: immutable Parquet segments and one
//! small manifest, changed only by compare-and-swap, that names the ones
//! readers see.
//!
//! ```text
//! features/<table>/data/<gen>/manifest.json                            segments and online partitions (CAS)
//! features/<table>/data/<gen>/history/event_date=<YYYY-MM-DD>/<id>.parquet   every row, by event date
//! features/<table>/data/<gen>/online/p<i>-<digest>.parquet              latest row per entity, sorted by key
//! ```
//!
//! `<gen>` is the data generation: the table version that started it (a
//! breaking schema change starts a new one). The history is plain
//! Hive-partitioned Parquet, so Spark, DuckDB or Athena read it directly.
//! A segment written by an ingest that never committed is named by no
//! manifest and never read; `sluice features compact` (`compact.rs`)
//! merges small segments and sweeps such files.

use super::FeatureError;
use super::row::{Row, RowRef, event_date};
use super::schema::Table;
use super::segment;
use crate::cache::{Cache, Weigh};
use crate::registry::now_rfc3339;
use crate::store::{ETag, ObjectStore, PutMode, StoreError};
use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A map keyed by entity key. Keys come from the table's own data, and a
/// fast hash is much of an ingest's and a lookup's time: foldhash, seeded
/// per process, rather than SipHash.
type KeyMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;
use std::sync::Arc;

/// Attempts at landing a commit against concurrent writers.
pub(super) const COMMIT_ATTEMPTS: u32 = 64;

/// One history segment, as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Its store key.
    pub key: String,
    /// The event date of its rows.
    pub date: String,
    /// How many rows.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The earliest event time in it, epoch milliseconds.
    pub min_ts: i64,
    /// The latest event time in it.
    pub max_ts: i64,
}

/// One online partition: the latest row of each entity that hashes to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Online {
    /// Its store key.
    pub key: String,
    /// How many entities.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The one mutable document of a data generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// How many online partitions (fixed for the generation).
    pub partitions: u32,
    /// Each partition's current object (`None` until a row lands in it).
    pub online: Vec<Option<Online>>,
    /// The history, in commit order.
    pub segments: Vec<Segment>,
    /// Rows ever committed.
    pub rows: u64,
    /// Commits so far.
    pub commits: u64,
    /// When it last changed.
    pub updated_at: String,
    /// Objects compaction replaced, deleted by a sweep after the grace
    /// period (readers of an older manifest may still read them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
}

/// An object no longer named, kept until no reader can need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Its store key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was retired, epoch milliseconds.
    pub at_ms: i64,
}

impl Manifest {
    /// Entities in the online snapshot.
    pub fn entities(&self) -> u64 {
        self.online.iter().flatten().map(|o| o.rows).sum()
    }
}

/// Where one data generation of a table lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The table.
    pub table: String,
    /// The data generation.
    pub generation: u64,
}

impl Location {
    fn root(&self) -> String {
        format!("features/{}/data/{}", self.table, self.generation)
    }

    /// The manifest's key.
    pub fn manifest(&self) -> String {
        format!("{}/manifest.json", self.root())
    }

    fn history(&self, date: &str, id: &str) -> String {
        format!("{}/history/event_date={date}/{id}.parquet", self.root())
    }

    fn online(&self, partition: usize, id: &str) -> String {
        format!("{}/online/p{partition}-{id}.parquet", self.root())
    }

    /// The prefix of every object of the generation.
    pub fn prefix(&self) -> String {
        format!("{}/", self.root())
    }
}

/// Which online partition `key` belongs to (FNV-1a: stable across
/// processes and releases, unlike std's hasher).
pub fn partition_of(key: &str, partitions: u32) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions.max(1) as u64) as usize
}

/// The manifest of `location` and its tag, or an empty one.
pub async fn read_manifest(
    store: &dyn ObjectStore,
    location: &Location,
    partitions: u32,
) -> Result<(Manifest, Option<ETag>), FeatureError> {
    let key = location.manifest();
    match store.get(&key).await? {
        None => Ok((
            Manifest {
                partitions,
                online: vec![None; partitions as usize],
                ..Manifest::default()
            },
            None,
        )),
        Some(object) => {
            let manifest: Manifest =
                serde_json::from_slice(&object.bytes).map_err(|e| FeatureError::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
            Ok((manifest, Some(object.etag)))
        }
    }
}

/// Rows of one ingest, ready to commit: history segments already written,
/// and per online partition the latest row of each entity it touched.
pub struct Staged {
    /// Written history segments, in order.
    pub segments: Vec<Segment>,
    /// The latest row of each entity in this ingest.
    pub latest: Latest,
    /// Rows read.
    pub rows: u64,
}

/// The latest row of each entity seen.
#[derive(Default)]
pub struct Latest(KeyMap<Row>);

impl Latest {
    /// Keep `row` if it is its entity's newest so far ([`Row::supersedes`]).
    /// Copied only when kept: most rows of a large file are not.
    pub fn offer(&mut self, row: RowRef<'_>) {
        match self.0.get_mut(row.key) {
            Some(held) if row.supersedes(held) => {
                (held.ts, held.created) = (row.ts, row.created);
                if held.values.len() == row.values.len() {
                    // Reuses the held row's allocation.
                    held.values.clone_from_slice(row.values);
                } else {
                    held.values = row.values.into();
                }
            }
            Some(_) => {}
            None => {
                self.0.insert(row.key.into(), row.to_row());
            }
        }
    }

    /// The rows, by online partition of `partitions`, each sorted by key.
    fn by_partition(&self, partitions: u32) -> Vec<Vec<&Row>> {
        let mut out = vec![Vec::new(); partitions as usize];
        for row in self.0.values() {
            out[partition_of(&row.key, partitions)].push(row);
        }
        for rows in &mut out {
            rows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
        out
    }
}

/// A history segment encoded, not yet stored.
pub struct Encoded {
    date: String,
    bytes: Bytes,
    rows: u64,
    min_ts: i64,
    max_ts: i64,
}

/// Rows of one segment file at most.
const SEGMENT_ROWS: u64 = 1 << 20;
/// Encoded bytes an ingest holds in open segments before it finishes the
/// biggest: bounds its memory whatever the file's size and date order.
const OPEN_BYTES: usize = 64 << 20;

/// Rows of one event date, gathered into an Arrow batch.
pub struct Batch {
    /// The event date (`YYYY-MM-DD`).
    pub date: String,
    /// The rows.
    pub batch: RecordBatch,
    /// Their earliest and latest event time.
    pub time_range: (i64, i64),
}

/// The history segments one ingest is writing, a file per event date.
/// Blocking.
pub struct OpenSegments {
    table: Table,
    open: HashMap<String, Open>,
}

struct Open {
    writer: segment::Writer,
    rows: u64,
    min_ts: i64,
    max_ts: i64,
}

impl Open {
    fn finish(self, date: String) -> Result<Encoded, FeatureError> {
        Ok(Encoded {
            date,
            bytes: self.writer.finish().map_err(FeatureError::Internal)?,
            rows: self.rows,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
        })
    }
}

impl OpenSegments {
    /// Nothing written yet.
    pub fn new(table: Table) -> Self {
        Self {
            table,
            open: HashMap::new(),
        }
    }

    /// Encode `batch` into its date's segment; returns the segments
    /// finished meanwhile (full, or the biggest when the open ones hold
    /// too much).
    pub fn write(&mut self, batch: Batch) -> Result<Vec<Encoded>, FeatureError> {
        let open = match self.open.entry(batch.date.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(Open {
                writer: segment::Writer::new(&self.table).map_err(FeatureError::Internal)?,
                rows: 0,
                min_ts: i64::MAX,
                max_ts: i64::MIN,
            }),
        };
        open.writer
            .write(&batch.batch)
            .map_err(FeatureError::Internal)?;
        open.rows += batch.batch.num_rows() as u64;
        open.min_ts = open.min_ts.min(batch.time_range.0);
        open.max_ts = open.max_ts.max(batch.time_range.1);
        let mut finished = Vec::new();
        if open.rows >= SEGMENT_ROWS {
            finished.extend(self.finish_one(&batch.date)?);
        }
        while self.open.values().map(|o| o.writer.size()).sum::<usize>() > OPEN_BYTES {
            let Some(biggest) = self
                .open
                .iter()
                .max_by_key(|(_, o)| o.writer.size())
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            finished.extend(self.finish_one(&biggest)?);
        }
        Ok(finished)
    }

    fn finish_one(&mut self, date: &str) -> Result<Option<Encoded>, FeatureError> {
        self.open
            .remove_entry(date)
            .map(|(date, open)| open.finish(date))
            .transpose()
    }

    /// Finish every open segment, in date order.
    pub fn finish(self) -> Result<Vec<Encoded>, FeatureError> {
        let mut open: Vec<_> = self.open.into_iter().collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        open.into_iter()
            .map(|(date, open)| open.finish(date))
            .collect()
    }
}

/// Encode `rows` (all of one event date) as one history segment. Blocking.
fn encode_segment(table: &Table, date: String, rows: &[Row]) -> Result<Encoded, FeatureError> {
    let (min_ts, max_ts) = rows.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
        (lo.min(r.ts), hi.max(r.ts))
    });
    Ok(Encoded {
        date,
        bytes: segment::encode(table, rows).map_err(FeatureError::Internal)?,
        rows: rows.len() as u64,
        min_ts,
        max_ts,
    })
}

/// Store an encoded segment under a new key of `location`'s history.
pub async fn put_segment(
    store: &dyn ObjectStore,
    location: &Location,
    encoded: Encoded,
) -> Result<Segment, FeatureError> {
    let key = location.history(&encoded.date, &writer_id());
    let bytes = encoded.bytes.len() as u64;
    store.put(&key, encoded.bytes, PutMode::IfAbsent).await?;
    Ok(Segment {
        key,
        date: encoded.date,
        rows: encoded.rows,
        bytes,
        min_ts: encoded.min_ts,
        max_ts: encoded.max_ts,
    })
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Rows added to the history.
    pub rows: u64,
    /// History segments added.
    pub segments: usize,
    /// Entities whose online value changed.
    pub updated: u64,
    /// Rows older than the online value of their entity: in the history
    /// only.
    pub late: u64,
    /// Entities in the online snapshot after the commit.
    pub entities: u64,
}

/// A unique id for one writer's objects; it starts with the time it was
/// made (hex nanoseconds), which tells a sweep how old an unnamed object is.
pub fn writer_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{nanos:x}-{:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Encode `rows` (all of one event date) and write them as a new history
/// segment.
pub async fn write_segment(
    store: &dyn ObjectStore,
    location: &Location,
    table: &Table,
    date: String,
    rows: Vec<Row>,
) -> Result<Segment, FeatureError> {
    let table = table.clone();
    let encoded = tokio::task::spawn_blocking(move || encode_segment(&table, date, &rows))
        .await
        .map_err(|e| FeatureError::Internal(e.to_string()))??;
    put_segment(store, location, encoded).await
}

/// Split rows by event date.
pub fn by_date(rows: Vec<Row>) -> Vec<(String, Vec<Row>)> {
    let mut dates: HashMap<String, Vec<Row>> = HashMap::new();
    for row in rows {
        dates.entry(event_date(row.ts)).or_default().push(row);
    }
    let mut out: Vec<_> = dates.into_iter().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Make `staged` visible: merge its latest rows into the online partitions
/// and name its segments in the manifest, in one compare-and-swap; on a
/// lost race, merge again against the winner's manifest. Nothing is visible
/// until the swap lands.
pub async fn commit(
    store: &Arc<dyn ObjectStore>,
    location: &Location,
    table: &Table,
    staged: &Staged,
    partitions: &Partitions,
) -> Result<(Committed, Manifest), FeatureError> {
    let key = location.manifest();
    for _ in 0..COMMIT_ATTEMPTS {
        let (mut manifest, etag) =
            read_manifest(store.as_ref(), location, table.partitions).await?;
        let mut report = Committed {
            rows: staged.rows,
            segments: staged.segments.len(),
            ..Committed::default()
        };
        // Partitions double (or more) once one would outgrow
        // PARTITION_ROWS, so that a lookup that misses the cache reads one
        // small object however large the table grows. Splitting is local:
        // the keys of partition p of n go to p, p + n, ... of n·factor.
        let n = manifest.partitions.max(1);
        let incoming = staged.latest.by_partition(n);
        let biggest = (0..n as usize)
            .map(|p| {
                let online = manifest.online.get(p).and_then(Option::as_ref);
                online.map_or(0, |o| o.rows) + incoming[p].len() as u64
            })
            .max()
            .unwrap_or(0);
        let mut factor = 1;
        while biggest > PARTITION_ROWS * factor && n * factor as u32 * 2 <= MAX_PARTITIONS {
            factor *= 2;
        }
        // Partitions are rewritten a few at a time: their merges and
        // encodes run on blocking threads, their uploads overlap.
        let rewrites = incoming.into_iter().enumerate().map(|(p, incoming)| {
            let existing = manifest.online.get(p).cloned().flatten();
            let (n, factor) = (n as usize, factor as usize);
            async move {
                if factor == 1 && incoming.is_empty() {
                    return Ok((vec![(p, existing)], 0, 0));
                }
                let current = match &existing {
                    Some(existing) => partitions.load(table, existing).await?,
                    None => Arc::new(Partition::new(Vec::new())),
                };
                let incoming: Vec<Row> = incoming.into_iter().cloned().collect();
                let split = {
                    let table = table.clone();
                    tokio::task::spawn_blocking(move || {
                        let (merged, updated, late) = merge(current.rows(), incoming);
                        if factor == 1 && updated == 0 {
                            return Ok((None, updated, late));
                        }
                        let mut parts = vec![Vec::new(); factor];
                        for row in merged {
                            parts[partition_of(&row.key, (n * factor) as u32) / n].push(row);
                        }
                        let encoded = parts
                            .into_iter()
                            .enumerate()
                            .filter(|(_, rows)| !rows.is_empty())
                            .map(|(j, rows)| {
                                let bytes = segment::encode(&table, &rows)?;
                                Ok((p + j * n, rows.len() as u64, bytes))
                            })
                            .collect::<Result<Vec<_>, String>>()?;
                        Ok((Some(encoded), updated, late))
                    })
                };
                let (encoded, updated, late) = split
                    .await
                    .map_err(|e| FeatureError::Internal(e.to_string()))?
                    .map_err(FeatureError::Internal)?;
                let Some(encoded) = encoded else {
                    return Ok((vec![(p, existing)], updated, late));
                };
                let mut written = Vec::with_capacity(encoded.len());
                for (q, rows, bytes) in encoded {
                    let key = location.online(q, &writer_id());
                    let size = bytes.len() as u64;
                    store.put(&key, bytes, PutMode::IfAbsent).await?;
                    let online = Online {
                        key,
                        rows,
                        bytes: size,
                    };
                    written.push((q, Some(online)));
                }
                Ok::<_, FeatureError>((written, updated, late))
            }
            .boxed()
        });
        // Boxed and collected first: a lazily mapped stream of these
        // borrowing futures trips rustc's Send inference (rust#102211).
        let rewrites: Vec<_> = rewrites.collect();
        let rewritten: Vec<_> = futures::stream::iter(rewrites)
            .buffer_unordered(ONLINE_REWRITES)
            .try_collect()
            .await?;
        let mut online = vec![None; n as usize * factor as usize];
        for (written, updated, late) in rewritten {
            report.updated += updated;
            report.late += late;
            for (q, partition) in written {
                online[q] = partition;
            }
        }
        manifest.partitions = n * factor as u32;
        manifest.online = online;
        manifest.segments.extend(staged.segments.iter().cloned());
        manifest.rows += staged.rows;
        manifest.commits += 1;
        manifest.updated_at = now_rfc3339();
        report.entities = manifest.entities();
        let bytes = Bytes::from(
            serde_json::to_vec(&manifest).map_err(|e| FeatureError::Internal(e.to_string()))?,
        );
        let mode = etag.map_or(PutMode::IfAbsent, PutMode::IfMatch);
        match store.put(&key, bytes, mode).await {
            Ok(_) => return Ok((report, manifest)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FeatureError::Contended(location.table.clone()))
}

/// Entities an online partition holds before the partitions split: about
/// 300 KB with 20 features, fetched and decoded in ~5 ms on a cache miss.
const PARTITION_ROWS: u64 = 4 * 1024;
/// Most online partitions a table's data splits into, which bounds its
/// manifest (~120 bytes a partition); past 33M entities partitions grow
/// instead.
const MAX_PARTITIONS: u32 = 8 * 1024;
/// Online partitions rewritten at once by a commit.
const ONLINE_REWRITES: usize = 4;

/// Merge the latest rows of an ingest (sorted by key) into a sorted
/// partition: a row replaces its entity's value only if it is newer
/// ([`Row::supersedes`]), so late rows never overwrite fresher ones.
/// Returns the merged partition (sorted by key), how many entities changed
/// and how many rows were late.
fn merge(current: &[Row], incoming: Vec<Row>) -> (Vec<Row>, u64, u64) {
    let mut out = Vec::with_capacity(current.len() + incoming.len());
    let (mut updated, mut late) = (0, 0);
    let mut old = current.iter().peekable();
    for row in incoming {
        while let Some(o) = old.next_if(|o| o.key < row.key) {
            out.push(o.clone());
        }
        match old.next_if(|o| o.key == row.key) {
            Some(o) if !row.supersedes(o) => {
                late += 1;
                out.push(o.clone());
            }
            _ => {
                updated += 1;
                out.push(row);
            }
        }
    }
    out.extend(old.cloned());
    (out, updated, late)
}

/// One online partition in memory: rows sorted by key (as stored), and an
/// index from key to row, so a lookup costs a few cache misses rather
/// than one per step of a binary search.
pub struct Partition {
    rows: Vec<Row>,
    index: KeyMap<u32>,
}

impl Partition {
    /// A partition of `rows`, sorted by key.
    pub fn new(rows: Vec<Row>) -> Self {
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.clone(), i as u32))
            .collect();
        Self { rows, index }
    }

    /// Its rows, sorted by key.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The row of `key`, if the partition holds one.
    pub fn find(&self, key: &str) -> Option<&Row> {
        self.index.get(key).map(|&i| &self.rows[i as usize])
    }
}

impl Weigh for Partition {
    fn weight(&self) -> u64 {
        let index = self.index.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1);
        self.rows
            .iter()
            .map(|r| 2 * r.key.len() as u64 + r.weight() as u64)
            .sum::<u64>()
            + index as u64
            + 64
    }
}

/// Decoded online partitions, shared by every reader on the node: a
/// partition object never changes, so a cached one never goes stale; a
/// new snapshot is a new object.
pub struct Partitions {
    store: Arc<dyn ObjectStore>,
    cache: Cache<String, Partition, FeatureError>,
}

impl Partitions {
    /// A cache of up to `budget` bytes of decoded partitions.
    pub fn new(store: Arc<dyn ObjectStore>, budget: u64) -> Self {
        Self {
            store,
            cache: Cache::new(budget),
        }
    }

    /// The partition `online` names, decoded with `table`'s schema (one
    /// load per object however many ask at once).
    pub async fn load(
        &self,
        table: &Table,
        online: &Online,
    ) -> Result<Arc<Partition>, FeatureError> {
        self.cache
            .get_or_load(
                &online.key,
                |_, _| true,
                |_| {
                    let (store, table) = (self.store.clone(), table.clone());
                    let key = online.key.clone();
                    async move {
                        let object =
                            store
                                .get(&key)
                                .await?
                                .ok_or_else(|| FeatureError::Corrupt {
                                    key: key.clone(),
                                    reason: "the manifest names it but it is gone".into(),
                                })?;
                        let rows = tokio::task::spawn_blocking(move || {
                            segment::decode_all(&table, object.bytes)
                        })
                        .await
                        .map_err(|e| FeatureError::Internal(e.to_string()))?
                        .map_err(|reason| FeatureError::Corrupt { key, reason })?;
                        Ok(Partition::new(rows))
                    }
                    .boxed()
                },
            )
            .await
    }

    /// The counters of the cache.
    pub fn stats(&self) -> crate::cache::CacheStats {
        self.cache.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::row::Value;

    fn row(key: &str, ts: i64, created: Option<i64>, v: i64) -> Row {
        Row {
            key: key.into(),
            ts,
            created,
            values: vec![Value::Int(v)].into(),
        }
    }

    #[test]
    fn merge_keeps_the_newest_and_counts_late_rows() {
        let current = vec![row("a", 10, None, 1), row("c", 10, Some(5), 1)];
        let mut latest = Latest::default();
        latest.offer(row("a", 5, None, 2).view()); // late
        latest.offer(row("c", 10, Some(6), 2).view()); // same time, created later: wins
        latest.offer(row("b", 1, None, 2).view()); // new entity
        latest.offer(row("b", 0, None, 3).view()); // older than the one before
        let incoming = latest.by_partition(1)[0]
            .iter()
            .map(|&r| r.clone())
            .collect();
        let (merged, updated, late) = merge(&current, incoming);
        let values: Vec<_> = merged
            .iter()
            .map(|r| (r.key.as_ref(), r.values[0].clone()))
            .collect();
        assert_eq!(
            values,
            [
                ("a", Value::Int(1)),
                ("b", Value::Int(2)),
                ("c", Value::Int(2))
            ]
        );
        assert_eq!((updated, late), (2, 1));
        let partition = Partition::new(merged);
        assert_eq!(partition.find("b").unwrap().ts, 1);
        assert!(partition.find("z").is_none());
    }

    #[test]
    fn a_split_partition_keeps_each_key_under_its_new_number() {
        // Doubling n sends the keys of p to p or p + n: a partition splits
        // on its own, without reading any other.
        for i in 0..10_000 {
            let key = format!("u{i}");
            for n in [1, 3, 8, 64] {
                let p = partition_of(&key, n);
                let q = partition_of(&key, 4 * n);
                assert_eq!(q % n as usize, p, "{key} {n}");
            }
        }
    }

    #[test]
    fn partitions_are_stable() {
        // Fixed values: changing the hash would strand every stored table.
        assert_eq!(partition_of("u42", 8), 2);
        assert_eq!(partition_of("u42", 64), 26);
        assert_eq!(partition_of("user-7", 8), 6);
        assert_eq!(partition_of("", 8), 5);
        assert!(
            (0..1000)
                .map(|i| partition_of(&format!("u{i}"), 8))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 8
        );
    }
}
