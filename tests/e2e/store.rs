//! The storage contract, run against both backends: the local directory
//! and S3 (the test S3 server over real HTTP).

use crate::s3::S3Server;
use crate::support::{Server, first_tensor, sluice};
use bytes::Bytes;
use serde_json::json;
use sluice::store::{FsStore, ObjectStore, PutMode, Revalidated, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A backend under test; the S3 server lives as long as it does.
struct Backend {
    name: &'static str,
    store: Arc<dyn ObjectStore>,
    _s3: Option<S3Server>,
    _dir: Option<tempfile::TempDir>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).unwrap();
    let s3 = S3Server::start();
    let s3_store = s3.store("contract").await;
    let mut backends = vec![
        Backend {
            name: "fs",
            store: Arc::new(fs),
            _s3: None,
            _dir: Some(dir),
        },
        Backend {
            name: "s3",
            store: Arc::new(s3_store),
            _s3: Some(s3),
            _dir: None,
        },
    ];
    // The same contract against real AWS S3 (or any S3 endpoint), when
    // SLUICE_TEST_S3=s3://BUCKET/PREFIX and AWS credentials are set.
    if let Ok(location) = std::env::var("SLUICE_TEST_S3") {
        let unique = format!("{location}/run-{}", std::process::id());
        backends.push(Backend {
            name: "aws",
            store: sluice::store::open(&unique).await.expect("SLUICE_TEST_S3"),
            _s3: None,
            _dir: None,
        });
    }
    backends
}

#[tokio::test]
async fn objects_round_trip_list_and_delete() {
    for b in backends().await {
        let s = &b.store;
        assert!(s.get("a/b.json").await.unwrap().is_none(), "{}", b.name);
        assert!(!s.exists("a/b.json").await.unwrap());
        s.put("a/b.json", Bytes::from("one"), PutMode::Overwrite)
            .await
            .unwrap();
        s.put("a/c/d.json", Bytes::from("two"), PutMode::Overwrite)
            .await
            .unwrap();
        s.put("z.json", Bytes::from("three"), PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(s.get("a/b.json").await.unwrap().unwrap().bytes, "one");
        assert!(s.exists("a/c/d.json").await.unwrap());
        assert_eq!(
            s.list("a/").await.unwrap(),
            vec!["a/b.json".to_string(), "a/c/d.json".to_string()],
            "{}",
            b.name
        );
        s.delete("a/b.json").await.unwrap();
        s.delete("a/b.json").await.unwrap(); // deleting twice is fine
        assert!(s.get("a/b.json").await.unwrap().is_none());
        assert_eq!(s.list("a/").await.unwrap(), vec!["a/c/d.json".to_string()]);
        assert!(matches!(
            s.get("../escape").await,
            Err(StoreError::InvalidKey(_))
        ));
    }
}

#[tokio::test]
async fn conditional_writes_refuse_stale_writers() {
    for b in backends().await {
        let s = &b.store;
        let key = "f/aliases.json";
        let first = s
            .put(key, Bytes::from("v1"), PutMode::IfAbsent)
            .await
            .unwrap();
        let again = s.put(key, Bytes::from("v1b"), PutMode::IfAbsent).await;
        assert!(
            matches!(again, Err(StoreError::Conflict { current: Some(ref t), .. }) if *t == first),
            "{}: {again:?}",
            b.name
        );
        let second = s
            .put(key, Bytes::from("v2"), PutMode::IfMatch(first.clone()))
            .await
            .unwrap();
        let stale = s
            .put(key, Bytes::from("v3"), PutMode::IfMatch(first.clone()))
            .await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { current: Some(ref t), .. }) if *t == second),
            "{}: {stale:?}",
            b.name
        );
        assert_eq!(s.get(key).await.unwrap().unwrap().bytes, "v2");
        // Conditional reads.
        assert!(matches!(
            s.get_if_changed(key, &second).await.unwrap(),
            Revalidated::Unchanged
        ));
        assert!(matches!(
            s.get_if_changed(key, &first).await.unwrap(),
            Revalidated::Changed(o) if o.bytes == "v2"
        ));
        s.delete(key).await.unwrap();
        assert!(matches!(
            s.get_if_changed(key, &second).await.unwrap(),
            Revalidated::Missing
        ));
        let gone = s
            .put(key, Bytes::from("v4"), PutMode::IfMatch(second))
            .await;
        assert!(
            matches!(gone, Err(StoreError::Conflict { current: None, .. })),
            "{}: {gone:?}",
            b.name
        );
        assert!(s.check_conditional_writes().await.unwrap(), "{}", b.name);
    }
}

