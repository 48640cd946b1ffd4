//! What a feature table is: the schema users write (`table.toml`), checked
//! once at apply, and the version record a registry keeps of it.

use super::FeatureError;
use crate::registry::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Default freshness: how stale a node's view of a table may get.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(1);
/// Default number of online partitions a table's data starts with (they
/// split as it grows: `data.rs`).
pub const DEFAULT_PARTITIONS: u32 = 8;
/// Most online partitions a table's data may start with.
const MAX_PARTITIONS: u32 = 4096;
/// Most feature columns of one table.
const MAX_FEATURES: usize = 2048;

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 64-bit signed integer.
    I64,
    /// true or false.
    Bool,
    /// UTF-8 text.
    String,
}

impl ColumnType {
    const NAMES: &'static str = "f32, f64, i64, bool or string";

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "f32" => Self::F32,
            "f64" => Self::F64,
            "i64" => Self::I64,
            "bool" => Self::Bool,
            "string" => Self::String,
            _ => return None,
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::I64 => "i64",
            Self::Bool => "bool",
            Self::String => "string",
        })
    }
}

/// One column of the entity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyColumn {
    /// Its name.
    pub name: String,
    /// `string` or `i64`.
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// One feature column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// A feature table's schema, as checked at apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// The table's name.
    pub name: String,
    /// The entity key: one column, or several for a composite key.
    pub entity: Vec<KeyColumn>,
    /// The event-time column.
    pub timestamp: String,
    /// The created-time column, which breaks ties between rows of one
    /// entity with the same event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// How long a value stays valid after its event time, in milliseconds
    /// (`None`: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// How stale a node's view of the table may get, in milliseconds.
    pub freshness_ms: u64,
    /// Online partitions a new data generation starts with (they split as
    /// it grows; changing it changes nothing for existing data).
    pub partitions: u32,
    /// The features, in declaration order.
    pub features: Vec<Feature>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `table.toml` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    name: String,
    entity: OneOrMany,
    #[serde(default)]
    key_types: BTreeMap<String, String>,
    timestamp: String,
    created: Option<String>,
    ttl: Option<String>,
    freshness: Option<String>,
    partitions: Option<u32>,
    description: Option<String>,
    features: toml::Table,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Table {
    /// Parse and check a `table.toml`.
    pub fn parse(text: &str) -> Result<Self, FeatureError> {
        let file: TableFile = toml::from_str(text).map_err(|e| FeatureError::Schema {
            table: None,
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| FeatureError::Schema {
            table: Some(file.name.clone()),
            reason,
        };
        crate::registry::Name::parse(&file.name).map_err(|e| invalid(format!("`name`: {e}")))?;
        let entity = match &file.entity {
            OneOrMany::One(name) => vec![name.clone()],
            OneOrMany::Many(names) => names.clone(),
        };
        if entity.is_empty() {
            return Err(invalid("`entity` names no column".into()));
        }
        let mut keys = Vec::new();
        for name in entity {
            let ty = match file.key_types.get(&name).map(String::as_str) {
                None | Some("string") => ColumnType::String,
                Some("i64") => ColumnType::I64,
                Some(other) => {
                    return Err(invalid(format!(
                        "`key_types.{name}` is `{other}`; a key column is `string` or `i64`"
                    )));
                }
            };
            keys.push(KeyColumn { name, ty });
        }
        if let Some(extra) = file
            .key_types
            .keys()
            .find(|k| !keys.iter().any(|c| &c.name == *k))
        {
            return Err(invalid(format!(
                "`key_types` names `{extra}`, which is not an entity column"
            )));
        }
        let mut features = Vec::new();
        for (name, ty) in &file.features {
            let ty = ty.as_str().and_then(ColumnType::parse).ok_or_else(|| {
                invalid(format!(
                    "feature `{name}` has type {ty:?}; use {}",
                    ColumnType::NAMES
                ))
            })?;
            features.push(Feature {
                name: name.clone(),
                ty,
            });
        }
        if features.is_empty() {
            return Err(invalid("`[features]` declares no feature".into()));
        }
        if features.len() > MAX_FEATURES {
            return Err(invalid(format!(
                "{} features; a table holds at most {MAX_FEATURES}",
                features.len()
            )));
        }
        let duration = |field: &str, value: &Option<String>| -> Result<Option<u64>, FeatureError> {
            value
                .as_deref()
                .map(|s| {
                    humantime::parse_duration(s)
                        .map(|d| d.as_millis() as u64)
                        .map_err(|e| {
                            invalid(format!(
                                "`{field}` = \"{s}\": {e} (write e.g. \"7d\", \"12h\", \"30m\", \"500ms\")"
                            ))
                        })
                })
                .transpose()
        };
        let ttl_ms = duration("ttl", &file.ttl)?;
        if ttl_ms == Some(0) {
            return Err(invalid(
                "`ttl` is 0, which would expire every value at once; leave it out to keep values forever".into(),
            ));
        }
        let freshness_ms =
            duration("freshness", &file.freshness)?.unwrap_or(DEFAULT_FRESHNESS.as_millis() as u64);
        let partitions = file.partitions.unwrap_or(DEFAULT_PARTITIONS);
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(invalid(format!(
                "`partitions` must be between 1 and {MAX_PARTITIONS}, got {partitions}"
            )));
        }
        let table = Table {
            name: file.name.clone(),
            entity: keys,
            timestamp: file.timestamp.clone(),
            created: file.created.clone(),
            ttl_ms,
            freshness_ms,
            partitions,
            features,
            description: file.description.clone(),
        };
        table.check_columns().map_err(invalid)?;
        Ok(table)
    }

    /// Column names are plain identifiers and each names one column.
    fn check_columns(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for name in self.columns() {
            let plain = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !plain {
                return Err(format!(
                    "column `{name}`: use 1-128 of A-Z, a-z, 0-9 and '_', not starting with a digit"
                ));
            }
            if name == "event_date" {
                return Err(
                    "`event_date` is the history's partition column; name the column otherwise"
                        .into(),
                );
            }
            if !seen.insert(name) {
                return Err(format!("column `{name}` is named twice"));
            }
        }
        Ok(())
    }

    /// Every column: key, timestamp, created, features.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.entity
            .iter()
            .map(|k| k.name.as_str())
            .chain([self.timestamp.as_str()])
            .chain(self.created.as_deref())
            .chain(self.features.iter().map(|f| f.name.as_str()))
    }

    /// The index of feature `name`.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }

    /// How `self` (the new schema) would break readers of `old`'s data, if
    /// it would: a removed or retyped column, a changed key, timestamp or
    /// partitioning. Added features and new settings do not.
    pub fn breaks(&self, old: &Table) -> Option<String> {
        if self.entity != old.entity {
            return Some(format!(
                "the entity key changes from {} to {}",
                describe_key(&old.entity),
                describe_key(&self.entity)
            ));
        }
        if self.timestamp != old.timestamp || self.created != old.created {
            return Some("the timestamp or created column changes".into());
        }
        for feature in &old.features {
            match self.features.iter().find(|f| f.name == feature.name) {
                None => return Some(format!("feature `{}` is removed", feature.name)),
                Some(f) if f.ty != feature.ty => {
                    return Some(format!(
                        "feature `{}` changes type from {} to {}",
                        feature.name, feature.ty, f.ty
                    ));
                }
                Some(_) => {}
            }
        }
        None
    }
}

