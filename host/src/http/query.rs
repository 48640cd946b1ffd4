//! Publish settings as query parameters of `PUT /v1/{kind}/{name}`: the
//! client writes them and the server reads them here, in one place, so the
//! two cannot drift apart.

use crate::inference::{Baseline, Batching, Engine, Push};
use crate::node::{Deploy, Settings};
use crate::tensor::parse_shape;

/// The value of `name`, the one query parameter a route takes (the last,
/// if repeated); any other parameter is refused, saying what `route`
/// takes.
pub fn only<'a>(
    params: &'a [(String, String)],
    name: &str,
    route: &str,
) -> Result<Option<&'a str>, String> {
    let mut value = None;
    for (key, v) in params {
        if key != name {
            return Err(format!(
                "unknown query parameter `{key}`; {route} takes `{name}`"
            ));
        }
        value = Some(v.as_str());
    }
    Ok(value)
}

/// Batching settings a push starts from when it names only one of them.
const DEFAULT_BATCHING: Batching = Batching {
    max_batch_size: 32,
    max_queue_delay_us: 2000,
    max_queue_size: Batching::DEFAULT_MAX_QUEUE_SIZE,
};

/// The query of a publish with `settings`. A model's baseline must already
/// be a stored blob (the client uploads it first).
pub fn write(settings: &Settings) -> Result<Vec<(String, String)>, String> {
    let mut query = Vec::new();
    let mut put = |key: &str, value: String| query.push((key.to_string(), value));
    match settings {
        Settings::Function(d) => {
            for (k, v) in &d.config {
                let prefix = if d.secrets.contains(k) {
                    "secret"
                } else {
                    "config"
                };
                put(&format!("{prefix}.{k}"), v.clone());
            }
            for (k, v) in &d.labels {
                put(&format!("label.{k}"), v.clone());
            }
            let numbers = [
                ("timeout_ms", d.timeout_ms),
                ("memory_mb", d.memory_bytes.map(|b| b >> 20)),
                ("fuel", d.fuel),
                ("max_concurrency", d.max_concurrency.map(u64::from)),
                ("max_queue", d.max_queue.map(u64::from)),
                ("idle_secs", d.idle_secs),
            ];
            for (key, value) in numbers {
                if let Some(n) = value {
                    put(key, n.to_string());
                }
            }
            for origin in &d.allow_outbound {
                put("allow_outbound", origin.to_string());
            }
            if let Some(description) = &d.description {
                put("description", description.clone());
            }
        }
        Settings::Model(p) => {
            for (k, v) in &p.labels {
                put(&format!("label.{k}"), v.clone());
            }
            if let Some(description) = &p.description {
                put("description", description.clone());
            }
            if let Some(secs) = p.idle_secs {
                put("idle_secs", secs.to_string());
            }
            if let Some(b) = &p.batching {
                put("max_batch_size", b.max_batch_size.to_string());
                put("max_queue_delay_us", b.max_queue_delay_us.to_string());
                put("max_queue_size", b.max_queue_size.to_string());
            }
            match &p.baseline {
                None => {}
                Some(Baseline::Stored(digest)) => put("baseline", digest.to_string()),
                Some(Baseline::Json(_)) => {
                    return Err(
                        "a baseline must be uploaded (PUT /v1/blobs) before the push that names it"
                            .into(),
                    );
                }
            }
            for (input, dims) in &p.input_shapes {
                let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
                put(&format!("input_shape.{input}"), dims.join(","));
            }
            if p.engine != Engine::Tract {
                put("engine", p.engine.to_string());
            }
        }
        // Everything a pipeline is lives in its manifest.
        Settings::Pipeline { .. } => {}
        Settings::Table { new_version, .. } => {
            if *new_version {
                put("new_version", "true".into());
            }
        }
    }
    Ok(query)
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("query parameter `{key}` must be a whole number, got {value:?}"))
}

/// A function deploy's settings from its query; `created_by` names who
/// deploys.
pub fn read_deploy(params: Vec<(String, String)>, created_by: String) -> Result<Deploy, String> {
    let mut d = Deploy {
        created_by,
        ..Deploy::default()
    };
    for (key, value) in params {
        match (key.as_str(), key.split_once('.')) {
            ("timeout_ms", _) => d.timeout_ms = Some(number(&key, &value)?),
            ("memory_mb", _) => {
                d.memory_bytes = Some(number::<u64>(&key, &value)?.saturating_mul(1 << 20))
            }
            ("fuel", _) => d.fuel = Some(number(&key, &value)?),
            ("max_concurrency", _) => d.max_concurrency = Some(number(&key, &value)?),
            ("max_queue", _) => d.max_queue = Some(number(&key, &value)?),
            ("idle_secs", _) => d.idle_secs = Some(number(&key, &value)?),
            ("allow_outbound", _) => d
                .allow_outbound
                .push(value.parse().map_err(|e| format!("allow_outbound: {e}"))?),
            ("description", _) => d.description = Some(value),
            (_, Some(("config", k))) if !k.is_empty() => {
                d.config.insert(k.to_string(), value);
            }
            // A configuration value the API never answers.
            (_, Some(("secret", k))) if !k.is_empty() => {
                d.config.insert(k.to_string(), value);
                d.secrets.insert(k.to_string());
            }
            (_, Some(("label", k))) if !k.is_empty() => {
                d.labels.insert(k.to_string(), value);
            }
            _ => {
                return Err(format!(
                    "unknown query parameter `{key}`; use config.KEY=VALUE, secret.KEY=VALUE, label.KEY=VALUE, timeout_ms, memory_mb, fuel, max_concurrency, max_queue, idle_secs, allow_outbound or description"
                ));
            }
        }
    }
    Ok(d)
}

