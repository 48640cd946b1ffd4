//! The result cache of pipelines that ask for one (`cache_ttl_secs` in
//! the manifest): a successful answer kept in this node's memory under the
//! pipeline's name, the version that answered and a hash of the canonical
//! input, answered again until it is `cache_ttl_secs` old. The version is
//! part of the key, so a new version (a deploy, an alias move, a rollout's
//! share) never gets an old version's answer. `Cache-Control: no-cache`
//! on a request runs it anyway and keeps the fresh answer.

use super::NodeError;
use crate::cache::{Cache, Weigh};
use crate::registry::Name;
use crate::tensor::{Message, Scalar, TensorData};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A kept answer's key: the pipeline, its version, the input's hash.
type Key = (Name, u64, [u8; 32]);

/// A kept answer.
pub(super) struct Kept {
    /// `name@version` of the pipeline that answered.
    pub pipeline: String,
    /// Its output.
    pub output: Message,
}

impl Weigh for Kept {
    fn weight(&self) -> u64 {
        self.output.byte_size() + self.pipeline.len() as u64 + 128
    }
}

/// How a pipeline request used the result cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Answered from the cache.
    Hit,
    /// Run, and its answer kept.
    Miss,
    /// Run because the request said `Cache-Control: no-cache`; its answer
    /// kept.
    Bypass,
}

impl CacheUse {
    /// Its name, as the `x-sluice-cache` header says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// The answers kept on this node, within a byte budget, and how often
/// they answered.
pub(super) struct Results {
    cache: Cache<Key, Kept, NodeError>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Results {
    pub fn new(budget: u64) -> Self {
        Self {
            cache: Cache::new(budget),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The answer kept for `input` to version `version` of `name`, if it
    /// is younger than `ttl`.
    pub fn get(
        &self,
        name: &Name,
        version: u64,
        input: &[u8; 32],
        ttl: Duration,
    ) -> Option<Arc<Kept>> {
        let key = (name.clone(), version, *input);
        match self.cache.peek(&key) {
            Some((kept, at)) if at.elapsed() < ttl => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(kept);
            }
            Some(_) => self.cache.remove(&key),
            None => {}
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Keep `kept` as the answer for `input` to version `version` of `name`.
    pub fn put(&self, name: &Name, version: u64, input: [u8; 32], kept: Kept) {
        self.cache.insert((name.clone(), version, input), kept);
    }

    /// Forget every answer of versions of `name` that `keep` rejects.
    pub fn retain(&self, name: &Name, keep: impl Fn(u64) -> bool) {
        self.cache.retain(|(n, v, _)| n != name || keep(*v));
    }

    /// Its counters, for `/v1/status`.
    pub fn stats(&self) -> crate::cache::CacheStats {
        crate::cache::CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            ..self.cache.stats()
        }
    }
}

/// A hash of `input` that two requests meaning the same share: a JSON body
/// with its object keys sorted and no insignificant space, tensors and
/// fields in name order, with their types.
pub(super) fn input_hash(input: &Message) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    if let Some(body) = &input.body {
        let media = body.content_type.split(';').next().unwrap_or_default();
        let media = media.trim().to_ascii_lowercase();
        let json = media == "application/json" || media.ends_with("+json");
        // serde_json's maps are ordered by key: re-encoding sorts them.
        let canonical = json
            .then(|| serde_json::from_slice::<serde_json::Value>(&body.bytes).ok())
            .flatten()
            .and_then(|v| serde_json::to_vec(&v).ok());
        part("media", media.as_bytes());
        part("body", canonical.as_deref().unwrap_or(&body.bytes));
    }
    let mut tensors: Vec<_> = input.tensors.iter().collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    for t in tensors {
        part("tensor", t.name.as_bytes());
        let shape: Vec<u8> = t
            .tensor
            .shape
            .iter()
            .flat_map(|d| d.to_le_bytes())
            .collect();
        part("shape", &shape);
        let (kind, bytes): (&str, Vec<u8>) = match &t.tensor.data {
            TensorData::F32(v) => ("f32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::F64(v) => ("f64", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::I32(v) => ("i32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::I64(v) => ("i64", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::U8(v) => ("u8", v.clone()),
            TensorData::Bool(v) => ("bool", v.iter().map(|b| u8::from(*b)).collect()),
            TensorData::String(v) => {
                let mut bytes = Vec::new();
                for s in v {
                    bytes.extend((s.len() as u64).to_le_bytes());
                    bytes.extend(s.as_bytes());
                }
                ("string", bytes)
            }
        };
        part(kind, &bytes);
    }
    let mut fields: Vec<_> = input.fields.iter().collect();
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    for f in fields {
        part("field", f.name.as_bytes());
        match &f.value {
            Scalar::Bool(b) => part("bool", &[u8::from(*b)]),
            Scalar::Int(i) => part("int", &i.to_le_bytes()),
            Scalar::Float(x) => part("float", &x.to_le_bytes()),
            Scalar::Text(t) => part("text", t.as_bytes()),
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Body, Field, NamedTensor, Tensor};

    fn json(text: &str) -> Message {
        Message {
            body: Some(Body {
                content_type: "application/json; charset=utf-8".into(),
                bytes: text.as_bytes().to_vec(),
            }),
            ..Message::default()
        }
    }

    #[test]
    fn the_same_meaning_hashes_alike_and_a_different_one_does_not() {
        assert_eq!(
            input_hash(&json(r#"{"a": 1, "b": [1, 2]}"#)),
            input_hash(&json(r#"{ "b":[1,2],"a":1 }"#))
        );
        assert_ne!(
            input_hash(&json(r#"{"a": 1}"#)),
            input_hash(&json(r#"{"a": 2}"#))
        );
        let tensor = |name: &str, data: TensorData| NamedTensor {
            name: name.into(),
            tensor: Tensor {
                shape: vec![2],
                data,
            },
        };
        let field = |name: &str, value| Field {
            name: name.into(),
            value,
        };
        let message = |tensors: Vec<NamedTensor>, fields: Vec<Field>| Message {
            body: None,
            tensors,
            fields,
        };
        let a = message(
            vec![
                tensor("x", TensorData::F32(vec![1.0, 2.0])),
                tensor("y", TensorData::I64(vec![1, 2])),
            ],
            vec![field("k", Scalar::Int(1)), field("j", Scalar::Bool(true))],
        );
        let mut b = a.clone();
        b.tensors.reverse();
        b.fields.reverse();
        assert_eq!(input_hash(&a), input_hash(&b));
        let mut c = a.clone();
        c.tensors[0].tensor.data = TensorData::F64(vec![1.0, 2.0]);
        assert_ne!(
            input_hash(&a),
            input_hash(&c),
            "a type is part of the meaning"
        );
        let mut d = a.clone();
        d.fields[0].value = Scalar::Float(1.0);
        assert_ne!(input_hash(&a), input_hash(&d));
    }
}