fn describe_key(key: &[KeyColumn]) -> String {
    key.iter()
        .map(|k| format!("{} ({})", k.name, k.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One immutable version of a table's schema. Versions that only add
/// features or change settings share their predecessor's data; a breaking
/// change starts a new, empty data generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableVersion {
    /// The table's name.
    pub name: String,
    /// The version number, from 1.
    pub version: u64,
    /// The schema.
    pub table: Table,
    /// The data generation this version reads and writes: the version that
    /// started it (0 before numbering: this version's own).
    pub data: u64,
    /// When it was applied (RFC 3339, UTC).
    pub created_at: String,
    /// Who applied it.
    pub created_by: String,
}

impl Record for TableVersion {
    const KIND: &'static str = "tables";
    const NOUN: &'static str = "table";

    fn version(&self) -> u64 {
        self.version
    }

    fn numbered(self, version: u64) -> Self {
        let data = if self.data == 0 { version } else { self.data };
        Self {
            version,
            data,
            ..self
        }
    }

    fn same_content(&self, other: &Self) -> bool {
        // A new data generation (`data` 0) is never the same as a version
        // with data.
        self.table == other.table && self.data == other.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_STATS: &str = r#"
        name = "user_stats"
        entity = "user_id"
        timestamp = "event_ts"
        created = "created_ts"
        ttl = "7d"
        [features]
        txn_count_7d = "i64"
        avg_amount_7d = "f64"
        country = "string"
    "#;

    #[test]
    fn fuzz_table_schemas_parse_into_checked_tables_or_are_refused_and_never_panic() {
        use crate::fuzz::{TOML_TOKENS, iterations, run};
        let keys: &[u8] = br#"
            name = "clicks"
            entity = ["user_id", "item"]
            key_types = { item = "i64" }
            timestamp = "ts"
            freshness = "5s"
            partitions = 16
            [features]
            n = "i64"
            rate = "f32"
        "#;
        run(
            18,
            iterations(),
            &[USER_STATS.as_bytes(), keys],
            TOML_TOKENS,
            |_, input| {
                let Ok(text) = std::str::from_utf8(input) else {
                    return false;
                };
                match Table::parse(text) {
                    Ok(table) => {
                        assert!(table.columns().count() > 0);
                        true
                    }
                    Err(e) => {
                        assert!(matches!(e, FeatureError::Schema { .. }), "{e:?}");
                        false
                    }
                }
            },
        );
    }

    #[test]
    fn the_documented_table_parses() {
        let t = Table::parse(USER_STATS).unwrap();
        assert_eq!(t.entity[0].name, "user_id");
        assert_eq!(t.entity[0].ty, ColumnType::String);
        assert_eq!(t.ttl_ms, Some(7 * 24 * 3600 * 1000));
        assert_eq!(t.freshness_ms, 1000);
        let names: Vec<_> = t.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["txn_count_7d", "avg_amount_7d", "country"]);
    }

    #[test]
    fn composite_and_integer_keys() {
        let t = Table::parse(
            r#"name = "pairs"
            entity = ["user_id", "merchant_id"]
            key_types = { merchant_id = "i64" }
            timestamp = "ts"
            [features]
            n = "i64""#,
        )
        .unwrap();
        assert_eq!(t.entity[1].ty, ColumnType::I64);
        assert_eq!(t.ttl_ms, None);
    }

    #[test]
    fn bad_schemas_say_what_is_wrong() {
        let cases = [
            (
                USER_STATS.replace("\"i64\"", "\"int\""),
                "use f32, f64, i64",
            ),
            (USER_STATS.replace("\"7d\"", "\"seven days\""), "`ttl`"),
            (USER_STATS.replace("country", "user_id"), "named twice"),
            (
                USER_STATS.replace("\"user_stats\"", "\"User Stats\""),
                "`name`",
            ),
            (USER_STATS.replace("ttl", "tll"), "unknown field"),
        ];
        for (text, expected) in cases {
            let e = Table::parse(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn removing_or_retyping_breaks_adding_does_not() {
        let old = Table::parse(USER_STATS).unwrap();
        let added = Table::parse(&format!("{USER_STATS}\nnew_one = \"bool\"")).unwrap();
        assert_eq!(added.breaks(&old), None);
        let removed = Table::parse(&USER_STATS.replace("country = \"string\"", "")).unwrap();
        assert!(
            removed
                .breaks(&old)
                .unwrap()
                .contains("`country` is removed")
        );
        let retyped = Table::parse(&USER_STATS.replace("\"f64\"", "\"f32\"")).unwrap();
        assert!(retyped.breaks(&old).unwrap().contains("from f64 to f32"));
    }
}
