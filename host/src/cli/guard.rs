//! `sluice guard`: set, show and clear what protects the callers of a
//! function, model or pipeline: a fallback, a circuit breaker, rate limits.

use super::args::TargetArgs;
use super::control::Request;
use super::rollout::NameArgs;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sluice::node::{GuardStatus, Kind};
use sluice::registry::{Breaker, Bucket, Fallback, FallbackTo, Guard, RateLimit, Trigger};

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum GuardCommand {
    /// Set NAME's guard, replacing the one it had (every node applies it
    /// within one poll interval).
    Set {
        #[command(flatten)]
        name: NameArgs,
        #[command(flatten)]
        settings: GuardArgs,
    },
    /// The guard and the answering node's circuits of NAME's versions.
    Show {
        #[command(flatten)]
        name: NameArgs,
    },
    /// Remove NAME's guard.
    Clear {
        #[command(flatten)]
        name: NameArgs,
    },
}

/// A guard's parts (each optional).
#[derive(Args)]
pub struct GuardArgs {
    /// Fall back to this version of NAME.
    #[arg(long, group = "fallback")]
    fallback_version: Option<u64>,
    /// Fall back to this pipeline (NAME must be a pipeline).
    #[arg(long, group = "fallback")]
    fallback_pipeline: Option<String>,
    /// Fall back to this fixed response body (`@FILE` reads a file);
    /// functions and pipelines.
    #[arg(long, group = "fallback")]
    fallback_static: Option<String>,
    /// The media type of --fallback-static.
    #[arg(long, default_value = "application/json", requires = "fallback_static")]
    fallback_content_type: String,
    /// The failures the fallback answers for: error, deadline, circuit.
    #[arg(long, value_delimiter = ',', value_parser = parse_trigger, default_value = "error,deadline,circuit")]
    fallback_on: Vec<Trigger>,
    /// A circuit breaker per version (functions and models), with the
    /// defaults of any of the --breaker-* settings not given.
    #[arg(long)]
    breaker: bool,
    /// Open a version's circuit after this many failures in a row.
    #[arg(long)]
    breaker_failures: Option<u32>,
    /// ...or once this share of its calls failed over the window.
    #[arg(long)]
    breaker_error_ratio: Option<f64>,
    /// The window of the error ratio, in seconds.
    #[arg(long)]
    breaker_window_secs: Option<u64>,
    /// Calls the window needs before the ratio counts.
    #[arg(long)]
    breaker_min_requests: Option<u64>,
    /// Seconds an open circuit refuses calls before it lets probes through.
    #[arg(long)]
    breaker_open_secs: Option<u64>,
    /// Probes that must succeed to close it again.
    #[arg(long)]
    breaker_probes: Option<u32>,
    /// Calls per second NAME takes, across all nodes (429 beyond).
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Calls let through at once after a quiet spell (default: one
    /// second's worth).
    #[arg(long, requires = "rate_limit")]
    burst: Option<u32>,
    /// Calls per second each API token may make (calls without a token
    /// share one budget).
    #[arg(long)]
    token_rate_limit: Option<f64>,
    /// Each token's burst (default: one second's worth).
    #[arg(long, requires = "token_rate_limit")]
    token_burst: Option<u32>,
}

fn parse_trigger(s: &str) -> Result<Trigger, String> {
    serde_json::from_value(serde_json::Value::String(s.trim().into())).map_err(|_| {
        format!("`{s}` is not a failure a fallback answers for: error, deadline or circuit")
    })
}

impl GuardArgs {
    fn guard(self) -> Result<Guard> {
        let to = if let Some(version) = self.fallback_version {
            Some(FallbackTo::Version { version })
        } else if let Some(pipeline) = self.fallback_pipeline {
            Some(FallbackTo::Pipeline { pipeline })
        } else if let Some(body) = self.fallback_static {
            let body = match body.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the fallback body {path}"))?,
                None => body,
            };
            Some(FallbackTo::Static {
                content_type: self.fallback_content_type,
                body,
            })
        } else {
            None
        };
        let d = Breaker::default();
        let tuned = [
            self.breaker_failures.is_some(),
            self.breaker_error_ratio.is_some(),
            self.breaker_window_secs.is_some(),
            self.breaker_min_requests.is_some(),
            self.breaker_open_secs.is_some(),
            self.breaker_probes.is_some(),
        ];
        let breaker = (self.breaker || tuned.contains(&true)).then(|| Breaker {
            consecutive_failures: self.breaker_failures.unwrap_or(d.consecutive_failures),
            error_ratio: self.breaker_error_ratio.unwrap_or(d.error_ratio),
            window_secs: self.breaker_window_secs.unwrap_or(d.window_secs),
            min_requests: self.breaker_min_requests.unwrap_or(d.min_requests),
            open_secs: self.breaker_open_secs.unwrap_or(d.open_secs),
            probes: self.breaker_probes.unwrap_or(d.probes),
        });
        let bucket = |rate: Option<f64>, burst: Option<u32>| {
            rate.map(|per_second| Bucket {
                per_second,
                burst: burst.unwrap_or(per_second.ceil().max(1.0) as u32),
            })
        };
        let route = bucket(self.rate_limit, self.burst);
        let per_token = bucket(self.token_rate_limit, self.token_burst);
        let rate_limit =
            (route.is_some() || per_token.is_some()).then_some(RateLimit { route, per_token });
        let guard = Guard {
            fallback: to.map(|to| Fallback {
                to,
                on: self.fallback_on,
            }),
            breaker,
            rate_limit,
        };
        if guard.is_empty() {
            bail!(
                "nothing to set: give a fallback (--fallback-version, --fallback-pipeline, --fallback-static), a breaker (--breaker) or a rate limit (--rate-limit, --token-rate-limit); `sluice guard clear` removes a guard"
            );
        }
        Ok(guard)
    }
}