#[tokio::test]
async fn racing_writers_exactly_one_wins_each_round_and_no_update_is_lost() {
    for b in backends().await {
        let s = &b.store;
        let key = "race/counter.json";
        // Creation: 8 writers, one winner.
        let created = futures::future::join_all((0..8).map(|i| {
            let s = s.clone();
            async move {
                s.put(key, Bytes::from(format!("0 by {i}")), PutMode::IfAbsent)
                    .await
            }
        }))
        .await;
        assert_eq!(
            created.iter().filter(|r| r.is_ok()).count(),
            1,
            "{}",
            b.name
        );
        assert!(
            created
                .iter()
                .all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict { .. })))
        );
        // Updates: each round, 8 writers holding the same tag race.
        for round in 1..=10u64 {
            let current = s.get(key).await.unwrap().unwrap();
            let results = futures::future::join_all((0..8).map(|i| {
                let (s, etag) = (s.clone(), current.etag.clone());
                async move {
                    s.put(
                        key,
                        Bytes::from(format!("{round} by {i}")),
                        PutMode::IfMatch(etag),
                    )
                    .await
                }
            }))
            .await;
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "{} round {round}: {results:?}", b.name);
            let now = s.get(key).await.unwrap().unwrap();
            assert!(
                std::str::from_utf8(&now.bytes)
                    .unwrap()
                    .starts_with(&format!("{round} by ")),
                "{}",
                b.name
            );
        }
        // Read-modify-write with retries: 8 writers × 5 increments, none lost.
        s.put("race/n", Bytes::from("0"), PutMode::Overwrite)
            .await
            .unwrap();
        let tasks = (0..8).map(|_| {
            let s = s.clone();
            async move {
                for _ in 0..5 {
                    loop {
                        let cur = s.get("race/n").await.unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&cur.bytes).unwrap().parse().unwrap();
                        match s
                            .put(
                                "race/n",
                                Bytes::from((n + 1).to_string()),
                                PutMode::IfMatch(cur.etag),
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
        });
        futures::future::join_all(tasks).await;
        assert_eq!(
            s.get("race/n").await.unwrap().unwrap().bytes,
            "40",
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn blobs_are_verified_against_their_digest() {
    for b in backends().await {
        let s = &b.store;
        let digest = s.put_blob(Bytes::from("component"), None).await.unwrap();
        assert_eq!(s.get_blob(&digest).await.unwrap().unwrap(), "component");
        s.put(
            &digest.blob_key(),
            Bytes::from("tampered"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
        let err = s.get_blob(&digest).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { ref reason, .. } if reason.contains("hash to")),
            "{}: {err}",
            b.name
        );
    }
}

/// From memory, or from an upload spooled to a file (read a part at a
/// time): the same blob, in the same parts.
#[tokio::test]
async fn large_objects_upload_in_parts_with_progress() {
    use std::io::Write;
    for b in backends().await {
        for (spooled, modulus) in [(false, 251), (true, 241)] {
            // 40 MiB: three parts on S3.
            let bytes: Bytes = (0..40u32 << 20)
                .map(|i| (i % modulus) as u8)
                .collect::<Vec<_>>()
                .into();
            let reported = AtomicU64::new(0);
            let report = |n: u64| {
                reported.fetch_max(n, Ordering::Relaxed);
            };
            let digest = if spooled {
                let mut file = tempfile::NamedTempFile::new().unwrap();
                file.write_all(&bytes).unwrap();
                let spooled = sluice::store::Spooled {
                    file,
                    len: bytes.len() as u64,
                    digest: sluice::store::Digest::of(&bytes),
                };
                b.store
                    .put_blob_file(&spooled, Some(&report))
                    .await
                    .unwrap()
            } else {
                b.store
                    .put_blob(bytes.clone(), Some(&report))
                    .await
                    .unwrap()
            };
            assert_eq!(reported.load(Ordering::Relaxed), 40 << 20, "{}", b.name);
            assert_eq!(b.store.get_blob(&digest).await.unwrap().unwrap(), bytes);
            if let Some(s3) = &b._s3 {
                assert_eq!(s3.requests.count("PART", digest.hex()), 3);
            }
        }
    }
}

#[tokio::test]
async fn an_upload_cut_off_halfway_leaves_nothing_behind() {
    let s3 = S3Server::start();
    let store = s3.store("cut").await;
    let bytes: Bytes = vec![7u8; 48 << 20].into();
    // Stop the server as soon as the first part is stored.
    let stop = |_: u64| s3.stop();
    let result = store
        .write("blobs/big", bytes, PutMode::IfAbsent, Some(&stop))
        .await;
    assert!(
        matches!(result, Err(StoreError::Unavailable { .. })),
        "{result:?}"
    );
    s3.resume();
    assert!(store.get("blobs/big").await.unwrap().is_none());
    assert!(store.list("blobs/").await.unwrap().is_empty());
}

/// S3 connections trust Mozilla's roots, compiled in, and the CA files
/// `SSL_CERT_FILE` names (a private CA, as an in-house MinIO has): a node
/// reaches an HTTPS server signed by such a CA only when it is named, and
/// without it refuses to start, saying what to do.
#[tokio::test]
async fn a_node_reaches_s3_over_tls_only_when_its_private_ca_is_named() {
    let s3 = S3Server::start_tls();
    assert!(s3.endpoint().starts_with("https://"));

    let refused = sluice()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--store", &s3.location("tls")])
        .envs(
            s3.env()
                .into_iter()
                .filter(|(var, _)| *var != "SSL_CERT_FILE"),
        )
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .expect("sluice serve");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(stderr.contains("SSL_CERT_FILE"), "{stderr}");
    assert_eq!(s3.requests.count("PUT", ""), 0);

    let node = Server::start_s3(&s3, "tls", 1000);
    node.deploy(
        "scaler",
        "standard-scaler",
        &[("config.mean", "1,2"), ("config.std", "2,4")],
    )
    .await;
    let body = json!({"tensors": [{"name": "features", "datatype": "FP32", "shape": [2], "data": [3.0, 10.0]}]});
    let (status, answer) = node
        .invoke(
            "scaler",
            "application/vnd.sluice.message+json",
            body.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(first_tensor(&answer).3, vec![1.0, 2.0]);
    assert!(
        s3.requests.count("PUT", "blobs/") > 0,
        "the component went to S3 over TLS"
    );
}
