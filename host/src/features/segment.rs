//! Segments: rows as Parquet files with the table's own column names and
//! types, so Spark, DuckDB and Athena read the history as it is. The same
//! reader takes users' Parquet files for ingestion, whatever integer, float,
//! string or timestamp encoding they chose.

use super::row::{Cell, Row, RowRef, Value, build_row, key_parts, positions};
use super::schema::{ColumnType, Table};
use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use std::sync::Arc;

/// Rows decoded per Arrow batch.
const BATCH_ROWS: usize = 8192;

fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::F32 => DataType::Float32,
        ColumnType::F64 => DataType::Float64,
        ColumnType::I64 => DataType::Int64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::String => DataType::Utf8,
    }
}

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The Arrow schema of `table`'s segments.
fn schema(table: &Table) -> Arc<Schema> {
    let mut fields: Vec<Field> = table
        .entity
        .iter()
        .map(|k| Field::new(&k.name, arrow_type(k.ty), false))
        .collect();
    fields.push(Field::new(&table.timestamp, time_type(), false));
    if let Some(created) = &table.created {
        fields.push(Field::new(created, time_type(), true));
    }
    for f in &table.features {
        fields.push(Field::new(&f.name, arrow_type(f.ty), true));
    }
    Arc::new(Schema::new(fields))
}

/// Encode `rows` (read with `table`'s schema) as one Parquet file.
pub fn encode(table: &Table, rows: &[Row]) -> Result<Bytes, String> {
    let mut writer = Writer::new(table)?;
    writer.write(&batch(table, rows)?)?;
    writer.finish()
}

/// A Parquet file being written: rows go in as they come, encoded and
/// compressed at once (a tenth of their size in memory as rows), and the
/// file is finished when it is big enough or the input ends.
pub struct Writer {
    inner: ArrowWriter<Vec<u8>>,
}

/// Rows per row group: small enough that a writer's unfinished group stays
/// a few megabytes, large enough for good compression.
const ROW_GROUP_ROWS: usize = 64 * 1024;

impl Writer {
    /// A new, empty file of `table`'s segments.
    pub fn new(table: &Table) -> Result<Self, String> {
        // Dictionaries pay off for repeated text (categories); keys, times
        // and numbers are left plain: hashing every value into a
        // dictionary, which Parquet abandons once it grows, cost an ingest
        // a fifth of its time.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        let unique = table
            .entity
            .iter()
            .map(|k| k.name.as_str())
            .chain([table.timestamp.as_str()])
            .chain(table.created.as_deref())
            .chain(
                table
                    .features
                    .iter()
                    .filter(|f| f.ty != ColumnType::String)
                    .map(|f| f.name.as_str()),
            );
        for name in unique {
            props = props.set_column_dictionary_enabled(name.into(), false);
        }
        let inner = ArrowWriter::try_new(Vec::new(), schema(table), Some(props.build()))
            .map_err(|e| e.to_string())?;
        Ok(Self { inner })
    }

    /// Append a batch of the table's segment schema ([`Columns`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.inner.write(batch).map_err(|e| e.to_string())
    }

    /// Bytes held: the file so far and its unfinished row group.
    pub fn size(&self) -> usize {
        self.inner.inner().len() + self.inner.memory_size()
    }

    /// The finished file.
    pub fn finish(self) -> Result<Bytes, String> {
        self.inner
            .into_inner()
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }
}

/// `rows` as one Arrow batch of `table`'s segment schema.
fn batch(table: &Table, rows: &[Row]) -> Result<RecordBatch, String> {
    let mut columns = Columns::new(table, rows.len());
    rows.iter().for_each(|r| columns.push(r.view()));
    columns.finish()
}

/// Rows gathered column by column into one Arrow batch of a table's
/// segment schema.
pub struct Columns {
    table: Table,
    keys: Vec<Builder>,
    ts: TimestampMillisecondBuilder,
    created: Option<TimestampMillisecondBuilder>,
    features: Vec<Builder>,
    rows: usize,
    min_ts: i64,
    max_ts: i64,
}

