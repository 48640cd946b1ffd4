//! The feature store against a real directory store: point-in-time
//! semantics, all-or-nothing ingestion, concurrent writers, TTL and
//! freshness online. (The same contract against the S3 test server and
//! through the HTTP API and the CLI is in tests/e2e/features.rs.)

use super::*;
use crate::cache::CacheConfig;
use crate::store::{FsStore, ObjectStore};

fn store_at(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    Arc::new(FsStore::open(dir).unwrap())
}

fn feature_store(store: Arc<dyn ObjectStore>) -> Arc<FeatureStore> {
    let documents = Arc::new(DocumentCache::new(store, CacheConfig::default()));
    Arc::new(FeatureStore::new(documents, 64 << 20))
}

const TABLE: &str = r#"
    name = "user_stats"
    entity = "user_id"
    timestamp = "event_ts"
    created = "created_ts"
    ttl = "1h"
    freshness = "200ms"
    [features]
    n = "i64"
    x = "f64"
"#;

async fn ingest_csv(
    store: &FeatureStore,
    table: &str,
    csv: &str,
) -> Result<Ingested, FeatureError> {
    let reader = std::io::Cursor::new(csv.as_bytes().to_vec());
    store.ingest(table, Format::Csv, Box::new(reader)).await
}

/// Minutes after 2026-01-01T00:00:00Z, as RFC 3339.
fn at(minutes: i64) -> String {
    Rfc3339(1_767_225_600_000 + minutes * 60_000).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_export_matches_a_hand_written_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    store.apply(TABLE, false, "test".into()).await.unwrap();
    let first = format!(
        "user_id,event_ts,created_ts,n,x\n\
         u1,{},{},1,0.5\n\
         u1,{},{},2,\n\
         u1,{},{},3,1.5\n\
         u2,{},,10,2.5\n",
        at(10),
        at(10),
        at(20),
        at(20),
        at(20),
        at(25),
        at(0),
    );
    let report = ingest_csv(&store, "user_stats", &first).await.unwrap();
    assert_eq!(report.committed.rows, 4);
    // Late data: older than u1's online value, so history only.
    let late = format!("user_id,event_ts,n,x\nu1,{},0,9.5\n", at(5));
    let report = ingest_csv(&store, "user_stats", &late).await.unwrap();
    assert_eq!((report.committed.late, report.committed.updated), (1, 0));

    let entities = format!(
        "user_id,timestamp,label\n\
         u1,{},a\n\
         u1,{},b\n\
         u1,{},c\n\
         u1,{},d\n\
         u1,{},e\n\
         u2,{},f\n\
         u3,{},g\n\
         u2,{},h\n",
        at(20), // the tie at 20 goes to the row created later: 3
        at(0),  // before any u1 row: null
        at(7),  // the late row at 5: 0
        at(15), // the row at 10: 1
        at(90), // the newest (20) is 70 min old, past the 1 h TTL: null
        at(30), // 10
        at(30), // unknown entity: null
        at(61), // 61 min after u2's only row: null
    );
    let mut out = Vec::new();
    let runtime = tokio::runtime::Handle::current();
    let specs = vec!["user_stats:n,x".parse().unwrap()];
    let exported = tokio::task::block_in_place(|| {
        store.export(
            &runtime,
            entities.as_bytes(),
            &specs,
            "timestamp",
            OutputFormat::Csv,
            &mut out,
        )
    })
    .unwrap();
    let expected = format!(
        "user_id,timestamp,label,n,x\n\
         u1,{},a,3,1.5\n\
         u1,{},b,,\n\
         u1,{},c,0,9.5\n\
         u1,{},d,1,0.5\n\
         u1,{},e,,\n\
         u2,{},f,10,2.5\n\
         u3,{},g,,\n\
         u2,{},h,,\n",
        at(20),
        at(0),
        at(7),
        at(15),
        at(90),
        at(30),
        at(30),
        at(61),
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert_eq!(exported.rows, 8);
    assert_eq!(exported.found, 8);
    assert_eq!(exported.scanned, 5);

    // Parquet output holds the same values, typed.
    let mut parquet = Vec::new();
    tokio::task::block_in_place(|| {
        store.export(
            &runtime,
            entities.as_bytes(),
            &specs,
            "timestamp",
            OutputFormat::Parquet,
            &mut parquet,
        )
    })
    .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(parquet),
    )
    .unwrap()
    .build()
    .unwrap();
    let batch = reader.into_iter().next().unwrap().unwrap();
    let n = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(
        batch.column_by_name("n").unwrap(),
    );
    let n: Vec<Option<i64>> = n.iter().collect();
    assert_eq!(
        n,
        [Some(3), None, Some(0), Some(1), None, Some(10), None, None]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_row_rejects_the_whole_ingest_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    store.apply(TABLE, false, "test".into()).await.unwrap();
    let good = format!("u1,{},,1,0.5\n", at(0));
    let cases = [
        (
            format!(
                "user_id,event_ts,created_ts,n,x\n{good}u2,{},,one,0.5\n",
                at(1)
            ),
            2,
            "`n`: `one` is not an i64",
        ),
        (
            format!(
                "user_id,event_ts,created_ts,n,x\n{good}{good},{},,1,0.5\n",
                at(1)
            ),
            3,
            "key column `user_id` is missing",
        ),
        (
            format!("user_id,event_ts,created_ts,n,x\n{good}u2,noon,,1,0.5\n"),
            2,
            "`event_ts`: `noon` is not a time",
        ),
        (
            format!("user_id,event_ts,created_ts,n,x\n{good}u2,{},,1\n", at(1)),
            2,
            "has 4 fields where the header has 5",
        ),
        (
            format!(
                "user_id,event_ts,created_ts,n,x\n{good}u2,{},,1,1e999x\n",
                at(1)
            ),
            2,
            "`x`: `1e999x` is not an f64",
        ),
    ];
    for (csv, row, reason) in cases {
        let e = ingest_csv(&store, "user_stats", &csv).await.unwrap_err();
        match &e {
            FeatureError::BadRow { row: r, .. } => assert_eq!(*r, row, "{e}"),
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains(reason), "{e}");
        assert!(e.to_string().contains("nothing was ingested"), "{e}");
    }
    let e = ingest_csv(&store, "user_stats", "user_id,event_ts,nn\n")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("column `nn` is not in table `user_stats`"),
        "{e}"
    );
    // Nothing applied, nothing left behind.
    let keys = store.documents.store().list("features/").await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let lookup = store
        .lookup("user_stats", &["u1"], &[] as &[&str])
        .await
        .unwrap();
    assert_eq!(lookup.entities[0].ts, None);
    // JSON lines: the same checks.
    let jsonl = format!(
        "{{\"user_id\": \"u1\", \"event_ts\": \"{}\", \"n\": 1}}\n{{\"user_id\": \"u2\", \"event_ts\": \"{}\", \"n\": 1.5}}\n",
        at(0),
        at(1)
    );
    let e = store
        .ingest(
            "user_stats",
            Format::Jsonl,
            Box::new(std::io::Cursor::new(jsonl.into_bytes())),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FeatureError::BadRow { row: 2, .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn online_reads_honour_the_ttl_and_answer_unknown_entities_with_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    store.apply(TABLE, false, "test".into()).await.unwrap();
    let now = row::now_ms();
    let csv = format!(
        "user_id,event_ts,n,x\nfresh,{},1,0.25\nstale,{},2,0.5\n",
        now - 60_000,
        now - 2 * 3_600_000
    );
    ingest_csv(&store, "user_stats", &csv).await.unwrap();
    let lookup = store
        .lookup("user_stats", &["stale", "fresh", "nobody"], &["x", "n"])
        .await
        .unwrap();
    let got: Vec<_> = lookup
        .entities
        .iter()
        .map(|e| (e.key.as_str(), e.ts.is_some(), e.values.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("stale", false, vec![Value::Null, Value::Null]),
            ("fresh", true, vec![Value::Float(0.25), Value::Int(1)]),
            ("nobody", false, vec![Value::Null, Value::Null]),
        ]
    );
    let json = serde_json::to_value(lookup.json(&lookup.entities[1])).unwrap();
    assert_eq!(json["user_id"], "fresh");
    assert_eq!(json["features"]["n"], 1);
    assert_eq!(json["event_ts"], Rfc3339(now - 60_000).to_string());
    let e = store
        .lookup("user_stats", &["fresh"], &["nope"])
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("has no feature `nope`; its features: n, x"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_ingesting_at_once_both_land_and_each_sees_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        feature_store(store_at(dir.path())),
        feature_store(store_at(dir.path())),
    );
    a.apply(TABLE, false, "test".into()).await.unwrap();
    let now = row::now_ms();
    let rows = |prefix: &str| {
        let mut csv = String::from("user_id,event_ts,n\n");
        for i in 0..2000 {
            csv.push_str(&format!("{prefix}{i},{now},{i}\n"));
        }
        csv
    };
    // B reads before A writes: its view is then at most 200 ms stale.
    assert_eq!(
        b.lookup("user_stats", &["a7"], &["n"])
            .await
            .unwrap()
            .entities[0]
            .ts,
        None
    );
    let (rows_a, rows_b) = (rows("a"), rows("b"));
    let (ra, rb) = tokio::join!(
        ingest_csv(&a, "user_stats", &rows_a),
        ingest_csv(&b, "user_stats", &rows_b)
    );
    assert_eq!(
        ra.unwrap().committed.rows + rb.unwrap().committed.rows,
        4000
    );
    let view = a.load_view("user_stats".into(), None).await.unwrap();
    assert_eq!((view.manifest.rows, view.manifest.entities()), (4000, 4000));
    // B sees A's rows once its view is older than the freshness interval.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let lookup = b
        .lookup("user_stats", &["a7", "b1999"], &["n"])
        .await
        .unwrap();
    let values: Vec<_> = lookup
        .entities
        .iter()
        .map(|e| e.values[0].clone())
        .collect();
    assert_eq!(values, [Value::Int(7), Value::Int(1999)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn breaking_changes_need_a_new_version_which_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    let (v1, created) = store.apply(TABLE, false, "test".into()).await.unwrap();
    assert!(created);
    assert!(!store.apply(TABLE, false, "test".into()).await.unwrap().1);
    let now = row::now_ms();
    ingest_csv(
        &store,
        "user_stats",
        &format!("user_id,event_ts,n\nu1,{now},5\n"),
    )
    .await
    .unwrap();
    // Adding a feature keeps the data.
    let added = format!("{TABLE}\ncountry = \"string\"");
    let (v2, _) = store.apply(&added, false, "test".into()).await.unwrap();
    assert_eq!((v2.version, v2.data), (2, v1.data));
    let lookup = store
        .lookup("user_stats", &["u1"], &["n", "country"])
        .await
        .unwrap();
    assert_eq!(lookup.entities[0].values, [Value::Int(5), Value::Null]);
    // Retyping is refused, then accepted as a new, empty version.
    let retyped = added.replace("n = \"i64\"", "n = \"f64\"");
    let e = store
        .apply(&retyped, false, "test".into())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("feature `n` changes type from i64 to f64"),
        "{e}"
    );
    assert!(e.to_string().contains("--new-version"), "{e}");
    let (v3, _) = store.apply(&retyped, true, "test".into()).await.unwrap();
    assert_eq!((v3.version, v3.data), (3, 3));
    let lookup = store.lookup("user_stats", &["u1"], &["n"]).await.unwrap();
    assert_eq!(lookup.entities[0].values, [Value::Null]);
    // Version 2 still reads its data.
    let lookup = store.lookup("user_stats@2", &["u1"], &["n"]).await.unwrap();
    assert_eq!(lookup.entities[0].values, [Value::Int(5)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_appends_join_one_commit_and_answer_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    store.apply(TABLE, false, "test".into()).await.unwrap();
    let now = row::now_ms();
    let appends = (0..20).map(|i| {
        let store = store.clone();
        async move {
            let row = serde_json::json!({"user_id": format!("s{i}"), "event_ts": now, "n": i});
            store.append("user_stats", &[row]).await
        }
    });
    let results = futures::future::join_all(appends).await;
    let commits: std::collections::BTreeSet<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().committed.rows)
        .collect();
    // Joined: fewer commits than requests, every row durable.
    let view = store.load_view("user_stats".into(), None).await.unwrap();
    assert_eq!(view.manifest.rows, 20);
    assert!(
        view.manifest.commits < 20,
        "{} commits",
        view.manifest.commits
    );
    assert!(commits.iter().all(|rows| *rows >= 1));
    let lookup = store.lookup("user_stats", &["s19"], &["n"]).await.unwrap();
    assert_eq!(lookup.entities[0].values, [Value::Int(19)]);
    let bad = serde_json::json!({"user_id": "s1", "event_ts": now, "n": "x"});
    let e = store.append("user_stats", &[bad]).await.unwrap_err();
    assert!(e.to_string().starts_with("row 1: `n`"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_merges_small_segments_and_sweeps_what_no_reader_needs() {
    let dir = tempfile::tempdir().unwrap();
    let objects = store_at(dir.path());
    let store = feature_store(objects.clone());
    store.apply(TABLE, false, "test".into()).await.unwrap();
    for i in 0..5 {
        let csv = format!(
            "user_id,event_ts,n,x\nu{i},{},{i},0.5\nu1,{},{i},1.5\n",
            at(i),
            at(i + 1)
        );
        ingest_csv(&store, "user_stats", &csv).await.unwrap();
    }
    // Another date: a single segment, left alone.
    let other = format!("user_id,event_ts,n,x\nu9,{},9,9.5\n", at(-60));
    ingest_csv(&store, "user_stats", &other).await.unwrap();
    // Files of ingests that never committed: one written long ago, one
    // just now (an ingest that may still be running).
    let history = "features/user_stats/data/1/history/event_date=2026-01-01";
    let old_orphan = format!("{history}/10-1-0.parquet");
    let young_orphan = format!("{history}/{}.parquet", data::writer_id());
    for key in [&old_orphan, &young_orphan] {
        objects
            .put(
                key,
                bytes::Bytes::from_static(b"x"),
                crate::store::PutMode::IfAbsent,
            )
            .await
            .unwrap();
    }

    let export = || {
        let entities = format!(
            "user_id,timestamp\nu1,{}\nu1,{}\nu3,{}\nu9,{}\nu4,{}\n",
            at(3),
            at(30),
            at(30),
            at(0),
            at(2)
        );
        let mut out = Vec::new();
        let runtime = tokio::runtime::Handle::current();
        let specs = vec!["user_stats:n,x".parse().unwrap()];
        tokio::task::block_in_place(|| {
            store.export(
                &runtime,
                entities.as_bytes(),
                &specs,
                "timestamp",
                OutputFormat::Csv,
                &mut out,
            )
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    };
    let before = export();
    let online_before = store
        .lookup("user_stats", &["u1", "u3", "u9"], &["n"])
        .await
        .unwrap();

    let report = store.compact("user_stats", Duration::ZERO).await.unwrap();
    assert_eq!((report.segments_before, report.segments_after), (6, 2));
    assert_eq!(report.rows_merged, 10);
    assert_eq!(report.retired_kept, 0);
    assert_eq!(export(), before);
    assert!(before.contains(&format!("u1,{},4,1.5", at(30))), "{before}");
    let online_after = store
        .lookup("user_stats", &["u1", "u3", "u9"], &["n"])
        .await
        .unwrap();
    assert_eq!(online_after.entities, online_before.entities);

    // What is left: the manifest, what it names, and the young orphan.
    let (manifest, _) = data::read_manifest(
        objects.as_ref(),
        &Location {
            table: "user_stats".into(),
            generation: 1,
        },
        8,
    )
    .await
    .unwrap();
    assert!(manifest.retired.is_empty());
    let mut expected: Vec<String> = manifest
        .segments
        .iter()
        .map(|s| s.key.clone())
        .chain(manifest.online.iter().flatten().map(|o| o.key.clone()))
        .chain([
            "features/user_stats/data/1/manifest.json".to_string(),
            young_orphan.clone(),
        ])
        .collect();
    expected.sort();
    let mut left = objects.list("features/user_stats/data/1/").await.unwrap();
    left.sort();
    assert_eq!(left, expected);
    // Old orphan, 5 replaced segments and the superseded online partitions.
    assert!(report.swept >= 6, "{report:?}");

    // Compacting again has nothing to merge; a grace period keeps what a
    // compaction replaces.
    let csv = format!("user_id,event_ts,n,x\nu7,{},7,7.5\n", at(50));
    ingest_csv(&store, "user_stats", &csv).await.unwrap();
    let report = store
        .compact("user_stats", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((report.segments_before, report.segments_after), (3, 2));
    assert_eq!(report.retired_kept, 2);
    assert_eq!(report.swept, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_ingests_stream_through_and_a_broken_file_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    store.apply(TABLE, false, "test".into()).await.unwrap();
    // Within the TTL, and all of one event date.
    let now = row::now_ms();
    let start = now - now.rem_euclid(86_400_000).min(600_000);
    let csv = format!(
        "user_id,event_ts,created_ts,n,x\nu1,{},,1,0.5\nu2,{},{},2,\nu1,{},,3,1.5\n",
        start,
        start + 1,
        start + 2,
        start + 5
    );
    ingest_csv(&store, "user_stats", &csv).await.unwrap();
    // The history segment the ingest wrote is itself a Parquet file with
    // the table's columns: ingest it into a twin table, a few bytes at a
    // time as an HTTP body arrives.
    let date = dir
        .path()
        .join("features/user_stats/data/1/history")
        .join(format!("event_date={}", row::event_date(start)));
    let segments: Vec<_> = std::fs::read_dir(&date).unwrap().collect();
    assert_eq!(segments.len(), 1, "{date:?}");
    let parquet = std::fs::read(segments[0].as_ref().unwrap().path()).unwrap();
    let twin = TABLE.replace("\"user_stats\"", "\"twin\"");
    store.apply(&twin, false, "test".into()).await.unwrap();
    struct Trickle(std::io::Cursor<Vec<u8>>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }
    let ingested = store
        .ingest(
            "twin",
            Format::Parquet,
            Box::new(Trickle(std::io::Cursor::new(parquet.clone()))),
        )
        .await
        .unwrap();
    assert_eq!(
        (ingested.committed.rows, ingested.committed.entities),
        (3, 2)
    );
    let keys = ["u1", "u2"];
    let names: [&str; 0] = [];
    let (a, b) = (
        store.lookup("user_stats", &keys, &names).await.unwrap(),
        store.lookup("twin", &keys, &names).await.unwrap(),
    );
    assert_eq!(a.entities, b.entities);
    assert_eq!(b.entities[0].values, [Value::Int(3), Value::Float(1.5)]);
    assert_eq!(b.entities[1].values, [Value::Int(2), Value::Null]);

    // Cut short, the file has no footer: refused, the twin unchanged.
    let cut = parquet[..parquet.len() / 2].to_vec();
    let e = store
        .ingest("twin", Format::Parquet, Box::new(std::io::Cursor::new(cut)))
        .await
        .unwrap_err();
    assert!(e.is_input(), "{e}");
    let after = store.view("twin").await.unwrap();
    assert_eq!((after.manifest.rows, after.manifest.commits), (3, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_ingest_lands_whole_in_one_segment_per_date_with_the_latest_online() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    let forever = TABLE.replace("ttl = \"1h\"", "");
    store.apply(&forever, false, "test".into()).await.unwrap();
    // 30,000 rows over three dates, dates interleaved, 1,000 entities:
    // several batches per date reach the encoder out of order.
    let day = 86_400_000;
    let today = 1_767_225_600_000; // 2026-01-01
    let mut csv = String::from("user_id,event_ts,n,x\n");
    for i in 0..30_000i64 {
        let ts = today - (i % 3) * day + i;
        csv.push_str(&format!("u{},{ts},{i},{}.5\n", i % 1000, i % 7));
    }
    let ingested = ingest_csv(&store, "user_stats", &csv).await.unwrap();
    assert_eq!(
        (ingested.committed.rows, ingested.committed.entities),
        (30_000, 1000)
    );
    let view = store.view("user_stats").await.unwrap();
    let mut dates: Vec<_> = view
        .manifest
        .segments
        .iter()
        .map(|s| {
            assert_eq!(row::event_date(s.min_ts), s.date, "{s:?}");
            assert_eq!(row::event_date(s.max_ts), s.date, "{s:?}");
            (s.date.clone(), s.rows)
        })
        .collect();
    dates.sort();
    assert_eq!(
        dates,
        [
            (row::event_date(today - 2 * day), 10_000),
            (row::event_date(today - day), 10_000),
            (row::event_date(today), 10_000),
        ]
    );
    // Entity u1's rows are i = 1, 1001, ..., 29001; its newest is the
    // latest event time among them.
    let newest = (0..30_000i64)
        .filter(|i| i % 1000 == 1)
        .max_by_key(|i| today - (i % 3) * day + i)
        .unwrap();
    let lookup = store
        .lookup("user_stats", &["u1"], &["n", "x"])
        .await
        .unwrap();
    assert_eq!(
        lookup.entities[0].values,
        [Value::Int(newest), Value::Float((newest % 7) as f64 + 0.5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn online_partitions_split_as_the_table_grows_and_every_entity_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = feature_store(store_at(dir.path()));
    let table = TABLE
        .replace("ttl = \"1h\"", "")
        .replace("[features]", "partitions = 2\n[features]");
    store.apply(&table, false, "test".into()).await.unwrap();
    let ingest = |from: i64, to: i64| {
        let mut csv = String::from("user_id,event_ts,n,x\n");
        for i in from..to {
            csv.push_str(&format!("u{i},{},{i},0.5\n", 1_767_225_600_000 + i));
        }
        csv
    };
    // 8,000 entities fit in 2 partitions; 72,000 more need 32 (4k each).
    ingest_csv(&store, "user_stats", &ingest(0, 8_000))
        .await
        .unwrap();
    assert_eq!(
        store.view("user_stats").await.unwrap().manifest.partitions,
        2
    );
    let ingested = ingest_csv(&store, "user_stats", &ingest(8_000, 80_000))
        .await
        .unwrap();
    assert_eq!(ingested.committed.entities, 80_000);
    let view = store.view("user_stats").await.unwrap();
    assert_eq!(view.manifest.partitions, 32);
    assert!(
        view.manifest
            .online
            .iter()
            .flatten()
            .all(|o| o.rows <= 4 * 1024),
        "{:?}",
        view.manifest.online
    );
    let keys: Vec<String> = (0..80_000).step_by(997).map(|i| format!("u{i}")).collect();
    let lookup = store.lookup("user_stats", &keys, &["n"]).await.unwrap();
    for (key, entity) in keys.iter().zip(&lookup.entities) {
        assert_eq!(
            entity.values,
            [Value::Int(key[1..].parse().unwrap())],
            "{key}"
        );
    }
    // A later small commit touches one partition of the 32.
    ingest_csv(&store, "user_stats", &ingest(5, 6))
        .await
        .unwrap();
    let after = store.view("user_stats").await.unwrap();
    let changed = (0..32)
        .filter(|&p| after.manifest.online[p] != view.manifest.online[p])
        .count();
    assert_eq!(changed, 1);
}
