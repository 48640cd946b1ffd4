//! `sluice rollout`: start, move, promote, abort and watch the rollout of
//! a function, model or pipeline.

use super::args::TargetArgs;
use super::control::Request;
use anyhow::Result;
use clap::{Args, Subcommand};
use sluice::node::{Figures, Kind, RolloutStatus};
use sluice::registry::rollout::RolloutChange;
use sluice::registry::{RolloutState, Slo, StickyKey};

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Send --weight percent of NAME's unqualified calls to version --to
    /// (the rest stay on the stable version), judged against an SLO and
    /// rolled back automatically on every node when it breaks it.
    Start {
        #[command(flatten)]
        name: NameArgs,
        /// The version to roll out.
        #[arg(long)]
        to: u64,
        /// Percent of the calls it takes, 1–100.
        #[arg(long)]
        weight: u8,
        /// Route by a key of the request so that a caller keeps its
        /// version: `header:NAME` or `field:NAME` (a top-level JSON field).
        #[arg(long, value_parser = parse_sticky)]
        sticky_key: Option<StickyKey>,
        /// Shadow: the new version gets copies of its share, compared and
        /// dropped; every answer comes from the stable version.
        #[arg(long)]
        shadow: bool,
        /// The new version's error rate may exceed the stable one's by at
        /// most this fraction.
        #[arg(long, default_value_t = Slo::default().max_error_rate)]
        max_error_rate: f64,
        /// Its p95 latency may be at most this multiple of the stable
        /// one's (and must be 5 ms slower before it counts).
        #[arg(long, default_value_t = Slo::default().max_p95_ratio)]
        max_p95_ratio: f64,
        /// Seconds of calls each node judges.
        #[arg(long, default_value_t = Slo::default().window_secs)]
        slo_window_secs: u64,
        /// Calls the new version needs in the window before it is judged.
        #[arg(long, default_value_t = Slo::default().min_requests)]
        min_requests: u64,
        /// No SLO: never roll back automatically.
        #[arg(long, conflicts_with_all = ["max_error_rate", "max_p95_ratio", "slo_window_secs", "min_requests"])]
        no_auto_rollback: bool,
    },
    /// Give the new version WEIGHT percent of the calls (0–100).
    Set {
        #[command(flatten)]
        name: NameArgs,
        /// Percent of the calls.
        weight: u8,
    },
    /// Make the new version stable: every unqualified call runs it.
    Promote {
        #[command(flatten)]
        name: NameArgs,
    },
    /// Return every call to the stable version.
    Abort {
        #[command(flatten)]
        name: NameArgs,
    },
    /// The rollout (or how the last one ended) and the calls the answering
    /// node routed, per side.
    Status {
        #[command(flatten)]
        name: NameArgs,
    },
}

/// The name a rollout or guard command acts on.
#[derive(Args)]
pub struct NameArgs {
    /// The function (or model, or pipeline).
    name: String,
    /// NAME is a model.
    #[arg(long, conflicts_with = "pipeline")]
    model: bool,
    /// NAME is a pipeline.
    #[arg(long)]
    pipeline: bool,
    #[command(flatten)]
    target: TargetArgs,
}

impl NameArgs {
    /// Where to act, on which kind, and the name.
    pub fn parts(self) -> (TargetArgs, Kind, String) {
        let kind = super::control::kind(self.model, self.pipeline);
        (self.target, kind, self.name)
    }

    fn request(self, change: Option<RolloutChange>) -> (TargetArgs, Request) {
        let (target, kind, name) = self.parts();
        let request = match change {
            Some(change) => Request::Rollout(kind, name, change),
            None => Request::RolloutStatus(kind, name),
        };
        (target, request)
    }
}

fn parse_sticky(s: &str) -> Result<StickyKey, String> {
    s.parse()
}

impl RolloutCommand {
    /// Where to act, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Start {
                name,
                to,
                weight,
                sticky_key,
                shadow,
                max_error_rate,
                max_p95_ratio,
                slo_window_secs,
                min_requests,
                no_auto_rollback,
            } => {
                let slo = (!no_auto_rollback).then_some(Slo {
                    max_error_rate,
                    max_p95_ratio,
                    window_secs: slo_window_secs,
                    min_requests,
                });
                let change = RolloutChange::Start {
                    to,
                    weight,
                    shadow,
                    sticky: sticky_key,
                    slo,
                };
                name.request(Some(change))
            }
            Self::Set { name, weight } => name.request(Some(RolloutChange::Set { weight })),
            Self::Promote { name } => name.request(Some(RolloutChange::Promote)),
            Self::Abort { name } => name.request(Some(RolloutChange::Abort)),
            Self::Status { name } => name.request(None),
        })
    }
}

/// Print a rollout's status.
pub fn print(kind: Kind, status: &RolloutStatus) {
    let stable = status
        .stable
        .map_or("none".to_string(), |v| format!("version {v}"));
    println!("{} {}: stable {stable}", kind.noun(), status.name);
    let Some(r) = &status.rollout else {
        println!("  no rollout");
        return;
    };
    let how = if r.shadow { "shadow of" } else { "taking" };
    println!(
        "  rollout {} → {}: {} ({how} {}% of the calls), started {} by {}",
        r.from,
        r.to,
        r.state.as_str(),
        r.weight,
        r.started_at,
        r.started_by
    );
    if let Some(key) = &r.sticky {
        println!("  sticky by {key}");
    }
    match &r.state {
        RolloutState::Active => {}
        RolloutState::Promoted { at, by } | RolloutState::Aborted { at, by } => {
            println!("  ended {at} by {by}");
        }
        RolloutState::RolledBack { at, by, reason } => {
            println!("  rolled back {at} by {by}: {reason}");
        }
    }
    match &r.slo {
        Some(slo) => println!(
            "  SLO: error rate at most +{:.1} points, p95 at most ×{}, over {} s, judged after {} calls",
            slo.max_error_rate * 100.0,
            slo.max_p95_ratio,
            slo.window_secs,
            slo.min_requests
        ),
        None => println!("  no SLO: never rolled back automatically"),
    }
    if let Some(node) = &status.node {
        println!("  node {} (last {} s):", node.node, node.window_secs);
        let row = |side: &str, version: u64, f: &Figures| {
            let p95 = f.p95_ms.map_or("-".to_string(), |p| format!("{p:.2} ms"));
            println!(
                "    {side:<7} v{version:<4} {:>8} calls {:>6} errors   p95 {p95}",
                f.calls, f.errors
            );
        };
        row("stable", r.from, &node.stable);
        row("canary", r.to, &node.canary);
        if r.shadow {
            println!(
                "    shadow answers: {} same, {} different, {} failed",
                node.shadow_same, node.shadow_differ, node.shadow_failed
            );
        }
    }
}
