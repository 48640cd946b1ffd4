//! Rollouts: how the calls of a name that do not pick a version (`NAME`,
//! not `NAME@4`) are spread across two versions while a new one is tried.
//!
//! A rollout is part of the name's [`Head`](super::Head), the document
//! every call already reads, so every node routes by the same state and
//! follows a change within one poll interval. It sends `weight` percent of
//! the calls to the new version (`to`) and the rest to the stable one
//! (`from`); or, as a shadow, runs that share on the new version as well,
//! after answering from the stable one. With a sticky key (a header or a
//! JSON field of the request) a caller's key, not chance, decides: the key
//! is hashed into one of 10,000 buckets and buckets below the weight go to
//! the new version, so raising the weight only adds keys to it.

use super::{Head, Name, RegistryError, STABLE};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Buckets a key hashes into; a weight of 1% is 100 of them.
const BUCKETS: u64 = 10_000;

/// A rollout of one name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The stable version: what the rest of the traffic runs, and what an
    /// abort or an automatic rollback returns all of it to.
    pub from: u64,
    /// The version being rolled out.
    pub to: u64,
    /// Percent of the calls `to` takes (or, as a shadow, gets a copy of).
    pub weight: u8,
    /// `to` gets copies of its share, whose answers are compared and
    /// dropped; every answer comes from `from`.
    #[serde(default)]
    pub shadow: bool,
    /// Route by this key of the request instead of by chance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickyKey>,
    /// What `to` must keep to, compared with `from`, or be rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// Who started it.
    pub started_by: String,
    /// Whether it still routes, and how it ended (`state`, and `at`, `by`,
    /// `reason` once it has).
    #[serde(flatten)]
    pub state: RolloutState,
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// Routing calls.
    Active,
    /// `to` became stable.
    Promoted {
        /// When.
        at: String,
        /// Who.
        by: String,
    },
    /// Stopped by hand: all calls back on `from`.
    Aborted {
        /// When.
        at: String,
        /// Who.
        by: String,
    },
    /// Stopped by a node that saw `to` break its SLO: all calls back on
    /// `from`.
    RolledBack {
        /// When.
        at: String,
        /// The node that judged it.
        by: String,
        /// Which objective broke, with the figures.
        reason: String,
    },
}

impl RolloutState {
    /// Its name: `active`, `promoted`, `aborted` or `rolled_back`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Promoted { .. } => "promoted",
            Self::Aborted { .. } => "aborted",
            Self::RolledBack { .. } => "rolled_back",
        }
    }
}

/// The objectives a rollout's new version is held to over a window,
/// relative to the stable version: each node judges the calls it routed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// The new version's error rate may exceed the stable one's by at most
    /// this much (0.05: five percentage points).
    pub max_error_rate: f64,
    /// The new version's p95 latency may be at most this multiple of the
    /// stable one's (and at least 5 ms slower before it counts).
    pub max_p95_ratio: f64,
    /// Seconds of calls judged.
    pub window_secs: u64,
    /// Calls the new version must have had in the window before it is
    /// judged.
    pub min_requests: u64,
}

impl Default for Slo {
    fn default() -> Self {
        Self {
            max_error_rate: 0.05,
            max_p95_ratio: 1.5,
            window_secs: 60,
            min_requests: 20,
        }
    }
}

/// The part of a request whose value decides its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// A header, by its lowercase name (`header:x-user`).
    Header(String),
    /// A top-level field of a JSON body or a message's field
    /// (`field:user_id`).
    Field(String),
}

impl fmt::Display for StickyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Field(name) => write!(f, "field:{name}"),
        }
    }
}

impl FromStr for StickyKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let wrong = || {
            format!(
                "sticky key `{s}` is not `header:NAME` or `field:NAME` (e.g. `header:x-user`, `field:user_id`)"
            )
        };
        let (source, name) = s.split_once(':').ok_or_else(wrong)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(wrong());
        }
        match source.trim() {
            "header" => {
                axum::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("sticky key `{s}`: `{name}` is not a header name"))?;
                Ok(Self::Header(name.to_ascii_lowercase()))
            }
            "field" => Ok(Self::Field(name.to_string())),
            _ => Err(wrong()),
        }
    }
}

impl Serialize for StickyKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StickyKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Which side of a rollout a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    /// The stable version.
    Stable,
    /// The version being rolled out.
    Canary,
}

impl Arm {
    /// Its name, as a header and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
        }
    }
}

/// Where a rollout sends one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// The version that answers.
    pub version: u64,
    /// Its side of the rollout.
    pub arm: Arm,
    /// A version that also gets a copy (a shadow rollout's share).
    pub shadow: Option<u64>,
}

