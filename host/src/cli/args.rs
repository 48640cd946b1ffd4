//! Arguments shared by several commands: where the store is, which node a
//! client command talks to, and how a serving node is configured.

use clap::Args;
use sluice::cache::CacheConfig;
use sluice::engine::EngineConfig;
use sluice::http::HttpConfig;
use sluice::inference::drift::DriftSettings;
use sluice::node::{Alerts, IdlePolicy, Node, SigningKey};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where deployed functions live: a local directory (the embedded
/// default) or an S3 bucket.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Directory of the embedded store (used when --store is not given).
    #[arg(
        long = "data",
        visible_alias = "data-dir",
        env = "SLUICE_DATA",
        default_value = ".sluice"
    )]
    pub data: PathBuf,
    /// The object store: s3://BUCKET[/PREFIX] (region, credentials and
    /// endpoint from the standard AWS settings, e.g. AWS_REGION,
    /// AWS_PROFILE, AWS_ENDPOINT_URL_S3) or a directory. Overrides --data.
    #[arg(long, env = "SLUICE_STORE")]
    pub store: Option<String>,
    /// The secret precompiled artifacts are signed with (32+ characters);
    /// every node and CLI of one store needs the same to load each other's.
    /// Default: the file ~/.config/sluice/signing-key, made on first use.
    #[arg(long, env = "SLUICE_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// onnxruntime's shared library (libonnxruntime.so, 1.24 or later;
    /// e.g. from the onnxruntime wheel's capi/ folder), loaded at start to
    /// run models pushed with --engine onnxruntime. Without it those
    /// models are refused; every other model runs on tract.
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "PATH")]
    pub onnxruntime: Option<PathBuf>,
}

impl DataArgs {
    pub fn location(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| self.data.display().to_string())
    }

    /// The artifact signing key: --signing-key, else the user's key file
    /// (made on first use), else one for this process alone.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        if let Some(secret) = &self.signing_key {
            return SigningKey::from_secret(secret)
                .map_err(|e| anyhow::anyhow!("SLUICE_SIGNING_KEY: {e}"));
        }
        let Some(file) = config_dir().map(|c| c.join("sluice/signing-key")) else {
            tracing::warn!(
                "no SLUICE_SIGNING_KEY and no home directory: this process trusts only the artifacts it compiles"
            );
            return Ok(SigningKey::ephemeral());
        };
        if let Ok(text) = std::fs::read_to_string(&file) {
            return SigningKey::from_secret(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()));
        }
        let secret = SigningKey::new_secret();
        match write_private(&file, &secret) {
            Ok(()) => {
                tracing::info!(file = %file.display(), "made an artifact signing key");
                Ok(SigningKey::from_secret(&secret).map_err(anyhow::Error::msg)?)
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot save a signing key: this process trusts only the artifacts it compiles; set SLUICE_SIGNING_KEY");
                Ok(SigningKey::ephemeral())
            }
        }
    }
}

/// The user's configuration directory: $XDG_CONFIG_HOME, else ~/.config.
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// Create `file` readable by its owner only, failing if it exists (two
/// first runs at once: the loser reads the winner's).
fn write_private(file: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    out.write_all(text.as_bytes())
}

/// Which node a client command talks to.
#[derive(Args, Clone)]
pub struct TargetArgs {
    /// A running node's URL (e.g. http://127.0.0.1:8080). Without it the
    /// command works directly on the embedded store given by --data.
    #[arg(long, env = "SLUICE_SERVER")]
    pub server: Option<String>,
    /// The API token sent to --server (default: the file
    /// ~/.config/sluice/token, or $XDG_CONFIG_HOME/sluice/token).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

impl TargetArgs {
    /// The API token: --token / SLUICE_TOKEN, else the config file's.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_string()));
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
            });
        let Some(file) = config.map(|c| c.join("sluice/token")) else {
            return Ok(None);
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read the token file {}: {e}",
                file.display()
            )),
        }
    }
}

#[derive(Args)]
pub struct EngineArgs {
    /// Most stage instances alive at once (pooling allocator slots).
    #[arg(long, default_value_t = EngineConfig::default().max_instances)]
    max_instances: u32,
    /// Highest memory cap a function may be deployed with, in MiB.
    #[arg(long, default_value_t = EngineConfig::default().max_memory_bytes >> 20)]
    max_memory_mb: u64,
    /// Run stages under a fuel budget (deterministic, ~10-20% slower).
    #[arg(long)]
    fuel: bool,
    /// Pooling allocator: auto (use it when the address space allows), on or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pooling: String,
    /// Most output one stage call may return (body, tensors and fields),
    /// in MiB; a larger output fails the call with a 500.
    #[arg(long, default_value_t = EngineConfig::default().max_output_bytes >> 20)]
    max_output_mb: u64,
}

