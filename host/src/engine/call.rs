//! One stage call: a fresh instance from the version's template, run under
//! a deadline, a memory cap and optionally a fuel budget, with every way it
//! can fail turned into a [`CallError`] the HTTP layer maps to a status.

use super::host::{HttpPre, MemoryLimitExceeded, Reach, StageIdentity, StagePre, StageState, wit};
use super::output::CapturedOutput;
use super::{EPOCH_TICK, Engine};
use crate::observe::metrics::CallCost;
use crate::tensor::Message;
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

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

/// One call's store and what it is measured against.
struct Sandbox {
    store: Store<StageState>,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
    timeout: Duration,
    deadline: Instant,
    limits: StageLimits,
    identity: StageIdentity,
}

impl Engine {
    /// A fresh store for one call of `identity`: its memory cap, a
    /// deadline checked every epoch tick, and fuel when the node counts it.
    fn sandbox(
        &self,
        identity: StageIdentity,
        config: Arc<BTreeMap<String, String>>,
        limits: StageLimits,
        reach: Reach,
        environment: bool,
    ) -> Result<Sandbox, CallError> {
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
            (stdout.clone(), stderr.clone()),
            environment,
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
        Ok(Sandbox {
            store,
            stdout,
            stderr,
            timeout,
            deadline,
            limits,
            identity,
        })
    }

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
        let mut sandbox = self.sandbox(identity, config, limits, reach, false)?;
        let _active = sandbox.identity.metrics.enter();
        let started = Instant::now();
        let mut instantiated = None;
        let input = wit::Message::from(input);
        let store = &mut sandbox.store;
        let run = async {
            let node = pre.instantiate_async(&mut *store).await?;
            instantiated = Some(started.elapsed());
            node.sluice_pipeline_stage()
                .call_run(&mut *store, &input)
                .await
        };
        let span = tracing::info_span!("stage", function = %sandbox.identity.function, version = sandbox.identity.version);
        let outcome = tokio::time::timeout(sandbox.timeout + HOST_CALL_GRACE + EPOCH_TICK, run)
            .instrument(span)
            .await;
        let stderr = sandbox.log_output();
        let (timeout, deadline) = (sandbox.timeout, sandbox.deadline);
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
        self.record(&sandbox, started, instantiated, result.as_ref().map(drop));
        result
    }

    /// Serve one HTTP request with an HTTP function on a fresh instance.
    /// Answers when the function sets its response; the body streams from
    /// the instance, which runs on (under the same deadline) until it
    /// finishes writing it.
    pub async fn serve<B>(
        &self,
        pre: &HttpPre,
        identity: StageIdentity,
        config: Arc<BTreeMap<String, String>>,
        limits: StageLimits,
        reach: Reach,
        request: axum::http::Request<B>,
    ) -> Result<axum::http::Response<axum::body::Body>, CallError>
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut sandbox = self.sandbox(identity, config, limits, reach, true)?;
        let (sender, response) = tokio::sync::oneshot::channel();
        let mut http = sandbox.store.data_mut().http();
        let trap = |e: wasmtime::Error| CallError::Trap(format!("{e:#}"));
        let request = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(trap)?;
        let out = http.new_response_outparam(sender).map_err(trap)?;
        let (engine, pre) = (self.clone(), pre.clone());
        let span = tracing::info_span!("http", function = %sandbox.identity.function, version = sandbox.identity.version);
        let task = tokio::spawn(
            async move {
                let _active = sandbox.identity.metrics.enter();
                let started = Instant::now();
                let mut instantiated = None;
                let store = &mut sandbox.store;
                let run = async {
                    let proxy = pre.instantiate_async(&mut *store).await?;
                    instantiated = Some(started.elapsed());
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut *store, request, out)
                        .await
                };
                let outcome =
                    tokio::time::timeout(sandbox.timeout + HOST_CALL_GRACE + EPOCH_TICK, run).await;
                let stderr = sandbox.log_output();
                let result = match outcome {
                    Err(_elapsed) => Err(CallError::DeadlineExceeded(sandbox.timeout)),
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(classify_trap(
                        error,
                        sandbox.timeout,
                        sandbox.limits.fuel,
                        &stderr,
                    )),
                };
                engine.record(&sandbox, started, instantiated, result.as_ref().copied());
                result
            }
            .instrument(span),
        );
        match response.await {
            // Past the node's output cap the body is cut off with an error.
            Ok(Ok(response)) => Ok(response.map(|body| {
                let body = body.map_err(|code| format!("the function's body failed: {code:?}"));
                axum::body::Body::new(Limited::new(body, self.config.max_output_bytes as usize))
            })),
            Ok(Err(code)) => Err(CallError::Failed(format!(
                "the function answered with the error {code:?} instead of a response"
            ))),
            // The instance ended without answering: say why.
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(CallError::Failed(
                    "the function returned without setting a response (`ResponseOutparam::set`)"
                        .into(),
                )),
                Err(join) => Err(CallError::Trap(join.to_string())),
            },
        }
    }

    /// Count a finished call's cost and outcome.
    fn record(
        &self,
        sandbox: &Sandbox,
        started: Instant,
        instantiated: Option<Duration>,
        result: Result<(), &CallError>,
    ) {
        let elapsed = started.elapsed();
        let cost = CallCost {
            instantiation: instantiated.unwrap_or(elapsed),
            total: elapsed,
            fuel: self.config.fuel.then(|| {
                sandbox
                    .limits
                    .fuel
                    .saturating_sub(sandbox.store.get_fuel().unwrap_or(0))
            }),
            memory_peak: sandbox.store.data().memory_peak(),
        };
        let identity = &sandbox.identity;
        identity
            .metrics
            .record(&cost, result.map_err(CallError::kind));
        tracing::debug!(function = %identity.function, version = identity.version,
            elapsed_us = elapsed.as_micros() as u64, ok = result.is_ok(), "stage call");
    }

    /// Instantiate a template in a fresh store and drop it: the fixed cost
    /// every request pays, measured on its own by the benchmarks.
    pub async fn instantiate(
        &self,
        pre: &StagePre,
        identity: StageIdentity,
    ) -> Result<(), CallError> {
        let mut sandbox = self.sandbox(
            identity,
            Arc::default(),
            StageLimits::default(),
            Reach::default(),
            false,
        )?;
        sandbox.store.set_epoch_deadline(u64::MAX / 2);
        pre.instantiate_async(&mut sandbox.store)
            .await
            .map_err(|e| CallError::Trap(format!("{e:#}")))?;
        Ok(())
    }
}

impl Sandbox {
    /// Put what the call printed into the node's log; returns stderr (a
    /// Rust panic's message is there).
    fn log_output(&self) -> String {
        log_output(&self.identity, "stdout", &self.stdout.text());
        let stderr = self.stderr.text();
        log_output(&self.identity, "stderr", &stderr);
        stderr
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
