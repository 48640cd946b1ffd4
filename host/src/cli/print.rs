//! How the CLI prints what the control plane answers.

use sluice::node::{Kind, Listing, Published, Summary, Version};
use sluice::registry::{Head, LATEST};
use sluice::tensor::shape_text;

/// A publish: the version and, for a model, its signature.
pub fn published(published: &Published) {
    let v = &published.version;
    let what = match (published.created, v.kind()) {
        (false, _) => "unchanged:",
        (true, Kind::Function) => "deployed",
        (true, Kind::Model) => "pushed",
        (true, Kind::Pipeline) => "deployed pipeline",
        (true, Kind::Table) => "applied table",
    };
    match v {
        Version::Function(f) => println!(
            "{what} {} version {} ({}, {} bytes, {})",
            f.name, f.version, f.world, f.size, f.digest
        ),
        Version::Model(m) => {
            println!(
                "{what} {} version {} ({} bytes, {})",
                m.name, m.version, m.size, m.digest
            );
            for (direction, specs) in [
                ("input", &m.signature.inputs),
                ("output", &m.signature.outputs),
            ] {
                for s in specs {
                    println!(
                        "  {direction:<6} {:<32} {:<6} {}",
                        s.name,
                        s.datatype,
                        shape_text(&s.shape)
                    );
                }
            }
        }
        Version::Pipeline(p) => {
            println!("{what} {} version {}", p.name, p.version);
            steps(p);
        }
        Version::Table(t) => {
            let shares = if t.data == t.version {
                "new, empty data".to_string()
            } else {
                format!("data of version {}", t.data)
            };
            println!("{what} {} version {} ({shares})", t.name, t.version);
            schema(&t.table);
        }
    }
}

/// What a compaction did.
pub fn compacted(c: &sluice::features::Compacted) {
    println!(
        "compacted {} (data {}): {} → {} history segments, {} rows rewritten; swept {} objects ({} bytes), {} replaced kept for the grace period",
        c.table,
        c.generation,
        c.segments_before,
        c.segments_after,
        c.rows_merged,
        c.swept,
        c.swept_bytes,
        c.retired_kept
    );
}

/// Tokens, one line each: name, role, prefixes, when and by whom.
pub fn tokens(tokens: &[sluice::access::TokenInfo]) {
    for t in tokens {
        let prefixes = if t.prefixes.is_empty() {
            "*".to_string()
        } else {
            t.prefixes.join(",")
        };
        let state = t
            .revoked_at
            .as_ref()
            .map_or(String::new(), |at| format!("  revoked {at}"));
        println!(
            "{:<20} {:<9} {:<20} created {} by {}{state}",
            t.name, t.role, prefixes, t.created_at, t.created_by
        );
    }
}

/// Audit records, one line each.
pub fn audit(records: &[sluice::access::AuditRecord]) {
    for r in records {
        let c = &r.change;
        let version = c.version.map_or(String::new(), |v| format!(" v{v}"));
        let detail = c
            .detail
            .as_ref()
            .map_or(String::new(), |d| format!(" ({d})"));
        println!(
            "{:>6} {} {:<16} {:<12} {} {}{version}{detail}",
            r.seq, r.at, r.actor, c.action, c.kind, c.name
        );
    }
}

/// What an ingest committed.
pub fn ingested(i: &sluice::features::Ingested) {
    let c = &i.committed;
    println!(
        "ingested {} rows into {} version {} ({} segment(s)); {} entities updated, {} late row(s) kept in the history only; {} entities online",
        c.rows, i.table, i.version, c.segments, c.updated, c.late, c.entities
    );
}

/// A table's columns and settings.
pub fn schema(t: &sluice::features::Table) {
    let key: Vec<String> = t
        .entity
        .iter()
        .map(|k| format!("{} ({})", k.name, k.ty))
        .collect();
    let ttl = t
        .ttl_ms
        .map(|ms| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string())
        .unwrap_or_else(|| "none".into());
    println!(
        "  key {}  time {}{}  ttl {ttl}  freshness {} ms  {} partitions",
        key.join(", "),
        t.timestamp,
        t.created
            .as_ref()
            .map(|c| format!(" (ties: {c})"))
            .unwrap_or_default(),
        t.freshness_ms,
        t.partitions
    );
    for f in &t.features {
        println!("  {:<32} {}", f.name, f.ty);
    }
}

