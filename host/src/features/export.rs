//! Point-in-time export for training: for every row of an entity file
//! (entity key and a timestamp), the latest feature values with event time
//! at or before the row's timestamp and no older than the table's TTL, ties
//! broken by created time — Feast's semantics — with nulls where there are
//! none.
//!
//! An as-of join that streams the history: the entity rows are indexed by
//! key and sorted by time once, then each history segment that can matter
//! (its event times overlap the rows' windows) is read one at a time and
//! every one of its rows offered to the entity rows whose window holds it.
//! Memory is the entity file, the answers and one segment, never the
//! history.

use super::row::{Row, Value, key_text, parse_time};
use super::schema::{ColumnType, Table};
use super::{FeatureError, FeatureStore, feature_list};
use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

/// Rows per Parquet row group of the output.
const OUTPUT_BATCH: usize = 64 * 1024;

/// Which features of which table: `TABLE[@VERSION]:f1,f2`, or `TABLE` for
/// all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSpec {
    /// The table and version selector as written.
    pub table: String,
    /// The features (empty: all).
    pub features: Vec<String>,
}

impl std::str::FromStr for FeatureSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (table, features) = s.split_once(':').unwrap_or((s, ""));
        if table.is_empty() {
            return Err(format!(
                "`{s}`: write TABLE:feature,feature (or TABLE for all)"
            ));
        }
        Ok(Self {
            table: table.to_string(),
            features: features
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(String::from)
                .collect(),
        })
    }
}

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// CSV with a header.
    Csv,
    /// Parquet.
    Parquet,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Entity rows (every one of the input, in order).
    pub rows: u64,
    /// Feature columns.
    pub features: usize,
    /// Cells that found a value.
    pub found: u64,
    /// History rows read.
    pub scanned: u64,
    /// History segments read (of those the tables hold).
    pub segments_read: usize,
    /// History segments skipped because their times cannot matter.
    pub segments_skipped: usize,
}

/// One requested table, resolved.
struct Source {
    table: Table,
    segments: Vec<super::Segment>,
    /// Feature indexes in the table.
    columns: Vec<usize>,
    /// Entity key columns' positions in the entity file.
    key_at: Vec<usize>,
}

/// The best candidate found so far for one entity row and table.
struct Best {
    ts: i64,
    created: i64,
    values: Vec<Value>,
}