impl GuardCommand {
    /// Where to act, and the request.
    pub fn request(self) -> Result<(TargetArgs, Request)> {
        Ok(match self {
            Self::Set { name, settings } => {
                let (target, kind, name) = name.parts();
                (
                    target,
                    Request::SetGuard(kind, name, Some(settings.guard()?)),
                )
            }
            Self::Clear { name } => {
                let (target, kind, name) = name.parts();
                (target, Request::SetGuard(kind, name, None))
            }
            Self::Show { name } => {
                let (target, kind, name) = name.parts();
                (target, Request::GuardStatus(kind, name))
            }
        })
    }
}

/// Print a guard and the answering node's circuits.
pub fn print(kind: Kind, status: &GuardStatus) {
    println!("{} {}", kind.noun(), status.name);
    let Some(guard) = &status.guard else {
        println!("  no guard");
        return;
    };
    if let Some(f) = &guard.fallback {
        let on: Vec<&str> = f.on.iter().map(|t| t.as_str()).collect();
        let to = match &f.to {
            FallbackTo::Static { content_type, body } => {
                format!("a static {content_type} response of {} bytes", body.len())
            }
            other => other.label(),
        };
        println!("  fallback: {to}, on {}", on.join(", "));
    }
    if let Some(b) = &guard.breaker {
        println!(
            "  breaker: opens after {} failures in a row, or {:.0}% of at least {} calls over {} s; open {} s, then {} probe(s) close it",
            b.consecutive_failures,
            b.error_ratio * 100.0,
            b.min_requests,
            b.window_secs,
            b.open_secs,
            b.probes
        );
    }
    if let Some(limit) = &guard.rate_limit {
        let show = |what: &str, b: &Option<Bucket>| {
            if let Some(b) = b {
                println!(
                    "  rate limit ({what}): {}/s, burst {} (this node's share: 1/{})",
                    b.per_second, b.burst, status.live_nodes
                );
            }
        };
        show("route", &limit.route);
        show("per token", &limit.per_token);
    }
    if !status.circuits.is_empty() {
        println!("  circuits on node {}:", status.node);
        for c in &status.circuits {
            match c.probe_in_secs {
                Some(secs) => println!("    v{:<4} {} (probed in {secs} s)", c.version, c.state),
                None => println!("    v{:<4} {}", c.version, c.state),
            }
        }
    }
}
