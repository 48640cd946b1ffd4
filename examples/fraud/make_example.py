"""Make the fraud example's data, model and expected answers.

1. Generate users and two months of card transactions (seeded, so the
   outputs are reproducible); about 3% are fraud: much larger amounts than
   the user's usual, often abroad and at night.
2. Compute per-user aggregates once a day (the `user_stats` table: what a
   daily batch job would ingest) -> user_stats.csv.
3. Build the training set with Sluice's point-in-time export: every
   transaction, with the aggregates as they were just before it (no
   leakage from the future) -> `sluice features export`.
4. Train gradient boosting on it, export to ONNX (fraud-gbt.onnx).
5. For a few example transactions, compute the features exactly as the
   `fraud-features` stage does from the online (latest) aggregates, score
   them with onnxruntime, and write the requests with the expected
   decision to expected.json.

Usage: make_example.py SLUICE_BINARY
"""

import csv
import json
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier

HERE = Path(__file__).resolve().parent
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DAYS = 60
USERS = 200
COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT"]
FEATURES = [
    "amount", "hour", "txn_count_7d", "avg_amount_7d", "max_amount_7d",
    "amount_ratio", "foreign", "has_history",
]
REVIEW, DECLINE = 0.3, 0.7


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(rng):
    users = []
    for i in range(USERS):
        users.append({
            "user_id": f"u{i:03d}",
            "home": COUNTRIES[rng.integers(len(COUNTRIES))],
            "typical": float(np.exp(rng.normal(3.5, 0.6))),
            "rate": float(rng.uniform(0.3, 2.0)),
        })
    txns = []
    for u in users:
        for day in range(DAYS):
            for _ in range(rng.poisson(u["rate"])):
                fraud = rng.random() < 0.03
                if fraud:
                    amount = u["typical"] * rng.uniform(4, 15)
                    country = COUNTRIES[rng.integers(len(COUNTRIES))] if rng.random() < 0.7 else u["home"]
                    hour = int(rng.choice([0, 1, 2, 3, 4, 23])) if rng.random() < 0.6 else int(rng.integers(24))
                else:
                    amount = u["typical"] * float(np.exp(rng.normal(0, 0.4)))
                    country = u["home"] if rng.random() < 0.95 else COUNTRIES[rng.integers(len(COUNTRIES))]
                    hour = int(np.clip(rng.normal(14, 4), 0, 23))
                at = START + timedelta(days=day, hours=hour, minutes=int(rng.integers(60)))
                txns.append({
                    "transaction_id": f"t{len(txns):06d}",
                    "user_id": u["user_id"],
                    "amount": round(float(amount), 2),
                    "country": country,
                    "at": at,
                    "label": int(fraud),
                })
    txns.sort(key=lambda t: t["at"])
    return users, txns


def daily_aggregates(users, txns):
    """One row per user per day at 00:00: the previous 7 days' aggregates."""
    by_user = {u["user_id"]: [] for u in users}
    for t in txns:
        by_user[t["user_id"]].append(t)
    rows = []
    for u in users:
        history = by_user[u["user_id"]]
        home = Counter(t["country"] for t in history).most_common(1)[0][0] if history else u["home"]
        for day in range(1, DAYS + 1):
            at = START + timedelta(days=day)
            window = [t["amount"] for t in history if at - timedelta(days=7) <= t["at"] < at]
            rows.append({
                "user_id": u["user_id"],
                "event_ts": rfc3339(at),
                "txn_count_7d": len(window),
                "avg_amount_7d": round(sum(window) / len(window), 4) if window else "",
                "max_amount_7d": max(window) if window else "",
                "home_country": home,
            })
    return rows


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def feature_row(amount, hour, country, count, avg, maximum, home):
    """The model's input, computed as functions/fraud-features does."""
    count = int(count) if count not in ("", None) else 0
    history = count > 0
    avg = float(avg) if history and avg not in ("", None) else 0.0
    maximum = float(maximum) if history and maximum not in ("", None) else 0.0
    ratio = amount / avg if avg > 0 else 1.0
    foreign = home not in ("", None) and home != country
    return np.array(
        [amount, hour, count, avg, maximum, ratio, float(foreign), float(history)],
        dtype=np.float64,
    ).astype(np.float32)


