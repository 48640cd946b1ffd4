//! Feature tables' online reads in process (results in BENCHMARKS.md).
//!
//! A table of 100,000 entities × 20 features (8 f64, 6 i64, 2 f32, 2 bool,
//! 2 string) is ingested into a store, then:
//!
//! - `lookup 1×20`: one entity, every feature, from the cache, the entity
//!   drawn at random per call; each call timed on its own, so the table
//!   shows percentiles, not a mean;
//! - `lookup 100×20`: 100 random entities per call;
//! - `HashMap baseline`: the least any in-memory store does for the same
//!   answer (a `HashMap` get and a copy of the 20 values), same keys, same
//!   number of calls, interleaved with the lookups in rounds;
//! - `miss`: a lookup whose online partition is not in the cache, served
//!   from the tests' S3-compatible server over HTTP on loopback, with the
//!   table's view already cached (`partition`) or a node that has never
//!   read the table (`cold`: alias, version record and manifest too), for
//!   tables that start with the default 8 and with 64 partitions (split
//!   as the 100,000 entities land until each holds at most 4,096).
//!
//! Run with `cargo bench -p sluice --bench features`.

// The tests' S3 server; the benchmark uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/e2e/s3.rs"]
mod s3;

use sluice::cache::{CacheConfig, DocumentCache};
use sluice::features::{FeatureStore, Format, Value};
use sluice::store::{FsStore, ObjectStore};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENTITIES: usize = 100_000;
/// Calls per side and round; rounds alternate the two sides.
const CALLS: usize = 20_000;
const ROUNDS: usize = 10;
const MISSES: usize = 200;

fn table(name: &str, partitions: u32) -> String {
    let mut toml = format!(
        "name = \"{name}\"\nentity = \"user_id\"\ntimestamp = \"event_ts\"\nttl = \"3650d\"\npartitions = {partitions}\n[features]\n"
    );
    for (i, ty) in TYPES.iter().enumerate() {
        toml.push_str(&format!("f{i:02} = \"{ty}\"\n"));
    }
    toml
}

const TYPES: [&str; 20] = [
    "f64", "f64", "f64", "f64", "f64", "f64", "f64", "f64", "i64", "i64", "i64", "i64", "i64",
    "i64", "f32", "f32", "bool", "bool", "string", "string",
];

/// A small deterministic generator (xorshift), so runs compare.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One row per entity, every feature set.
fn rows_csv() -> Vec<u8> {
    let mut random = Random(0x5eed);
    let mut csv = String::from("user_id,event_ts");
    for i in 0..TYPES.len() {
        csv.push_str(&format!(",f{i:02}"));
    }
    csv.push('\n');
    let countries = ["DE", "FR", "US", "BR", "JP", "IN"];
    for user in 0..ENTITIES {
        csv.push_str(&format!("u{user},{}", 1_767_225_600_000 + user as u64));
        for ty in TYPES {
            let r = random.next();
            match ty {
                "f64" | "f32" => csv.push_str(&format!(",{}", (r % 100_000) as f64 / 97.0)),
                "i64" => csv.push_str(&format!(",{}", r % 1000)),
                "bool" => csv.push_str(if r.is_multiple_of(2) {
                    ",true"
                } else {
                    ",false"
                }),
                _ => csv.push_str(&format!(",{}", countries[(r % 6) as usize])),
            }
        }
        csv.push('\n');
    }
    csv.into_bytes()
}

fn feature_store(store: Arc<dyn ObjectStore>) -> FeatureStore {
    let documents = Arc::new(DocumentCache::new(store, CacheConfig::default()));
    FeatureStore::new(documents, CacheConfig::default().feature_bytes)
}

async fn fill(features: &FeatureStore, name: &str, partitions: u32, csv: &[u8]) {
    features
        .apply(&table(name, partitions), false, "bench".into())
        .await
        .expect("apply");
    let reader = std::io::Cursor::new(csv.to_vec());
    let ingested = features
        .ingest(name, Format::Csv, Box::new(reader))
        .await
        .expect("ingest");
    assert_eq!(ingested.committed.entities, ENTITIES as u64);
}