impl EngineArgs {
    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            max_instances: self.max_instances,
            max_memory_bytes: self.max_memory_mb << 20,
            fuel: self.fuel,
            max_output_bytes: self.max_output_mb << 20,
            pooling: match self.pooling.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
        }
    }
}

/// A node serving HTTP (`serve` and `up`).
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Under systemd socket activation (LISTEN_FDS,
    /// LISTEN_PID) the inherited socket is used instead.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve the control plane (`/v1/...`: deploy, push, aliases,
    /// rollback, delete, listings, status) on this address instead, and
    /// only invocation, inference and health on --listen. Without it both
    /// planes share --listen.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Exit cleanly (status 0) after this many seconds with no request in
    /// flight or arriving, for nodes a supervisor starts on demand
    /// (Knative, KEDA, systemd socket activation). 0: never.
    #[arg(
        long,
        env = "SLUICE_IDLE_EXIT",
        value_name = "SECS",
        default_value_t = 0
    )]
    pub idle_exit: u64,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Everything that configures a serving node (`serve`, `up`, `lambda`).
#[derive(Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Largest invocation request body, in bytes.
    #[arg(long, default_value_t = HttpConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest component upload, in MiB.
    #[arg(long, default_value_t = HttpConfig::default().max_component_bytes >> 20)]
    max_component_mb: usize,
    /// Largest model upload, in MiB.
    #[arg(long, default_value_t = HttpConfig::default().max_model_bytes >> 20)]
    max_model_mb: usize,
    /// Bytes of request bodies held at once across all requests, in MiB
    /// (by declared length; a chunked body at its route's cap): past it a
    /// request gets 503 with Retry-After, its body read and dropped, never
    /// held.
    #[arg(long, default_value_t = HttpConfig::default().inflight_body_bytes >> 20)]
    max_inflight_body_mb: usize,
    /// A route prefix HTTP functions (wasi:http components) also answer at,
    /// besides /fn: with /api, `/api/NAME/...` is `/fn/NAME/...`.
    #[arg(long, env = "SLUICE_HTTP_PREFIX", value_name = "PREFIX", value_parser = parse_prefix)]
    http_prefix: Option<String>,
    /// Time a client has to send its request headers, in milliseconds.
    #[arg(long, default_value_t = HttpConfig::default().header_timeout.as_millis() as u64)]
    header_timeout_ms: u64,
    /// Time a client has to send its request body, in milliseconds.
    #[arg(long, default_value_t = HttpConfig::default().body_timeout.as_millis() as u64)]
    body_timeout_ms: u64,
    /// Bytes of store documents (version records, aliases) kept in memory.
    #[arg(long, default_value_t = CacheConfig::default().max_bytes)]
    cache_bytes: u64,
    /// Bytes of loaded function templates (compiled code) kept in memory;
    /// past it the least recently called function is unloaded and its next
    /// call is a cold start.
    #[arg(long, default_value_t = CacheConfig::default().template_bytes)]
    template_cache_bytes: u64,
    /// Bytes of pipeline answers kept for pipelines that ask for it
    /// (`cache_ttl_secs`); past it the least recently used go first.
    #[arg(long, default_value_t = CacheConfig::default().result_bytes)]
    result_cache_bytes: u64,
    /// How often this node re-checks aliases in the store, in milliseconds:
    /// a deploy, alias move or rollback made through another node is
    /// served here within this interval.
    #[arg(long, env = "SLUICE_POLL_INTERVAL_MS", default_value_t = CacheConfig::default().poll_interval.as_millis() as u64)]
    poll_interval_ms: u64,
    /// Scale to zero: unload a function (its compiled code and instances)
    /// after this many seconds without a call; the next call is a cold
    /// start. 0 keeps functions loaded. A version's own `idle_secs`
    /// (deploy --idle-secs) overrides it.
    // Five minutes: a function called every few minutes stays warm, while a
    // node's memory still follows its traffic; the cold start it costs is
    // a few milliseconds (BENCHMARKS.md).
    #[arg(long, env = "SLUICE_FUNCTION_IDLE_SECS", default_value_t = 300)]
    function_idle_secs: u64,
    /// Scale to zero: unload a model's plan after this many seconds without
    /// a run. 0 keeps models loaded. A version's own `idle_secs` (models
    /// push --idle-secs) overrides it.
    #[arg(long, env = "SLUICE_MODEL_IDLE_SECS", default_value_t = 300)]
    model_idle_secs: u64,
    /// Drift: judge each model version with a baseline over the rows served
    /// in this many seconds, every node's merged.
    #[arg(long, env = "SLUICE_DRIFT_WINDOW_SECS", default_value_t = 3600)]
    drift_window_secs: u64,
    /// Drift: how often this node writes its windows to the store and
    /// judges them, in seconds.
    #[arg(long, env = "SLUICE_DRIFT_FLUSH_SECS", default_value_t = 10)]
    drift_flush_secs: u64,
    /// Drift: served rows this node keeps per window as a sample for
    /// retraining, written to the store when a model's drift rises and
    /// named in the webhook's `sample` (0: none).
    #[arg(long, env = "SLUICE_DRIFT_SAMPLE_ROWS", default_value_t = 0)]
    drift_sample_rows: usize,
    /// Post alerts as JSON to this URL: drift level changes (model,
    /// version, level, per-feature scores, sample location) and automatic
    /// rollbacks (name, versions, the objective broken, both sides' figures).
    #[arg(long, env = "SLUICE_ALERT_WEBHOOK")]
    alert_webhook: Option<String>,
    /// How often this node judges the rollouts it routes calls of against
    /// their SLO, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    rollout_check_ms: u64,
    /// How often this node writes its heartbeat to the store and counts the
    /// live nodes, in milliseconds: a rate limit is shared out evenly over
    /// the nodes whose heartbeat is younger than three periods.
    #[arg(long, default_value_t = 5000)]
    heartbeat_ms: u64,
}