impl Rollout {
    /// Whether it routes calls.
    pub fn is_active(&self) -> bool {
        self.state == RolloutState::Active
    }

    /// Route a call of `name`: by its sticky `key` when the rollout has one
    /// (a call without the key stays on the stable version), else by
    /// `draw`, a number the caller spreads evenly (each node counts calls
    /// through a Weyl sequence, so that any run of calls splits close to
    /// the weight).
    pub fn route(&self, name: &str, key: Option<&[u8]>, draw: impl FnOnce() -> u64) -> Routed {
        let bucket = match (&self.sticky, key) {
            (Some(_), Some(key)) => bucket_of(name, key),
            (Some(_), None) => BUCKETS,
            (None, _) => draw() % BUCKETS,
        };
        let chosen = bucket < u64::from(self.weight) * (BUCKETS / 100);
        match (chosen, self.shadow) {
            (true, false) => Routed {
                version: self.to,
                arm: Arm::Canary,
                shadow: None,
            },
            (true, true) => Routed {
                version: self.from,
                arm: Arm::Stable,
                shadow: Some(self.to),
            },
            (false, _) => Routed {
                version: self.from,
                arm: Arm::Stable,
                shadow: None,
            },
        }
    }
}

/// A change to a name's rollout, asked for on the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RolloutChange {
    /// Start rolling out `to` from the version unqualified calls run now.
    Start {
        /// The new version.
        to: u64,
        /// Percent of the calls it takes (1–100).
        weight: u8,
        /// Copies only: answers always come from the stable version.
        #[serde(default)]
        shadow: bool,
        /// Route by this key of the request.
        #[serde(default)]
        sticky: Option<StickyKey>,
        /// Roll back automatically when `to` breaks these.
        #[serde(default)]
        slo: Option<Slo>,
    },
    /// Give the new version another share.
    Set {
        /// Percent of the calls (0–100).
        weight: u8,
    },
    /// Make the new version stable: every unqualified call runs it.
    Promote,
    /// Stop: every unqualified call runs the stable version again.
    Abort,
}

impl RolloutChange {
    /// Its audit action: `rollout.start`, `rollout.set`, ...
    pub fn action(&self) -> &'static str {
        match self {
            Self::Start { .. } => "rollout.start",
            Self::Set { .. } => "rollout.set",
            Self::Promote => "rollout.promote",
            Self::Abort => "rollout.abort",
        }
    }

    /// Make it on `head` of the `noun` called `name`, for `by`, at `now`.
    pub fn apply(
        &self,
        noun: &'static str,
        name: &Name,
        head: &mut Head,
        by: &str,
        now: String,
    ) -> Result<(), RegistryError> {
        let conflict = |head: &Head, reason: String| RegistryError::Conflict {
            name: name.to_string(),
            reason,
            current: Box::new(head.clone()),
        };
        if let Self::Start {
            to,
            weight,
            shadow,
            sticky,
            slo,
        } = self
        {
            if let Some(r) = head.active_rollout() {
                let reason = format!(
                    "{noun} `{name}` is already rolling out version {} from {}; promote or abort it first (`sluice rollout promote|abort {name}`)",
                    r.to, r.from
                );
                return Err(conflict(head, reason));
            }
            if !(1..=100).contains(weight) {
                return Err(RegistryError::Invalid(format!(
                    "a rollout's weight is a percentage from 1 to 100, not {weight}"
                )));
            }
            if let Some(slo) = slo {
                slo.check()?;
            }
            if !head.versions.contains(to) {
                return Err(RegistryError::VersionNotFound {
                    noun,
                    name: name.to_string(),
                    version: *to,
                });
            }
            let from = stable_for(head, *to).ok_or_else(|| {
                RegistryError::Invalid(format!(
                    "{noun} `{name}` has no stable version other than {to} to roll out from; point `stable` at one first (`sluice alias set {name} stable N`)"
                ))
            })?;
            // Unqualified calls stay on `from` whatever happens next:
            // newer deploys move `latest`, not `stable`.
            head.point(STABLE, from);
            head.rollout = Some(Rollout {
                from,
                to: *to,
                weight: *weight,
                shadow: *shadow,
                sticky: sticky.clone(),
                slo: *slo,
                started_at: now,
                started_by: by.to_string(),
                state: RolloutState::Active,
            });
            return Ok(());
        }
        let Some(rollout) = head.rollout.as_mut().filter(|r| r.is_active()) else {
            let last = head.rollout.as_ref().map_or(String::new(), |r| {
                format!(
                    " (the last one, of version {}, is {})",
                    r.to,
                    r.state.as_str()
                )
            });
            let reason = format!(
                "{noun} `{name}` has no active rollout{last}; start one with `sluice rollout start {name} --to N --weight W`"
            );
            return Err(conflict(head, reason));
        };
        let by = by.to_string();
        match self {
            Self::Set { weight } if *weight > 100 => {
                return Err(RegistryError::Invalid(format!(
                    "a rollout's weight is a percentage from 0 to 100, not {weight}"
                )));
            }
            Self::Set { weight } => rollout.weight = *weight,
            Self::Promote => {
                rollout.state = RolloutState::Promoted { at: now, by };
                let to = rollout.to;
                head.point(STABLE, to);
            }
            Self::Abort => rollout.state = RolloutState::Aborted { at: now, by },
            // Returned above.
            Self::Start { .. } => {}
        }
        Ok(())
    }
}

