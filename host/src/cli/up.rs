//! `sluice up`: build the stages a `sluice.toml` lists, deploy them
//! to the embedded store with their config, push its models, apply its
//! feature tables (ingesting their files into empty ones), deploy its
//! pipelines, serve, and print a working `curl` line for each example
//! request in the manifest.

use super::args::ServeArgs;
use super::control::local_actor;
use super::serve::{local_node, serve_node};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use sluice::features::{Format, Table};
use sluice::inference::{Baseline, Engine, Push};
use sluice::node::{ControlPlane, Deploy, Node, Settings};
use sluice::pipeline::Pipeline;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct UpArgs {
    /// The manifest, or a directory holding `sluice.toml`.
    #[arg(default_value = "sluice.toml")]
    manifest: PathBuf,
    #[command(flatten)]
    serve: ServeArgs,
}

/// A `sluice.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    #[serde(default, rename = "function")]
    functions: Vec<FunctionEntry>,
    #[serde(default, rename = "model")]
    models: Vec<ModelEntry>,
    #[serde(default, rename = "table")]
    tables: Vec<TableEntry>,
    /// Read again by `sluice::pipeline::parse`, which checks them.
    #[serde(default, rename = "pipeline")]
    pipelines: Vec<toml::Value>,
    #[serde(default, rename = "example")]
    pub(super) examples: Vec<Example>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: String,
    /// The ONNX file, relative to the manifest.
    file: PathBuf,
    description: Option<String>,
    /// Input shapes to pin, as `--input-shape` takes them: `{ x = "1,3,48,192" }`.
    #[serde(default)]
    input_shapes: BTreeMap<String, String>,
    /// Baseline statistics (`sluice models baseline`), relative to the
    /// manifest: drift detection and explanations.
    baseline: Option<PathBuf>,
    /// The engine that runs it (`tract`, the default, or `onnxruntime`).
    #[serde(default)]
    engine: Engine,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEntry {
    /// The table.toml, relative to the manifest.
    file: PathBuf,
    /// Files of rows (CSV, JSON lines, Parquet) ingested when the table has
    /// no data yet, relative to the manifest.
    #[serde(default)]
    data: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionEntry {
    name: String,
    /// A stage folder to build (Rust crate, stage.py or stage.js),
    /// relative to the manifest.
    build: Option<PathBuf>,
    /// A prebuilt component, relative to the manifest.
    wasm: Option<PathBuf>,
    description: Option<String>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    max_concurrency: Option<u32>,
    max_queue: Option<u32>,
    idle_secs: Option<u64>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Origins its outgoing HTTP requests may reach.
    #[serde(default)]
    allow_outbound: Vec<sluice::engine::Origin>,
}

/// An example request: printed as a `curl` line by `sluice up`, checked
/// against `expect` by `sluice test`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Example {
    /// A function to call (`/fn/...`) ...
    pub(super) function: Option<String>,
    /// ... or a pipeline (`/p/...`).
    pub(super) pipeline: Option<String>,
    /// The method (default POST; an HTTP function takes any).
    #[serde(default = "post")]
    pub(super) method: String,
    /// An HTTP function's path below `/fn/NAME` (e.g. `/hello?x=1`).
    #[serde(default)]
    pub(super) path: String,
    #[serde(default = "json")]
    pub(super) content_type: String,
    /// The request body ...
    pub(super) body: Option<String>,
    /// ... or a file holding it, relative to the manifest.
    pub(super) file: Option<String>,
    /// The answer's status `sluice test` expects (default 200).
    pub(super) status: Option<u16>,
    /// The answer's body `sluice test` expects: compared as JSON when both
    /// are JSON, else as text.
    pub(super) expect: Option<String>,
}

impl Example {
    /// Whether `sluice test` checks it: it says what to expect.
    pub(super) fn is_test(&self) -> bool {
        self.expect.is_some() || self.status.is_some()
    }

    /// `fn/NAME[/path]` or `p/NAME`.
    pub(super) fn route(&self) -> String {
        match (&self.function, &self.pipeline) {
            (Some(f), _) => format!("fn/{f}{}", self.path),
            (None, Some(p)) => format!("p/{p}"),
            (None, None) => String::new(),
        }
    }