impl NodeArgs {
    /// Start what a serving node runs beside requests: unloading what is
    /// idle, the rollout and drift watches, the heartbeat.
    pub fn start_background(&self, node: &Arc<Node>) -> anyhow::Result<()> {
        node.spawn_idle_reaper(self.idle());
        if let Some(url) = &self.alert_webhook {
            node.alert_to(Alerts::to(url)?);
        }
        let settings = DriftSettings {
            window: Duration::from_secs(self.drift_window_secs.max(1)),
            sample_rows: self.drift_sample_rows,
        };
        node.spawn_rollout_watch(Duration::from_millis(self.rollout_check_ms.max(10)));
        node.spawn_drift_watch(settings, Duration::from_secs(self.drift_flush_secs.max(1)));
        node.spawn_heartbeat(Duration::from_millis(self.heartbeat_ms.max(100)));
        Ok(())
    }

    pub fn idle(&self) -> IdlePolicy {
        let after = |secs| (secs > 0).then(|| Duration::from_secs(secs));
        IdlePolicy {
            functions: after(self.function_idle_secs),
            models: after(self.model_idle_secs),
        }
    }

    pub fn cache(&self) -> CacheConfig {
        CacheConfig {
            max_bytes: self.cache_bytes,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            template_bytes: self.template_cache_bytes,
            result_bytes: self.result_cache_bytes,
            ..CacheConfig::default()
        }
    }

    pub fn http(&self) -> HttpConfig {
        HttpConfig {
            max_body_bytes: self.max_body_bytes,
            max_component_bytes: self.max_component_mb << 20,
            max_model_bytes: self.max_model_mb << 20,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            inflight_body_bytes: self.max_inflight_body_mb << 20,
            functions_at: self.http_prefix.clone(),
        }
    }
}

/// A route prefix for HTTP functions (`/api`).
fn parse_prefix(prefix: &str) -> Result<String, String> {
    sluice::http::check_prefix(prefix).map(|()| prefix.to_string())
}

/// `KEY=VALUE`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `NAME=DIMS`, e.g. `x=N,3,48,192`.
pub fn parse_input_shape(s: &str) -> Result<(String, Vec<i64>), String> {
    let (name, dims) = parse_key_value(s)?;
    let dims = sluice::tensor::parse_shape(&dims).map_err(|e| format!("`{name}`: {e}"))?;
    Ok((name, dims))
}

/// What `--expect` says an alias points at now.
#[derive(Clone, Copy)]
pub struct Expect(pub Option<u64>);

/// A version number or `none`.
pub fn parse_expect(s: &str) -> Result<Expect, String> {
    match s {
        "none" => Ok(Expect(None)),
        n => n
            .parse()
            .map(|v| Expect(Some(v)))
            .map_err(|_| format!("expected a version number or `none`, got {s:?}")),
    }
}
