//! Rollouts on a node: routing the unqualified calls of a name through its
//! rollout (`registry/rollout.rs` holds the policy), running a shadow's
//! copies off the request path, and judging the new version against its
//! SLO on the calls this node routed, rolling it back on every node (one
//! head write, one audit record, one alert) when it breaks.

use super::{Kind, Node, NodeError};
use crate::access::Change;
use crate::observe::metrics::{RolloutLabels, metrics};
use crate::registry::rollout::{self, draw};
use crate::registry::{Arm, Head, Name, Routed, Selector, Slo, StickyKey, now_rfc3339};
use crate::tensor::{Message, Scalar};
use axum::http::HeaderMap;
use dashmap::DashMap;
use serde::Serialize;
use serde_json::json;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What routing may read of a data-plane call: its headers and its input.
#[derive(Clone, Copy, Default)]
pub struct Keys<'a> {
    /// The request's headers (none for a call from the CLI).
    pub headers: Option<&'a HeaderMap>,
    /// The call's input.
    pub input: Option<&'a Message>,
}

impl Keys<'_> {
    /// The value of `key` in this call, if it has one.
    fn find(&self, key: &StickyKey) -> Option<Cow<'_, [u8]>> {
        match key {
            StickyKey::Header(name) => {
                let value = self.headers?.get(name.as_str())?;
                Some(Cow::Borrowed(value.as_bytes()))
            }
            StickyKey::Field(name) => {
                let input = self.input?;
                if let Some(field) = input.fields.iter().find(|f| f.name == *name) {
                    return Some(Cow::Owned(scalar_text(&field.value).into_bytes()));
                }
                // A JSON body: its top-level field (text unquoted, other
                // values as written).
                let body = input.body.as_ref()?;
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&body.bytes).ok()?;
                Some(Cow::Owned(match object.get(name)? {
                    serde_json::Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                }))
            }
        }
    }
}

fn scalar_text(value: &Scalar) -> String {
    match value {
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Text(t) => t.clone(),
    }
}

/// Latency buckets of a judge's window: 10 µs × 1.25^i, up to about 12 s.
const LATENCY_BUCKETS: usize = 64;
/// A p95 this much slower than the stable version's before it can break
/// an SLO (so that microseconds of jitter never roll a version back).
const P95_SLACK: Duration = Duration::from_millis(5);

fn bucket_of(took: Duration) -> usize {
    let micros = took.as_secs_f64() * 1e6;
    if micros <= 10.0 {
        return 0;
    }
    ((micros / 10.0).ln() / 1.25f64.ln())
        .ceil()
        .min((LATENCY_BUCKETS - 1) as f64) as usize
}

fn bucket_upper(i: usize) -> Duration {
    Duration::from_secs_f64(10e-6 * 1.25f64.powi(i as i32))
}

/// One arm's calls in one slot of a window.
#[derive(Clone)]
struct Slot {
    /// Which slot (seconds since the judge started / slot length).
    index: u64,
    calls: u64,
    errors: u64,
    latency: [u32; LATENCY_BUCKETS],
}

/// An arm's window: its slots, oldest first.
#[derive(Default)]
struct Window(VecDeque<Slot>);

impl Window {
    fn record(&mut self, index: u64, took: Duration, ok: bool) {
        if self.0.back().is_none_or(|s| s.index != index) {
            self.0.push_back(Slot {
                index,
                calls: 0,
                errors: 0,
                latency: [0; LATENCY_BUCKETS],
            });
        }
        if let Some(slot) = self.0.back_mut() {
            slot.calls += 1;
            slot.errors += u64::from(!ok);
            slot.latency[bucket_of(took)] += 1;
        }
    }

