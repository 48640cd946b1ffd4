//! One stage call: a fresh instance from the version's template, run under
//! a deadline, a memory cap and optionally a fuel budget, with every way it
//! can fail turned into a [`CallError`] the HTTP layer maps to a status.

use super::host::{MemoryLimitExceeded, Reach, StageIdentity, StagePre, StageState, wit};
use super::output::CapturedOutput;
use super::{EPOCH_TICK, Engine};
use crate::observe::metrics::CallCost;
use crate::tensor::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use wasmtime::{Store, Trap, UpdateDeadline};

/// Per function version limits, chosen at deploy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLimits {
    /// Wall-clock deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Cap on the stage's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Instructions one call may execute, when the node runs with fuel.
    pub fuel: u64,
}

impl Default for StageLimits {
    /// 10 s is far above any healthy stage and well below client and load
    /// balancer timeouts (30-60 s); 128 MiB holds a batch of tens of MB of
    /// tensors with room to spare; 10^10 instructions is a few seconds.
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            memory_bytes: 128 << 20,
            fuel: 10_000_000_000,
        }
    }
}

impl StageLimits {
    /// The fuel a deploy or a pipeline step may give a stage: from a
    /// million instructions (a trivial stage's start-up) to a thousand
    /// times the default.
    pub fn fuel_range() -> std::ops::RangeInclusive<u64> {
        1_000_000..=1_000 * Self::default().fuel
    }
}

/// How a stage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The stage refused the input (HTTP 400).
    #[error("{0}")]
    InvalidInput(String),
    /// The stage reported an internal failure (HTTP 500).
    #[error("{0}")]
    Failed(String),
    /// The call ran past its deadline and was stopped (HTTP 504).
    #[error("deadline exceeded: the stage ran longer than its {}ms limit", .0.as_millis())]
    DeadlineExceeded(Duration),
    /// The stage tried to grow its memory past its cap (HTTP 500).
    #[error("{0}")]
    MemoryLimit(MemoryLimitExceeded),
    /// The stage used up its fuel budget (HTTP 500).
    #[error("fuel exhausted: the stage executed more than {0} instructions")]
    FuelExhausted(u64),
    /// The stage trapped: a panic, an out-of-bounds access... (HTTP 500).
    #[error("the stage trapped: {0}")]
    Trap(String),
    /// The stage returned more than the node takes from one call (HTTP 500).
    #[error(
        "the stage returned {bytes} bytes, more than this node's per-call output cap of {max} bytes (--max-output-mb)"
    )]
    OutputTooLarge {
        /// What it returned.
        bytes: u64,
        /// The cap.
        max: u64,
    },
}

impl CallError {
    /// A short name of its kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Failed(_) => "failed",
            Self::DeadlineExceeded(_) => "deadline",
            Self::MemoryLimit(_) => "memory_limit",
            Self::FuelExhausted(_) => "fuel_exhausted",
            Self::Trap(_) => "trap",
            Self::OutputTooLarge { .. } => "output_too_large",
        }
    }
}

/// Bytes of stdout/stderr kept per call.
const OUTPUT_CAPACITY: usize = 64 * 1024;
/// How long past the deadline a call may stay inside a host function
/// before its future is dropped (the epoch check only fires in guest code).
const HOST_CALL_GRACE: Duration = Duration::from_millis(500);

/// Why the epoch callback stopped a call.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct Deadline;

impl Engine {
    /// Run one call of a stage on a fresh instance.
    pub async fn call(
        &self,
        pre: &StagePre,
        identity: StageIdentity,
        config: Arc<BTreeMap<String, String>>,
        limits: StageLimits,
        reach: Reach,
        input: Message,
    ) -> Result<Message, CallError> {
        let stdout = CapturedOutput::new(OUTPUT_CAPACITY);
        let stderr = CapturedOutput::new(OUTPUT_CAPACITY);
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = Instant::now() + timeout;
        let state = StageState::new(
            identity.clone(),
            config,
            limits.memory_bytes,
            deadline,
            reach,
            stdout.clone(),
            stderr.clone(),
        );
        let mut store = Store::new(self.wasmtime(), state);
        store.limiter(|state| state.limiter());
        // Trap once the deadline has passed; until then yield to the async
        // runtime every tick so a busy stage never starves other requests.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(Deadline))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        if self.config.fuel {
            store
                .set_fuel(limits.fuel)
                .map_err(|e| CallError::Trap(e.to_string()))?;
            store
                .fuel_async_yield_interval(Some(10_000_000))
                .map_err(|e| CallError::Trap(e.to_string()))?;
        }

