//! The layering of the crate's modules (see the crate docs), checked: every
//! `crate::` path in `host/src` must point down the list, never up.

use std::path::{Path, PathBuf};

/// Top to bottom: a module may import itself and the modules after it.
const LAYERS: &[&str] = &[
    "lambda",
    "http",
    "node",
    "pipeline",
    "engine",
    "inference",
    "features",
    "access",
    "registry",
    "cache",
    "store",
    "tensor",
    "observe",
    "toolchain",
    "fuzz",
];

/// The top-level modules `source` (the text of a file of module `module`)
/// names through `crate::` against the direction.
fn violations(module: &str, source: &str) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let Some(own) = rank(module) else {
        return vec![format!(
            "module `{module}` is not in the layering; add it to LAYERS"
        )];
    };
    let code = without_comments(source);
    let mut out = Vec::new();
    for target in imported_modules(&code) {
        match rank(&target) {
            Some(r) if r >= own || target == module => {}
            Some(_) => out.push(format!(
                "{module} imports crate::{target}, a layer above it"
            )),
            None => out.push(format!(
                "{module} imports crate::{target}, which is not in LAYERS"
            )),
        }
    }
    out
}

/// The source without `//` comments (line and doc comments).
fn without_comments(source: &str) -> String {
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| line.split(" //").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path, including those inside
/// `crate::{a::X, b}` groups.
fn imported_modules(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .expect("a file name");
        // The binary (main.rs, cli/) is the top layer: it may use anything.
        if matches!(top.as_str(), "main" | "cli" | "lib" | "layering") {
            continue;
        }
        let source = std::fs::read_to_string(file).expect("source file");
        for problem in violations(&top, &source) {
            problems.push(format!("{}: {problem}", relative.display()));
        }
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    assert!(
        problems.is_empty(),
        "imports against the layering:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_upward_imports_in_paths_and_groups() {
    assert_eq!(
        violations("node", "use crate::registry::Name;"),
        Vec::<String>::new()
    );
    assert_eq!(
        violations("inference", "use crate::http::codec::datatype;"),
        ["inference imports crate::http, a layer above it"]
    );
    let grouped = "use crate::{\n    store::Digest,\n    engine::{wit, World},\n};";
    assert_eq!(
        violations("registry", grouped),
        ["registry imports crate::engine, a layer above it"]
    );
    assert_eq!(
        violations("cache", "let x = crate::node::idle_time(a, b);"),
        ["cache imports crate::node, a layer above it"]
    );
    assert!(violations("store", "// see crate::node\nfn f() {}").is_empty());
    assert!(!violations("nowhere", "").is_empty());
}