    /// The figures of the slots from `oldest` on (older ones dropped).
    fn figures(&mut self, oldest: u64) -> Figures {
        while self.0.front().is_some_and(|s| s.index < oldest) {
            self.0.pop_front();
        }
        let mut latency = [0u64; LATENCY_BUCKETS];
        let (mut calls, mut errors) = (0, 0);
        for slot in &self.0 {
            calls += slot.calls;
            errors += slot.errors;
            for (total, n) in latency.iter_mut().zip(slot.latency) {
                *total += u64::from(n);
            }
        }
        let p95 = (calls > 0).then(|| {
            let rank = (calls as f64 * 0.95).ceil() as u64;
            let mut seen = 0;
            let i = latency
                .iter()
                .position(|n| {
                    seen += n;
                    seen >= rank
                })
                .unwrap_or(LATENCY_BUCKETS - 1);
            bucket_upper(i)
        });
        Figures {
            calls,
            errors,
            p95_ms: p95.map(|d| d.as_secs_f64() * 1e3),
        }
    }
}

/// One arm's calls over the window, as `rollout status` shows them.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Figures {
    /// Calls.
    pub calls: u64,
    /// Of which failed.
    pub errors: u64,
    /// The 95th percentile latency (a bucket's upper bound), in ms.
    pub p95_ms: Option<f64>,
}

impl Figures {
    fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.errors as f64 / self.calls as f64
        }
    }
}

/// What this node saw of a rollout: per arm over the SLO's window, and
/// how the shadow's answers compared.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Judged {
    /// The node.
    pub node: String,
    /// The stable version's calls.
    pub stable: Figures,
    /// The new version's calls (a shadow's copies included).
    pub canary: Figures,
    /// Shadow copies whose answer equalled the stable one's.
    pub shadow_same: u64,
    /// Shadow copies whose answer differed.
    pub shadow_differ: u64,
    /// Shadow copies that failed where the stable version answered.
    pub shadow_failed: u64,
    /// The window, in seconds.
    pub window_secs: u64,
}

/// This node's judge of one active rollout.
struct Judge {
    /// Which rollout (its start time): a new one gets a new judge.
    started_at: String,
    slo: Slo,
    started: Instant,
    arms: Mutex<[Window; 2]>,
    shadow: [AtomicU64; 3],
}

impl Judge {
    fn slot_len(&self) -> Duration {
        Duration::from_secs((self.slo.window_secs / 12).max(1))
    }

    fn index(&self) -> u64 {
        self.started.elapsed().as_secs() / self.slot_len().as_secs()
    }

    fn record(&self, arm: Arm, took: Duration, ok: bool) {
        let index = self.index();
        let mut arms = self.arms.lock().unwrap_or_else(|e| e.into_inner());
        arms[arm as usize].record(index, took, ok);
    }

    fn figures(&self) -> (Figures, Figures) {
        let slots = self.slo.window_secs.div_ceil(self.slot_len().as_secs());
        let oldest = (self.index() + 1).saturating_sub(slots);
        let mut arms = self.arms.lock().unwrap_or_else(|e| e.into_inner());
        let stable = arms[Arm::Stable as usize].figures(oldest);
        (stable, arms[Arm::Canary as usize].figures(oldest))
    }

    /// The objective the new version breaks, if it does.
    fn breach(&self) -> Option<String> {
        let (stable, canary) = self.figures();
        let slo = &self.slo;
        if canary.calls < slo.min_requests {
            return None;
        }
        let (s, c) = (stable.error_rate(), canary.error_rate());
        if c - s > slo.max_error_rate {
            return Some(format!(
                "error rate {:.1}% over {} calls against the stable version's {:.1}% over {} (at most {:.1} points more allowed)",
                c * 100.0,
                canary.calls,
                s * 100.0,
                stable.calls,
                slo.max_error_rate * 100.0
            ));
        }
        if stable.calls >= slo.min_requests
            && let (Some(sp), Some(cp)) = (stable.p95_ms, canary.p95_ms)
            && cp > sp * slo.max_p95_ratio
            && cp - sp > P95_SLACK.as_secs_f64() * 1e3
        {
            return Some(format!(
                "p95 latency {cp:.1} ms against the stable version's {sp:.1} ms (at most {}× allowed)",
                slo.max_p95_ratio
            ));
        }
        None
    }
}

