//! Feature tables through the real binary: `sluice features` against a
//! node, the data-plane and control-plane routes, a featurizer stage reading
//! them, two nodes sharing a table through the S3 test server, an ingest
//! killed midway, and DuckDB reading the offline history.

use crate::s3::S3Server;
use crate::support::{Server, client, eventually, python, sluice};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const USER_STATS: &str = r#"
name = "user_stats"
entity = "user_id"
timestamp = "event_ts"
created = "created_ts"
ttl = "3650d"
freshness = "500ms"
[features]
txn_count_7d = "i64"
avg_amount_7d = "f64"
country = "string"
"#;

const ROWS: &str = "\
user_id,event_ts,created_ts,txn_count_7d,avg_amount_7d,country
u1,2026-01-01T00:10:00Z,2026-01-01T00:10:00Z,1,10.5,FR
u1,2026-01-01T00:20:00Z,2026-01-01T00:20:00Z,2,,FR
u1,2026-01-01T00:20:00Z,2026-01-01T00:21:00Z,3,12.25,DE
u2,2026-01-02T08:00:00Z,,7,99.5,US
u1,2026-01-01T00:05:00Z,,0,1.5,FR
";

/// Run `sluice ARGS`: (success, stdout + stderr).
fn run(args: &[&str]) -> (bool, String) {
    let output = sluice().args(args).output().expect("run sluice");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = client().get(server.url(path)).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(
    server: &Server,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let response = client()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn apply(server: &Server, table: &str) -> (u16, Value) {
    let name = table
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .expect("a name")
        .trim_matches('"')
        .to_string();
    let response = client()
        .put(server.url(&format!("/v1/tables/{name}")))
        .body(table.to_string())
        .send()
        .await
        .expect("PUT table");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tables_are_applied_ingested_read_and_exported_through_the_cli_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_on(&data, &[]);
    let url = server.url("");
    std::fs::write(dir.path().join("table.toml"), USER_STATS).unwrap();
    std::fs::write(dir.path().join("rows.csv"), ROWS).unwrap();
    let table_toml = dir.path().join("table.toml").display().to_string();
    let rows_csv = dir.path().join("rows.csv").display().to_string();

    let (ok, out) = run(&["features", "apply", &table_toml, "--server", &url]);
    assert!(ok, "{out}");
    assert!(
        out.contains("user_stats") && out.contains("version 1"),
        "{out}"
    );
    let (ok, out) = run(&[
        "features",
        "ingest",
        "user_stats",
        &rows_csv,
        "--server",
        &url,
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("ingested 5 rows into user_stats version 1"),
        "{out}"
    );
    assert!(out.contains("2 entities updated"), "{out}");

    // One entity: the tie at 00:20 goes to the row created later.
    let (status, v) = get(&server, "/v1/features/user_stats/u1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({
            "user_id": "u1",
            "features": {"txn_count_7d": 3, "avg_amount_7d": 12.25, "country": "DE"},
            "event_ts": "2026-01-01T00:20:00Z"
        })
    );
    let (status, v) = get(&server, "/v1/features/user_stats/nobody?features=country").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"user_id": "nobody", "features": {"country": null}, "event_ts": null})
    );
    let (status, v) = get(&server, "/v1/features/user_stats/u1?features=nope").await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no feature `nope`"),
        "{v}"
    );
    let (status, v) = get(&server, "/v1/features/no_such_table/u1").await;
    assert_eq!(status, 404, "{v}");

    // Many entities in one call, in order.
    let body = json!({"entities": ["u2", "u9", "u1"], "features": ["txn_count_7d"]});
    let (status, v) = post(
        &server,
        "/v1/features/user_stats/lookup",
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let counts: Vec<&Value> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["features"]["txn_count_7d"])
        .collect();
    assert_eq!(counts, [&json!(7), &Value::Null, &json!(3)], "{v}");
    assert_eq!(v["version"], 1);

    // A malformed row rejects the whole ingest and names the row.
    let bad =
        "user_id,event_ts,txn_count_7d\nu1,2026-02-01T00:00:00Z,4\nu1,2026-02-02T00:00:00Z,many\n";
    let (status, v) = post(&server, "/v1/features/user_stats/ingest", "text/csv", bad).await;
    assert_eq!(status, 400, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("row 2")
            && error.contains("txn_count_7d")
            && error.contains("nothing was ingested"),
        "{error}"
    );
    let (_, v) = get(&server, "/v1/features/user_stats/u1?features=txn_count_7d").await;
    assert_eq!(
        v["features"]["txn_count_7d"], 3,
        "nothing of the bad ingest applied: {v}"
    );

    // Streaming rows: durable when answered, read back at once.
    let rows = json!([{"user_id": "u3", "event_ts": 1767312000000i64, "txn_count_7d": 1, "country": "IT"}]);
    let (status, v) = post(
        &server,
        "/v1/features/user_stats",
        "application/json",
        rows.to_string(),
    )
    .await;
    assert_eq!((status, &v["rows"]), (201, &json!(1)), "{v}");
    let (ok, out) = run(&[
        "features",
        "get",
        "user_stats",
        "u3",
        "--features",
        "country",
        "--server",
        &url,
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        r#"{"event_ts":"2026-01-02T00:00:00Z","features":{"country":"IT"},"user_id":"u3"}"#
    );
    let (status, v) = post(
        &server,
        "/v1/features/user_stats",
        "application/json",
        "[{\"user_id\": \"u3\"}]",
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("row 1"), "{v}");

    // Point-in-time export, read from the store while the node serves it.
    let entities = "user_id,timestamp,label\n\
        u1,2026-01-01T00:20:00Z,a\n\
        u1,2026-01-01T00:07:00Z,b\n\
        u1,2026-01-01T00:00:00Z,c\n\
        u2,2026-01-02T07:59:59Z,d\n\
        u2,2026-01-03T00:00:00Z,e\n\
        u4,2026-01-03T00:00:00Z,f\n";
    std::fs::write(dir.path().join("entities.csv"), entities).unwrap();
    let export = |out: &str| {
        let out = dir.path().join(out);
        let (ok, text) = run(&[
            "features",
            "export",
            "--entities",
            &dir.path().join("entities.csv").display().to_string(),
            "--features",
            "user_stats:txn_count_7d,avg_amount_7d",
            "--out",
            &out.display().to_string(),
            "--data",
            &data.display().to_string(),
        ]);
        assert!(ok, "{text}");
        assert!(text.contains("exported 6 rows × 2 features"), "{text}");
        std::fs::read_to_string(out).unwrap_or_default()
    };
    let expected = "user_id,timestamp,label,txn_count_7d,avg_amount_7d\n\
        u1,2026-01-01T00:20:00Z,a,3,12.25\n\
        u1,2026-01-01T00:07:00Z,b,0,1.5\n\
        u1,2026-01-01T00:00:00Z,c,,\n\
        u2,2026-01-02T07:59:59Z,d,,\n\
        u2,2026-01-03T00:00:00Z,e,7,99.5\n\
        u4,2026-01-03T00:00:00Z,f,,\n";
    assert_eq!(export("train.csv"), expected);
    assert!(!dir.path().join("train.csv.partial").exists());

    // The offline history is plain Hive-partitioned Parquet: DuckDB's as-of
    // join over it (the README's query) gives the export's answer.
    let history = data.join("features/user_stats/data/1/history");
    assert!(history.join("event_date=2026-01-01").is_dir());
    assert_eq!(
        duckdb_export(&history, &dir.path().join("entities.csv")),
        expected_duckdb(expected)
    );

    // Compaction keeps every answer.
    let (ok, out) = run(&[
        "features",
        "compact",
        "user_stats",
        "--grace",
        "0s",
        "--server",
        &url,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("compacted user_stats"), "{out}");
    assert_eq!(export("again.csv"), expected);
    let (_, v) = get(&server, "/v1/features/user_stats/u1?features=txn_count_7d").await;
    assert_eq!(v["features"]["txn_count_7d"], 3, "{v}");

    // A removed column is refused without --new-version, which starts empty.
    let narrower = USER_STATS.replace("country = \"string\"\n", "");
    std::fs::write(dir.path().join("table.toml"), &narrower).unwrap();
    let (ok, out) = run(&["features", "apply", &table_toml, "--server", &url]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("would break readers of version 1") && out.contains("--new-version"),
        "{out}"
    );
    let (ok, out) = run(&[
        "features",
        "apply",
        &table_toml,
        "--new-version",
        "--server",
        &url,
    ]);
    assert!(ok, "{out}");
    let (_, v) = get(&server, "/v1/features/user_stats/u1").await;
    assert_eq!(
        v["features"],
        json!({"txn_count_7d": null, "avg_amount_7d": null}),
        "{v}"
    );
    let (_, v) = get(&server, "/v1/features/user_stats@1/u1?features=country").await;
    assert_eq!(v["features"]["country"], "DE", "{v}");
}

/// Run the README's DuckDB query over `history` for `entities`: rows of
/// `user_id,txn_count_7d,avg_amount_7d`.
fn duckdb_export(history: &Path, entities: &Path) -> String {
    let query = format!(
        "WITH history AS (
            SELECT * FROM read_parquet('{history}/*/*.parquet', hive_partitioning = true)
            QUALIFY row_number() OVER (PARTITION BY user_id, event_ts ORDER BY created_ts DESC NULLS LAST) = 1
        ), entities AS (
            SELECT row_number() OVER () AS n, user_id, CAST(timestamp AS TIMESTAMPTZ) AS timestamp
            FROM read_csv('{entities}')
        )
        SELECT e.user_id,
            CASE WHEN h.event_ts >= e.timestamp - INTERVAL 3650 DAY THEN h.txn_count_7d END,
            CASE WHEN h.event_ts >= e.timestamp - INTERVAL 3650 DAY THEN h.avg_amount_7d END
        FROM entities e ASOF LEFT JOIN history h
            ON e.user_id = h.user_id AND e.timestamp >= h.event_ts
        ORDER BY e.n",
        history = history.display(),
        entities = entities.display()
    );
    let script = "import duckdb, sys\n\
        for row in duckdb.sql(sys.argv[1]).fetchall():\n    \
            print(','.join('' if v is None else str(v) for v in row))\n";
    let output = std::process::Command::new(python())
        .args(["-c", script, &query])
        .stderr(Stdio::inherit())
        .output()
        .expect("python with duckdb");
    assert!(output.status.success(), "the DuckDB query failed");
    String::from_utf8(output.stdout).unwrap()
}

