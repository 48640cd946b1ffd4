//! One row of a feature table in memory, the values it holds, and reading
//! them from text (CSV cells, URL keys) and JSON, with errors that say
//! which column and why.

use super::schema::{ColumnType, Table};
use std::fmt::{self, Write as _};

/// A feature value. `f32` features are held as `f64` (exactly) and written
/// back as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Text(Box<str>),
}

impl Value {
    /// Parse a CSV cell as `ty`; an empty cell is missing.
    pub fn parse(text: &str, ty: ColumnType) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self::Null);
        }
        let wrong = || format!("`{text}` is not {}", article(ty));
        Ok(match ty {
            ColumnType::String => Self::Text(text.into()),
            // Trimmed only when needed: most cells have no spaces.
            ColumnType::I64 => Self::Int(
                text.parse()
                    .or_else(|_| text.trim().parse())
                    .map_err(|_| wrong())?,
            ),
            ColumnType::F32 | ColumnType::F64 => {
                let f: f64 = text
                    .parse()
                    .or_else(|_| text.trim().parse())
                    .map_err(|_| wrong())?;
                Self::Float(if ty == ColumnType::F32 {
                    f as f32 as f64
                } else {
                    f
                })
            }
            ColumnType::Bool => match text.trim() {
                "true" | "True" | "TRUE" | "1" => Self::Bool(true),
                "false" | "False" | "FALSE" | "0" => Self::Bool(false),
                _ => return Err(wrong()),
            },
        })
    }

    /// Read a JSON value as `ty`; `null` is missing.
    pub fn from_json(json: &serde_json::Value, ty: ColumnType) -> Result<Self, String> {
        use serde_json::Value as J;
        let wrong = || format!("{json} is not {}", article(ty));
        Ok(match (json, ty) {
            (J::Null, _) => Self::Null,
            (J::String(s), ColumnType::String) => Self::Text(s.as_str().into()),
            (J::Number(n), ColumnType::I64) => Self::Int(n.as_i64().ok_or_else(wrong)?),
            (J::Number(n), ColumnType::F64) => Self::Float(n.as_f64().ok_or_else(wrong)?),
            (J::Number(n), ColumnType::F32) => {
                Self::Float(n.as_f64().ok_or_else(wrong)? as f32 as f64)
            }
            (J::Bool(b), ColumnType::Bool) => Self::Bool(*b),
            _ => return Err(wrong()),
        })
    }

    /// Approximate heap and inline size, for cache budgets.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Self::Text(s) => s.len(),
                _ => 0,
            }
    }
}

/// As JSON: `null` for missing (and for a NaN or infinity, which JSON
/// cannot hold).
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Int(i) => s.serialize_i64(*i),
            Self::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Self::Float(_) => s.serialize_unit(),
            Self::Text(t) => s.serialize_str(t),
        }
    }
}

fn article(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::F32 => "an f32",
        ColumnType::F64 => "an f64",
        ColumnType::I64 => "an i64 (a whole number)",
        ColumnType::Bool => "a bool (true or false)",
        ColumnType::String => "a string",
    }
}

/// Where composite key parts are joined in a key's text form.
pub const KEY_SEPARATOR: char = '|';

/// One row: its entity key (in text form: the parts joined by
/// [`KEY_SEPARATOR`]), its event and created times (epoch milliseconds) and
/// one value per feature of the schema it was read with.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The entity key's text form.
    pub key: Box<str>,
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// Created time, epoch milliseconds.
    pub created: Option<i64>,
    /// One value per feature.
    pub values: Box<[Value]>,
}

impl Row {
    /// Whether this row wins over `other` as the latest value of its
    /// entity: a later event time, or the same one created later. A tie on
    /// both goes to `self`, the row written later.
    pub fn supersedes(&self, other: &Row) -> bool {
        self.view().supersedes(other)
    }

    /// The row, borrowed.
    pub fn view(&self) -> RowRef<'_> {
        RowRef {
            key: &self.key,
            ts: self.ts,
            created: self.created,
            values: &self.values,
        }
    }

    /// Approximate size in memory.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.key.len()
            + self.values.iter().map(Value::weight).sum::<usize>()
    }
}

/// A row borrowed from where it is held: a [`Row`] or a [`RowBuf`].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// The entity key's text form.
    pub key: &'a str,
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// Created time, epoch milliseconds.
    pub created: Option<i64>,
    /// One value per feature.
    pub values: &'a [Value],
}

impl RowRef<'_> {
    /// See [`Row::supersedes`].
    pub fn supersedes(&self, other: &Row) -> bool {
        (self.ts, self.created.unwrap_or(i64::MIN)) >= (other.ts, other.created.unwrap_or(i64::MIN))
    }

    /// An owned copy.
    pub fn to_row(self) -> Row {
        Row {
            key: self.key.into(),
            ts: self.ts,
            created: self.created,
            values: self.values.into(),
        }
    }
}

