//! Logs, request ids, counters, Prometheus metrics (`metrics.rs`) and
//! OpenTelemetry traces (`trace.rs`).

pub mod metrics;
pub mod trace;

use serde::Serialize;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber: log lines, and spans exported over OTLP
/// when the environment asks for it ([`trace`]; call inside the Tokio
/// runtime). `RUST_LOG` overrides the default filter (`info`, with guest
/// records at `debug` and above). The exporter, if any, is returned to be
/// shut down (flushed) at exit.
pub fn init_logging(format: LogFormat, target: LogTarget) -> Option<trace::Traces> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let exporting = if trace::requested() {
        match trace::start() {
            Ok(started) => Some(started),
            Err(e) => {
                eprintln!("warning: {e}; traces are not exported");
                None
            }
        }
    } else {
        None
    };
    let spans = if exporting.is_some() {
        tracing_subscriber::filter::Directive::from(tracing::Level::INFO)
    } else {
        tracing_subscriber::filter::LevelFilter::OFF.into()
    };
    let spans = format!("{}={spans}", trace::SPANS);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sluice::guest=debug"))
        .add_directive(spans.parse().expect("a valid directive"));
    let (writer, ansi) = match target {
        LogTarget::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
        LogTarget::Stdout => (BoxMakeWriter::new(std::io::stdout), false),
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    let (traces, tracer) = exporting.unzip();
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(otel)
        .with(filter)
        .try_init();
    traces
}

/// This process's name among the nodes sharing a store (in the keys of
/// the windows it writes, in audit records of what it decided alone):
/// the host name, the process id and the start time, unique per process.
pub fn node_id() -> &'static str {
    static ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
        format!("{host}-{}-{:x}", std::process::id(), started & 0xffff_ffff)
    });
    &ID
}

/// Where log lines go.
#[derive(Debug, Clone, Copy)]
pub enum LogTarget {
    /// Standard error (a node's stdout carries only its address line).
    Stderr,
    /// Standard output (Lambda).
    Stdout,
}

/// The process's resident memory (Linux: `/proc/self/status`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Resident {
    /// All resident pages, in bytes.
    pub bytes: u64,
    /// Of which anonymous (heap, stacks): what unloading can free. The rest
    /// is file-backed, mostly this binary's code, shared and reclaimable.
    pub anonymous_bytes: u64,
}

/// The process's resident memory, where the platform tells. A file read:
/// call it off the async workers.
pub fn resident() -> Option<Resident> {
    #[cfg(test)]
    blocking_calls::record("resident");
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some(Resident {
        bytes: field("VmRSS:")?,
        anonymous_bytes: field("RssAnon:")?,
    })
}

/// Hand memory freed by unloading back to the operating system now, rather
/// than when the allocators get round to it: mimalloc's (Rust's heap) and
/// glibc's (onnxruntime's, a C library's). Both walk their heaps: call it
/// off the async workers.
pub fn release_free_memory() {
    #[cfg(test)]
    blocking_calls::record("release_free_memory");
    // SAFETY: mi_collect only releases free pages; it has no preconditions.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Node counters, exposed by `GET /v1/status`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Components compiled by this process (deploys and cache misses).
    pub components_compiled: AtomicU64,
    /// Precompiled artifacts loaded from the store instead of compiling.
    pub artifacts_loaded: AtomicU64,
    /// Functions loaded on demand (a cold start: first call, or the first
    /// after an idle unload).
    pub cold_starts: AtomicU64,
    /// Stage calls started.
    pub invocations: AtomicU64,
    /// HTTP requests served.
    pub http_requests: AtomicU64,
    /// HTTP requests being handled right now (an autoscaling signal).
    pub in_flight: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    /// See [`Stats::components_compiled`].
    pub components_compiled: u64,
    /// See [`Stats::artifacts_loaded`].
    pub artifacts_loaded: u64,
    /// See [`Stats::cold_starts`].
    pub cold_starts: u64,
    /// See [`Stats::invocations`].
    pub invocations: u64,
    /// See [`Stats::http_requests`].
    pub http_requests: u64,
    /// See [`Stats::in_flight`].
    pub in_flight: u64,
}

impl Stats {
    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            components_compiled: self.components_compiled.load(Ordering::Relaxed),
            artifacts_loaded: self.artifacts_loaded.load(Ordering::Relaxed),
            cold_starts: self.cold_starts.load(Ordering::Relaxed),
            invocations: self.invocations.load(Ordering::Relaxed),
            http_requests: self.http_requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// A request id: the caller's `x-request-id` when it is sane, else a new
/// one (process-unique: start time, pid and a counter).
pub fn request_id(given: Option<&str>) -> Arc<str> {
    if let Some(id) = given
        && !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return id.into();
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        format!("{start:x}-{:x}", std::process::id())
    });
    // Written into a buffer on the stack: an id costs one allocation.
    let mut id = [0u8; 64];
    let mut free = &mut id[..];
    let _ = write!(
        free,
        "{prefix}-{:x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let written = 64 - free.len();
    std::str::from_utf8(&id[..written]).map_or_else(|_| Arc::from("request"), Arc::from)
}

/// Which threads ran the blocking calls above, so tests can check they
/// stay off the async workers.
#[cfg(test)]
pub(crate) mod blocking_calls {
    use std::sync::Mutex;
    use std::thread::ThreadId;

    static CALLS: Mutex<Vec<(&'static str, ThreadId)>> = Mutex::new(Vec::new());

    pub(crate) fn record(call: &'static str) {
        if let Ok(mut calls) = CALLS.lock() {
            calls.push((call, std::thread::current().id()));
        }
    }

    /// Every call made so far, with the thread it ran on.
    pub(crate) fn made() -> Vec<(&'static str, ThreadId)> {
        CALLS.lock().map(|calls| calls.clone()).unwrap_or_default()
    }
}
