//! `sluice new KIND NAME --lang LANG`: a ready stage folder from a
//! template (`guest-sdk/templates/`): the source, its project file, and a
//! `sluice.toml` whose examples `sluice test` checks.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// What the new stage is.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Transforms its input and nothing else.
    Preprocessor,
    /// Reads a feature table.
    Featurizer,
    /// Runs a registry model.
    Predictor,
    /// A standard `wasi:http/incoming-handler` component.
    Http,
}

/// The language it is written in.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Args)]
pub struct NewArgs {
    /// What to make.
    kind: Kind,
    /// Its name: 1-63 of a-z, 0-9, '-', '_', starting with a letter; also
    /// the folder made for it.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to make it (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A Rust stage's `sluice-sdk`: the path of a Sluice checkout's
    /// `guest-sdk` folder (default: the crate from Sluice's repository).
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../../../guest-sdk/templates/", $path))
    };
}

/// The files of a template: (path in the new folder, text).
fn files(kind: Kind, lang: Lang) -> Vec<(&'static str, &'static str)> {
    let manifest = match kind {
        Kind::Preprocessor => template!("preprocessor/sluice.toml"),
        Kind::Featurizer => template!("featurizer/sluice.toml"),
        Kind::Predictor => template!("predictor/sluice.toml"),
        Kind::Http => template!("http/sluice.toml"),
    };
    let source = match (kind, lang) {
        (Kind::Preprocessor, Lang::Rust) => {
            ("src/lib.rs", template!("preprocessor/rust/src/lib.rs"))
        }
        (Kind::Featurizer, Lang::Rust) => ("src/lib.rs", template!("featurizer/rust/src/lib.rs")),
        (Kind::Predictor, Lang::Rust) => ("src/lib.rs", template!("predictor/rust/src/lib.rs")),
        (Kind::Http, Lang::Rust) => ("src/lib.rs", template!("http/rust/src/lib.rs")),
        (Kind::Preprocessor, Lang::Python) => {
            ("stage.py", template!("preprocessor/python/stage.py"))
        }
        (Kind::Featurizer, Lang::Python) => ("stage.py", template!("featurizer/python/stage.py")),
        (Kind::Predictor, Lang::Python) => ("stage.py", template!("predictor/python/stage.py")),
        (Kind::Http, Lang::Python) => ("stage.py", template!("http/python/stage.py")),
        (Kind::Preprocessor, Lang::Js) => ("stage.js", template!("preprocessor/js/stage.js")),
        (Kind::Featurizer, Lang::Js) => ("stage.js", template!("featurizer/js/stage.js")),
        (Kind::Predictor, Lang::Js) => ("stage.js", template!("predictor/js/stage.js")),
        (Kind::Http, Lang::Js) => ("stage.js", template!("http/js/stage.js")),
    };
    let project = match (kind, lang) {
        (Kind::Http, Lang::Rust) => ("Cargo.toml", template!("rust-http-cargo.toml")),
        (_, Lang::Rust) => ("Cargo.toml", template!("rust-cargo.toml")),
        (_, Lang::Python) => ("pyproject.toml", template!("python-pyproject.toml")),
        (_, Lang::Js) => ("package.json", template!("js-package.json")),
    };
    let mut files = vec![("sluice.toml", manifest), source, project];
    if kind == Kind::Featurizer {
        files.push(("users.toml", template!("featurizer/users.toml")));
        files.push(("users.csv", template!("featurizer/users.csv")));
    }
    files
}

/// The predictor template's model (iris, logistic regression).
const IRIS: &[u8] = include_bytes!("../../../guest-sdk/templates/predictor/iris.onnx");

pub fn run(args: NewArgs) -> Result<()> {
    let name = &args.name;
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` cannot name a stage: use 1-63 of a-z, 0-9, '-' and '_', starting with a letter"
        );
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    let world = match args.kind {
        Kind::Preprocessor => "preprocessor",
        Kind::Featurizer => "featurizer",
        Kind::Predictor => "predictor",
        Kind::Http => "http",
    };
    let sdk = match &args.sdk {
        Some(path) => {
            let path = std::path::absolute(path)?;
            if !path.join("Cargo.toml").is_file() {
                bail!(
                    "{} holds no Cargo.toml: --sdk takes a checkout's guest-sdk folder",
                    path.display()
                );
            }
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        None => "{ git = \"https://github.com/sluice-rt/sluice\" }".to_string(),
    };
    for (path, text) in files(args.kind, args.lang) {
        let text = text
            .replace("{{name}}", name)
            .replace("{{world}}", world)
            .replace("{{sdk}}", &sdk);
        write(&dir.join(path), text.as_bytes())?;
    }
    if args.kind == Kind::Predictor {
        write(&dir.join("iris.onnx"), IRIS)?;
    }
    println!(
        "made {} ({world}, {}): try `cd {} && sluice test`",
        dir.display(),
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        dir.display()
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