/// A row being read, reused from one to the next: reading a file then
/// allocates only for the rows it keeps (and string values).
#[derive(Debug, Default)]
pub struct RowBuf {
    key: String,
    ts: i64,
    created: Option<i64>,
    values: Vec<Value>,
}

impl RowBuf {
    /// The row read last.
    pub fn view(&self) -> RowRef<'_> {
        RowRef {
            key: &self.key,
            ts: self.ts,
            created: self.created,
            values: &self.values,
        }
    }

    /// Read a row of `table` from the cells a source gives for each
    /// column, asked by its position in [`Table::columns`]; the error names
    /// the column and says why.
    pub fn fill<'a>(
        &mut self,
        table: &Table,
        mut cell: impl FnMut(usize) -> Cell<'a>,
    ) -> Result<(), String> {
        let mut key_part = |i: usize| {
            let (c, column) = (cell(i), &table.entity[i]);
            if c.is_missing() {
                return Err(format!("the key column `{}` is missing", column.name));
            }
            c.key_part().map_err(|e| format!("`{}`: {e}", column.name))
        };
        self.key.clear();
        // The common single-column key borrows its cell.
        if table.entity.len() == 1 {
            write_key(table, &[key_part(0)?.as_ref()], &mut self.key)?;
        } else {
            let parts = (0..table.entity.len())
                .map(&mut key_part)
                .collect::<Result<Vec<_>, _>>()?;
            let parts: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
            write_key(table, &parts, &mut self.key)?;
        }
        let mut at = table.entity.len();
        let ts = cell(at);
        at += 1;
        if ts.is_missing() {
            return Err(format!(
                "the timestamp column `{}` is missing",
                table.timestamp
            ));
        }
        self.ts = ts
            .time()
            .map_err(|e| format!("`{}`: {e}", table.timestamp))?;
        self.created = match &table.created {
            None => None,
            Some(name) => {
                let c = cell(at);
                at += 1;
                if c.is_missing() {
                    None
                } else {
                    Some(c.time().map_err(|e| format!("`{name}`: {e}"))?)
                }
            }
        };
        self.values.clear();
        for (i, f) in table.features.iter().enumerate() {
            self.values.push(
                cell(at + i)
                    .value(f.ty)
                    .map_err(|e| format!("`{}`: {e}", f.name))?,
            );
        }
        Ok(())
    }

    /// The row read last, owned.
    pub fn into_row(self) -> Row {
        Row {
            key: self.key.into(),
            ts: self.ts,
            created: self.created,
            values: self.values.into(),
        }
    }
}

/// The text form of a key from its parts, checked against the table's key
/// columns.
pub fn key_text(table: &Table, parts: &[&str]) -> Result<Box<str>, String> {
    let mut text = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    write_key(table, parts, &mut text)?;
    Ok(text.into())
}

