//! Files users ingest: CSV with a header, JSON lines, Parquet. Each is read
//! as a stream of numbered rows, checked against the table's schema.

use super::FeatureError;
use super::row::{Cell, RowBuf, RowRef, positions};
use super::schema::Table;
use super::segment;
use std::io::Read;

/// The format of an ingested file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row naming the columns.
    Csv,
    /// One JSON object per line, keyed by column name.
    Jsonl,
    /// A Parquet file.
    Parquet,
}

impl Format {
    /// The format a file name's extension says.
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format a media type names (`text/csv`, `application/x-ndjson`,
    /// `application/jsonl`, `application/vnd.apache.parquet`).
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type.split(';').next()?.trim();
        match essence {
            "text/csv" => Some(Self::Csv),
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
                Some(Self::Jsonl)
            }
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The media type to send a file of this format with.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Jsonl => "application/x-ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// The media types [`Format::of_media_type`] accepts, for error messages.
pub const MEDIA_TYPES: &str = "text/csv, application/x-ndjson or application/vnd.apache.parquet";

/// Read every row of `reader` in `format`, calling `each` with each row
/// in turn; stops at the first bad row with its number (from 1, not
/// counting a header) and the reason. Returns the number of rows.
pub fn read(
    table: &Table,
    format: Format,
    mut reader: impl Read + Send,
    mut each: impl FnMut(RowRef<'_>),
) -> Result<u64, FeatureError> {
    let bad = |row: u64, reason: String| FeatureError::BadRow { row, reason };
    match format {
        Format::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                // Large reads: a stream's reads may each be a hop to
                // another thread.
                .buffer_capacity(1 << 20)
                .from_reader(reader);
            let header = csv
                .headers()
                .map_err(|e| FeatureError::BadInput(format!("the CSV header cannot be read: {e}")))?
                .clone();
            let names: Vec<&str> = header.iter().map(str::trim).collect();
            let at = check_columns(table, &names)?;
            // Records are split and parsed on a thread of their own and
            // handed over in chunks, so that reading overlaps with what
            // `each` does; chunks come back to be reused, so a row's
            // buffers are allocated and freed on one thread.
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel(4);
            let (empty_tx, empty_rx) = std::sync::mpsc::channel();
            std::thread::scope(|scope| {
                scope.spawn(move || parse_records(table, &at, &mut csv, &full_tx, &empty_rx));
                let mut number = 0;
                for chunk in full_rx {
                    let rows: Vec<RowBuf> = chunk.map_err(|(row, reason)| bad(row, reason))?;
                    number += rows.len() as u64;
                    rows.iter().for_each(|row| each(row.view()));
                    let _ = empty_tx.send(rows);
                }
                Ok(number)
            })
        }
        Format::Jsonl => {
            let mut number = 0;
            let lines = std::io::BufReader::new(reader);
            let columns: Vec<&str> = table.columns().collect();
            let mut row = RowBuf::default();
            for line in std::io::BufRead::lines(lines) {
                let line = line.map_err(|e| bad(number + 1, format!("cannot be read: {e}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                number += 1;
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&line)
                        .map_err(|e| bad(number, format!("is not a JSON object: {e}")))?;
                let names: Vec<&str> = object.keys().map(String::as_str).collect();
                check_columns(table, &names).map_err(|e| bad(number, e.to_string()))?;
                row.fill(table, |c| match object.get(columns[c]) {
                    Some(v) => Cell::Json(v),
                    None => Cell::Absent,
                })
                .map_err(|reason| bad(number, reason))?;
                each(row.view());
            }
            Ok(number)
        }
        Format::Parquet => {
            // Parquet is read from its footer back, so a stream (an HTTP
            // body) is spooled to an unnamed temporary file first: memory
            // stays bounded by a row group however large the file.
            let mut spool = tempfile::tempfile().map_err(|e| {
                FeatureError::Internal(format!("cannot create a temporary file: {e}"))
            })?;
            std::io::copy(&mut reader, &mut spool)
                .map_err(|e| FeatureError::BadInput(format!("the file cannot be read: {e}")))?;
            read_parquet(table, spool, each)
        }
    }
}

/// Read a Parquet file (seekable: a file or bytes) as rows of `table`.
pub fn read_parquet<R: parquet::file::reader::ChunkReader + 'static>(
    table: &Table,
    file: R,
    mut each: impl FnMut(RowRef<'_>),
) -> Result<u64, FeatureError> {
    let mut count = 0;
    let mut failure = None;
    segment::decode(
        table,
        file,
        |_| true,
        |number, row| {
            count = number;
            match row {
                Ok(row) => {
                    each(row.view());
                    Ok(())
                }
                Err(reason) => {
                    failure = Some(FeatureError::BadRow {
                        row: number,
                        reason: reason.clone(),
                    });
                    Err(reason)
                }
            }
        },
    )
    .map_err(|reason| failure.take().unwrap_or(FeatureError::BadInput(reason)))?;
    Ok(count)
}

/// The positions of the table's columns among `names`; refuses a source
/// without the key or timestamp columns, or with a column the table lacks
/// (most often a typo).
fn check_columns(table: &Table, names: &[&str]) -> Result<Vec<Option<usize>>, FeatureError> {
    if let Some(unknown) = names.iter().find(|n| !table.columns().any(|c| c == **n)) {
        return Err(FeatureError::BadInput(format!(
            "column `{unknown}` is not in table `{}` (its columns: {}); remove it or add it to table.toml and apply it",
            table.name,
            table.columns().collect::<Vec<_>>().join(", ")
        )));
    }
    let at = positions(table, names);
    let required = table
        .entity
        .iter()
        .map(|k| k.name.as_str())
        .chain([table.timestamp.as_str()]);
    for (i, name) in required.enumerate() {
        if at[i].is_none() {
            return Err(FeatureError::BadInput(format!(
                "the input has no `{name}` column, which table `{}` needs for every row",
                table.name
            )));
        }
    }
    Ok(at)
}

/// CSV rows per chunk the parser hands over.
const CHUNK_ROWS: usize = 1024;

/// A chunk of parsed rows, or the number of a row that cannot be read and
/// why.
type Chunk = Result<Vec<RowBuf>, (u64, String)>;

/// Read `csv`'s records as rows of `table` (its columns at `at` among the
/// header's) into chunks, reusing those that come back on `empty`, and
/// send them on `full`, until the input ends, a row is bad or the receiver
/// is gone.
fn parse_records<R: Read>(
    table: &Table,
    at: &[Option<usize>],
    csv: &mut csv::Reader<R>,
    full: &std::sync::mpsc::SyncSender<Chunk>,
    empty: &std::sync::mpsc::Receiver<Vec<RowBuf>>,
) {
    let mut number = 0u64;
    let mut record = csv::StringRecord::new();
    loop {
        let mut rows = empty.try_recv().unwrap_or_default();
        rows.resize_with(CHUNK_ROWS, RowBuf::default);
        let mut n = 0;
        while n < CHUNK_ROWS {
            let parsed = match csv.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => rows[n].fill(table, |c| match at[c] {
                    Some(i) => Cell::Text(record.get(i).unwrap_or_default()),
                    None => Cell::Absent,
                }),
                Err(e) => Err(csv_error(e)),
            };
            number += 1;
            if let Err(reason) = parsed {
                let _ = full.send(Err((number, reason)));
                return;
            }
            n += 1;
        }
        let last = n < CHUNK_ROWS;
        rows.truncate(n);
        if (n > 0 && full.send(Ok(rows)).is_err()) || last {
            return;
        }
    }
}

fn csv_error(e: csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("has {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".into(),
        _ => e.to_string(),
    }
}