impl FeatureStore {
    /// Export `specs` for every row of `entities` (CSV with a header that
    /// has each table's entity columns and `timestamp_column`) to `out`.
    /// Blocking: run it on a blocking thread (the CLI does).
    pub fn export(
        &self,
        runtime: &tokio::runtime::Handle,
        entities: impl Read,
        specs: &[FeatureSpec],
        timestamp_column: &str,
        format: OutputFormat,
        out: impl Write + Send,
    ) -> Result<Exported, FeatureError> {
        let mut csv = csv::Reader::from_reader(entities);
        let header: Vec<String> = csv
            .headers()
            .map_err(|e| {
                FeatureError::BadInput(format!("the entity file's header cannot be read: {e}"))
            })?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let ts_at = header.iter().position(|h| h == timestamp_column).ok_or_else(|| {
            FeatureError::BadInput(format!(
                "the entity file has no `{timestamp_column}` column (its columns: {}); name it with --timestamp-column",
                header.join(", ")
            ))
        })?;
        let records: Vec<csv::StringRecord> = csv
            .records()
            .enumerate()
            .map(|(i, r)| {
                r.map_err(|e| FeatureError::BadRow {
                    row: i as u64 + 1,
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let times: Vec<i64> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                parse_time(r.get(ts_at).unwrap_or_default()).map_err(|reason| {
                    FeatureError::BadRow {
                        row: i as u64 + 1,
                        reason: format!("`{timestamp_column}`: {reason}"),
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        let sources = specs
            .iter()
            .map(|spec| self.source(runtime, spec, &header))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names: Vec<(&str, ColumnType)> = Vec::new();
        for source in &sources {
            for &c in &source.columns {
                let f = &source.table.features[c];
                if names.iter().any(|(n, _)| *n == f.name) || header.contains(&f.name) {
                    return Err(FeatureError::BadInput(format!(
                        "two output columns would be named `{}`; export the tables separately",
                        f.name
                    )));
                }
                names.push((&f.name, f.ty));
            }
        }
        let mut report = Exported {
            rows: records.len() as u64,
            features: names.len(),
            found: 0,
            scanned: 0,
            segments_read: 0,
            segments_skipped: 0,
        };
        let mut answers: Vec<Vec<Option<Best>>> = Vec::new();
        for source in &sources {
            answers.push(self.join(runtime, source, &records, &times, &mut report)?);
        }
        report.found = answers
            .iter()
            .flatten()
            .flatten()
            .map(|b| b.values.iter().filter(|v| **v != Value::Null).count() as u64)
            .sum();
        let cells = |row: usize| -> Vec<Value> {
            sources
                .iter()
                .zip(&answers)
                .flat_map(|(source, answers)| match &answers[row] {
                    Some(best) => best.values.clone(),
                    None => vec![Value::Null; source.columns.len()],
                })
                .collect()
        };
        match format {
            OutputFormat::Csv => write_csv(out, &header, &names, &records, cells),
            OutputFormat::Parquet => write_parquet(out, &header, &names, &records, cells),
        }?;
        Ok(report)
    }

    fn source(
        &self,
        runtime: &tokio::runtime::Handle,
        spec: &FeatureSpec,
        header: &[String],
    ) -> Result<Source, FeatureError> {
        let (name, selector) = super::target(&spec.table)?;
        let version = runtime.block_on(self.tables.resolve(&name, &selector))?;
        let location = super::data::Location {
            table: version.name.clone(),
            generation: version.data,
        };
        let (manifest, _) = runtime.block_on(super::data::read_manifest(
            self.documents.store().as_ref(),
            &location,
            version.table.partitions,
        ))?;
        let table = version.table;
        let columns = if spec.features.is_empty() {
            (0..table.features.len()).collect()
        } else {
            spec.features
                .iter()
                .map(|f| {
                    table
                        .feature_index(f)
                        .ok_or_else(|| FeatureError::UnknownFeature {
                            table: table.name.clone(),
                            feature: f.clone(),
                            available: feature_list(&table),
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let key_at = table
            .entity
            .iter()
            .map(|k| {
                header.iter().position(|h| *h == k.name).ok_or_else(|| {
                    FeatureError::BadInput(format!(
                        "the entity file has no `{}` column, the key of table `{}` (its columns: {})",
                        k.name,
                        table.name,
                        header.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Source {
            table,
            segments: manifest.segments,
            columns,
            key_at,
        })
    }

    /// The best row of `source` for each entity row.
    fn join(
        &self,
        runtime: &tokio::runtime::Handle,
        source: &Source,
        records: &[csv::StringRecord],
        times: &[i64],
        report: &mut Exported,
    ) -> Result<Vec<Option<Best>>, FeatureError> {
        let table = &source.table;
        let ttl = table.ttl_ms.map(|t| t as i64);
        // Entity key → its rows' (time, index), by time.
        let mut index: HashMap<Box<str>, Vec<(i64, usize)>> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let parts: Vec<&str> = source
                .key_at
                .iter()
                .map(|&at| record.get(at).unwrap_or_default())
                .collect();
            let key = key_text(table, &parts).map_err(|reason| FeatureError::BadRow {
                row: i as u64 + 1,
                reason,
            })?;
            index.entry(key).or_default().push((times[i], i));
        }
        for rows in index.values_mut() {
            rows.sort_unstable();
        }
        let mut best: Vec<Option<Best>> = (0..records.len()).map(|_| None).collect();
        let (Some(&earliest), Some(&latest)) = (times.iter().min(), times.iter().max()) else {
            return Ok(best);
        };
        let window_start = ttl.map_or(i64::MIN, |ttl| earliest.saturating_sub(ttl));
        let segments: Vec<&super::Segment> = source
            .segments
            .iter()
            .filter(|s| s.min_ts <= latest && s.max_ts >= window_start)
            .collect();
        report.segments_skipped += source.segments.len() - segments.len();
        report.segments_read += segments.len();
        report.scanned += segments.iter().map(|s| s.rows).sum::<u64>();
        // Segments are fetched and decoded (only the rows of wanted
        // entities) on DECODERS threads, and offered here in history order,
        // so that ties go to the row written later.
        let store = self.documents.store();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let decode = |segment: &super::Segment| -> Result<Vec<Row>, FeatureError> {
            let object = runtime.block_on(store.get(&segment.key))?.ok_or_else(|| {
                FeatureError::Corrupt {
                    key: segment.key.clone(),
                    reason: "the manifest names it but it is gone".into(),
                }
            })?;
            super::segment::decode_wanted(table, object.bytes, |key| index.contains_key(key))
                .map_err(|reason| FeatureError::Corrupt {
                    key: segment.key.clone(),
                    reason,
                })
        };
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(2 * DECODERS);
            for _ in 0..DECODERS {
                let tx = tx.clone();
                let (next, segments, decode) = (&next, &segments, &decode);
                scope.spawn(move || {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(segment) = segments.get(k) else {
                            return;
                        };
                        if tx.send((k, decode(segment))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut decoded = std::collections::BTreeMap::new();
            let mut expected = 0;
            for (k, rows) in rx {
                decoded.insert(k, rows);
                while let Some(rows) = decoded.remove(&expected) {
                    for row in &rows? {
                        offer(row, &index, ttl, &source.columns, &mut best);
                    }
                    expected += 1;
                }
            }
            Ok::<_, FeatureError>(())
        })?;
        Ok(best)
    }
}

/// Threads that fetch and decode history segments during an export.
const DECODERS: usize = 2;

/// Offer one history row to the entity rows whose window holds it: those
/// of its entity with time in `[row.ts, row.ts + ttl]`.
fn offer(
    row: &Row,
    index: &HashMap<Box<str>, Vec<(i64, usize)>>,
    ttl: Option<i64>,
    columns: &[usize],
    best: &mut [Option<Best>],
) {
    let Some(wanting) = index.get(&row.key) else {
        return;
    };
    let until = ttl.map_or(i64::MAX, |ttl| row.ts.saturating_add(ttl));
    let created = row.created.unwrap_or(i64::MIN);
    let from = wanting.partition_point(|(t, _)| *t < row.ts);
    for &(t, i) in &wanting[from..] {
        if t > until {
            break;
        }
        // Later event time wins; on a tie the later created time, then the
        // row written later (history order).
        if best[i]
            .as_ref()
            .is_none_or(|b| (row.ts, created) >= (b.ts, b.created))
        {
            best[i] = Some(Best {
                ts: row.ts,
                created,
                values: columns
                    .iter()
                    .map(|&c| row.values.get(c).cloned().unwrap_or(Value::Null))
                    .collect(),
            });
        }
    }
}

/// A value as a CSV cell: empty when missing; floats shortest-exact for
/// their declared width.
fn csv_cell(value: &Value, ty: ColumnType) -> String {
    match value {
        Value::Null => String::new(),
        Value::Float(f) if ty == ColumnType::F32 => (*f as f32).to_string(),
        Value::Float(f) => f.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(s) => s.to_string(),
    }
}

fn write_csv(
    out: impl Write,
    header: &[String],
    names: &[(&str, ColumnType)],
    records: &[csv::StringRecord],
    cells: impl Fn(usize) -> Vec<Value>,
) -> Result<(), FeatureError> {
    let failed = |e: csv::Error| FeatureError::BadInput(format!("cannot write the export: {e}"));
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(
        header
            .iter()
            .map(String::as_str)
            .chain(names.iter().map(|(n, _)| *n)),
    )
    .map_err(failed)?;
    for (i, record) in records.iter().enumerate() {
        let values = cells(i);
        let features = values
            .iter()
            .zip(names)
            .map(|(v, (_, ty))| csv_cell(v, *ty));
        csv.write_record(record.iter().map(String::from).chain(features))
            .map_err(failed)?;
    }
    csv.flush()
        .map_err(|e| FeatureError::BadInput(format!("cannot write the export: {e}")))
}

fn write_parquet(
    out: impl Write + Send,
    header: &[String],
    names: &[(&str, ColumnType)],
    records: &[csv::StringRecord],
    cells: impl Fn(usize) -> Vec<Value>,
) -> Result<(), FeatureError> {
    let failed = |e: parquet::errors::ParquetError| {
        FeatureError::BadInput(format!("cannot write the export: {e}"))
    };
    // The entity file's columns stay text, as they came; features keep
    // their types.
    let mut fields: Vec<Field> = header
        .iter()
        .map(|h| Field::new(h, DataType::Utf8, true))
        .collect();
    for (name, ty) in names {
        let data_type = match ty {
            ColumnType::F32 => DataType::Float32,
            ColumnType::F64 => DataType::Float64,
            ColumnType::I64 => DataType::Int64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::String => DataType::Utf8,
        };
        fields.push(Field::new(*name, data_type, true));
    }
    let schema = Arc::new(Schema::new(fields));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(failed)?;
    for start in (0..records.len()).step_by(OUTPUT_BATCH) {
        let end = (start + OUTPUT_BATCH).min(records.len());
        let rows: Vec<Vec<Value>> = (start..end).map(&cells).collect();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for c in 0..header.len() {
            let mut b = StringBuilder::new();
            for record in &records[start..end] {
                b.append_option(record.get(c));
            }
            columns.push(Arc::new(b.finish()));
        }
        for (f, (_, ty)) in names.iter().enumerate() {
            let values = rows.iter().map(|r| &r[f]);
            columns.push(match ty {
                ColumnType::F32 => Arc::new(
                    values
                        .map(|v| float(v).map(|x| x as f32))
                        .collect::<Float32Array>(),
                ),
                ColumnType::F64 => Arc::new(values.map(float).collect::<Float64Array>()),
                ColumnType::I64 => Arc::new(
                    values
                        .map(|v| match v {
                            Value::Int(i) => Some(*i),
                            _ => None,
                        })
                        .collect::<Int64Array>(),
                ),
                ColumnType::Bool => Arc::new(
                    values
                        .map(|v| match v {
                            Value::Bool(b) => Some(*b),
                            _ => None,
                        })
                        .collect::<BooleanArray>(),
                ),
                ColumnType::String => {
                    let mut b = StringBuilder::new();
                    for v in values {
                        match v {
                            Value::Text(s) => b.append_value(s),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
            });
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| FeatureError::Internal(e.to_string()))?;
        writer.write(&batch).map_err(failed)?;
    }
    writer.close().map_err(failed)?;
    Ok(())
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let s: FeatureSpec = "user_stats:a, b".parse().unwrap();
        assert_eq!(s.table, "user_stats");
        assert_eq!(s.features, ["a", "b"]);
        let all: FeatureSpec = "user_stats@2".parse().unwrap();
        assert!(all.features.is_empty());
        assert!(":a".parse::<FeatureSpec>().is_err());
    }
}
