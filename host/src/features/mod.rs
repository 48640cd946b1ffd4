//! Feature tables in the object store: the schema users apply
//! (`schema.rs`), rows and values (`row.rs`), Parquet segments
//! (`segment.rs`), the files users ingest (`source.rs`), the manifest and
//! its compare-and-swap commits (`data.rs`), point-in-time export
//! (`export.rs`), streaming appends (`stream.rs`) and compaction
//! (`compact.rs`).
//!
//! Online reads go through two caches: a *view* per table (its schema
//! version and manifest, re-read once older than the table's freshness
//! interval) and the decoded online partitions, which never change once
//! written. A lookup is a hash, two cache hits and a probe of the
//! partition's key index.

mod compact;
mod data;
mod export;
mod row;
mod schema;
mod segment;
mod source;
mod stream;
#[cfg(test)]
mod tests;

pub use compact::{Compacted, DEFAULT_GRACE};
pub use data::{Committed, Manifest, Segment, partition_of};
pub use export::{Exported, FeatureSpec, OutputFormat};
pub use row::{Rfc3339, Value};
pub use schema::{ColumnType, Feature, KeyColumn, Table, TableVersion};
pub use source::{Format, MEDIA_TYPES};

use crate::cache::{Cache, CacheStats, DocumentCache, Weigh};
use crate::registry::{Name, Registry, RegistryError, Selector};
use crate::store::{Revalidated, StoreError};
use data::{Location, Partitions, Staged};
use futures::FutureExt;
use row::Row;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Rows of one event date an ingest's parser hands to its encoder at once.
const BATCH_ROWS: usize = 8 * 1024;
/// Rows the parser holds across dates before handing over the biggest.
const BUFFERED_ROWS: usize = 64 * 1024;

/// Why a feature-store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FeatureError {
    /// `table.toml` is wrong.
    #[error("{}: {reason}", table.as_ref().map_or("table.toml".to_string(), |t| format!("table `{t}`")))]
    Schema {
        /// The table, once its name is known.
        table: Option<String>,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A new schema would break readers of the current version's data.
    #[error("table `{table}`: the new schema would break readers of version {version}: {reason}; apply it with --new-version to start version {} with empty data (readers of `{table}@{version}` keep theirs)", version + 1)]
    Breaking {
        /// The table.
        table: String,
        /// The version it would break.
        version: u64,
        /// How.
        reason: String,
    },
    /// A row of an ingest is malformed; nothing was ingested.
    #[error("row {row}: {reason}; nothing was ingested")]
    BadRow {
        /// The row's number, from 1 (not counting a header).
        row: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The input as a whole cannot be used.
    #[error("{0}")]
    BadInput(String),
    /// A feature name the table does not have.
    #[error("table `{table}` has no feature `{feature}`; its features: {available}")]
    UnknownFeature {
        /// The table.
        table: String,
        /// The name asked for.
        feature: String,
        /// What it has.
        available: String,
    },
    /// The registry failed (e.g. no such table).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data cannot be read.
    #[error("`{key}` is corrupt: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Too many writers raced for the table's manifest.
    #[error("table `{0}` is being written by too many writers at once; retry")]
    Contended(String),
    /// A bug or a failed task.
    #[error("internal error: {0}")]
    Internal(String),
}

impl FeatureError {
    /// Whether the caller's input is at fault (a 4xx), not the node.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Self::Schema { .. }
                | Self::Breaking { .. }
                | Self::BadRow { .. }
                | Self::BadInput(_)
                | Self::UnknownFeature { .. }
        )
    }
}

/// What a node knows of a table right now: the version unqualified reads
/// use and its data's manifest.
pub struct View {
    /// The schema version.
    pub version: Arc<TableVersion>,
    /// Its data's manifest.
    pub manifest: Arc<Manifest>,
    etag: Option<crate::store::ETag>,
    location: Location,
}

impl Weigh for View {
    fn weight(&self) -> u64 {
        512 + 160 * (self.manifest.segments.len() + self.manifest.online.len()) as u64
    }
}