impl Slo {
    fn check(&self) -> Result<(), RegistryError> {
        let bad = |what: String| Err(RegistryError::Invalid(format!("rollout SLO: {what}")));
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return bad(format!(
                "max_error_rate is a fraction from 0 to 1, not {}",
                self.max_error_rate
            ));
        }
        if !(self.max_p95_ratio >= 1.0 && self.max_p95_ratio.is_finite()) {
            return bad(format!(
                "max_p95_ratio is at least 1 (the stable version's p95), not {}",
                self.max_p95_ratio
            ));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            return bad(format!(
                "window_secs is from 1 to 86400, not {}",
                self.window_secs
            ));
        }
        if self.min_requests == 0 {
            return bad("min_requests is at least 1".into());
        }
        Ok(())
    }
}

/// End the active rollout of `head` as rolled back, if it is still the one
/// started at `started_at` (a node judged that one); `false` when another
/// node or a person got there first.
pub fn roll_back(head: &mut Head, started_at: &str, by: &str, reason: &str, now: String) -> bool {
    match head.rollout.as_mut() {
        Some(r) if r.is_active() && r.started_at == started_at => {
            r.state = RolloutState::RolledBack {
                at: now,
                by: by.to_string(),
                reason: reason.to_string(),
            };
            true
        }
        _ => false,
    }
}

/// The version a rollout of `to` starts from: `stable`, else what
/// unqualified calls run now, else what `latest` pointed at before `to`.
fn stable_for(head: &Head, to: u64) -> Option<u64> {
    let live = |v: &u64| *v != to && head.versions.contains(v);
    if let Some(stable) = head.aliases.get(STABLE).filter(|v| live(v)) {
        return Some(*stable);
    }
    if let Some(default) = head.default_version().filter(live) {
        return Some(default);
    }
    let earlier = head.history.get(super::LATEST)?;
    earlier.iter().rev().find(|v| live(v)).copied()
}

/// The bucket of a sticky key: FNV-1a over the name and the key, mixed by
/// SplitMix64's finaliser. Stable across nodes, builds and platforms (the
/// standard library's hasher promises none of that); the name is included
/// so that two rollouts bucket their callers independently.
fn bucket_of(name: &str, key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes().iter().chain([0u8].iter()).chain(key) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h % BUCKETS
}