/// The judges of the rollouts this node routes calls of.
#[derive(Default)]
pub(super) struct Judges {
    judges: DashMap<(Kind, Name), Arc<Judge>>,
    /// Calls routed by chance so far: the index of the next draw.
    draws: AtomicU64,
}

impl Node {
    /// The version a call of `name` runs: for an unqualified call from
    /// outside (`keys` given; pipeline steps run the stable version)
    /// through the active rollout of `head` when there is one, else as
    /// `selector` says.
    pub(super) fn route(
        &self,
        kind: Kind,
        name: &Name,
        head: &Head,
        selector: &Selector,
        keys: Option<Keys<'_>>,
    ) -> Result<(u64, Option<Routed>), NodeError> {
        if let (Selector::Default, Some(rollout), Some(keys)) =
            (selector, head.active_rollout(), keys)
        {
            let key = rollout.sticky.as_ref().and_then(|k| keys.find(k));
            let judges = &self.judges;
            let routed = rollout.route(name.as_str(), key.as_deref(), || {
                draw(judges.draws.fetch_add(1, Ordering::Relaxed))
            });
            if let Some(slo) = rollout.slo {
                self.judge_of(kind, name, &rollout.started_at, slo);
            }
            return Ok((routed.version, Some(routed)));
        }
        let version = crate::registry::select(kind.noun(), name, head, selector)?;
        Ok((version, None))
    }

    /// The judge of a rollout with an SLO, made on its first call here.
    fn judge_of(&self, kind: Kind, name: &Name, started_at: &str, slo: Slo) -> Arc<Judge> {
        let key = (kind, name.clone());
        if let Some(judge) = self.judges.judges.get(&key)
            && judge.started_at == started_at
        {
            return judge.clone();
        }
        let judge = Arc::new(Judge {
            started_at: started_at.to_string(),
            slo,
            started: Instant::now(),
            arms: Mutex::default(),
            shadow: Default::default(),
        });
        self.judges.judges.insert(key, judge.clone());
        judge
    }