        let _active = identity.metrics.enter();
        let started = Instant::now();
        let mut instantiated = None;
        let input = wit::Message::from(input);
        let run = async {
            let node = pre.instantiate_async(&mut store).await?;
            instantiated = Some(started.elapsed());
            node.sluice_pipeline_stage()
                .call_run(&mut store, &input)
                .await
        };
        let span =
            tracing::info_span!("stage", function = %identity.function, version = identity.version);
        let outcome = tokio::time::timeout(timeout + HOST_CALL_GRACE + EPOCH_TICK, run)
            .instrument(span)
            .await;
        let elapsed = started.elapsed();
        log_output(&identity, "stdout", &stdout.text());
        let stderr = stderr.text();
        log_output(&identity, "stderr", &stderr);

        let result = match outcome {
            Err(_elapsed) => Err(CallError::DeadlineExceeded(timeout)),
            Ok(Ok(Ok(output))) => {
                let output = Message::from(output);
                match output.byte_size() {
                    bytes if bytes > self.config.max_output_bytes => {
                        Err(CallError::OutputTooLarge {
                            bytes,
                            max: self.config.max_output_bytes,
                        })
                    }
                    _ => Ok(output),
                }
            }
            Ok(Ok(Err(wit::StageError::InvalidInput(m)))) => Err(CallError::InvalidInput(m)),
            // A host call cut short by the deadline (wasi-nn) comes back as
            // the stage's own failure if it returns before the next epoch
            // check: it is the deadline all the same.
            Ok(Ok(Err(wit::StageError::Internal(_)))) if Instant::now() >= deadline => {
                Err(CallError::DeadlineExceeded(timeout))
            }
            Ok(Ok(Err(wit::StageError::Internal(m)))) => Err(CallError::Failed(m)),
            Ok(Err(error)) => Err(classify_trap(error, timeout, limits.fuel, &stderr)),
        };
        let cost = CallCost {
            instantiation: instantiated.unwrap_or(elapsed),
            total: elapsed,
            fuel: self
                .config
                .fuel
                .then(|| limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0))),
            memory_peak: store.data().memory_peak(),
        };
        identity
            .metrics
            .record(&cost, result.as_ref().map(|_| ()).map_err(CallError::kind));
        tracing::debug!(function = %identity.function, version = identity.version,
            elapsed_us = elapsed.as_micros() as u64, ok = result.is_ok(), "stage call");
        result
    }

    /// Instantiate a template in a fresh store and drop it: the fixed cost
    /// every request pays, measured on its own by the benchmarks.
    pub async fn instantiate(
        &self,
        pre: &StagePre,
        identity: StageIdentity,
    ) -> Result<(), CallError> {
        let output = CapturedOutput::new(0);
        let state = StageState::new(
            identity,
            Arc::default(),
            StageLimits::default().memory_bytes,
            Instant::now() + Duration::from_millis(StageLimits::default().timeout_ms),
            Reach::default(),
            output.clone(),
            output,
        );
        let mut store = Store::new(self.wasmtime(), state);
        store.limiter(|state| state.limiter());
        store.set_epoch_deadline(u64::MAX / 2);
        pre.instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Trap(format!("{e:#}")))?;
        Ok(())
    }
}

fn classify_trap(error: wasmtime::Error, timeout: Duration, fuel: u64, stderr: &str) -> CallError {
    if error.downcast_ref::<Deadline>().is_some()
        || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
    {
        return CallError::DeadlineExceeded(timeout);
    }
    if let Some(cap) = error.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::MemoryLimit(MemoryLimitExceeded {
            cap: cap.cap,
            desired: cap.desired,
        });
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
        return CallError::FuelExhausted(fuel);
    }
    let reason = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    // A Rust panic prints "panicked at FILE:LINE:COL:\nMESSAGE" before the
    // `unreachable` trap: that message is the reason the author needs.
    match panic_message(stderr) {
        Some(panic) => CallError::Trap(format!("{panic} ({reason})")),
        None => CallError::Trap(reason),
    }
}

fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let mut lines = stderr[start..].lines();
    let location = lines.next()?.trim_end_matches(':');
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note:")).collect();
    Some(format!("{location}: {}", message.join(" ").trim()))
}

fn log_output(identity: &StageIdentity, stream: &str, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(target: "sluice::guest", function = %identity.function, version = identity.version,
            request_id = %identity.request_id, stream, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted_from_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:33:24:\ndeliberate panic\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at src/lib.rs:33:24: deliberate panic")
        );
        assert_eq!(panic_message("nothing here"), None);
    }
}