def reasons(row):
    amount, _, _, _, maximum, ratio, foreign, history = (float(v) for v in row)
    out = []
    if history and ratio >= 3.0:
        out.append("amount_far_above_average")
    if history and amount > maximum:
        out.append("amount_above_recent_max")
    if foreign:
        out.append("foreign_country")
    if not history:
        out.append("no_recent_history")
    return out


def main(sluice):
    rng = np.random.default_rng(7)
    users, txns = generate(rng)
    stats = daily_aggregates(users, txns)
    columns = ["user_id", "event_ts", "txn_count_7d", "avg_amount_7d", "max_amount_7d", "home_country"]
    write_csv(HERE / "user_stats.csv", stats, columns)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = ["--data", str(tmp / "store")]
        entities = tmp / "entities.csv"
        write_csv(entities, [
            {"user_id": t["user_id"], "timestamp": rfc3339(t["at"]), "transaction_id": t["transaction_id"]}
            for t in txns
        ], ["user_id", "timestamp", "transaction_id"])
        run = lambda *args: subprocess.run([sluice, *args], check=True)
        run("features", "apply", str(HERE / "user_stats.toml"), *data)
        run("features", "ingest", "user_stats", str(HERE / "user_stats.csv"), *data)
        run("features", "export", "--entities", str(entities), "--features",
            "user_stats:txn_count_7d,avg_amount_7d,max_amount_7d,home_country",
            "--out", str(tmp / "train.csv"), *data)
        with open(tmp / "train.csv") as f:
            exported = list(csv.DictReader(f))

    assert len(exported) == len(txns)
    X = np.stack([
        feature_row(t["amount"], t["at"].hour, t["country"], e["txn_count_7d"],
                    e["avg_amount_7d"], e["max_amount_7d"], e["home_country"])
        for t, e in zip(txns, exported)
    ])
    y = np.array([t["label"] for t in txns])
    model = GradientBoostingClassifier(n_estimators=80, max_depth=3, random_state=0)
    model.fit(X, y)
    onx = to_onnx(model, X[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    (HERE / "fraud-gbt.onnx").write_bytes(onx.SerializeToString())
    print(f"trained on {len(y)} transactions ({y.sum()} fraud), train accuracy {model.score(X, y):.3f}")

    # Online: the latest aggregates of each user.
    latest = {}
    for row in stats:
        latest[row["user_id"]] = row
    session = ort.InferenceSession(str(HERE / "fraud-gbt.onnx"), providers=["CPUExecutionProvider"])
    requests = [
        {"transaction_id": "demo-1", "user_id": "u007", "amount": 42.0, "country": latest["u007"]["home_country"], "timestamp": "2026-03-02T12:15:00Z"},
        {"transaction_id": "demo-2", "user_id": "u007", "amount": 2400.0, "country": "US" if latest["u007"]["home_country"] != "US" else "FR", "timestamp": "2026-03-02T03:05:00Z"},
        {"transaction_id": "demo-3", "user_id": "u042", "amount": 95.5, "country": latest["u042"]["home_country"], "timestamp": "2026-03-02T18:40:00+01:00"},
        {"transaction_id": "demo-4", "user_id": "u150", "amount": 600.0, "country": latest["u150"]["home_country"], "timestamp": "2026-03-02T23:59:00Z"},
        {"transaction_id": "demo-5", "user_id": "newcomer", "amount": 80.0, "country": "FR", "timestamp": "2026-03-02T10:00:00Z"},
    ]
    expected = []
    for r in requests:
        at = datetime.fromisoformat(r["timestamp"]).astimezone(timezone.utc)
        s = latest.get(r["user_id"], {})
        row = feature_row(r["amount"], at.hour, r["country"], s.get("txn_count_7d"),
                          s.get("avg_amount_7d"), s.get("max_amount_7d"), s.get("home_country"))
        score = float(session.run(None, {"X": row[None, :]})[1][0, 1])
        decision = "decline" if score >= DECLINE else "review" if score >= REVIEW else "approve"
        expected.append({"request": r, "features": row.tolist(), "score": score,
                         "decision": decision, "reasons": reasons(row)})
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    for e in expected:
        print(e["request"]["transaction_id"], e["decision"], round(e["score"], 4), e["reasons"])


if __name__ == "__main__":
    main(sys.argv[1])