/// A model push's settings from its query; `created_by` names who pushes.
pub fn read_push(params: Vec<(String, String)>, created_by: String) -> Result<Push, String> {
    let mut p = Push {
        created_by,
        ..Push::default()
    };
    for (key, value) in params {
        match (key.as_str(), key.split_once('.')) {
            ("description", _) => p.description = Some(value),
            ("idle_secs", _) => p.idle_secs = Some(number(&key, &value)?),
            ("baseline", _) => p.baseline = Some(Baseline::Stored(value.try_into()?)),
            ("engine", _) => p.engine = value.parse()?,
            ("max_batch_size", _) => {
                p.batching.get_or_insert(DEFAULT_BATCHING).max_batch_size = number(&key, &value)?
            }
            ("max_queue_delay_us", _) => {
                p.batching
                    .get_or_insert(DEFAULT_BATCHING)
                    .max_queue_delay_us = number(&key, &value)?
            }
            ("max_queue_size", _) => {
                p.batching.get_or_insert(DEFAULT_BATCHING).max_queue_size = number(&key, &value)?
            }
            (_, Some(("label", k))) if !k.is_empty() => {
                p.labels.insert(k.to_string(), value);
            }
            (_, Some(("input_shape", input))) if !input.is_empty() => {
                let dims = parse_shape(&value).map_err(|e| format!("{key}: {e}"))?;
                p.input_shapes.insert(input.to_string(), dims);
            }
            _ => {
                return Err(format!(
                    "unknown query parameter `{key}`; use description, label.KEY=VALUE, input_shape.INPUT=DIMS, baseline=sha256:..., engine=tract|onnxruntime, max_batch_size, max_queue_delay_us, max_queue_size or idle_secs"
                ));
            }
        }
    }
    Ok(p)
}

/// A pipeline deploy's query: none (the manifest is the body).
pub fn read_pipeline(
    params: Vec<(String, String)>,
    created_by: String,
) -> Result<Settings, String> {
    match params.first() {
        Some((key, _)) => Err(format!(
            "unknown query parameter `{key}`; a pipeline's settings are in its manifest (the body)"
        )),
        None => Ok(Settings::Pipeline { created_by }),
    }
}

/// A table's settings: only `new_version`; the rest is in `table.toml`.
pub fn read_table(params: Vec<(String, String)>, created_by: String) -> Result<Settings, String> {
    let mut new_version = false;
    for (key, value) in params {
        match key.as_str() {
            "new_version" => {
                new_version = value
                    .parse()
                    .map_err(|_| format!("`new_version` must be true or false, got `{value}`"))?
            }
            _ => {
                return Err(format!(
                    "unknown query parameter `{key}`; a table's settings are in table.toml (the body), except `new_version`"
                ));
            }
        }
    }
    Ok(Settings::Table {
        new_version,
        created_by,
    })
}

/// A version number in a path.
pub fn read_version(version: &str) -> Result<u64, String> {
    version
        .parse()
        .map_err(|_| format!("version must be a number, got {version:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Digest;

    fn pairs(settings: &Settings) -> Vec<(String, String)> {
        write(settings).unwrap()
    }

    #[test]
    fn what_the_client_writes_the_server_reads_back() {
        let deploy = Deploy {
            config: [
                ("fields".into(), "a,b".into()),
                ("key".into(), "hunter2".into()),
            ]
            .into(),
            secrets: ["key".into()].into(),
            timeout_ms: Some(1500),
            memory_bytes: Some(64 << 20),
            fuel: Some(10),
            max_concurrency: Some(4),
            max_queue: Some(8),
            idle_secs: Some(0),
            allow_outbound: vec![
                "https://api.example.com".parse().unwrap(),
                "http://10.0.0.5:8080".parse().unwrap(),
            ],
            description: Some("a stage".into()),
            labels: [("team".into(), "risk".into())].into(),
            created_by: "ana".into(),
        };
        let query = pairs(&Settings::Function(deploy.clone()));
        assert_eq!(read_deploy(query, "ana".into()).unwrap(), deploy);

        let push = Push {
            created_by: "ana".into(),
            description: Some("cnn".into()),
            labels: [("dataset".into(), "iris".into())].into(),
            baseline: Some(Baseline::Stored(Digest::of(b"{}"))),
            input_shapes: [("x".into(), vec![-1, 3, 48, 192])].into(),
            batching: Some(Batching {
                max_batch_size: 16,
                max_queue_delay_us: 500,
                max_queue_size: 64,
            }),
            idle_secs: Some(60),
            engine: Engine::Onnxruntime,
        };
        let query = pairs(&Settings::Model(push.clone()));
        assert_eq!(read_push(query, "ana".into()).unwrap(), push);
    }

    #[test]
    fn bad_parameters_are_refused_naming_them() {
        let params = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let err = read_deploy(params("timeout_ms", "soon"), String::new()).unwrap_err();
        assert!(err.contains("`timeout_ms` must be a whole number"), "{err}");
        let err = read_deploy(params("colour", "red"), String::new()).unwrap_err();
        assert!(err.contains("unknown query parameter `colour`"), "{err}");
        let err = read_deploy(params("allow_outbound", "example.com"), String::new()).unwrap_err();
        assert!(
            err.starts_with("allow_outbound: `example.com` is not an origin"),
            "{err}"
        );
        let err = read_push(params("input_shape.x", "1,0"), String::new()).unwrap_err();
        assert!(err.contains("input_shape.x"), "{err}");
        let err = read_push(params("engine", "tensorrt"), String::new()).unwrap_err();
        assert!(err.contains("use tract or onnxruntime"), "{err}");
        let err = read_push(params("baseline", "md5:00"), String::new()).unwrap_err();
        assert!(err.contains("sha256:"), "{err}");
        assert!(read_version("x").is_err());
    }
}
