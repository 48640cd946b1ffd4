//! Segments: rows as Parquet files with the table's own column names and
//! types, so Spark, DuckDB and Athena read the history as it is. The same
//! reader takes users' Parquet files for ingestion, whatever integer, float,
//! string or timestamp encoding they chose.

use super::row::{Cell, Row, Value, build_row, key_parts, positions};
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
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, key) in table.entity.iter().enumerate() {
        let parts = rows
            .iter()
            .map(|r| key_parts(&r.key).nth(i).unwrap_or_default());
        columns.push(match key.ty {
            ColumnType::I64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for p in parts {
                    b.append_option(p.parse::<i64>().ok());
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::new();
                for p in parts {
                    b.append_value(p);
                }
                Arc::new(b.finish())
            }
        });
    }
    let mut ts = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    for r in rows {
        ts.append_value(r.ts);
    }
    columns.push(Arc::new(ts.finish()));
    if table.created.is_some() {
        let mut b = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        for r in rows {
            b.append_option(r.created);
        }
        columns.push(Arc::new(b.finish()));
    }
    for (i, f) in table.features.iter().enumerate() {
        let values = rows.iter().map(|r| r.values.get(i).unwrap_or(&Value::Null));
        columns.push(match f.ty {
            ColumnType::F32 => {
                let mut b = Float32Builder::with_capacity(rows.len());
                values.for_each(|v| b.append_option(float(v).map(|f| f as f32)));
                Arc::new(b.finish())
            }
            ColumnType::F64 => {
                let mut b = Float64Builder::with_capacity(rows.len());
                values.for_each(|v| b.append_option(float(v)));
                Arc::new(b.finish())
            }
            ColumnType::I64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                values.for_each(|v| b.append_option(matches!(v, Value::Int(_)).then(|| int_of(v))));
                Arc::new(b.finish())
            }
            ColumnType::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                values.for_each(|v| {
                    b.append_option(match v {
                        Value::Bool(x) => Some(*x),
                        _ => None,
                    })
                });
                Arc::new(b.finish())
            }
            ColumnType::String => {
                let mut b = StringBuilder::new();
                values.for_each(|v| match v {
                    Value::Text(s) => b.append_value(s),
                    _ => b.append_null(),
                });
                Arc::new(b.finish())
            }
        });
    }
    let schema = schema(table);
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        _ => 0,
    }
}

/// Read every row of a Parquet file as rows of `table`, in file order;
/// `each` gets the row's number (from 1) and the row or why it cannot be
/// read. Columns the file lacks read as missing; columns it has beyond the
/// table's are ignored.
pub fn decode<R: ChunkReader + 'static>(
    table: &Table,
    file: R,
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
        for i in 0..batch.num_rows() {
            number += 1;
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
    let mut rows = Vec::new();
    decode(table, bytes, |_, row| {
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