    /// Count a routed call's outcome for its rollout's judge (if it has an
    /// SLO) and in the metrics.
    pub(super) fn judged(
        &self,
        kind: Kind,
        name: &Name,
        version: u64,
        arm: Arm,
        took: Duration,
        ok: bool,
    ) {
        if let Some(judge) = self.judges.judges.get(&(kind, name.clone())) {
            judge.record(arm, took, ok);
        }
        metrics()
            .rollout_calls
            .get_or_create(&RolloutLabels {
                kind: kind.noun(),
                name: name.as_str().into(),
                version,
                arm: arm.as_str(),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Run a shadow rollout's copy of a call after its answer went out:
    /// `copy` runs the new version; its answer is compared with the one
    /// the caller got (`answered`) and dropped.
    pub(super) fn shadow<T, F>(
        self: &Arc<Self>,
        kind: Kind,
        name: Name,
        version: u64,
        answered: Option<T>,
        copy: F,
    ) where
        T: PartialEq + Send + 'static,
        F: Future<Output = Result<T, NodeError>> + Send + 'static,
    {
        let node = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = copy.await;
            node.judged(
                kind,
                &name,
                version,
                Arm::Canary,
                started.elapsed(),
                result.is_ok(),
            );
            let outcome = match (&result, &answered) {
                (Ok(shadow), Some(answer)) if shadow == answer => 0,
                (Ok(_), Some(_)) => 1,
                (Err(_), Some(_)) => 2,
                // The stable version failed too: nothing to compare.
                (_, None) => return,
            };
            if let Some(judge) = node.judges.judges.get(&(kind, name.clone())) {
                judge.shadow[outcome].fetch_add(1, Ordering::Relaxed);
            }
            let compared = ["same", "differ", "failed"][outcome];
            if let Err(e) = &result {
                tracing::info!(kind = kind.noun(), %name, version, error = %e, "shadow call failed");
            } else if outcome == 1 {
                tracing::info!(kind = kind.noun(), %name, version, "shadow answer differs");
            }
            metrics()
                .shadow_calls
                .get_or_create(&RolloutLabels {
                    kind: kind.noun(),
                    name: name.as_str().into(),
                    version,
                    arm: Arm::Canary.as_str(),
                    result: compared,
                })
                .inc();
        });
    }

    /// Run `version` of `name` on `input` with `run`. A call a rollout
    /// routed is counted for its judge; a shadow's copy of `input` runs
    /// on the new version once the answer is known, compared by `answer`
    /// (the part of the result a caller sees).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_routed<I, R, T, Run, Fut>(
        self: &Arc<Self>,
        kind: Kind,
        name: &Name,
        version: u64,
        routed: Option<Routed>,
        input: I,
        run: Run,
        answer: fn(&R) -> T,
    ) -> Result<R, NodeError>
    where
        I: Clone,
        Run: Fn(Arc<Self>, u64, I) -> Fut,
        Fut: Future<Output = Result<R, NodeError>> + Send + 'static,
        R: 'static,
        T: PartialEq + Send + 'static,
    {
        let Some(routed) = routed else {
            return run(self.clone(), version, input).await;
        };
        let copy = routed.shadow.map(|shadow| (shadow, input.clone()));
        let started = Instant::now();
        let result = run(self.clone(), version, input).await;
        let took = started.elapsed();
        self.judged(kind, name, version, routed.arm, took, result.is_ok());
        if let Some((shadow, copy)) = copy {
            let answered = result.as_ref().ok().map(answer);
            let copy = run(self.clone(), shadow, copy);
            self.shadow(kind, name.clone(), shadow, answered, async move {
                copy.await.map(|r| answer(&r))
            });
        }
        result
    }

    /// What this node saw of the active rollout of `name`.
    pub(super) fn judged_here(&self, kind: Kind, name: &Name) -> Option<Judged> {
        let judge = self.judges.judges.get(&(kind, name.clone()))?.clone();
        let (stable, canary) = judge.figures();
        let count = |i: usize| judge.shadow[i].load(Ordering::Relaxed);
        Some(Judged {
            node: crate::observe::node_id().to_string(),
            stable,
            canary,
            shadow_same: count(0),
            shadow_differ: count(1),
            shadow_failed: count(2),
            window_secs: judge.slo.window_secs,
        })
    }

    /// Judge every rollout this node routes every `every`, and record
    /// its circuits' changes in the audit log, for as long as the node
    /// lives.
    pub fn spawn_rollout_watch(self: &Arc<Self>, every: Duration) {
        self.every(every, |node| async move {
            node.watch_rollouts().await;
            node.record_circuit_changes().await;
        });
    }

    /// One round: every judged rollout still active checked against its
    /// SLO; judges of ended rollouts dropped.
    pub async fn watch_rollouts(&self) {
        let judges: Vec<_> = (self.judges.judges.iter())
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for ((kind, name), judge) in judges {
            let head = on_registry!(self, kind, |registry| registry.head(&name).await);
            let active = match head {
                Ok(head) => head.is_some_and(|(head, _)| {
                    head.active_rollout()
                        .is_some_and(|r| r.started_at == judge.started_at)
                }),
                Err(e) => {
                    tracing::warn!(kind = kind.noun(), %name, error = %e, "cannot read the rollout's head");
                    continue;
                }
            };
            if !active {
                self.judges
                    .judges
                    .remove_if(&(kind, name), |_, j| Arc::ptr_eq(j, &judge));
                continue;
            }
            if let Some(reason) = judge.breach()
                && let Err(e) = self.roll_back(kind, &name, &judge, &reason).await
            {
                tracing::warn!(kind = kind.noun(), %name, error = %e, "automatic rollback failed");
            }
        }
    }