    /// Its request body.
    pub(super) fn body(&self, dir: &Path) -> Result<Vec<u8>> {
        match (&self.body, &self.file) {
            (Some(body), _) => Ok(body.clone().into_bytes()),
            (None, Some(file)) => std::fs::read(dir.join(file))
                .with_context(|| format!("cannot read the example's file {file}")),
            (None, None) => Ok(Vec::new()),
        }
    }
}

fn json() -> String {
    "application/json".into()
}

fn post() -> String {
    "POST".into()
}

/// The manifest at `path` (or `path/sluice.toml`), checked: its folder,
/// its entries and its pipelines.
pub(super) fn load(path: &Path) -> Result<(PathBuf, Manifest, Vec<Pipeline>)> {
    let path = if path.is_dir() {
        path.join("sluice.toml")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    let manifest: Manifest = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid sluice.toml", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for e in &manifest.examples {
        if e.function.is_some() == e.pipeline.is_some() {
            bail!(
                "an [[example]] in {} names exactly one of `function` or `pipeline`",
                path.display()
            );
        }
        if e.body.is_some() && e.file.is_some() {
            bail!(
                "an [[example]] in {} gives at most one of `body` (the text) or `file` (a file holding it)",
                path.display()
            );
        }
    }
    for f in &manifest.functions {
        if f.build.is_some() == f.wasm.is_some() {
            bail!(
                "function `{}` in {}: give exactly one of `build` (a crate directory) or `wasm` (a component file)",
                f.name,
                path.display()
            );
        }
    }
    let pipelines = if manifest.pipelines.is_empty() {
        Vec::new()
    } else {
        sluice::pipeline::parse(&text).with_context(|| format!("in {}", path.display()))?
    };
    Ok((dir, manifest, pipelines))
}

pub async fn run(args: UpArgs) -> Result<()> {
    let (dir, manifest, pipelines) = load(&args.manifest)?;
    let node = local_node(
        &args.serve.node.data,
        args.serve.node.engine.config(),
        args.serve.node.cache(),
    )
    .await?;
    args.serve.node.start_background(&node)?;
    apply(&node, &dir, &manifest, pipelines).await?;

    let examples = manifest.examples;
    let folder = dir.clone();
    serve_node(node, &args.serve, move |addr| {
        println!("\ntry:");
        for e in &examples {
            let data = match (&e.body, &e.file) {
                (Some(body), _) => format!(" -d '{}'", body.replace('\'', r"'\''")),
                (None, Some(file)) => format!(" --data-binary @{}", folder.join(file).display()),
                (None, None) => String::new(),
            };
            let method = match e.method.as_str() {
                "POST" => String::new(),
                other => format!(" -X {other}"),
            };
            println!(
                "  curl -s{method} http://{addr}/{} -H 'content-type: {}'{data}",
                e.route(),
                e.content_type
            );
        }
        println!(
            "  curl -s http://{addr}/v1/functions -H \"authorization: Bearer $SLUICE_TOKEN\"\n\nCtrl-C to stop."
        );
    })
    .await
}