/// One column's builder, by type.
enum Builder {
    F32(Float32Builder),
    F64(Float64Builder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
}

impl Builder {
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::F32 => Self::F32(Float32Builder::with_capacity(capacity)),
            ColumnType::F64 => Self::F64(Float64Builder::with_capacity(capacity)),
            ColumnType::I64 => Self::I64(Int64Builder::with_capacity(capacity)),
            ColumnType::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::String => Self::Text(StringBuilder::with_capacity(capacity, capacity * 8)),
        }
    }

    /// Append `value`; one of another type (never made by a checked row)
    /// is stored as null.
    fn push(&mut self, value: &Value) {
        match (self, value) {
            (Self::F32(b), Value::Float(f)) => b.append_value(*f as f32),
            (Self::F64(b), Value::Float(f)) => b.append_value(*f),
            (Self::I64(b), Value::Int(i)) => b.append_value(*i),
            (Self::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (Self::Text(b), Value::Text(s)) => b.append_value(s),
            (Self::F32(b), _) => b.append_null(),
            (Self::F64(b), _) => b.append_null(),
            (Self::I64(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
            (Self::Text(b), _) => b.append_null(),
        }
    }

    /// A key part, as its column's type.
    fn push_key(&mut self, part: &str) {
        match self {
            Self::I64(b) => b.append_option(part.parse::<i64>().ok()),
            Self::Text(b) => b.append_value(part),
            // Keys are strings or i64 (checked at apply).
            other => other.push(&Value::Null),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
        }
    }
}

impl Columns {
    /// Empty columns of `table`, with room for `capacity` rows.
    pub fn new(table: &Table, capacity: usize) -> Self {
        let time = || TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC");
        Self {
            keys: table
                .entity
                .iter()
                .map(|k| Builder::new(k.ty, capacity))
                .collect(),
            ts: time(),
            created: table.created.as_ref().map(|_| time()),
            features: table
                .features
                .iter()
                .map(|f| Builder::new(f.ty, capacity))
                .collect(),
            table: table.clone(),
            rows: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        }
    }

    /// Append a row checked against the table.
    pub fn push(&mut self, row: RowRef<'_>) {
        if let [key] = self.keys.as_mut_slice() {
            key.push_key(row.key);
        } else {
            for (key, part) in self.keys.iter_mut().zip(key_parts(row.key)) {
                key.push_key(part);
            }
        }
        self.ts.append_value(row.ts);
        if let Some(created) = &mut self.created {
            created.append_option(row.created);
        }
        for (i, feature) in self.features.iter_mut().enumerate() {
            feature.push(row.values.get(i).unwrap_or(&Value::Null));
        }
        self.rows += 1;
        self.min_ts = self.min_ts.min(row.ts);
        self.max_ts = self.max_ts.max(row.ts);
    }

    /// Rows gathered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// The earliest and latest event time gathered.
    pub fn time_range(&self) -> (i64, i64) {
        (self.min_ts, self.max_ts)
    }

    /// The batch, leaving the columns empty.
    pub fn finish(&mut self) -> Result<RecordBatch, String> {
        let mut columns: Vec<ArrayRef> = self.keys.iter_mut().map(Builder::finish).collect();
        columns.push(Arc::new(self.ts.finish()));
        if let Some(created) = &mut self.created {
            columns.push(Arc::new(created.finish()));
        }
        columns.extend(self.features.iter_mut().map(Builder::finish));
        self.rows = 0;
        (self.min_ts, self.max_ts) = (i64::MAX, i64::MIN);
        RecordBatch::try_new(schema(&self.table), columns).map_err(|e| e.to_string())
    }
}

/// Read every row of a Parquet file as rows of `table`, in file order;
/// `each` gets the row's number (from 1) and the row or why it cannot be
/// read. Columns the file lacks read as missing; columns it has beyond the
/// table's are ignored. Rows of a single-column key that `wanted` refuses
/// are skipped (numbered all the same).
pub fn decode<R: ChunkReader + 'static>(
    table: &Table,
    file: R,
    wanted: impl Fn(&str) -> bool,
    mut each: impl FnMut(u64, Result<Row, String>) -> Result<(), String>,
) -> Result<(), String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let mut number = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| format!("unreadable Parquet data: {e}"))?;
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let columns: Vec<Option<Column<'_>>> = positions(table, &names)
            .into_iter()
            .map(|at| at.map(|i| Column::of(batch.column(i).as_ref())).transpose())
            .collect::<Result<_, _>>()?;
        let single_key = match columns.as_slice() {
            [Some(key), ..] if table.entity.len() == 1 => Some(key),
            _ => None,
        };
        for i in 0..batch.num_rows() {
            number += 1;
            // Rows of unwanted entities are skipped before they are built.
            let unwanted = match single_key.map(|key| key.cell(i)) {
                Some(Cell::Text(key)) => !wanted(key),
                Some(Cell::Int(key)) => !wanted(&key.to_string()),
                _ => false,
            };
            if unwanted {
                continue;
            }
            let row = build_row(table, |c| match &columns[c] {
                None => Cell::Absent,
                Some(column) => column.cell(i),
            });
            each(number, row)?;
        }
    }
    Ok(())
}

/// Decode a whole segment (one of Sluice's own) into rows.
pub fn decode_all(table: &Table, bytes: Bytes) -> Result<Vec<Row>, String> {
    decode_wanted(table, bytes, |_| true)
}

/// Decode the rows of a segment (one of Sluice's own) whose entity is
/// `wanted`: with a single-column key, other rows are skipped unbuilt;
/// with a composite key every row is returned for the caller to filter.
pub fn decode_wanted(
    table: &Table,
    bytes: Bytes,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    decode(table, bytes, wanted, |_, row| {
        rows.push(row?);
        Ok(())
    })?;
    Ok(rows)
}

/// A typed view of one Arrow column.
enum Column<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Bool(&'a arrow_array::BooleanArray),
    Int(Box<dyn Fn(usize) -> i64 + 'a>, &'a dyn Array),
    Float(Box<dyn Fn(usize) -> f64 + 'a>, &'a dyn Array),
    Time(Box<dyn Fn(usize) -> i64 + 'a>, &'a dyn Array),
}