/// The `n`th term of a Weyl sequence over [0, 2^64): consecutive terms
/// land evenly, so `draw(n) % BUCKETS` splits any run of calls close to a
/// weight without a random number generator.
pub fn draw(n: u64) -> u64 {
    // 2^64 / φ, odd: the sequence visits every residue.
    ((n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) * BUCKETS) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(weight: u8, sticky: Option<StickyKey>, shadow: bool) -> Rollout {
        Rollout {
            from: 1,
            to: 2,
            weight,
            shadow,
            sticky,
            slo: None,
            started_at: String::new(),
            started_by: String::new(),
            state: RolloutState::Active,
        }
    }

    #[test]
    fn a_run_of_draws_splits_at_the_weight() {
        for weight in [1u8, 10, 25, 50, 99] {
            let r = rollout(weight, None, false);
            let canary = (0..2_000u64)
                .filter(|n| r.route("f", None, || draw(*n)).arm == Arm::Canary)
                .count();
            let expected = 2_000 * usize::from(weight) / 100;
            assert!(canary.abs_diff(expected) <= 2, "{weight}%: {canary}");
        }
        assert_eq!(draw(0), 0);
        assert!((0..100_000).all(|n| draw(n) < BUCKETS));
    }

    #[test]
    fn a_sticky_key_keeps_its_version_as_the_weight_grows() {
        let keys: Vec<String> = (0..5_000).map(|i| format!("user-{i}")).collect();
        let on_canary = |weight| {
            let r = rollout(weight, Some(StickyKey::Header("x-user".into())), false);
            keys.iter()
                .map(|k| r.route("f", Some(k.as_bytes()), || unreachable!()).arm == Arm::Canary)
                .collect::<Vec<_>>()
        };
        let (ten, twenty_five) = (on_canary(10), on_canary(25));
        let share = ten.iter().filter(|c| **c).count();
        assert!((400..=600).contains(&share), "{share} of 5000 at 10%");
        assert!(ten.iter().zip(&twenty_five).all(|(a, b)| !a || *b));
        // Without its key a call stays on the stable version.
        let r = rollout(99, Some(StickyKey::Field("user".into())), false);
        assert_eq!(r.route("f", None, || 0).version, 1);
    }

    #[test]
    fn a_shadow_answers_from_the_stable_version() {
        let r = rollout(100, None, true);
        let routed = r.route("f", None, || 0);
        assert_eq!((routed.version, routed.shadow), (1, Some(2)));
    }

    fn head(versions: &[u64]) -> Head {
        let mut head = Head::default();
        for v in versions {
            head.versions.insert(*v);
            head.point(super::super::LATEST, *v);
        }
        head
    }

    fn start(to: u64, weight: u8) -> RolloutChange {
        RolloutChange::Start {
            to,
            weight,
            shadow: false,
            sticky: None,
            slo: Some(Slo::default()),
        }
    }

    #[test]
    fn a_rollout_starts_from_what_ran_and_ends_on_the_new_version_or_the_old() {
        let name = Name::parse("f").unwrap();
        let apply = |change: &RolloutChange, head: &mut Head| {
            change.apply("function", &name, head, "me", "now".into())
        };
        // Deploying 2 moved `latest`; the rollout starts from 1 and pins it.
        let mut h = head(&[1, 2]);
        apply(&start(2, 10), &mut h).unwrap();
        assert_eq!(h.aliases[STABLE], 1);
        let r = h.active_rollout().unwrap();
        assert_eq!((r.from, r.to, r.weight), (1, 2, 10));
        // One at a time; weights are percentages.
        let again = apply(&start(2, 10), &mut h).unwrap_err();
        assert!(matches!(again, RegistryError::Conflict { .. }), "{again}");
        assert!(apply(&RolloutChange::Set { weight: 101 }, &mut h).is_err());
        apply(&RolloutChange::Set { weight: 40 }, &mut h).unwrap();
        assert_eq!(h.active_rollout().unwrap().weight, 40);
        apply(&RolloutChange::Promote, &mut h).unwrap();
        assert_eq!((h.aliases[STABLE], h.default_version()), (2, Some(2)));
        assert!(h.active_rollout().is_none());
        let none = apply(&RolloutChange::Abort, &mut h).unwrap_err();
        assert!(none.to_string().contains("is promoted"), "{none}");

        let mut h = head(&[1, 2]);
        apply(&start(2, 50), &mut h).unwrap();
        assert!(!roll_back(&mut h, "another start", "n", "x", "t".into()));
        assert!(roll_back(&mut h, "now", "n", "errors", "t".into()));
        assert_eq!(h.default_version(), Some(1));
        assert!(
            !roll_back(&mut h, "now", "n", "errors", "t".into()),
            "only once"
        );

        // Nothing to start from, a missing version, a bad weight or SLO.
        assert!(apply(&start(1, 10), &mut head(&[1])).is_err());
        assert!(apply(&start(3, 10), &mut head(&[1, 2])).is_err());
        assert!(apply(&start(2, 0), &mut head(&[1, 2])).is_err());
        let slo = Slo {
            max_p95_ratio: 0.5,
            ..Slo::default()
        };
        let bad = RolloutChange::Start {
            to: 2,
            weight: 5,
            shadow: false,
            sticky: None,
            slo: Some(slo),
        };
        assert!(apply(&bad, &mut head(&[1, 2])).is_err());
    }

    #[test]
    fn sticky_keys_parse_and_print() {
        let key: StickyKey = "header:X-User".parse().unwrap();
        assert_eq!(key, StickyKey::Header("x-user".into()));
        assert_eq!(key.to_string(), "header:x-user");
        assert_eq!(
            "field:user_id".parse::<StickyKey>().unwrap().to_string(),
            "field:user_id"
        );
        for bad in ["user", "header:", "cookie:a", "header:a b"] {
            assert!(bad.parse::<StickyKey>().is_err(), "{bad}");
        }
    }
}
