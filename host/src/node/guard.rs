//! Guards on a node (`registry/guard.rs` holds the policy): circuit
//! breakers around each stage and model version's calls, rate limits
//! checked before a call's body is read, and the fallback that answers
//! a call that failed. Breakers and buckets are this node's own; a
//! route's rate is shared out evenly over the live nodes (`members.rs`).

use super::{CircuitView, Kind, Node, NodeError};
use crate::access::Change;
use crate::engine::CallError;
use crate::features::FeatureError;
use crate::inference::InferenceError;
use crate::observe::metrics::{GuardLabels, metrics};
use crate::registry::{Breaker, Bucket, FallbackTo, Head, Name, RateLimit, RegistryError, Trigger};
use crate::tensor::{Body, Message};
use dashmap::DashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A call a fallback answered: what answered and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FellBack {
    /// `version:N`, `pipeline:NAME` or `static`.
    pub to: String,
    /// The failure it answered for.
    pub reason: Trigger,
}

impl FellBack {
    /// The `x-sluice-fallback` header: `version:1; reason=deadline`.
    pub fn header(&self) -> String {
        format!("{}; reason={}", self.to, self.reason.as_str())
    }
}

/// The failure `e` is to a guard: `None` for the caller's own mistakes,
/// missing names and load shedding (which ask the caller to change or
/// wait, not for another answer).
pub(super) fn trigger(e: &NodeError) -> Option<Trigger> {
    match e {
        NodeError::Step { source, .. } => trigger(source),
        NodeError::CircuitOpen { .. } => Some(Trigger::Circuit),
        NodeError::PipelineTimeout { .. } | NodeError::Call(CallError::DeadlineExceeded(_)) => {
            Some(Trigger::Deadline)
        }
        NodeError::Call(CallError::InvalidInput(_)) => None,
        NodeError::Call(_) | NodeError::Engine(_) => Some(Trigger::Error),
        NodeError::Inference(InferenceError::Internal(_)) => Some(Trigger::Error),
        NodeError::Registry(r) | NodeError::Inference(InferenceError::Registry(r)) => matches!(
            r,
            RegistryError::Store(_) | RegistryError::Contended(_) | RegistryError::BadRecord { .. }
        )
        .then_some(Trigger::Error),
        NodeError::Features(f) => (!f.is_input()
            && !matches!(f, FeatureError::UnknownFeature { .. }))
        .then_some(Trigger::Error),
        _ => None,
    }
}

/// Where a version's circuit stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail at once until then.
    Open(Instant),
    /// Up to `probes` calls go through; one failure opens it again.
    HalfOpen,
}

/// A call let through a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    Call,
    Probe,
}

/// One version's circuit on this node.
struct Circuit {
    started: Instant,
    state: Mutex<CircuitState>,
}

struct CircuitState {
    phase: Phase,
    consecutive: u32,
    /// (second since `started`, calls, failures), oldest first.
    window: VecDeque<(u64, u64, u64)>,
    probes_out: u32,
    probes_ok: u32,
}

impl Circuit {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            state: Mutex::new(CircuitState {
                phase: Phase::Closed,
                consecutive: 0,
                window: VecDeque::new(),
                probes_out: 0,
                probes_ok: 0,
            }),
        }
    }

    /// Let a call through, or say how long until the circuit is probed.
    /// Also returns the state it moved to, if it moved.
    fn admit(&self, b: &Breaker, now: Instant) -> (Result<Ticket, Duration>, Option<&'static str>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut moved = None;
        match s.phase {
            Phase::Closed => return (Ok(Ticket::Call), None),
            Phase::Open(until) if now < until => return (Err(until - now), None),
            Phase::Open(_) => {
                s.phase = Phase::HalfOpen;
                s.probes_out = 0;
                s.probes_ok = 0;
                moved = Some("half_open");
            }
            Phase::HalfOpen => {}
        }
        if s.probes_out + s.probes_ok < b.probes {
            s.probes_out += 1;
            (Ok(Ticket::Probe), moved)
        } else {
            // Enough probes are out: the rest wait for their verdict.
            (Err(Duration::from_secs(1)), moved)
        }
    }

    /// Count a call's outcome (`None`: neither a success nor a failure,
    /// e.g. the caller's bad input). Returns the state it moved to.
    fn record(
        &self,
        b: &Breaker,
        ticket: Ticket,
        failed: Option<bool>,
        now: Instant,
    ) -> Option<&'static str> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let open = |s: &mut CircuitState| {
            s.phase = Phase::Open(now + Duration::from_secs(b.open_secs));
            s.consecutive = 0;
            s.window.clear();
            Some("open")
        };
        match (s.phase, ticket) {
            (Phase::HalfOpen, Ticket::Probe) => {
                s.probes_out = s.probes_out.saturating_sub(1);
                match failed {
                    Some(true) => open(&mut s),
                    Some(false) => {
                        s.probes_ok += 1;
                        if s.probes_ok < b.probes {
                            return None;
                        }
                        s.phase = Phase::Closed;
                        Some("closed")
                    }
                    None => None,
                }
            }
            (Phase::Closed, Ticket::Call) => {
                let failed = failed?;
                let second = now.saturating_duration_since(self.started).as_secs();
                while s
                    .window
                    .front()
                    .is_some_and(|(at, ..)| at + b.window_secs <= second)
                {
                    s.window.pop_front();
                }
                if s.window.back().is_none_or(|(at, ..)| *at != second) {
                    s.window.push_back((second, 0, 0));
                }
                if let Some(slot) = s.window.back_mut() {
                    slot.1 += 1;
                    slot.2 += u64::from(failed);
                }
                s.consecutive = if failed { s.consecutive + 1 } else { 0 };
                let (calls, failures) = s
                    .window
                    .iter()
                    .fold((0, 0), |(c, f), (_, dc, df)| (c + dc, f + df));
                let ratio_broken =
                    calls >= b.min_requests && failures as f64 >= b.error_ratio * calls as f64;
                if failed && (s.consecutive >= b.consecutive_failures || ratio_broken) {
                    return open(&mut s);
                }
                None
            }
            // A call let through before the circuit changed state: its
            // outcome is about the past.
            _ => None,
        }
    }
}

