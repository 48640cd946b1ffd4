//! The one table of Open Inference Protocol datatypes: their names, the
//! element type each travels as inside Sluice, and their width in the
//! binary tensor encoding. Every codec (OIP JSON and binary, tract,
//! wasi-nn, WIT) reads it from here.

use super::ElementType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An Open Inference Protocol datatype (`FP32`, `INT64`, `BYTES`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Datatype {
    /// `BOOL`.
    Bool,
    /// `UINT8`.
    Uint8,
    /// `UINT16`.
    Uint16,
    /// `UINT32`.
    Uint32,
    /// `UINT64`.
    Uint64,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `FP16`.
    Fp16,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `BYTES` (UTF-8 text inside Sluice).
    Bytes,
}

struct Row {
    datatype: Datatype,
    name: &'static str,
    /// The element type values of this datatype travel as: the contract
    /// has no 8/16-bit signed, unsigned 16-64-bit or half-float lists, so
    /// those travel widened and a model casts them back.
    carried_as: ElementType,
    /// Whether this is the element type's own datatype (what a tensor of
    /// that element type is called on the wire).
    native: bool,
    /// Bytes per element in the binary encoding (`None`: length-prefixed).
    width: Option<usize>,
    /// For integers: the values that can be carried (UINT64 travels as
    /// INT64, so only up to `i64::MAX`).
    range: Option<(i128, i128)>,
    /// One element, for messages: "an i8".
    element: &'static str,
}

const fn row(
    (datatype, name, element): (Datatype, &'static str, &'static str),
    carried_as: ElementType,
    native: bool,
    width: Option<usize>,
) -> Row {
    Row {
        datatype,
        name,
        carried_as,
        native,
        width,
        range: None,
        element,
    }
}

const fn integers(mut row: Row, min: i128, max: i128) -> Row {
    row.range = Some((min, max));
    row
}

use Datatype as D;
use ElementType as E;

const TABLE: [Row; 13] = [
    row((D::Fp16, "FP16", "an f16"), E::F32, false, Some(2)),
    row((D::Fp32, "FP32", "an f32"), E::F32, true, Some(4)),
    row((D::Fp64, "FP64", "a number"), E::F64, true, Some(8)),
    integers(
        row((D::Int8, "INT8", "an i8"), E::I32, false, Some(1)),
        i8::MIN as i128,
        i8::MAX as i128,
    ),
    integers(
        row((D::Int16, "INT16", "an i16"), E::I32, false, Some(2)),
        i16::MIN as i128,
        i16::MAX as i128,
    ),
    integers(
        row((D::Int32, "INT32", "an i32"), E::I32, true, Some(4)),
        i32::MIN as i128,
        i32::MAX as i128,
    ),
    integers(
        row((D::Int64, "INT64", "an i64"), E::I64, true, Some(8)),
        i64::MIN as i128,
        i64::MAX as i128,
    ),
    integers(
        row((D::Uint8, "UINT8", "a u8"), E::U8, true, Some(1)),
        0,
        u8::MAX as i128,
    ),
    integers(
        row((D::Uint16, "UINT16", "a u16"), E::I64, false, Some(2)),
        0,
        u16::MAX as i128,
    ),
    integers(
        row((D::Uint32, "UINT32", "a u32"), E::I64, false, Some(4)),
        0,
        u32::MAX as i128,
    ),
    integers(
        row(
            (
                D::Uint64,
                "UINT64",
                "a u64 up to 9223372036854775807 (UINT64 travels as INT64)",
            ),
            E::I64,
            false,
            Some(8),
        ),
        0,
        i64::MAX as i128,
    ),
    row((D::Bool, "BOOL", "a boolean"), E::Bool, true, Some(1)),
    row((D::Bytes, "BYTES", "a string"), E::String, true, None),
];

impl Datatype {
    fn row(self) -> &'static Row {
        TABLE
            .iter()
            .find(|r| r.datatype == self)
            .expect("every datatype has a row")
    }

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The datatype called `name`, if Sluice knows it.
    pub fn parse(name: &str) -> Option<Self> {
        TABLE.iter().find(|r| r.name == name).map(|r| r.datatype)
    }

    /// The element type its values travel as inside Sluice.
    pub fn carried_as(self) -> ElementType {
        self.row().carried_as
    }

    /// Bytes per element in the binary encoding (`None` for `BYTES`).
    pub fn width(self) -> Option<usize> {
        self.row().width
    }

    /// For an integer datatype, the values that can be carried (inclusive).
    pub fn range(self) -> Option<(i128, i128)> {
        self.row().range
    }

    /// One element, for messages: "an i8".
    pub fn element(self) -> &'static str {
        self.row().element
    }

    /// Every name, for messages: `FP16, FP32, ...`.
    pub fn names() -> String {
        TABLE.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
    }
}

impl ElementType {
    /// The datatype a tensor of this element type is sent as.
    pub fn datatype(self) -> Datatype {
        TABLE
            .iter()
            .find(|r| r.native && r.carried_as == self)
            .map(|r| r.datatype)
            .expect("every element type has a native datatype")
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.datatype().name())
    }
}

impl Serialize for Datatype {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Datatype {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown datatype `{name}`; expected one of {}",
                Self::names()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_round_trips_by_name_and_element_types_have_their_own() {
        for row in &TABLE {
            assert_eq!(Datatype::parse(row.name), Some(row.datatype));
            assert_eq!(row.datatype.name(), row.name);
        }
        for e in [E::F32, E::F64, E::I32, E::I64, E::U8, E::Bool, E::String] {
            assert_eq!(e.datatype().carried_as(), e);
        }
        assert_eq!(E::String.datatype(), D::Bytes);
        assert_eq!(D::Int8.carried_as(), E::I32);
        assert_eq!(D::parse("COMPLEX64"), None);
        assert_eq!(D::Uint64.range(), Some((0, i64::MAX as i128)));
        assert_eq!(D::Fp32.range(), None);
        let json = serde_json::to_string(&D::Uint16).unwrap();
        assert_eq!(json, "\"UINT16\"");
        assert_eq!(serde_json::from_str::<Datatype>(&json).unwrap(), D::Uint16);
        assert!(serde_json::from_str::<Datatype>("\"fp32\"").is_err());
    }
}