/// Build the manifest's stages, then deploy them, push its models, apply
/// its tables and deploy its pipelines onto `node`.
pub(super) async fn apply(
    node: &Arc<Node>,
    dir: &Path,
    manifest: &Manifest,
    pipelines: Vec<Pipeline>,
) -> Result<()> {
    let stages: Vec<PathBuf> = manifest
        .functions
        .iter()
        .filter_map(|f| f.build.as_ref())
        .map(|p| dir.join(p))
        .collect();
    eprintln!("building {} stage(s)…", stages.len());
    let built = tokio::task::spawn_blocking(move || sluice::toolchain::build(&stages)).await??;
    let mut built = built.into_iter();
    let plane = node.acting(local_actor());
    for f in &manifest.functions {
        let wasm = match &f.wasm {
            Some(path) => dir.join(path),
            None => built
                .next()
                .map(|b| b.wasm)
                .context("the build returned fewer components than crates")?,
        };
        let bytes =
            std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
        let settings = Settings::Function(Deploy {
            config: f.config.clone(),
            secrets: Default::default(),
            timeout_ms: f.timeout_ms,
            memory_bytes: f.memory_mb.map(|mb| mb << 20),
            fuel: None,
            max_concurrency: f.max_concurrency,
            max_queue: f.max_queue,
            idle_secs: f.idle_secs,
            allow_outbound: f.allow_outbound.clone(),
            description: f.description.clone(),
            labels: Default::default(),
            created_by: std::env::var("USER").unwrap_or_else(|_| "sluice-up".into()),
        });
        let deployed = plane
            .publish(&f.name, bytes.into(), settings, None)
            .await
            .with_context(|| format!("cannot deploy `{}` from {}", f.name, wasm.display()))?;
        let verb = if deployed.created {
            "deployed"
        } else {
            "up to date:"
        };
        eprintln!(
            "{verb} {} version {} ({})",
            f.name,
            deployed.version.number(),
            deployed
                .version
                .world()
                .map(|w| w.to_string())
                .unwrap_or_default()
        );
    }

    let created_by = || std::env::var("USER").unwrap_or_else(|_| "sluice-up".into());
    for m in &manifest.models {
        let file = dir.join(&m.file);
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let input_shapes = m
            .input_shapes
            .iter()
            .map(|(name, dims)| {
                let dims = sluice::tensor::parse_shape(dims).map_err(|e| {
                    anyhow::anyhow!("model `{}`: input_shapes `{name}`: {e}", m.name)
                })?;
                Ok((name.clone(), dims))
            })
            .collect::<Result<_>>()?;
        let baseline = match &m.baseline {
            Some(path) => {
                let path = dir.join(path);
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read the baseline {}", path.display()))?;
                Some(Baseline::Json(bytes.into()))
            }
            None => None,
        };
        let settings = Settings::Model(Push {
            description: m.description.clone(),
            created_by: created_by(),
            input_shapes,
            baseline,
            engine: m.engine,
            ..Push::default()
        });
        let pushed = plane
            .publish(&m.name, bytes.into(), settings, None)
            .await
            .with_context(|| format!("cannot push model `{}` from {}", m.name, file.display()))?;
        let verb = if pushed.created {
            "pushed"
        } else {
            "up to date:"
        };
        eprintln!(
            "{verb} model {} version {}",
            m.name,
            pushed.version.number()
        );
    }
    for t in &manifest.tables {
        apply_table(&plane, dir, t, created_by()).await?;
    }
    for p in pipelines {
        let name = p.name.clone();
        let manifest = serde_json::to_vec(&p).context("cannot encode the pipeline")?;
        let settings = Settings::Pipeline {
            created_by: created_by(),
        };
        let deployed = plane
            .publish(&name, manifest.into(), settings, None)
            .await
            .with_context(|| format!("cannot deploy pipeline `{name}`"))?;
        let verb = if deployed.created {
            "deployed"
        } else {
            "up to date:"
        };
        eprintln!(
            "{verb} pipeline {name} version {}",
            deployed.version.number()
        );
    }

    Ok(())
}

/// Apply a table's schema and, when it has no data yet, ingest its files
/// (so a second `sluice up` does not ingest them twice).
async fn apply_table(
    node: &sluice::node::Acting<'_>,
    dir: &Path,
    entry: &TableEntry,
    created_by: String,
) -> Result<()> {
    let file = dir.join(&entry.file);
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let table = Table::parse(&text).with_context(|| format!("in {}", file.display()))?;
    let settings = Settings::Table {
        new_version: false,
        created_by,
    };
    let applied = node
        .publish(&table.name, text.into(), settings, None)
        .await
        .with_context(|| {
            format!(
                "cannot apply table `{}` from {}",
                table.name,
                file.display()
            )
        })?;
    let verb = if applied.created {
        "applied"
    } else {
        "up to date:"
    };
    eprintln!(
        "{verb} table {} version {}",
        table.name,
        applied.version.number()
    );
    if node.features().view(&table.name).await?.manifest.rows > 0 {
        return Ok(());
    }
    for data in &entry.data {
        let path = dir.join(data);
        let format = Format::of_path(&path)
            .with_context(|| format!("{}: name a .csv, .jsonl or .parquet file", path.display()))?;
        let opened = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let ingested = node
            .ingest(
                &table.name,
                format,
                Box::new(tokio::io::BufReader::new(opened)),
            )
            .await
            .with_context(|| format!("ingesting {}", path.display()))?;
        eprintln!(
            "ingested {} rows into {} ({} entities online)",
            ingested.committed.rows, table.name, ingested.committed.entities
        );
    }
    Ok(())
}