/// p50, p99, p99.9 and the mean of `samples`, in microseconds.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let us = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e6);
    format!(
        "{} | {} | {} | {} | {}",
        samples.len(),
        us(at(0.5)),
        us(at(0.99)),
        us(at(0.999)),
        us(mean)
    )
}

fn keys(random: &mut Random, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("u{}", random.below(ENTITIES)))
        .collect()
}

async fn from_cache(features: &FeatureStore) {
    let all: [&str; 0] = [];
    // The map any in-memory store builds: key → the row's values.
    let lookup = features
        .lookup(
            "users",
            &(0..ENTITIES).map(|u| format!("u{u}")).collect::<Vec<_>>(),
            &all,
        )
        .await
        .expect("warm every partition");
    let map: HashMap<Box<str>, Box<[Value]>> = lookup
        .entities
        .into_iter()
        .map(|e| (e.key.into_boxed_str(), e.values.into_boxed_slice()))
        .collect();

    let mut random = Random(42);
    let (mut one, mut hundred, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let round = keys(&mut random, CALLS);
        for key in &round {
            let started = Instant::now();
            let found = features
                .lookup("users", std::slice::from_ref(key), &all)
                .await;
            one.push(started.elapsed());
            let found = found.expect("lookup");
            assert!(found.entities[0].ts.is_some(), "{key} missing");
            black_box(found);
        }
        for key in &round {
            let started = Instant::now();
            let found: Option<Vec<Value>> = map.get(key.as_str()).map(|v| v.to_vec());
            baseline.push(started.elapsed());
            assert!(found.is_some(), "{key} missing");
            black_box(found);
        }
        for batch in round.chunks(100).take(CALLS / 100 / 5) {
            let started = Instant::now();
            let found = features.lookup("users", batch, &all).await;
            hundred.push(started.elapsed());
            black_box(found.expect("lookup"));
        }
    }
    println!("| call | calls | p50 µs | p99 µs | p99.9 µs | mean µs |");
    println!("|---|---|---|---|---|---|");
    println!("| lookup 1×20 | {} |", summary(&mut one));
    println!("| HashMap baseline 1×20 | {} |", summary(&mut baseline));
    println!("| lookup 100×20 | {} |", summary(&mut hundred));
}

async fn misses(csv: &[u8]) {
    let server = s3::S3Server::start();
    let store: Arc<dyn ObjectStore> = Arc::new(server.store("bench").await);
    let writer = feature_store(store.clone());
    for partitions in [8, 64] {
        fill(&writer, &format!("users{partitions}"), partitions, csv).await;
    }
    let all: [&str; 0] = [];
    println!();
    println!(
        "| miss from S3 | partitions (table.toml → split) | calls | p50 µs | p99 µs | p99.9 µs | mean µs |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut random = Random(7);
    for partitions in [8, 64] {
        let table = format!("users{partitions}");
        let split = writer.view(&table).await.expect("view").manifest.partitions;
        let (mut cold, mut partition) = (Vec::new(), Vec::new());
        for _ in 0..MISSES {
            // A node that has never read the table.
            let node = feature_store(store.clone());
            let key = keys(&mut random, 1);
            let started = Instant::now();
            let found = node.lookup(&table, &key, &all).await;
            cold.push(started.elapsed());
            assert!(found.expect("lookup").entities[0].ts.is_some());
            // The same node, view cached, another partition's entity.
            let other = loop {
                let other = keys(&mut random, 1);
                if sluice::features::partition_of(&other[0], split)
                    != sluice::features::partition_of(&key[0], split)
                {
                    break other;
                }
            };
            let started = Instant::now();
            let found = node.lookup(&table, &other, &all).await;
            partition.push(started.elapsed());
            assert!(found.expect("lookup").entities[0].ts.is_some());
        }
        println!(
            "| cold node | {partitions} → {split} | {} |",
            summary(&mut cold)
        );
        println!(
            "| partition | {partitions} → {split} | {} |",
            summary(&mut partition)
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let csv = rows_csv();
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(FsStore::open(dir.path()).expect("store"));
        let features = feature_store(store);
        fill(&features, "users", 64, &csv).await;
        from_cache(&features).await;
        misses(&csv).await;
    });
}