impl<'a> Column<'a> {
    fn of(array: &'a dyn Array) -> Result<Self, String> {
        Ok(match array.data_type() {
            DataType::Utf8 => Self::Utf8(array.as_string()),
            DataType::LargeUtf8 => Self::LargeUtf8(array.as_string()),
            DataType::Utf8View => Self::Utf8View(array.as_string_view()),
            DataType::Boolean => Self::Bool(array.as_boolean()),
            DataType::Int8 => int_column(array.as_primitive::<Int8Type>(), array),
            DataType::Int16 => int_column(array.as_primitive::<Int16Type>(), array),
            DataType::Int32 => int_column(array.as_primitive::<Int32Type>(), array),
            DataType::Int64 => int_column(array.as_primitive::<Int64Type>(), array),
            DataType::UInt8 => int_column(array.as_primitive::<UInt8Type>(), array),
            DataType::UInt16 => int_column(array.as_primitive::<UInt16Type>(), array),
            DataType::UInt32 => int_column(array.as_primitive::<UInt32Type>(), array),
            DataType::UInt64 => {
                let a = array.as_primitive::<UInt64Type>();
                Self::Int(Box::new(move |i| a.value(i) as i64), array)
            }
            DataType::Float32 => {
                let a = array.as_primitive::<Float32Type>();
                Self::Float(Box::new(move |i| a.value(i) as f64), array)
            }
            DataType::Float64 => {
                let a = array.as_primitive::<Float64Type>();
                Self::Float(Box::new(move |i| a.value(i)), array)
            }
            DataType::Timestamp(unit, _) => {
                let scaled: Box<dyn Fn(usize) -> i64 + 'a> = match unit {
                    TimeUnit::Second => {
                        let a = array.as_primitive::<TimestampSecondType>();
                        Box::new(move |i| a.value(i) * 1000)
                    }
                    TimeUnit::Millisecond => {
                        let a = array.as_primitive::<TimestampMillisecondType>();
                        Box::new(move |i| a.value(i))
                    }
                    TimeUnit::Microsecond => {
                        let a = array.as_primitive::<TimestampMicrosecondType>();
                        Box::new(move |i| a.value(i).div_euclid(1000))
                    }
                    TimeUnit::Nanosecond => {
                        let a = array.as_primitive::<TimestampNanosecondType>();
                        Box::new(move |i| a.value(i).div_euclid(1_000_000))
                    }
                };
                Self::Time(scaled, array)
            }
            other => {
                return Err(format!(
                    "a column of Arrow type {other} cannot be read; use integers, floats, booleans, strings or timestamps"
                ));
            }
        })
    }

    fn cell(&self, i: usize) -> Cell<'a> {
        let null = |a: &dyn Array| a.is_null(i);
        match self {
            Self::Utf8(a) if a.is_null(i) => Cell::Null,
            Self::Utf8(a) => Cell::Text(a.value(i)),
            Self::LargeUtf8(a) if a.is_null(i) => Cell::Null,
            Self::LargeUtf8(a) => Cell::Text(a.value(i)),
            Self::Utf8View(a) if a.is_null(i) => Cell::Null,
            Self::Utf8View(a) => Cell::Text(a.value(i)),
            Self::Bool(a) if a.is_null(i) => Cell::Null,
            Self::Bool(a) => Cell::Bool(a.value(i)),
            Self::Int(_, a) | Self::Float(_, a) | Self::Time(_, a) if null(*a) => Cell::Null,
            Self::Int(get, _) => Cell::Int(get(i)),
            Self::Float(get, _) => Cell::Float(get(i)),
            Self::Time(get, _) => Cell::Time(get(i)),
        }
    }
}

fn int_column<'a, T>(a: &'a arrow_array::PrimitiveArray<T>, array: &'a dyn Array) -> Column<'a>
where
    T: arrow_array::ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    Column::Int(Box::new(move |i| a.value(i).into()), array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_round_trip_through_parquet() {
        let table = Table::parse(
            r#"name = "t"
            entity = ["user_id", "shop"]
            key_types = { shop = "i64" }
            timestamp = "ts"
            created = "created"
            [features]
            a = "f32"
            b = "f64"
            c = "i64"
            d = "bool"
            e = "string""#,
        )
        .unwrap();
        let rows = vec![
            Row {
                key: "u1|7".into(),
                ts: 1_000,
                created: Some(2_000),
                values: vec![
                    Value::Float(0.5),
                    Value::Float(0.1),
                    Value::Int(-3),
                    Value::Bool(true),
                    Value::Text("fr".into()),
                ]
                .into(),
            },
            Row {
                key: "u2|8".into(),
                ts: -5,
                created: None,
                values: vec![Value::Null; 5].into(),
            },
        ];
        let bytes = encode(&table, &rows).unwrap();
        assert_eq!(decode_all(&table, bytes).unwrap(), rows);
    }
}