/// One entity's features, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The key, in text form.
    pub key: String,
    /// Event time of the values, epoch milliseconds (`None`: missing or
    /// expired).
    pub ts: Option<i64>,
    /// One value per requested feature.
    pub values: Vec<Value>,
}

/// The answer to a lookup.
pub struct Lookup {
    /// The schema version read.
    pub version: Arc<TableVersion>,
    /// The returned features' positions in the schema, in the order
    /// returned.
    columns: Vec<usize>,
    /// One per requested entity, in order.
    pub entities: Vec<Entity>,
}

impl Lookup {
    /// The features, in the order returned.
    pub fn features(&self) -> impl Iterator<Item = &Feature> {
        self.columns
            .iter()
            .map(|&c| &self.version.table.features[c])
    }

    /// One entity as the HTTP API answers it: the key columns, `features`
    /// (null where missing or expired) and the event time; serialized
    /// straight from the lookup, with no JSON tree in between.
    pub fn json<'a>(&'a self, entity: &'a Entity) -> EntityJson<'a> {
        EntityJson {
            lookup: self,
            entity,
        }
    }

    /// Every entity, in order, as [`Lookup::json`] gives them.
    pub fn results(&self) -> impl serde::Serialize + '_ {
        struct Results<'a>(&'a Lookup);
        impl serde::Serialize for Results<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.entities.iter().map(|e| self.0.json(e)))
            }
        }
        Results(self)
    }
}

/// One entity of a lookup, as JSON (see [`Lookup::json`]).
pub struct EntityJson<'a> {
    lookup: &'a Lookup,
    entity: &'a Entity,
}

impl serde::Serialize for EntityJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Features<'a>(&'a Lookup, &'a [Value]);
        impl serde::Serialize for Features<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(
                    self.0
                        .features()
                        .zip(self.1)
                        .map(|(f, v)| (&f.name, Typed(f.ty, v))),
                )
            }
        }
        // f32 features print as f32 (0.1, not 0.10000000149011612).
        struct Typed<'a>(ColumnType, &'a Value);
        impl serde::Serialize for Typed<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match (self.0, self.1) {
                    (ColumnType::F32, Value::Float(f)) if f.is_finite() => {
                        s.serialize_f32(*f as f32)
                    }
                    (_, value) => value.serialize(s),
                }
            }
        }
        let table = &self.lookup.version.table;
        let mut map = s.serialize_map(Some(table.entity.len() + 2))?;
        for (column, part) in table.entity.iter().zip(row::key_parts(&self.entity.key)) {
            match (column.ty, part.parse::<i64>()) {
                (ColumnType::I64, Ok(n)) => map.serialize_entry(&column.name, &n)?,
                _ => map.serialize_entry(&column.name, part)?,
            }
        }
        map.serialize_entry("features", &Features(self.lookup, &self.entity.values))?;
        match self.entity.ts {
            Some(ts) => map.serialize_entry(&table.timestamp, &Rfc3339(ts).to_string())?,
            None => map.serialize_entry(&table.timestamp, &())?,
        }
        map.end()
    }
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ingested {
    /// The table.
    pub table: String,
    /// The schema version the rows were read with.
    pub version: u64,
    /// The commit.
    #[serde(flatten)]
    pub committed: Committed,
}

/// The feature store of a node.
pub struct FeatureStore {
    documents: Arc<DocumentCache>,
    tables: Registry<TableVersion>,
    views: Cache<String, View, FeatureError>,
    partitions: Partitions,
    streams: stream::Streams,
}

impl FeatureStore {
    /// A feature store over the node's store, keeping up to `budget` bytes
    /// of decoded online partitions.
    pub fn new(documents: Arc<DocumentCache>, budget: u64) -> Self {
        Self {
            tables: Registry::new(documents.clone()),
            partitions: Partitions::new(documents.store().clone(), budget),
            views: Cache::new(64 << 20),
            documents,
            streams: stream::Streams::default(),
        }
    }