/// A pipeline's steps with what each runs (the version pinned at deploy,
/// or the alias it follows).
pub fn steps(p: &sluice::pipeline::PipelineVersion) {
    for step in &p.pipeline.steps {
        let (kind, target) = step.target();
        let (name, _) = step.name_and_selector();
        let runs = match (step.follow, p.pinned.get(&step.name)) {
            (false, Some(v)) => format!("{name}@{v}"),
            _ => format!("{target} (follows)"),
        };
        let kind = match kind {
            sluice::pipeline::StepKind::Function => "function",
            sluice::pipeline::StepKind::Model => "model",
        };
        let after = p.pipeline.parents(step);
        println!(
            "  {:<16} {kind:<8} {runs:<32} after {}",
            step.name,
            if after.is_empty() {
                "the request".to_string()
            } else {
                after.join(", ")
            }
        );
    }
}

/// A listing of every name of `kind`.
pub fn summaries(kind: Kind, list: &[Summary]) {
    if list.is_empty() {
        match kind {
            Kind::Function => println!(
                "no functions deployed; deploy one with `sluice deploy FILE.wasm --name NAME`"
            ),
            Kind::Model => {
                println!(
                    "no models pushed; push one with `sluice models push FILE.onnx --name NAME`"
                )
            }
            Kind::Pipeline => {
                println!("no pipelines deployed; deploy one with `sluice deploy pipeline.toml`")
            }
            Kind::Table => {
                println!("no feature tables; apply one with `sluice features apply table.toml`")
            }
        }
    }
    for s in list {
        let aliases: Vec<String> = s
            .aliases
            .iter()
            .filter(|(a, _)| a.as_str() != LATEST)
            .map(|(a, v)| format!("{a}→{v}"))
            .collect();
        let world = s.world.map(|w| w.to_string()).unwrap_or_default();
        println!(
            "{:<32} latest v{:<5} serves v{:<5} {:<13} {} version(s)  {}",
            s.name,
            s.latest,
            s.default,
            world,
            s.versions,
            aliases.join(" ")
        );
    }
}

/// Every version of one name, each with the aliases that point at it
/// (`aliases NAME` shows where they pointed before).
pub fn versions(listing: &Listing) {
    for v in &listing.versions {
        let aliases: Vec<&str> = listing
            .head
            .aliases
            .iter()
            .filter(|(_, n)| **n == v.number())
            .map(|(a, _)| a.as_str())
            .collect();
        match v {
            Version::Function(f) => println!(
                "{:<5} {:<16} {}  {:<13} {:>9} B  {}  by {}{}",
                f.version,
                aliases.join(","),
                f.created_at,
                f.world,
                f.size,
                f.digest,
                f.created_by,
                f.description
                    .as_ref()
                    .map(|d| format!("  — {d}"))
                    .unwrap_or_default()
            ),
            Version::Model(m) => {
                let inputs: Vec<String> = m
                    .signature
                    .inputs
                    .iter()
                    .map(|s| format!("{}:{}{}", s.name, s.datatype, shape_text(&s.shape)))
                    .collect();
                println!(
                    "{:<5} {:<16} {}  {:>9} B  {}  by {}  inputs {}",
                    m.version,
                    aliases.join(","),
                    m.created_at,
                    m.size,
                    m.digest,
                    m.created_by,
                    inputs.join(" ")
                );
            }
            Version::Pipeline(p) => println!(
                "{:<5} {:<16} {}  {} step(s)  by {}{}",
                p.version,
                aliases.join(","),
                p.created_at,
                p.pipeline.steps.len(),
                p.created_by,
                p.pipeline
                    .description
                    .as_ref()
                    .map(|d| format!("  — {d}"))
                    .unwrap_or_default()
            ),
            Version::Table(t) => println!(
                "{:<5} {:<16} {}  {} feature(s)  data v{}  by {}",
                t.version,
                aliases.join(","),
                t.created_at,
                t.table.features.len(),
                t.data,
                t.created_by
            ),
        }
    }
}

/// Where each alias points, and where it pointed before.
pub fn aliases(head: &Head) {
    for (alias, version) in &head.aliases {
        let earlier = head
            .history
            .get(alias)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let list: Vec<String> = h.iter().rev().map(u64::to_string).collect();
                format!("  (before: {})", list.join(", "))
            })
            .unwrap_or_default();
        println!("  {alias:<16} → {version}{earlier}");
    }
}
