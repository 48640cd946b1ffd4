//! Drift from the terminal: `sluice models baseline` (a model's baseline
//! statistics from a sample of its training data) and `sluice drift` (a
//! model's drift, with small histograms of baseline and now).

use anyhow::{Context, Result, bail};
use clap::Args;
use sluice::inference::drift::{Baseline, DEFAULT_BINS, Report, Score};
use sluice::inference::{Engine, Evaluator};
use sluice::tensor::{Datatype, NamedTensor, Tensor, TensorData};
use std::path::{Path, PathBuf};

/// `sluice models baseline`.
#[derive(Args)]
pub struct BaselineArgs {
    /// The model (.onnx) the sample is for.
    pub model: PathBuf,
    /// A sample of its training data: CSV with a header row, or Parquet;
    /// numeric columns in the order of the model input's columns.
    pub sample: PathBuf,
    /// Where to write the baseline (JSON), for `sluice models push --baseline`.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The model input the columns feed (default: its only input).
    #[arg(long)]
    pub input: Option<String>,
    /// Leave out this column of the sample, e.g. the label (repeatable).
    #[arg(long)]
    pub drop: Vec<String>,
    /// Bins per feature, at quantiles of the sample.
    #[arg(long, default_value_t = DEFAULT_BINS)]
    pub bins: usize,
    /// The engine the model is pushed with, which computes its outputs on
    /// the sample: tract (built in) or onnxruntime (with --onnxruntime).
    #[arg(long, value_name = "tract|onnxruntime", default_value = "tract")]
    pub engine: Engine,
    /// onnxruntime's shared library (libonnxruntime.so, 1.24 or later),
    /// for --engine onnxruntime.
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "PATH")]
    pub onnxruntime: Option<PathBuf>,
}

/// Compute a baseline: per-feature histograms of the sample, the model's
/// outputs on it (run here, with the engine that serves it), and a
/// background sample for explanations.
pub fn baseline(args: BaselineArgs) -> Result<()> {
    if args.bins < 2 {
        bail!("--bins {} is too few: give at least 2", args.bins);
    }
    if args.engine == Engine::Onnxruntime && args.onnxruntime.is_none() {
        bail!(
            "--engine onnxruntime needs onnxruntime's library: --onnxruntime PATH (or ORT_DYLIB_PATH), the libonnxruntime.so of onnxruntime 1.24 or later"
        );
    }
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read the model {}", args.model.display()))?;
    let (names, rows) = read_sample(&args.sample, &args.drop)?;
    if rows.is_empty() {
        bail!("{} has no rows", args.sample.display());
    }
    let model = Evaluator::compile(&bytes, args.engine, args.onnxruntime.as_deref())
        .context("the model cannot be loaded")?;
    let signature = model.signature();
    let input = match (&args.input, signature.inputs.as_slice()) {
        (Some(input), _) => input.clone(),
        (None, [only]) => only.name.clone(),
        (None, inputs) => bail!(
            "the model has {} inputs ({}); say which the sample's columns feed with --input",
            inputs.len(),
            inputs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let spec = signature
        .inputs
        .iter()
        .find(|s| s.name == input)
        .with_context(|| format!("the model has no input `{input}`"))?;
    // Statistics of the values the model sees: rounded to its precision,
    // so a served row falls in the bin its training twin did.
    let single = spec.datatype != Datatype::Fp64;
    let rows: Vec<Vec<f64>> = if single {
        rows.into_iter()
            .map(|row| row.into_iter().map(|v| f64::from(v as f32)).collect())
            .collect()
    } else {
        rows
    };
    let values = rows.iter().flatten();
    let data = if single {
        TensorData::F32(values.map(|v| *v as f32).collect())
    } else {
        TensorData::F64(values.copied().collect())
    };
    let tensor = NamedTensor {
        name: input.clone(),
        tensor: Tensor {
            shape: vec![rows.len() as u64, names.len() as u64],
            data,
        },
    };
    let outputs = model.run(vec![tensor]).with_context(|| {
        format!(
            "the model could not run on the sample's {} columns ({})",
            names.len(),
            names.join(", ")
        )
    })?;
    // The output with one value per row: a label or a regression's value.
    let output = outputs
        .iter()
        .find(|o| o.tensor.data.len() == rows.len())
        .map(|o| (o.name.as_str(), &o.tensor.data));
    let baseline = Baseline::of_rows(&input, &names, &rows, output, args.bins);
    let json = serde_json::to_vec_pretty(&baseline)?;
    Baseline::parse(&json, signature).map_err(anyhow::Error::msg)?;
    std::fs::write(&args.output, json)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "wrote {}: {} rows, {} features ({} bins each), output {}, {} background rows",
        args.output.display(),
        rows.len(),
        names.len(),
        args.bins,
        baseline
            .output
            .as_ref()
            .map_or("not recorded", |o| o.name()),
        baseline.background.len()
    );
    Ok(())
}

/// The sample's column names and numeric rows, `drop`ped columns left out.
fn read_sample(path: &Path, drop: &[String]) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    let (names, rows) = if is_parquet {
        read_parquet(path)?
    } else {
        read_csv(path)?
    };
    if let Some(missing) = drop.iter().find(|d| !names.contains(d)) {
        bail!(
            "--drop {missing}: the sample has no such column (its columns: {})",
            names.join(", ")
        );
    }
    let kept: Vec<usize> = (0..names.len())
        .filter(|i| !drop.contains(&names[*i]))
        .collect();
    let rows = rows
        .into_iter()
        .map(|row| kept.iter().map(|i| row[*i]).collect())
        .collect();
    Ok((kept.iter().map(|i| names[*i].clone()).collect(), rows))
}

fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let names: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: row {}", path.display(), i + 1))?;
        let row = record
            .iter()
            .zip(&names)
            .map(|(cell, name)| {
                cell.trim().parse::<f64>().with_context(|| {
                    format!(
                        "{}: row {}, column `{name}`: `{cell}` is not a number (leave non-numeric columns out with --drop {name})",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        rows.push(row);
    }
    Ok((names, rows))
}

fn read_parquet(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    use arrow_array::{Array, Float32Array, Float64Array, Int32Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?
        .build()?;
    let mut names = Vec::new();
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for batch in reader {
        let batch = batch?;
        names = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let start = rows.len();
        rows.resize(start + batch.num_rows(), Vec::with_capacity(names.len()));
        for (column, name) in batch.columns().iter().zip(&names) {
            let any = column.as_any();
            let value = |i: usize| -> Option<f64> {
                if column.is_null(i) {
                    return Some(f64::NAN);
                }
                if let Some(a) = any.downcast_ref::<Float64Array>() {
                    Some(a.value(i))
                } else if let Some(a) = any.downcast_ref::<Float32Array>() {
                    Some(f64::from(a.value(i)))
                } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                    Some(a.value(i) as f64)
                } else {
                    any.downcast_ref::<Int32Array>()
                        .map(|a| f64::from(a.value(i)))
                }
            };
            for i in 0..batch.num_rows() {
                let v = value(i).with_context(|| {
                    format!(
                        "{}: column `{name}` is {}, not a number (leave it out with --drop {name})",
                        path.display(),
                        column.data_type()
                    )
                })?;
                rows[start + i].push(v);
            }
        }
    }
    Ok((names, rows))
}

/// Print a drift report: the verdict, then per feature its scores and the
/// baseline's and the window's shares as small histograms.
pub fn print(report: &Report) {
    println!(
        "{} version {}: {} — {} rows in the last {} from {} node(s); baseline {} rows (warn at PSI {}, alert at {}, judged from {} rows)",
        report.model,
        report.version,
        report.level.as_str().to_uppercase(),
        report.rows,
        duration(report.window_secs),
        report.nodes,
        report.baseline_rows,
        report.thresholds.psi_warn,
        report.thresholds.psi_alert,
        report.thresholds.min_rows,
    );
    let width = report
        .features
        .iter()
        .chain(&report.output)
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("feature".len());
    println!(
        "\n{:<width$}  {:>7}  {:>5}  {:>11}  {:<6}  baseline → now",
        "feature", "psi", "ks", "wasserstein", "level"
    );
    for score in report.features.iter().chain(&report.output) {
        print_score(score, width);
    }
}

fn print_score(score: &Score, width: usize) {
    let tallest = score
        .baseline
        .iter()
        .chain(&score.now)
        .copied()
        .fold(0.0, f64::max);
    let number =
        |v: Option<f64>, w: usize| v.map_or(format!("{:>w$}", "-"), |v| format!("{v:>w$.3}"));
    println!(
        "{:<width$}  {:>7.3}  {}  {}  {:<6}  {} → {}{}",
        score.name,
        score.psi,
        number(score.ks, 5),
        number(score.wasserstein, 11),
        score.level.as_str(),
        bars(&score.baseline, tallest),
        bars(&score.now, tallest),
        if score.missing > 0 {
            format!("  ({} not numbers)", score.missing)
        } else {
            String::new()
        }
    );
}

/// Shares as a row of block characters, a full block for `tallest` (the
/// largest share of either side).
fn bars(shares: &[f64], tallest: f64) -> String {
    const BLOCKS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    shares
        .iter()
        .map(|s| {
            let height = if tallest > 0.0 {
                s / tallest * 8.0
            } else {
                0.0
            };
            BLOCKS[(height.ceil() as usize).min(8)]
        })
        .collect()
}

fn duration(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
