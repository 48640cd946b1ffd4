"""The Feast peer of the feature-store benchmarks: a feature repository over
the same data as Sluice's tables (make_data.py), and its historical
retrieval.

  python feast_repo.py write REPO DATA REDIS_PORT   # feature_store.yaml + features.py
  python feast_repo.py export REPO DATA OUT         # get_historical_features → OUT (Parquet)

Feast's configuration, as benchmarked: provider `local`, Redis online store
(redis-server on loopback, no persistence), the default `dask` offline
store reading the Parquet files, entity key serialization version 3.
"""

import pathlib
import sys
import time

TYPES = ["Float64"] * 8 + ["Int64"] * 6 + ["Float32"] * 2 + ["Bool"] * 2 + ["String"] * 2

FEATURES_PY = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float32, Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

def view(name, path, ttl, online):
    return FeatureView(
        name=name,
        entities=[user],
        ttl=ttl,
        online=online,
        schema=[{fields}],
        source=FileSource(path=path, timestamp_field="event_ts"),
    )

user_stats = view("user_stats", "{data}/rows.parquet", timedelta(days=3650), True)
user_history = view("user_history", "{data}/history.parquet", timedelta(days=7), False)
"""

STORE_YAML = """project: bench
registry: {repo}/registry.db
provider: local
online_store:
  type: redis
  connection_string: "127.0.0.1:{port}"
offline_store:
  type: dask
entity_key_serialization_version: 3
"""


def write(repo, data, port):
    repo = pathlib.Path(repo).resolve()
    repo.mkdir(parents=True, exist_ok=True)
    fields = ", ".join(f'Field(name="f{i:02}", dtype={ty})' for i, ty in enumerate(TYPES))
    data = pathlib.Path(data).resolve()
    (repo / "features.py").write_text(FEATURES_PY.format(fields=fields, data=data))
    (repo / "feature_store.yaml").write_text(STORE_YAML.format(repo=repo, port=port))


def export(repo, data, out):
    import pandas as pd
    from feast import FeatureStore

    entities = pd.read_csv(pathlib.Path(data) / "entities.csv")
    entities = entities.rename(columns={"timestamp": "event_timestamp"})
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
    store = FeatureStore(repo_path=repo)
    started = time.monotonic()
    features = [f"user_history:f{i:02}" for i in range(len(TYPES))]
    frame = store.get_historical_features(entity_df=entities, features=features).to_df()
    frame.to_parquet(out)
    print(f"{len(frame)} rows in {time.monotonic() - started:.2f}s")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"write": write, "export": export}[command](*args)