/// One token bucket of this node.
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Take a token at `rate` per second from a bucket of `size`, or say
    /// how long until there is one.
    fn take(&mut self, rate: f64, size: f64, now: Instant) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(size);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

/// Who a rate-limit bucket counts: the whole route, or one token's calls.
type BucketKey = (Kind, Name, Option<Arc<str>>);

/// A circuit state change waiting to be written to the audit log.
struct CircuitChange {
    kind: Kind,
    name: Name,
    version: u64,
    to: &'static str,
}

/// This node's breakers and buckets.
pub(super) struct Guards {
    circuits: DashMap<(Kind, Name, u64), Arc<Circuit>>,
    buckets: DashMap<BucketKey, Mutex<TokenBucket>>,
    /// Nodes sharing the store, this one included (at least 1).
    live_nodes: AtomicU32,
    /// Circuit changes the next watch round records.
    changes: Mutex<Vec<CircuitChange>>,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            circuits: DashMap::new(),
            buckets: DashMap::new(),
            live_nodes: AtomicU32::new(1),
            changes: Mutex::default(),
        }
    }
}

impl Guards {
    pub(super) fn set_live_nodes(&self, n: u32) {
        self.live_nodes.store(n.max(1), Ordering::Relaxed);
    }

    pub(super) fn live_nodes(&self) -> u32 {
        self.live_nodes.load(Ordering::Relaxed)
    }

    /// Take a token from `key`'s bucket, this node's share of `bucket`.
    fn take(&self, key: BucketKey, bucket: &Bucket) -> Result<(), Duration> {
        let nodes = f64::from(self.live_nodes());
        let (rate, size) = (
            bucket.per_second / nodes,
            (f64::from(bucket.burst) / nodes).max(1.0),
        );
        let now = Instant::now();
        let entry = self.buckets.entry(key).or_insert_with(|| {
            Mutex::new(TokenBucket {
                tokens: size,
                last: now,
            })
        });
        let mut bucket = entry.lock().unwrap_or_else(|e| e.into_inner());
        bucket.take(rate, size, now)
    }
}

/// The breaker `head` sets, if any.
pub(super) fn breaker_of(head: &Head) -> Option<Breaker> {
    head.guard.as_ref()?.breaker
}

/// The fallback of `head` for a call of `failed` that ended in `e`, if
/// one answers for it (never the version that just failed).
pub(super) fn fallback_for<'h>(
    head: &'h Head,
    e: &NodeError,
    failed: u64,
) -> Option<(&'h FallbackTo, Trigger)> {
    let fallback = head.guard.as_ref()?.fallback.as_ref()?;
    let reason = trigger(e)?;
    if !fallback.on.contains(&reason)
        || matches!(fallback.to, FallbackTo::Version { version } if version == failed)
    {
        return None;
    }
    Some((&fallback.to, reason))
}

/// A static fallback's answer.
pub(super) fn static_answer(content_type: &str, body: &str) -> Message {
    Message {
        body: Some(Body {
            content_type: content_type.to_string(),
            bytes: body.as_bytes().to_vec(),
        }),
        ..Message::default()
    }
}

