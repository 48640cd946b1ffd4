//! `sluice features ...`: feature tables. Schemas and ingestion go through
//! the control plane (`control.rs`); `get` reads like the data plane;
//! `export` reads the offline history straight from the store, where a
//! training job runs.

use super::args::{DataArgs, TargetArgs};
use super::control::{self, Request};
use super::serve::{cli_engine, local_node};
use anyhow::{Context, Result};
use clap::Subcommand;
use sluice::features::{FeatureSpec, Format, OutputFormat, Table};
use sluice::http::Client;
use sluice::node::{Kind, Settings};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FeaturesCommand {
    /// Register a table.toml as a new version of its table (unchanged: a
    /// no-op). A change that removes or retypes a column, or changes the
    /// key, is refused unless --new-version.
    Apply {
        /// The table.toml.
        file: PathBuf,
        /// Start a new table version with empty data (readers of the old
        /// version keep its data); needed for a breaking change.
        #[arg(long)]
        new_version: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Ingest a CSV (with a header), JSON-lines or Parquet file into a
    /// table: streamed, all rows or none.
    Ingest {
        /// The table.
        table: String,
        /// The file: .csv, .jsonl or .parquet.
        file: PathBuf,
        /// The file's format, when its extension does not say.
        #[arg(long, value_parser = ["csv", "jsonl", "parquet"])]
        format: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print the online features of entities, one JSON object per line
    /// (nulls where missing or older than the TTL).
    Get {
        /// The table (TABLE or TABLE@VERSION).
        table: String,
        /// Entity keys (a composite key's parts joined by '|').
        #[arg(required = true)]
        keys: Vec<String>,
        /// Only these features (comma-separated; default: all).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Point-in-time export for training: for each row of --entities, the
    /// latest values at or before its timestamp and within the TTL.
    Export {
        /// A CSV with each table's entity columns and a timestamp column.
        #[arg(long)]
        entities: PathBuf,
        /// TABLE[@VERSION]:feature,feature (or TABLE for all), repeatable
        /// or space-separated.
        #[arg(long, required = true, num_args = 1..)]
        features: Vec<FeatureSpec>,
        /// The output: .csv or .parquet.
        #[arg(long)]
        out: PathBuf,
        /// The entity file's timestamp column.
        #[arg(long, default_value = "timestamp")]
        timestamp_column: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Merge a table's small history segments (of one event date) into
    /// larger ones, and delete objects no reader needs: replaced segments
    /// and online snapshots once older than --grace, files of ingests that
    /// failed once a day old.
    Compact {
        /// The table (TABLE or TABLE@VERSION).
        table: String,
        /// How long replaced objects stay for readers of older manifests;
        /// longer than your longest export.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List tables.
    Ls(TargetArgs),
    /// List the versions and aliases of one table.
    Versions {
        /// The table.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show the schema of the version reads use (or of VERSION).
    Show {
        /// The table.
        name: String,
        /// A version number (default: `stable`, else `latest`).
        version: Option<u64>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete one version of a table's schema (its data stays, for the
    /// versions that share it).
    Rm {
        /// The table.
        name: String,
        /// The version to delete.
        version: u64,
        #[command(flatten)]
        target: TargetArgs,
    },
}

impl FeaturesCommand {
    pub async fn run(self) -> Result<()> {
        let (target, request) = match self {
            Self::Apply {
                file,
                new_version,
                target,
            } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                // Checked here too, so mistakes show before anything is sent.
                let table =
                    Table::parse(&text).with_context(|| format!("in {}", file.display()))?;
                let request = Request::Publish {
                    name: table.name,
                    artifact: text.into(),
                    settings: Settings::Table {
                        new_version,
                        created_by: control::created_by(),
                    },
                    invocation: None,
                };
                (target, request)
            }
            Self::Ingest {
                table,
                file,
                format,
                target,
            } => {
                let format = match format.as_deref() {
                    Some("csv") => Format::Csv,
                    Some("jsonl") => Format::Jsonl,
                    Some(_) => Format::Parquet,
                    None => Format::of_path(&file).with_context(|| {
                        format!(
                            "{}: say --format csv|jsonl|parquet (the extension does not)",
                            file.display()
                        )
                    })?,
                };
                (
                    target,
                    Request::Ingest {
                        table,
                        file,
                        format,
                    },
                )
            }
            Self::Get {
                table,
                keys,
                features,
                target,
            } => return get(target, &table, &keys, &features).await,
            Self::Export {
                entities,
                features,
                out,
                timestamp_column,
                data,
            } => return export(data, entities, features, out, timestamp_column).await,
            Self::Compact {
                table,
                grace,
                target,
            } => (target, Request::Compact { table, grace }),
            Self::Ls(target) => (target, Request::List(Kind::Table)),
            Self::Versions { name, target } => (target, Request::Versions(Kind::Table, name)),
            Self::Show {
                name,
                version,
                target,
            } => (target, Request::Show(Kind::Table, name, version)),
            Self::Rm {
                name,
                version,
                target,
            } => (
                target,
                Request::Delete {
                    kind: Kind::Table,
                    name,
                    version,
                },
            ),
        };
        control::run(target, request).await
    }
}

async fn get(target: TargetArgs, table: &str, keys: &[String], features: &[String]) -> Result<()> {
    let results = match &target.server {
        Some(url) => {
            Client::new(url, target.token()?.as_deref())?
                .lookup(table, keys, features)
                .await?
        }
        None => {
            let node = local_node(&target.data, cli_engine(), Default::default()).await?;
            let lookup = node.lookup(table, keys, features).await?;
            lookup
                .entities
                .iter()
                .map(|e| serde_json::to_value(lookup.json(e)))
                .collect::<Result<_, _>>()?
        }
    };
    for result in results {
        println!("{result}");
    }
    Ok(())
}

async fn export(
    data: DataArgs,
    entities: PathBuf,
    specs: Vec<FeatureSpec>,
    out: PathBuf,
    timestamp_column: String,
) -> Result<()> {
    let format = match out.extension().and_then(|e| e.to_str()) {
        Some("csv") => OutputFormat::Csv,
        Some("parquet") => OutputFormat::Parquet,
        _ => anyhow::bail!("--out {}: name a .csv or .parquet file", out.display()),
    };
    let input = std::fs::File::open(&entities)
        .with_context(|| format!("cannot read the entity file {}", entities.display()))?;
    // Written beside the target and renamed at the end: a failed export
    // never leaves a half-written training set under the name asked for.
    let partial = out.with_extension(format!(
        "{}.partial",
        out.extension().and_then(|e| e.to_str()).unwrap_or_default()
    ));
    let output = std::fs::File::create(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let node = local_node(&data, cli_engine(), Default::default()).await?;
    let runtime = tokio::runtime::Handle::current();
    let started = std::time::Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        node.features().export(
            &runtime,
            std::io::BufReader::new(input),
            &specs,
            &timestamp_column,
            format,
            std::io::BufWriter::new(output),
        )
    })
    .await?;
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e).with_context(|| format!("exporting for {}", entities.display()));
        }
    };
    std::fs::rename(&partial, &out)
        .with_context(|| format!("cannot move the export to {}", out.display()))?;
    println!(
        "exported {} rows × {} features to {} in {:.2}s ({} values found; {} history rows read from {} segments, {} skipped)",
        report.rows,
        report.features,
        out.display(),
        started.elapsed().as_secs_f64(),
        report.found,
        report.scanned,
        report.segments_read,
        report.segments_skipped
    );
    Ok(())
}
