//! The wasmtime engine every stage runs on.
//!
//! One [`Engine`] per node: the component model, the pooling allocator (or
//! on-demand allocation where the pool cannot be reserved), epoch
//! interruption for per-call deadlines and, optionally, fuel. The linker is
//! built once and shared; each request then gets a fresh instance from a
//! function version's pre-instantiated template ([`StagePre`]).
//!
//! - [`worlds`] decides which capability world an uploaded component fits.
//! - [`host`] implements the WIT imports (`log`, `config`, `inference`,
//!   `features`) and the sandbox state of one call; [`wasi_nn`] serves the
//!   standard `wasi:nn` interface over the same models.
//! - [`call`] runs one stage call, or one HTTP request of an HTTP function,
//!   under its deadline and memory cap and turns every way it can fail into
//!   a [`CallError`]; [`outbound`] decides where its outgoing HTTP may go.
//! - `convert` is the WIT edge: the contract's generated types to Sluice's
//!   own [`crate::tensor`] types and back.

mod call;
mod convert;
mod host;
pub mod outbound;
mod output;
mod wasi_nn;
pub mod worlds;

pub use call::{CallError, StageLimits};
pub use host::{Grant, HttpPre, Reach, StageIdentity, StagePre};
pub use outbound::{Origin, Outbound};
pub use worlds::{World, WorldError};

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};

/// How often the epoch advances. Deadlines are checked (and a running
/// guest yields to the async runtime) at this granularity, so a looping
/// stage never holds a worker thread for longer than one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a released memory or table slot kept resident and reset in
/// place rather than returned to the kernel. With `PAGEMAP_SCAN` (Linux
/// 6.7+) only the pages the stage dirtied are reset, so this can cover a
/// Rust stage's 1 MiB shadow stack and first heap pages: no `madvise`, no
/// TLB shootdown and no page faults per request. Without it the reset is a
/// memset of the whole resident part, so only 64 KiB stay. Measured in
/// `benches/stage_call.rs` and `benches/pipelines.rs` (see BENCHMARKS.md).
fn keep_resident() -> usize {
    if pagemap_scan() { 2 << 20 } else { 64 << 10 }
}

/// Whether the kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7 and later).
fn pagemap_scan() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || numbers.next().and_then(|n| n.parse::<u32>().ok());
    matches!((next(), next()), (Some(major), Some(minor)) if (major, minor) >= (6, 7))
}

/// Node-wide engine settings. The defaults suit a small node; each is a
/// `sluice serve` flag.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances that may exist at once (pooling slots). 1,000 concurrent
    /// requests is more than a 2-core node can serve without queueing, and
    /// each slot costs only address space until used.
    pub max_instances: u32,
    /// The largest memory cap any function may ask for. Sizes the pool's
    /// memory slots, so a per-function cap can only lower it.
    pub max_memory_bytes: u64,
    /// Whether stages run under a fuel budget (deterministic instruction
    /// counting, ~10-20% slower code). Deadlines apply either way.
    pub fuel: bool,
    /// Use the pooling allocator: `None` tries it and falls back to
    /// on-demand allocation when the pool cannot be reserved.
    pub pooling: Option<bool>,
    /// The most a call's output (body, tensors and fields) may hold; a
    /// larger one fails the call rather than travel on.
    pub max_output_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_memory_bytes: 256 << 20,
            fuel: false,
            pooling: None,
            max_output_bytes: 64 << 20,
        }
    }
}

/// Why the engine could not be built or a component not be prepared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the wasmtime engine: {0}")]
    Config(String),
    /// The bytes are not a component this engine can run.
    #[error(transparent)]
    Refused(#[from] WorldError),
}

/// A function version linked for its entry point.
#[derive(Clone)]
pub enum Template {
    /// A stage: called with a message.
    Stage(StagePre),
    /// An HTTP function: called with the HTTP request.
    Http(HttpPre),
}

/// The engine, the linker with every host interface, and the fingerprint
/// that keys precompiled artifacts.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    linker: Arc<Linker<host::StageState>>,
    fingerprint: Arc<str>,
    pooling: bool,
    config: EngineConfig,
}