    /// End the rollout `judge` judged as rolled back, unless another node
    /// or a person ended it first; the node whose write lands records it
    /// in the audit log and posts the alert.
    async fn roll_back(
        &self,
        kind: Kind,
        name: &Name,
        judge: &Judge,
        reason: &str,
    ) -> Result<(), NodeError> {
        let node = crate::observe::node_id();
        let (head, won) = on_registry!(self, kind, |registry| registry
            .update(name, |head| Ok(rollout::roll_back(
                head,
                &judge.started_at,
                node,
                reason,
                now_rfc3339()
            )))
            .await?);
        if !won {
            return Ok(());
        }
        let Some(rollout) = head.rollout else {
            return Ok(());
        };
        tracing::warn!(kind = kind.noun(), %name, from = rollout.from, to = rollout.to, reason, "rollout rolled back");
        metrics()
            .rollbacks
            .get_or_create(&RolloutLabels {
                kind: kind.noun(),
                name: name.as_str().into(),
                version: rollout.to,
                arm: Arm::Canary.as_str(),
                result: "rolled_back",
            })
            .inc();
        let change = Change::new("rollout.rollback", kind.noun(), name.as_str())
            .version(rollout.to)
            .detail(format!(
                "{} → {} rolled back: {reason}",
                rollout.from, rollout.to
            ));
        self.acting(format!("node:{node}")).audited(change).await?;
        if let Some(alerts) = self.alerts.get() {
            let (stable, canary) = judge.figures();
            alerts
                .post(&json!({
                    "event": "rollback",
                    "kind": kind.noun(),
                    "name": name.as_str(),
                    "from": rollout.from,
                    "to": rollout.to,
                    "reason": reason,
                    "node": node,
                    "stable": stable,
                    "canary": canary,
                }))
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_cover_microseconds_to_seconds() {
        assert_eq!(bucket_of(Duration::from_micros(5)), 0);
        let ms = bucket_of(Duration::from_millis(1));
        assert!(bucket_upper(ms) >= Duration::from_millis(1));
        assert!(bucket_upper(ms - 1) < Duration::from_millis(1));
        assert_eq!(bucket_of(Duration::from_secs(100)), LATENCY_BUCKETS - 1);
    }

    fn judge(slo: Slo) -> Judge {
        Judge {
            started_at: String::new(),
            slo,
            started: Instant::now(),
            arms: Mutex::default(),
            shadow: Default::default(),
        }
    }

    #[test]
    fn a_failing_canary_breaks_the_error_objective_once_it_has_enough_calls() {
        let j = judge(Slo::default());
        for _ in 0..100 {
            j.record(Arm::Stable, Duration::from_millis(1), true);
        }
        for i in 0..19 {
            j.record(Arm::Canary, Duration::from_millis(1), i % 2 == 0);
        }
        assert_eq!(j.breach(), None, "19 calls are fewer than min_requests");
        j.record(Arm::Canary, Duration::from_millis(1), false);
        let reason = j.breach().expect("50% errors against 0%");
        assert!(
            reason.starts_with("error rate 50.0% over 20 calls"),
            "{reason}"
        );
    }

    #[test]
    fn a_slow_canary_breaks_the_latency_objective_and_jitter_does_not() {
        let j = judge(Slo::default());
        for _ in 0..50 {
            j.record(Arm::Stable, Duration::from_micros(200), true);
            j.record(Arm::Canary, Duration::from_micros(900), true);
        }
        assert_eq!(j.breach(), None, "4× slower but within 5 ms");
        for _ in 0..50 {
            j.record(Arm::Canary, Duration::from_millis(30), true);
        }
        let reason = j.breach().expect("30 ms against 0.2 ms");
        assert!(reason.starts_with("p95 latency"), "{reason}");
    }
}