    /// The registry of table versions.
    pub fn registry(&self) -> &Registry<TableVersion> {
        &self.tables
    }

    /// Counters of the online-partition cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.partitions.stats()
    }

    /// Register `table.toml` as a new version of its table (or return the
    /// current one when it is the same). A change that breaks readers is
    /// refused unless `new_version`, which starts empty data.
    pub async fn apply(
        &self,
        text: &str,
        new_version: bool,
        created_by: String,
    ) -> Result<(TableVersion, bool), FeatureError> {
        let table = Table::parse(text)?;
        let (name, _) = target(&table.name)?;
        let current = match self.tables.resolve(&name, &Selector::Default).await {
            Ok(current) => Some(current),
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let data = match &current {
            Some(current) if current.table == table && !new_version => {
                return Ok((current.clone(), false));
            }
            Some(current) => match table.breaks(&current.table) {
                Some(reason) if !new_version => {
                    return Err(FeatureError::Breaking {
                        table: table.name,
                        version: current.version,
                        reason,
                    });
                }
                None if !new_version => current.data,
                _ => 0,
            },
            None => 0,
        };
        let record = TableVersion {
            name: table.name.clone(),
            version: 0,
            table,
            data,
            created_at: crate::registry::now_rfc3339(),
            created_by,
        };
        let (version, created) = self.tables.record(&name, record).await?;
        self.views.remove(&version.name);
        Ok((version, created))
    }

    /// This node's view of `table` (`NAME` or `NAME@VERSION`), no older
    /// than the table's freshness interval.
    pub async fn view(&self, table: &str) -> Result<Arc<View>, FeatureError> {
        let fresh = |view: &View, loaded_at: Instant| {
            loaded_at.elapsed() < Duration::from_millis(view.version.table.freshness_ms)
        };
        let key = table.to_string();
        self.views
            .get_or_load(&key, fresh, |stale| {
                self.load_view(key.clone(), stale).boxed()
            })
            .await
    }

    fn load_view(
        &self,
        target: String,
        stale: Option<Arc<View>>,
    ) -> impl Future<Output = Result<View, FeatureError>> + Send + 'static {
        let tables = self.tables.clone();
        let store = self.documents.store().clone();
        async move {
            let (name, selector) = self::target(&target)?;
            let version = Arc::new(tables.resolve(&name, &selector).await?);
            let location = Location {
                table: version.name.clone(),
                generation: version.data,
            };
            // Unchanged manifests cost a conditional read, not a download.
            if let Some(stale) = stale.filter(|s| s.location == location)
                && let Some(etag) = &stale.etag
                && let Revalidated::Unchanged =
                    store.get_if_changed(&location.manifest(), etag).await?
            {
                return Ok(View {
                    version,
                    manifest: stale.manifest.clone(),
                    etag: stale.etag.clone(),
                    location,
                });
            }
            let (manifest, etag) =
                data::read_manifest(store.as_ref(), &location, version.table.partitions).await?;
            Ok(View {
                version,
                manifest: Arc::new(manifest),
                etag,
                location,
            })
        }
    }

    /// Read `names` (all features when empty) of `keys` from `table`. A key
    /// is the entity's value, or for a composite key its parts joined by
    /// `|`. Unknown entities and values older than the TTL read as missing.
    pub async fn lookup(
        &self,
        table: &str,
        keys: &[impl AsRef<str>],
        names: &[impl AsRef<str>],
    ) -> Result<Lookup, FeatureError> {
        let span = tracing::info_span!(target: crate::observe::trace::SPANS, "features", table, entities = keys.len());
        self.lookup_traced(table, keys, names)
            .instrument(span)
            .await
    }

    async fn lookup_traced(
        &self,
        table: &str,
        keys: &[impl AsRef<str>],
        names: &[impl AsRef<str>],
    ) -> Result<Lookup, FeatureError> {
        let view = self.view(table).await?;
        match self.read(&view, keys, names).await {
            // A sweep deleted a partition this view still names: a newer
            // manifest names its successor.
            Err(FeatureError::Corrupt { .. }) => {
                self.views.remove(&table.to_string());
                let view = self.view(table).await?;
                self.read(&view, keys, names).await
            }
            read => read,
        }
    }

    async fn read(
        &self,
        view: &View,
        keys: &[impl AsRef<str>],
        names: &[impl AsRef<str>],
    ) -> Result<Lookup, FeatureError> {
        let schema = &view.version.table;
        let columns: Vec<usize> = if names.is_empty() {
            (0..schema.features.len()).collect()
        } else {
            names
                .iter()
                .map(|n| {
                    schema
                        .feature_index(n.as_ref())
                        .ok_or_else(|| FeatureError::UnknownFeature {
                            table: schema.name.clone(),
                            feature: n.as_ref().to_string(),
                            available: feature_list(schema),
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let oldest = schema.ttl_ms.map(|ttl| row::now_ms() - ttl as i64);
        // Each partition is fetched from the cache once per call, however
        // many of the keys hash to it.
        let mut loaded: Vec<(usize, Option<Arc<data::Partition>>)> = Vec::new();
        let mut entities = Vec::with_capacity(keys.len());
        for key in keys {
            let parts: Vec<&str> = row::key_parts(key.as_ref()).collect();
            let key = row::key_text(schema, &parts).map_err(FeatureError::BadInput)?;
            let partition = data::partition_of(&key, view.manifest.partitions);
            let rows = match loaded.iter().find(|(p, _)| *p == partition) {
                Some((_, rows)) => rows.clone(),
                None => {
                    let rows = match view.manifest.online.get(partition).and_then(Option::as_ref) {
                        Some(online) => Some(self.partitions.load(schema, online).await?),
                        None => None,
                    };
                    loaded.push((partition, rows.clone()));
                    rows
                }
            };
            let found = rows.as_deref().and_then(|rows| {
                rows.find(&key)
                    .filter(|r| oldest.is_none_or(|oldest| r.ts >= oldest))
                    .map(|r| (r.ts, columns.iter().map(|&c| cell(r, c)).collect()))
            });
            entities.push(match found {
                Some((ts, values)) => Entity {
                    key: key.into(),
                    ts: Some(ts),
                    values,
                },
                None => Entity {
                    key: key.into(),
                    ts: None,
                    values: vec![Value::Null; columns.len()],
                },
            });
        }
        Ok(Lookup {
            version: view.version.clone(),
            columns,
            entities,
        })
    }

    /// Ingest a file into `table`'s current version: every row or none.
    /// The file is streamed: rows are checked as they are read, written as
    /// history segments as they fill, and made visible in one commit at the
    /// end; a bad row deletes what was written and names the row.
    pub async fn ingest(
        &self,
        table: &str,
        format: Format,
        reader: Box<dyn Read + Send>,
    ) -> Result<Ingested, FeatureError> {
        let view = self.writable(table).await?;
        let schema = view.version.table.clone();
        // Three stages at once: one thread parses, gathers rows column by
        // column and keeps the latest of each entity; another encodes and
        // compresses; this task stores finished segments.
        let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<data::Batch>(4);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<data::Encoded>(2);
        let reading = {
            let schema = schema.clone();
            tokio::task::spawn_blocking(move || {
                let mut gather = Gather::new(&schema);
                let mut failed = None;
                let rows = source::read(&schema, format, reader, |row| {
                    match gather.add(row) {
                        // The receiver stops only when a write failed.
                        Ok(Some(full)) => drop(batch_tx.blocking_send(full)),
                        Ok(None) => {}
                        Err(e) => failed = Some(e),
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                for rest in gather.drain()? {
                    let _ = batch_tx.blocking_send(rest);
                }
                Ok::<_, FeatureError>((rows, gather.latest))
            })
        };
        let encoding = {
            let mut open = data::OpenSegments::new(schema.clone());
            tokio::task::spawn_blocking(move || {
                let stopped = || FeatureError::Internal("the segment writer stopped".into());
                while let Some(batch) = batch_rx.blocking_recv() {
                    for encoded in open.write(batch)? {
                        done_tx.blocking_send(encoded).map_err(|_| stopped())?;
                    }
                }
                for encoded in open.finish()? {
                    done_tx.blocking_send(encoded).map_err(|_| stopped())?;
                }
                Ok(())
            })
        };
        let mut segments = Vec::new();
        let mut failure = None;
        while let Some(encoded) = done_rx.recv().await {
            let stored =
                data::put_segment(self.documents.store().as_ref(), &view.location, encoded).await;
            match stored {
                Ok(segment) => segments.push(segment),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(done_rx);
        let encoded = joined(encoding.await);
        let read = joined(reading.await);
        // The parser's error comes first: a bad row stops the others.
        let staged = match (read, encoded, failure) {
            (Ok((rows, latest)), Ok(()), None) => Staged {
                segments,
                latest,
                rows,
            },
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Some(e)) => {
                self.discard(&segments).await;
                return Err(e);
            }
        };
        self.commit(&view, staged).await
    }

    /// Rows of `table` from JSON objects (keyed by column name), checked
    /// against its current version; the error names the first bad row.
    pub async fn append(
        self: &Arc<Self>,
        table: &str,
        rows: &[serde_json::Value],
    ) -> Result<Ingested, FeatureError> {
        let view = self.writable(table).await?;
        let schema = &view.version.table;
        let columns: Vec<&str> = schema.columns().collect();
        let mut parsed = Vec::with_capacity(rows.len());
        for (i, json) in rows.iter().enumerate() {
            let number = i as u64 + 1;
            let object = json.as_object().ok_or_else(|| FeatureError::BadRow {
                row: number,
                reason: "is not a JSON object".into(),
            })?;
            if let Some(unknown) = object.keys().find(|k| !columns.contains(&k.as_str())) {
                return Err(FeatureError::BadRow {
                    row: number,
                    reason: format!(
                        "column `{unknown}` is not in table `{}` (its columns: {})",
                        schema.name,
                        columns.join(", ")
                    ),
                });
            }
            let row = row::build_row(schema, |c| match object.get(columns[c]) {
                Some(v) => row::Cell::Json(v),
                None => row::Cell::Absent,
            })
            .map_err(|reason| FeatureError::BadRow {
                row: number,
                reason,
            })?;
            parsed.push(row);
        }
        stream::append(self, view, parsed).await
    }

    /// Write rows already checked against `view`'s schema and commit them.
    async fn commit_rows(&self, view: &View, rows: Vec<Row>) -> Result<Ingested, FeatureError> {
        let schema = &view.version.table;
        let count = rows.len() as u64;
        let mut latest = data::Latest::default();
        for row in &rows {
            latest.offer(row.view());
        }
        let mut written = Vec::new();
        for (date, rows) in data::by_date(rows) {
            match data::write_segment(
                self.documents.store().as_ref(),
                &view.location,
                schema,
                date,
                rows,
            )
            .await
            {
                Ok(segment) => written.push(segment),
                Err(e) => {
                    self.discard(&written).await;
                    return Err(e);
                }
            }
        }
        let staged = Staged {
            segments: written,
            latest,
            rows: count,
        };
        self.commit(view, staged).await
    }

    /// The view an ingest writes through: read now, not from the cache, so
    /// it uses the newest schema.
    async fn writable(&self, table: &str) -> Result<Arc<View>, FeatureError> {
        if table.contains('@') {
            return Err(FeatureError::BadInput(format!(
                "ingest into `{table}`: rows go to the table's current version; give the name alone"
            )));
        }
        Ok(Arc::new(self.load_view(table.to_string(), None).await?))
    }

    async fn commit(&self, view: &View, staged: Staged) -> Result<Ingested, FeatureError> {
        let store = self.documents.store();
        match data::commit(
            store,
            &view.location,
            &view.version.table,
            &staged,
            &self.partitions,
        )
        .await
        {
            Ok((committed, manifest)) => {
                // This node reads its own writes at once.
                self.views.remove(&view.version.name);
                tracing::info!(
                    table = %view.version.name,
                    rows = committed.rows,
                    segments = committed.segments,
                    entities = manifest.entities(),
                    "features ingested"
                );
                Ok(Ingested {
                    table: view.version.name.clone(),
                    version: view.version.version,
                    committed,
                })
            }
            Err(e) => {
                self.discard(&staged.segments).await;
                Err(e)
            }
        }
    }

    /// Best-effort removal of segments no manifest will name.
    async fn discard(&self, segments: &[Segment]) {
        for segment in segments {
            if let Err(e) = self.documents.store().delete(&segment.key).await {
                tracing::warn!(key = %segment.key, error = %e, "cannot remove an uncommitted segment; `sluice features compact` sweeps it");
            }
        }
    }
}

/// The result of a blocking task that may have failed.
fn joined<T>(
    task: Result<Result<T, FeatureError>, tokio::task::JoinError>,
) -> Result<T, FeatureError> {
    task.map_err(|e| FeatureError::Internal(e.to_string()))
        .and_then(|r| r)
}

/// `TABLE` or `TABLE@VERSION|ALIAS`, checked.
fn target(text: &str) -> Result<(Name, Selector), FeatureError> {
    let invalid = |e: crate::registry::InvalidName| FeatureError::BadInput(e.to_string());
    let (name, selector) = Selector::split(text).map_err(invalid)?;
    Ok((Name::parse(name).map_err(invalid)?, selector))
}

fn cell(row: &Row, column: usize) -> Value {
    row.values.get(column).cloned().unwrap_or(Value::Null)
}

fn feature_list(table: &Table) -> String {
    table
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows of one ingest on their way to segments: gathered column by column
/// per event day (bounded), and the latest row of each entity.
struct Gather {
    table: Table,
    days: HashMap<i64, segment::Columns>,
    buffered: usize,
    latest: data::Latest,
}

const DAY_MS: i64 = 86_400_000;

impl Gather {
    fn new(table: &Table) -> Self {
        Self {
            table: table.clone(),
            days: HashMap::new(),
            buffered: 0,
            latest: data::Latest::default(),
        }
    }

    /// Add a row; returns a day's batch to encode, if one filled up.
    fn add(&mut self, row: row::RowRef<'_>) -> Result<Option<data::Batch>, FeatureError> {
        let day = row.ts.div_euclid(DAY_MS);
        let columns = self
            .days
            .entry(day)
            .or_insert_with(|| segment::Columns::new(&self.table, BATCH_ROWS));
        columns.push(row);
        let full = columns.len() >= BATCH_ROWS;
        self.latest.offer(row);
        self.buffered += 1;
        let full = if full {
            Some(day)
        } else if self.buffered >= BUFFERED_ROWS {
            self.days
                .iter()
                .max_by_key(|(_, columns)| columns.len())
                .map(|(d, _)| *d)
        } else {
            None
        };
        full.map(|day| self.take(day))
            .transpose()
            .map(Option::flatten)
    }

    fn take(&mut self, day: i64) -> Result<Option<data::Batch>, FeatureError> {
        let Some(mut columns) = self.days.remove(&day) else {
            return Ok(None);
        };
        self.buffered -= columns.len();
        let time_range = columns.time_range();
        Ok(Some(data::Batch {
            date: row::event_date(day * DAY_MS),
            batch: columns.finish().map_err(FeatureError::Internal)?,
            time_range,
        }))
    }

    /// Every day's rows left, in date order.
    fn drain(&mut self) -> Result<Vec<data::Batch>, FeatureError> {
        let mut days: Vec<i64> = self.days.keys().copied().collect();
        days.sort_unstable();
        days.into_iter()
            .filter_map(|day| self.take(day).transpose())
            .collect()
    }
}