impl Engine {
    /// Build the engine and start its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let (inner, pooling) = match config.pooling {
            Some(pooling) => (build(&config, pooling)?, pooling),
            None => match build(&config, true) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable (address space?); using on-demand allocation");
                    (build(&config, false)?, false)
                }
            },
        };
        let linker = host::linker(&inner).map_err(|e| EngineError::Config(e.to_string()))?;
        let fingerprint = fingerprint(&inner);
        spawn_epoch_ticker(&inner)
            .map_err(|e| EngineError::Config(format!("cannot start the epoch ticker: {e}")))?;
        tracing::info!(pooling, %fingerprint, "engine ready");
        Ok(Self {
            inner,
            linker: Arc::new(linker),
            fingerprint: fingerprint.into(),
            pooling,
            config,
        })
    }

    /// Identifies the compiled-code format: a `.cwasm` made by an engine with
    /// another fingerprint cannot be loaded by this one.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The node-wide settings this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Compile component bytes and check they fit a world. CPU-bound
    /// (tens of milliseconds for a small stage): call it off the reactor.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, World), EngineError> {
        worlds::check_header(bytes)?;
        let component = Component::new(&self.inner, bytes)
            .map_err(|e| WorldError::Invalid(format!("{e:#}")))?;
        let world = worlds::classify(&self.inner, &component)?;
        Ok((component, world))
    }

    /// Serialise a compiled component into a `.cwasm` artifact.
    pub fn serialize(&self, component: &Component) -> Result<Vec<u8>, EngineError> {
        component
            .serialize()
            .map_err(|e| EngineError::Config(e.to_string()))
    }

    /// Load a `.cwasm` artifact made by [`Engine::serialize`] on an engine
    /// with the same fingerprint.
    ///
    /// # Safety
    ///
    /// The bytes run as native code: they must come from a store only
    /// Sluice writes (see `store`), never from a client.
    pub unsafe fn deserialize(&self, cwasm: &[u8]) -> Result<Component, EngineError> {
        // SAFETY: the caller vouches for the origin of the bytes.
        unsafe { Component::deserialize(&self.inner, cwasm) }
            .map_err(|e| EngineError::Config(format!("{e:#}")))
    }

    /// Link a compiled component of `world` into a template that
    /// instantiates in microseconds. Fails when an import's type does not
    /// match the host's.
    pub fn prepare(&self, component: &Component, world: World) -> Result<Template, EngineError> {
        let invalid =
            |e: wasmtime::Error| EngineError::Refused(WorldError::Invalid(format!("{e:#}")));
        let pre = self.linker.instantiate_pre(component).map_err(invalid)?;
        Ok(match world {
            World::Http => Template::Http(HttpPre::new(pre).map_err(invalid)?),
            _ => Template::Stage(StagePre::new(pre).map_err(invalid)?),
        })
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }
}

fn build(config: &EngineConfig, pooling: bool) -> Result<wasmtime::Engine, EngineError> {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(config.fuel);
    if pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        let slots = config.max_instances;
        pool.total_component_instances(slots)
            // A Rust stage is a handful of core instances (the module plus
            // small shims), with one memory and a few tables.
            .total_core_instances(slots * 4)
            .total_memories(slots)
            .total_tables(slots * 4)
            .total_stacks(slots)
            .max_memory_size(config.max_memory_bytes as usize)
            // Keep a released slot's first pages resident: the next request
            // reuses them after a reset of the dirty ones, instead of page
            // faults (without PAGEMAP_SCAN the reset is a memset of the
            // whole resident part).
            .linear_memory_keep_resident(keep_resident())
            .table_keep_resident(keep_resident())
            .pagemap_scan(wasmtime::Enabled::Auto);
        wasm.allocation_strategy(pool);
    }
    wasmtime::Engine::new(&wasm).map_err(|e| EngineError::Config(format!("{e:#}")))
}

/// sha256 over wasmtime's own compatibility hash (its version, the target
/// and the settings that shape compiled code), shortened for store keys.
fn fingerprint(engine: &wasmtime::Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    hex::encode(&digest[..12])
}

/// Advance the epoch every [`EPOCH_TICK`] for as long as the engine lives.
fn spawn_epoch_ticker(engine: &wasmtime::Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}