/// The export's key and feature columns, as DuckDB prints them.
fn expected_duckdb(export: &str) -> String {
    export
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            format!("{},{},{}\n", cells[0], cells[3], cells[4])
        })
        .collect()
}

const CUSTOMERS: &str = r#"
name = "customers"
entity = "customer_id"
timestamp = "ts"
[features]
age = "i64"
"#;

#[tokio::test]
async fn a_featurizer_reads_the_features_of_the_tables_it_is_granted_and_no_others() {
    let server = Server::start();
    let (status, v) = apply(&server, CUSTOMERS).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = post(
        &server,
        "/v1/features/customers/ingest",
        "text/csv",
        "customer_id,ts,age\nc1,2026-03-01T00:00:00Z,42\n",
    )
    .await;
    assert_eq!(status, 201, "{v}");
    server
        .deploy("probe-features", "guest-feature-probe", &[])
        .await;

    let (status, v) = server.invoke("probe-features", "text/plain", "c1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["fields"], json!({"status": "rows: 1", "age": 42}), "{v}");
    let (_, v) = server.invoke("probe-features", "text/plain", "c404").await;
    assert_eq!(
        v["fields"],
        json!({"status": "rows: 1"}),
        "an unknown entity reads as missing: {v}"
    );

    let pipeline = |name: &str, tables: &str| {
        let manifest = format!(
            "name = \"{name}\"\n[[step]]\nname = \"look\"\nfunction = \"probe-features\"\ntables = [{tables}]\n"
        );
        let url = server.url(&format!("/v1/pipelines/{name}"));
        async move {
            let response = client()
                .put(url)
                .body(manifest)
                .send()
                .await
                .expect("PUT pipeline");
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap_or_default()
            );
        }
    };
    pipeline("granted", "\"customers\"").await;
    pipeline("other", "\"orders\"").await;
    let call = |name: &str| {
        let url = server.url(&format!("/p/{name}"));
        async move {
            let response = client()
                .post(url)
                .header("content-type", "text/plain")
                .body("c1")
                .send()
                .await
                .expect("POST");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, v) = call("granted").await;
    assert_eq!((status, &v["fields"]["age"]), (200, &json!(42)), "{v}");
    let (status, v) = call("other").await;
    assert_eq!(status, 200, "{v}");
    let seen = v["fields"]["status"].as_str().unwrap_or_default();
    assert!(
        seen.contains("table `customers` is not granted to pipeline other, step look")
            && seen.contains("it may use: orders"),
        "{seen}"
    );
    assert!(v["fields"].get("age").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_ingested_through_one_node_are_read_on_another_within_the_freshness_interval() {
    let s3 = S3Server::start();
    let a = Server::start_s3(&s3, "features", 200);
    let b = Server::start_s3(&s3, "features", 200);
    let (status, v) = apply(&a, USER_STATS).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = post(&a, "/v1/features/user_stats/ingest", "text/csv", ROWS).await;
    assert_eq!((status, &v["rows"]), (201, &json!(5)), "{v}");
    let (status, v) = get(&b, "/v1/features/user_stats/u1?features=txn_count_7d").await;
    assert_eq!(
        (status, &v["features"]["txn_count_7d"]),
        (200, &json!(3)),
        "{v}"
    );

    // B has u1 cached; a newer row through A reaches it within freshness
    // (500 ms) plus a poll.
    let newer = json!([{"user_id": "u1", "event_ts": "2026-06-01T00:00:00Z", "txn_count_7d": 30}]);
    let (status, v) = post(
        &a,
        "/v1/features/user_stats",
        "application/json",
        newer.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let runtime = tokio::runtime::Handle::current();
    let seen = eventually(Duration::from_secs(3), || {
        let v =
            tokio::task::block_in_place(|| runtime.block_on(get(&b, "/v1/features/user_stats/u1")))
                .1;
        v["features"]["txn_count_7d"] == 30
    });
    assert!(seen, "node B never saw the row written through A");

    // Both nodes write at once: both land (the manifest's compare-and-swap).
    let writes = (0..8).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        let rows = json!([{"user_id": format!("w{i}"), "event_ts": 1767312000000i64 + i, "txn_count_7d": i}]);
        post(node, "/v1/features/user_stats", "application/json", rows.to_string())
    });
    for (status, v) in futures::future::join_all(writes).await {
        assert_eq!(status, 201, "{v}");
    }
    let entities: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let body = json!({"entities": entities, "features": ["txn_count_7d"]}).to_string();
    let seen = eventually(Duration::from_secs(3), || {
        let (_, v) = tokio::task::block_in_place(|| {
            runtime.block_on(post(
                &a,
                "/v1/features/user_stats/lookup",
                "application/json",
                body.clone(),
            ))
        });
        (0..8).all(|i| v["results"][i]["features"]["txn_count_7d"] == i)
    });
    assert!(seen, "a concurrent write was lost");

    // Compaction over S3 keeps what both nodes read.
    let (status, v) = post(
        &b,
        "/v1/features/user_stats/compact?grace=0s",
        "text/plain",
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["segments_after"].as_u64().unwrap() < v["segments_before"].as_u64().unwrap(),
        "{v}"
    );
    let (_, v) = get(&a, "/v1/features/user_stats/w5?features=txn_count_7d").await;
    assert_eq!(v["features"]["txn_count_7d"], 5, "{v}");
    // The ingest, the append, a commit per node at least, the compaction.
    let commits = s3
        .requests
        .count("PUT", "features/user_stats/data/1/manifest.json");
    assert!(commits >= 5, "{commits} manifest writes");
}

#[tokio::test]
async fn an_ingest_killed_midway_leaves_the_table_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    std::fs::write(dir.path().join("table.toml"), USER_STATS).unwrap();
    std::fs::write(dir.path().join("rows.csv"), ROWS).unwrap();
    let (ok, out) = run(&[
        "features",
        "apply",
        &dir.path().join("table.toml").display().to_string(),
        "--data",
        &data_arg,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "features",
        "ingest",
        "user_stats",
        &dir.path().join("rows.csv").display().to_string(),
        "--data",
        &data_arg,
    ]);
    assert!(ok, "{out}");
    let manifest = data.join("features/user_stats/data/1/manifest.json");
    let before = std::fs::read(&manifest).unwrap();

    // Three million rows over many days: many segments before the commit.
    let big = dir.path().join("big.csv");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        writeln!(file, "user_id,event_ts,txn_count_7d,avg_amount_7d,country").unwrap();
        for i in 0..3_000_000u64 {
            writeln!(
                file,
                "u{},{},{},{}.5,FR",
                i % 1000,
                1_767_225_600_000 + i * 60_000,
                i,
                i % 100
            )
            .unwrap();
        }
    }
    let mut ingest = sluice()
        .args(["features", "ingest", "user_stats"])
        .arg(&big)
        .args(["--data", &data_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the ingest");
    let history = data.join("features/user_stats/data/1/history");
    let segments = || {
        walk(&history)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    let started = segments();
    let written = eventually(Duration::from_secs(120), || segments() >= started + 2);
    ingest.kill().expect("kill the ingest");
    let _ = ingest.wait();
    assert!(written, "the ingest wrote no segments");
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        before,
        "the manifest changed"
    );
    let (ok, out) = run(&[
        "features",
        "get",
        "user_stats",
        "u1",
        "u999",
        "--features",
        "txn_count_7d",
        "--data",
        &data_arg,
    ]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains(r#""txn_count_7d":3"#) && lines[1].contains(r#""txn_count_7d":null"#),
        "{out}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