impl Node {
    /// Run `call` of version `version` of `name` through its circuit, if
    /// `breaker` sets one: refused at once while it is open.
    pub(super) async fn breaking<R>(
        &self,
        kind: Kind,
        name: &Name,
        version: u64,
        breaker: Option<Breaker>,
        call: impl Future<Output = Result<R, NodeError>>,
    ) -> Result<R, NodeError> {
        let Some(b) = breaker else {
            return call.await;
        };
        let circuit = self
            .guards
            .circuits
            .entry((kind, name.clone(), version))
            .or_insert_with(|| Arc::new(Circuit::new()))
            .clone();
        let (admitted, moved) = circuit.admit(&b, Instant::now());
        if let Some(to) = moved {
            self.circuit_moved(kind, name, version, to);
        }
        let ticket = admitted.map_err(|wait| NodeError::CircuitOpen {
            noun: kind.noun(),
            name: name.to_string(),
            version,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })?;
        let result = call.await;
        // A pipeline's budget running out is not the version's failure.
        let failed = match &result {
            Ok(_) => Some(false),
            Err(NodeError::PipelineTimeout { .. }) => None,
            Err(e) => {
                matches!(trigger(e), Some(Trigger::Error | Trigger::Deadline)).then_some(true)
            }
        };
        if let Some(to) = circuit.record(&b, ticket, failed, Instant::now()) {
            self.circuit_moved(kind, name, version, to);
        }
        result
    }

    /// This node's circuits of `name`'s versions, by version.
    pub(super) fn circuits_of(&self, kind: Kind, name: &Name) -> Vec<CircuitView> {
        let now = Instant::now();
        let mut views: Vec<CircuitView> = (self.guards.circuits.iter())
            .filter(|e| e.key().0 == kind && e.key().1 == *name)
            .map(|e| {
                let phase = e
                    .value()
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .phase;
                let (state, probe_in_secs) = match phase {
                    Phase::Closed => ("closed", None),
                    Phase::HalfOpen => ("half_open", None),
                    Phase::Open(until) if until > now => {
                        ("open", Some((until - now).as_secs_f64().ceil() as u64))
                    }
                    // Due for a probe: it half-opens on the next call.
                    Phase::Open(_) => ("open", Some(0)),
                };
                CircuitView {
                    version: e.key().2,
                    state: state.into(),
                    probe_in_secs,
                }
            })
            .collect();
        views.sort_by_key(|v| v.version);
        views
    }

    /// The breaker of the function or model `name` (read from its head:
    /// in memory, revalidated every poll interval).
    pub(super) async fn breaker(&self, kind: Kind, name: &Name) -> Option<Breaker> {
        let head = on_registry!(self, kind, |registry| registry.head(name).await);
        breaker_of(&head.ok()??.0)
    }

    fn circuit_moved(&self, kind: Kind, name: &Name, version: u64, to: &'static str) {
        tracing::warn!(kind = kind.noun(), %name, version, state = to, "circuit changed state");
        metrics()
            .circuit_changes
            .get_or_create(&GuardLabels {
                kind: kind.noun(),
                name: format!("{name}@{version}").into(),
                to: to.into(),
                reason: "",
            })
            .inc();
        let mut changes = self
            .guards
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        changes.push(CircuitChange {
            kind,
            name: name.clone(),
            version,
            to,
        });
    }