/// [`key_text`], appended to `text`.
fn write_key(table: &Table, parts: &[&str], text: &mut String) -> Result<(), String> {
    if parts.len() != table.entity.len() {
        return Err(format!(
            "the key has {} part(s) but table `{}` is keyed by {}",
            parts.len(),
            table.name,
            table
                .entity
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (i, (part, column)) in parts.iter().zip(&table.entity).enumerate() {
        if part.is_empty() {
            return Err(format!("the key column `{}` is empty", column.name));
        }
        if i > 0 {
            text.push(KEY_SEPARATOR);
        }
        match column.ty {
            ColumnType::I64 => {
                let n: i64 = part.trim().parse().map_err(|_| {
                    format!("the key column `{}` is `{part}`, not an i64", column.name)
                })?;
                // Formatting into a String cannot fail.
                let _ = write!(text, "{n}");
            }
            _ => {
                if table.entity.len() > 1 && part.contains(KEY_SEPARATOR) {
                    return Err(format!(
                        "the key column `{}` is `{part}`: parts of a composite key cannot contain `{KEY_SEPARATOR}`",
                        column.name
                    ));
                }
                text.push_str(part);
            }
        }
    }
    Ok(())
}

/// The parts of a key's text form.
pub fn key_parts(key: &str) -> impl Iterator<Item = &str> {
    key.split(KEY_SEPARATOR)
}

/// An event or created time: RFC 3339 (`2026-12-01T10:00:00Z`, any offset,
/// optional fraction) or epoch milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "`{text}` is not a time: write RFC 3339 (2026-12-01T10:00:00Z) or epoch milliseconds"
        )
    })
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0i64, |n, d| n * 10 + (d - b'0') as i64))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
        let frac = &s[start..at.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_minutes = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let minutes = num(at + 1, 2)? * 60 + num(at + 4, 2)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of day `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The UTC date of an epoch-milliseconds time, `YYYY-MM-DD`: the history's
/// partition.
pub fn event_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// An epoch-milliseconds time as RFC 3339 in UTC (milliseconds shown when
/// there are any).
pub struct Rfc3339(pub i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let (y, mo, d) = civil_from_days(ms.div_euclid(86_400_000));
        let in_day = ms.rem_euclid(86_400_000);
        let (h, mi, s, frac) = (
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
            in_day % 1000,
        );
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")?;
        if frac != 0 {
            write!(f, ".{frac:03}")?;
        }
        f.write_str("Z")
    }
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// One input cell, as a source holds it, before it is checked against the
/// column's type.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// The source has no such column.
    Absent,
    /// Missing.
    Null,
    /// Text (a CSV cell, a string).
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A time, epoch milliseconds.
    Time(i64),
    /// A JSON value.
    Json(&'a serde_json::Value),
}

impl<'a> Cell<'a> {
    fn is_missing(&self) -> bool {
        matches!(
            self,
            Cell::Absent | Cell::Null | Cell::Text("") | Cell::Json(serde_json::Value::Null)
        )
    }

    /// As a value of a feature of type `ty`.
    pub fn value(self, ty: ColumnType) -> Result<Value, String> {
        match self {
            Cell::Absent | Cell::Null => Ok(Value::Null),
            Cell::Text(s) => Value::parse(s, ty),
            Cell::Json(j) => Value::from_json(j, ty),
            Cell::Int(i) => match ty {
                ColumnType::I64 => Ok(Value::Int(i)),
                ColumnType::F64 => Ok(Value::Float(i as f64)),
                ColumnType::F32 => Ok(Value::Float(i as f32 as f64)),
                _ => Err(format!("{i} is not {}", article(ty))),
            },
            Cell::Float(f) => match ty {
                ColumnType::F64 => Ok(Value::Float(f)),
                ColumnType::F32 => Ok(Value::Float(f as f32 as f64)),
                _ => Err(format!("{f} is not {}", article(ty))),
            },
            Cell::Bool(b) => match ty {
                ColumnType::Bool => Ok(Value::Bool(b)),
                _ => Err(format!("{b} is not {}", article(ty))),
            },
            Cell::Time(ms) => Err(format!("a time ({}) is not {}", Rfc3339(ms), article(ty))),
        }
    }

    /// As a time.
    fn time(self) -> Result<i64, String> {
        match self {
            Cell::Text(s) => parse_time(s),
            Cell::Json(serde_json::Value::String(s)) => parse_time(s),
            Cell::Json(serde_json::Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("{n} is not a time in epoch milliseconds")),
            Cell::Int(ms) | Cell::Time(ms) => Ok(ms),
            other => Err(format!("{other:?} is not a time")),
        }
    }

    /// As one part of a key, in text.
    fn key_part(self) -> Result<std::borrow::Cow<'a, str>, String> {
        Ok(match self {
            Cell::Text(s) => s.into(),
            Cell::Json(serde_json::Value::String(s)) => s.as_str().into(),
            Cell::Json(serde_json::Value::Number(n)) if n.is_i64() => n.to_string().into(),
            Cell::Int(i) => i.to_string().into(),
            other => return Err(format!("{other:?} cannot be a key")),
        })
    }
}

/// A row of `table` from the cells a source gives: see [`RowBuf::fill`].
pub fn build_row<'a>(table: &Table, cell: impl FnMut(usize) -> Cell<'a>) -> Result<Row, String> {
    let mut row = RowBuf::default();
    row.fill(table, cell)?;
    Ok(row.into_row())
}

/// Where each of `table`'s columns is among a source's `names`.
pub fn positions(table: &Table, names: &[&str]) -> Vec<Option<usize>> {
    table
        .columns()
        .map(|c| names.iter().position(|n| *n == c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_form() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("1764583200000").unwrap(), 1_764_583_200_000);
        assert_eq!(
            parse_time("2025-12-01T10:00:00Z").unwrap(),
            1_764_583_200_000
        );
        assert_eq!(
            parse_time("2025-12-01T11:00:00+01:00").unwrap(),
            1_764_583_200_000
        );
        assert_eq!(
            parse_time("2025-12-01 10:00:00.25Z").unwrap(),
            1_764_583_200_250
        );
        assert_eq!(parse_time("1969-12-31T23:59:59Z").unwrap(), -1000);
        for bad in [
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-12-01",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_and_rfc3339_round_trip() {
        for ms in [0, 1_764_583_200_250, -1000, 951_782_400_000] {
            let text = Rfc3339(ms).to_string();
            assert_eq!(parse_time(&text).unwrap(), ms, "{text}");
        }
        assert_eq!(event_date(1_764_583_200_000), "2025-12-01");
        assert_eq!(event_date(-1), "1969-12-31");
        assert_eq!(Rfc3339(951_782_400_000).to_string(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn cells_parse_by_type() {
        assert_eq!(Value::parse("3", ColumnType::I64), Ok(Value::Int(3)));
        assert_eq!(Value::parse("", ColumnType::I64), Ok(Value::Null));
        assert_eq!(
            Value::parse("0.1", ColumnType::F32),
            Ok(Value::Float(0.1f32 as f64))
        );
        assert!(
            Value::parse("3.5", ColumnType::I64)
                .unwrap_err()
                .contains("not an i64")
        );
        assert!(Value::parse("yes", ColumnType::Bool).is_err());
    }
}
