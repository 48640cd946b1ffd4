"""Data for the feature-store benchmarks (host/benches/features/run.sh).

Writes, into OUT (deterministic: DuckDB's random() after setseed):

  rows.csv           1,000,000 rows × 22 columns: user_id (100,000 users, 10 rows
                     each), event_ts (epoch ms over 30 days), 20 features
                     (8 f64, 6 i64, 2 f32, 2 bool, 2 string)
  rows.parquet       the same rows, event_ts as a timestamp (Feast's source)
  history.parquet    10,000,000 rows of the same 22 columns for 1,000,000 users
  entities.csv       100,000 entity rows: user_id, timestamp (RFC 3339) drawn
                     over the history's 30 days plus 10 (so some fall past the
                     7-day TTL), users with no history among them
  table.toml         the Sluice table of rows.csv (`user_stats`; a TTL of 10
                     years, so the 2026 rows are served online)
  history.toml       the Sluice table of history.parquet (`user_history`, TTL 7d)

  python make_data.py OUT
"""

import pathlib
import sys

import duckdb

TYPES = ["f64"] * 8 + ["i64"] * 6 + ["f32"] * 2 + ["bool"] * 2 + ["string"] * 2
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000


def feature_columns():
    columns = []
    for i, ty in enumerate(TYPES):
        r = f"hash(n, {i})"
        expr = {
            "f64": f"({r} % 100000) / 97.0",
            "f32": f"CAST(({r} % 100000) / 97.0 AS FLOAT)",
            "i64": f"CAST({r} % 1000 AS BIGINT)",
            "bool": f"{r} % 2 = 0",
            "string": f"['DE','FR','US','BR','JP','IN'][CAST({r} % 6 AS INT) + 1]",
        }[ty]
        columns.append(f"{expr} AS f{i:02}")
    return ", ".join(columns)


def rows(con, count, users, out, event_ts):
    # Row n belongs to user n % users; times spread over 30 days.
    con.execute(
        f"""
        COPY (
          SELECT 'u' || (n % {users}) AS user_id,
                 {event_ts} AS event_ts,
                 {feature_columns()}
          FROM (SELECT range AS n, CAST({START_MS} + hash(range, 'ts') % (30 * {DAY_MS}::BIGINT) AS BIGINT) AS ms
                FROM range({count}))
        ) TO '{out}'
        """
    )


def table_toml(name, ttl, partitions):
    lines = [
        f'name = "{name}"',
        'entity = "user_id"',
        'timestamp = "event_ts"',
        f'ttl = "{ttl}"',
        f"partitions = {partitions}",
        "[features]",
    ]
    lines += [f'f{i:02} = "{ty}"' for i, ty in enumerate(TYPES)]
    return "\n".join(lines) + "\n"


def main(out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    rows(con, 1_000_000, 100_000, out / "rows.csv", "ms")
    rows(con, 1_000_000, 100_000, out / "rows.parquet", "make_timestamp(ms * 1000)")
    rows(con, 10_000_000, 1_000_000, out / "history.parquet", "make_timestamp(ms * 1000)")
    # 5% of the entity rows name users the history never saw.
    con.execute(
        f"""
        COPY (
          SELECT 'u' || (hash(range, 'u') % 1050000) AS user_id,
                 strftime(make_timestamp(CAST({START_MS} + hash(range, 't') % (40 * {DAY_MS}::BIGINT) AS BIGINT) * 1000),
                          '%Y-%m-%dT%H:%M:%S.%gZ') AS timestamp
          FROM range(100000)
        ) TO '{out / "entities.csv"}'
        """
    )
    (out / "table.toml").write_text(table_toml("user_stats", "3650d", 64))
    (out / "history.toml").write_text(table_toml("user_history", "7d", 64))


if __name__ == "__main__":
    main(sys.argv[1])