    /// Write the circuit changes since the last round to the audit log
    /// (off the request path), as `node:<id>`.
    pub(super) async fn record_circuit_changes(&self) {
        let changes = std::mem::take(
            &mut *self
                .guards
                .changes
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if changes.is_empty() {
            return;
        }
        let acting = self.acting(format!("node:{}", crate::observe::node_id()));
        for c in changes {
            let change = Change::new(&format!("circuit.{}", c.to), c.kind.noun(), c.name.as_str())
                .version(c.version)
                .detail(format!("circuit of {}@{} {}", c.name, c.version, c.to));
            if let Err(e) = acting.audited(change).await {
                tracing::warn!(error = %e, "cannot record a circuit change in the audit log");
            }
        }
    }

    /// Take a token for a call of `name` from its route's bucket and, for
    /// a per-token limit, the bucket of `caller` (a token's name; calls
    /// without one share `anonymous`).
    pub(super) fn limit(
        &self,
        kind: Kind,
        name: &Name,
        limit: &RateLimit,
        caller: Option<&str>,
    ) -> Result<(), NodeError> {
        let buckets = [("route", limit.route), ("per_token", limit.per_token)];
        for (which, bucket) in buckets {
            let Some(bucket) = bucket else { continue };
            // The caller's name is copied only for a per-token bucket.
            let who = (which == "per_token").then(|| Arc::from(caller.unwrap_or("anonymous")));
            if let Err(wait) = self.guards.take((kind, name.clone(), who), &bucket) {
                metrics()
                    .rate_limited
                    .get_or_create(&GuardLabels {
                        kind: kind.noun(),
                        name: name.as_str().into(),
                        to: which.into(),
                        reason: "",
                    })
                    .inc();
                return Err(NodeError::RateLimited {
                    noun: kind.noun(),
                    name: name.to_string(),
                    bucket: which,
                    per_second: bucket.per_second,
                    nodes: self.guards.live_nodes(),
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
        Ok(())
    }

    /// Count and log a call `to` answered instead of the one that failed.
    pub(super) fn fell_back(
        &self,
        kind: Kind,
        name: &Name,
        to: &FallbackTo,
        reason: Trigger,
        error: &NodeError,
    ) -> FellBack {
        let to = to.label();
        tracing::warn!(kind = kind.noun(), %name, fallback = %to, reason = reason.as_str(), %error, "call failed; its fallback answers");
        metrics()
            .fallbacks
            .get_or_create(&GuardLabels {
                kind: kind.noun(),
                name: name.as_str().into(),
                to: to.as_str().into(),
                reason: reason.as_str(),
            })
            .inc();
        FellBack { to, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker {
            consecutive_failures: 3,
            error_ratio: 0.5,
            window_secs: 10,
            min_requests: 10,
            open_secs: 5,
            probes: 2,
        }
    }

    #[test]
    fn consecutive_failures_open_the_circuit_and_probes_close_it() {
        let (b, c, t0) = (breaker(), Circuit::new(), Instant::now());
        for i in 0..2 {
            let (ticket, _) = c.admit(&b, t0);
            assert_eq!(
                c.record(&b, ticket.expect("closed"), Some(true), t0),
                None,
                "failure {i}"
            );
        }
        let (ticket, _) = c.admit(&b, t0);
        assert_eq!(
            c.record(&b, ticket.expect("closed"), Some(true), t0),
            Some("open")
        );
        let (refused, _) = c.admit(&b, t0 + Duration::from_secs(1));
        assert_eq!(refused, Err(Duration::from_secs(4)));
        // After open_secs: two probes out, a third waits.
        let later = t0 + Duration::from_secs(5);
        let (first, moved) = c.admit(&b, later);
        assert_eq!((first, moved), (Ok(Ticket::Probe), Some("half_open")));
        let (second, _) = c.admit(&b, later);
        assert_eq!(second, Ok(Ticket::Probe));
        assert!(c.admit(&b, later).0.is_err());
        assert_eq!(c.record(&b, Ticket::Probe, Some(false), later), None);
        assert_eq!(
            c.record(&b, Ticket::Probe, Some(false), later),
            Some("closed")
        );
        assert_eq!(c.admit(&b, later).0, Ok(Ticket::Call));
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_bad_input_counts_for_nothing() {
        let (b, c, t0) = (breaker(), Circuit::new(), Instant::now());
        for _ in 0..10 {
            c.record(&b, Ticket::Call, None, t0);
        }
        for _ in 0..3 {
            c.record(&b, Ticket::Call, Some(true), t0);
        }
        let later = t0 + Duration::from_secs(5);
        let (probe, _) = c.admit(&b, later);
        assert_eq!(
            c.record(&b, probe.expect("probe"), Some(true), later),
            Some("open")
        );
        assert!(c.admit(&b, later + Duration::from_secs(1)).0.is_err());
    }

    #[test]
    fn an_error_ratio_opens_it_without_a_run_of_failures() {
        let (b, c, t0) = (breaker(), Circuit::new(), Instant::now());
        let mut opened = None;
        for i in 0..10 {
            opened = opened.or(c.record(&b, Ticket::Call, Some(i % 2 == 1), t0));
        }
        assert_eq!(
            opened,
            Some("open"),
            "5 failures of 10 calls, never 3 in a row"
        );
        // Failures older than the window are forgotten.
        let c = Circuit::new();
        for i in 0..9 {
            c.record(&b, Ticket::Call, Some(i % 2 == 0), t0);
        }
        let late = t0 + Duration::from_secs(11);
        assert_eq!(c.record(&b, Ticket::Call, Some(true), late), None);
    }

    #[test]
    fn a_bucket_lets_a_burst_through_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket {
            tokens: 5.0,
            last: t0,
        };
        let admitted = (0..8)
            .filter(|_| bucket.take(10.0, 5.0, t0).is_ok())
            .count();
        assert_eq!(admitted, 5);
        let wait = bucket.take(10.0, 5.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        let later = t0 + Duration::from_millis(350);
        let admitted = (0..8)
            .filter(|_| bucket.take(10.0, 5.0, later).is_ok())
            .count();
        assert_eq!(admitted, 3);
    }
}
