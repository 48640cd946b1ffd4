//! Dynamic batching: concurrent requests to one model version are joined
//! along the batch dimension (axis 0) and run as one, up to
//! `max_batch_size` rows, waiting at most `max_queue_delay` for company.
//! At most `max_queue_size` requests wait; past that a request is refused
//! at once (503, retry) rather than held, so a burst cannot pile up
//! decoded inputs in memory without end.
//!
//! Only requests whose inputs agree on everything but the batch dimension
//! run together; the others wait for the next batch. Outputs are split back
//! by each request's rows. If a batch fails, its requests are run one by
//! one, so a bad request fails only itself.

use super::{InferenceError, ModelVersion, Plan};
use crate::observe::metrics::{ModelMetrics, metrics};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tract_onnx::prelude::*;

/// Batching settings of a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batching {
    /// Most rows in one run.
    pub max_batch_size: u32,
    /// Longest a request waits for others, in microseconds.
    pub max_queue_delay_us: u64,
    /// Most requests waiting for a run; more are refused.
    #[serde(default = "Batching::default_max_queue_size")]
    pub max_queue_size: u32,
}

impl Batching {
    /// Requests that may wait for a run unless the push says otherwise
    /// (and for versions pushed before there was a bound).
    pub const DEFAULT_MAX_QUEUE_SIZE: u32 = 1024;

    fn default_max_queue_size() -> u32 {
        Self::DEFAULT_MAX_QUEUE_SIZE
    }
}

/// Counters: how much batching happened.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Runs made by batchers.
    pub batches: AtomicU64,
    /// Requests those runs served.
    pub requests: AtomicU64,
}

type Reply = oneshot::Sender<Result<TVec<TValue>, InferenceError>>;

struct Job {
    inputs: TVec<TValue>,
    reply: Reply,
}

/// The queue in front of one model version's plan.
pub struct Batcher {
    queue: mpsc::Sender<Job>,
    /// Named in refusals.
    model: String,
    version: u64,
    max_queue_size: u32,
}

impl Batcher {
    /// Start a batcher for `plan`, the model version `record` (its task
    /// ends when the batcher is dropped).
    pub fn start(
        record: &ModelVersion,
        plan: Plan,
        settings: Batching,
        runs: Arc<Semaphore>,
        stats: Arc<BatchStats>,
    ) -> Self {
        let max_queue_size = settings.max_queue_size;
        let (queue, jobs) = mpsc::channel(max_queue_size as usize);
        let metrics = metrics().model(&record.name, record.version);
        tokio::spawn(serve(plan, settings, runs, stats, metrics, jobs));
        Self {
            queue,
            model: record.name.clone(),
            version: record.version,
            max_queue_size,
        }
    }

    /// Run `inputs` as part of a batch, or refuse them at once if
    /// `max_queue_size` requests are already waiting.
    pub async fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, InferenceError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { inputs, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => InferenceError::QueueFull {
                    model: self.model.clone(),
                    version: self.version,
                    max_queue_size: self.max_queue_size,
                },
                mpsc::error::TrySendError::Closed(_) => {
                    InferenceError::Internal("the model's batcher stopped".into())
                }
            })?;
        answer.await.map_err(|_| {
            InferenceError::Internal("the model's batcher dropped the request".into())
        })?
    }
}

fn rows(inputs: &TVec<TValue>) -> usize {
    inputs
        .first()
        .map_or(0, |t| t.shape().first().copied().unwrap_or(0))
}

/// Whether two requests can share a run: same types, same shapes but axis 0.
fn compatible(a: &TVec<TValue>, b: &TVec<TValue>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.datum_type() == y.datum_type()
                && x.rank() == y.rank()
                && x.rank() > 0
                && x.shape()[1..] == y.shape()[1..]
        })
}

async fn serve(
    plan: Plan,
    settings: Batching,
    runs: Arc<Semaphore>,
    stats: Arc<BatchStats>,
    metrics: ModelMetrics,
    mut jobs: mpsc::Receiver<Job>,
) {
    let max_rows = settings.max_batch_size.max(1) as usize;
    let delay = Duration::from_micros(settings.max_queue_delay_us);
    // A request that could not join the last batch starts the next one.
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut total = rows(&batch[0].inputs);
        let deadline = tokio::time::Instant::now() + delay;
        while total < max_rows {
            let next = match tokio::time::timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) | Err(_) => break,
            };
            let fits = compatible(&batch[0].inputs, &next.inputs)
                && total + rows(&next.inputs) <= max_rows;
            if !fits {
                held = Some(next);
                break;
            }
            total += rows(&next.inputs);
            batch.push(next);
        }
        let Ok(permit) = runs.clone().acquire_owned().await else {
            return;
        };
        let plan = plan.clone();
        let stats = stats.clone();
        metrics.batch(batch.len());
        // Run off the batcher's task so the next batch can gather meanwhile.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .requests
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            run_batch(&plan, batch);
        });
    }
}

fn run_batch(plan: &Plan, batch: Vec<Job>) {
    if batch.len() == 1 {
        let job = batch.into_iter().next().expect("one job");
        let _ = job.reply.send(run_one(plan, job.inputs));
        return;
    }
    match run_joined(plan, &batch) {
        Ok(split) => {
            for (job, outputs) in batch.into_iter().zip(split) {
                let _ = job.reply.send(Ok(outputs));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, requests = batch.len(), "batched run failed; running its requests one by one");
            for job in batch {
                let _ = job.reply.send(run_one(plan, job.inputs));
            }
        }
    }
}

fn run_one(plan: &Plan, inputs: TVec<TValue>) -> Result<TVec<TValue>, InferenceError> {
    plan.run(inputs)
}

/// Join the batch along axis 0, run once, split the outputs back.
fn run_joined(plan: &Plan, batch: &[Job]) -> Result<Vec<TVec<TValue>>, InferenceError> {
    let internal = |e: TractError| InferenceError::Internal(format!("{e:#}"));
    let inputs = batch[0].inputs.len();
    let mut joined = TVec::new();
    for i in 0..inputs {
        let parts: Vec<&Tensor> = batch.iter().map(|job| &*job.inputs[i]).collect();
        joined.push(
            Tensor::stack_tensors(0, &parts)
                .map_err(internal)?
                .into_tvalue(),
        );
    }
    let outputs = plan.run(joined)?;
    let total: usize = batch.iter().map(|job| rows(&job.inputs)).sum();
    let mut split = Vec::with_capacity(batch.len());
    let mut start = 0;
    for job in batch {
        let n = rows(&job.inputs);
        let mut mine = TVec::new();
        for output in &outputs {
            if output.rank() == 0 || output.shape()[0] != total {
                return Err(InferenceError::Internal(
                    "an output does not carry the batch dimension".into(),
                ));
            }
            mine.push(
                output
                    .slice(0, start, start + n)
                    .map_err(internal)?
                    .into_tvalue(),
            );
        }
        split.push(mine);
        start += n;
    }
    Ok(split)
}
