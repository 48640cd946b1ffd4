//! Which capability world a component fits, decided from its imports and
//! exports, and the reasons a component fits none.
//!
//! A stage may import exactly:
//! - `sluice:pipeline/{log,config}` (every world), `sluice:pipeline/features`
//!   (featurizer) or `sluice:pipeline/inference` and the standard
//!   `wasi:nn/*` (predictor), never both;
//! - from WASI 0.2, what Rust's and other languages' standard libraries need
//!   and the host grants with an empty context: `wasi:io/*`, `wasi:clocks/*`,
//!   `wasi:random/*`, and `wasi:cli/{environment,exit,stdin,stdout,stderr,
//!   terminal-*}` (no variables, no arguments, stdin empty, stdout/stderr
//!   captured into the node's log).
//!
//! `wasi:filesystem`, `wasi:sockets` and `wasi:http` are refused: stages have
//! no ambient authority. The only export is `sluice:pipeline/stage`.

use serde::{Deserialize, Serialize};
use std::fmt;
use wasmtime::component::Component;

/// The WIT package every Sluice interface lives in.
const PACKAGE: &str = "sluice:pipeline";

/// A capability world: what a stage may reach besides its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `log` and `config` only.
    Preprocessor,
    /// Adds `features`.
    Featurizer,
    /// Adds `inference`.
    Predictor,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Preprocessor => "preprocessor",
            Self::Featurizer => "featurizer",
            Self::Predictor => "predictor",
        })
    }
}

/// Why a component was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// The bytes are not a WebAssembly component at all.
    #[error("{0}")]
    NotAComponent(String),
    /// A component, but wasmtime cannot compile or link it.
    #[error("the component is invalid: {0}")]
    Invalid(String),
    /// It imports something no world grants.
    #[error("the component imports `{import}`, which no Sluice world grants: {reason}")]
    ForbiddenImport {
        /// The import's full name.
        import: String,
        /// Why it is refused and what to do instead.
        reason: String,
    },
    /// It exports something other than the stage interface.
    #[error("the component exports `{0}`; a stage exports only `sluice:pipeline/stage`")]
    UnexpectedExport(String),
    /// It does not export the stage interface.
    #[error(
        "the component does not export `sluice:pipeline/stage`; implement it (with sluice-sdk: `export_stage!(MyStage)`)"
    )]
    MissingStage,
    /// It needs both features and models.
    #[error(
        "the component imports both `features` and `inference`; no world grants both: split it into a featurizer stage and a predictor stage"
    )]
    FeaturesAndInference,
}

/// Refuse a core module or random bytes with a message that says which.
pub fn check_header(bytes: &[u8]) -> Result<(), WorldError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    const COMPONENT_LAYER: &[u8] = &[1, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(WorldError::NotAComponent(
            "the upload is not WebAssembly (no `\\0asm` header); send the .wasm file built for wasm32-wasip2".into(),
        ));
    }
    if &bytes[4..8] == CORE_MODULE {
        return Err(WorldError::NotAComponent(
            "the upload is a core WebAssembly module, not a component; build for `--target wasm32-wasip2` (or wrap it with `wasm-tools component new`)".into(),
        ));
    }
    if &bytes[6..8] != COMPONENT_LAYER {
        return Err(WorldError::NotAComponent(format!(
            "the upload has an unknown WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        )));
    }
    Ok(())
}

/// What one import grants.
enum Grant {
    Base,
    Features,
    Inference,
}

/// The narrowest world that grants every import of `component`.
pub fn classify(engine: &wasmtime::Engine, component: &Component) -> Result<World, WorldError> {
    let ty = component.component_type();
    let mut features = false;
    let mut inference = false;
    for (name, _) in ty.imports(engine) {
        match grant(name)? {
            Grant::Base => {}
            Grant::Features => features = true,
            Grant::Inference => inference = true,
        }
    }
    let mut has_stage = false;
    for (name, _) in ty.exports(engine) {
        if interface_of(name) == Some((PACKAGE, "stage")) {
            has_stage = true;
        } else {
            return Err(WorldError::UnexpectedExport(name.to_string()));
        }
    }
    if !has_stage {
        return Err(WorldError::MissingStage);
    }
    match (features, inference) {
        (false, false) => Ok(World::Preprocessor),
        (true, false) => Ok(World::Featurizer),
        (false, true) => Ok(World::Predictor),
        (true, true) => Err(WorldError::FeaturesAndInference),
    }
}

fn grant(import: &str) -> Result<Grant, WorldError> {
    let forbid = |reason: &str| WorldError::ForbiddenImport {
        import: import.to_string(),
        reason: reason.to_string(),
    };
    let Some((package, interface)) = interface_of(import) else {
        return Err(forbid(
            "stages import only WIT interfaces (`namespace:package/interface`)",
        ));
    };
    match (package, interface) {
        (PACKAGE, "log" | "config" | "types") => Ok(Grant::Base),
        (PACKAGE, "features") => Ok(Grant::Features),
        (PACKAGE, "inference") => Ok(Grant::Inference),
        (PACKAGE, _) => Err(forbid(
            "it is not part of the Sluice contract this node serves (sluice:pipeline@0.1.0)",
        )),
        ("wasi:nn", "tensor" | "graph" | "inference" | "errors") => Ok(Grant::Inference),
        ("wasi:io" | "wasi:clocks" | "wasi:random", _) => Ok(Grant::Base),
        ("wasi:cli", "environment" | "exit" | "stdin" | "stdout" | "stderr") => Ok(Grant::Base),
        ("wasi:cli", i) if i.starts_with("terminal-") => Ok(Grant::Base),
        ("wasi:filesystem", _) => Err(forbid(
            "stages have no filesystem; pass data in the request, through config, or read features and models through `features` and `inference`",
        )),
        ("wasi:sockets", _) => Err(forbid(
            "stages have no network access; the host brings data in through `features` and `inference`",
        )),
        ("wasi:http", _) => Err(forbid(
            "stages make no outgoing HTTP requests; the host brings data in through `features` and `inference`",
        )),
        _ => Err(forbid("it is not a Sluice or granted WASI interface")),
    }
}

/// `ns:pkg/iface@1.2.3` → `("ns:pkg", "iface")`.
fn interface_of(name: &str) -> Option<(&str, &str)> {
    let unversioned = name.split('@').next()?;
    let (package, interface) = unversioned.split_once('/')?;
    package.contains(':').then_some((package, interface))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mutated components, as text (interface names, worlds, exports) and
    /// as bytes, through the deploy path's check: each compiles into the
    /// world its imports call for, or is refused, never a panic.
    #[test]
    fn fuzz_the_world_check_classifies_or_refuses_and_never_panics() {
        use crate::engine::{Engine, EngineConfig, EngineError};
        use crate::fuzz::{iterations, run};
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let stage: &[u8] = br#"(component
            (import "sluice:pipeline/log@0.1.0" (instance))
            (import "wasi:io/streams@0.2.6" (instance))
            (instance $s)
            (export "sluice:pipeline/stage@0.1.0" (instance $s)))"#;
        let predictor: &[u8] = br#"(component
            (import "wasi:nn/graph@0.2.0-rc-2024-10-28" (instance))
            (import "sluice:pipeline/config@0.1.0" (instance))
            (instance $s)
            (export "sluice:pipeline/stage@0.1.0" (instance $s)))"#;
        let names: &[&[u8]] = &[
            b"(import \"sluice:pipeline/features@0.1.0\" (instance))",
            b"(import \"sluice:pipeline/inference@0.1.0\" (instance))",
            b"(import \"wasi:filesystem/preopens@0.2.0\" (instance))",
            b"(import \"wasi:sockets/tcp@0.2.0\" (instance))",
            b"(import \"wasi:http/outgoing-handler@0.2.0\" (instance))",
            b"(import \"wasi:cli/terminal-stdout@0.2.0\" (instance))",
            b"(import \"sluice:pipeline/other@0.1.0\" (instance))",
            b"(import \"plain\" (func))",
            b"(export \"run\" (instance $s))",
            b"(instance $t)",
            b"sluice:pipeline/",
            b"wasi:nn/",
            b"@0.1.0",
            b"(",
            b")",
            b"\"",
        ];
        let granted = |imports: &[String], world: World| {
            let has = |prefixes: &[&str]| {
                imports
                    .iter()
                    .any(|i| prefixes.iter().any(|p| i.starts_with(p)))
            };
            assert!(!has(&["wasi:filesystem/", "wasi:sockets/", "wasi:http/"]));
            let features = has(&["sluice:pipeline/features"]);
            let inference = has(&["sluice:pipeline/inference", "wasi:nn/"]);
            let expected = match (features, inference) {
                (false, false) => World::Preprocessor,
                (true, false) => World::Featurizer,
                _ => World::Predictor,
            };
            assert_eq!(world, expected, "{imports:?}");
        };
        let check = |bytes: &[u8]| match engine.compile(bytes) {
            Ok((component, world)) => {
                let imports: Vec<String> = component
                    .component_type()
                    .imports(engine.wasmtime())
                    .map(|(name, _)| name.to_string())
                    .collect();
                granted(&imports, world);
                true
            }
            Err(EngineError::Refused(e)) => {
                assert!(!e.to_string().is_empty());
                false
            }
            Err(other) => panic!("not a world error: {other:?}"),
        };
        // A tenth of the iterations: what is accepted is compiled.
        let n = iterations() / 10;
        run(
            19,
            n,
            &[stage, predictor],
            names,
            |_, text| match wat::parse_bytes(text) {
                Ok(bytes) => check(&bytes),
                Err(_) => false,
            },
        );
        let binary = [
            wat::parse_bytes(stage).unwrap(),
            wat::parse_bytes(predictor).unwrap(),
        ];
        let tokens: &[&[u8]] = &[
            b"\0asm",
            b"\x0d\0\x01\0",
            b"\x01\0\0\0",
            b"\xff\xff\xff\xff\x0f",
        ];
        run(20, n, &[&binary[0], &binary[1]], tokens, |_, bytes| {
            check(bytes)
        });
    }

    #[test]
    fn header_check_tells_core_modules_and_garbage_apart() {
        let core = b"\0asm\x01\0\0\0";
        let component = b"\0asm\x0d\0\x01\0";
        assert!(
            matches!(check_header(core), Err(WorldError::NotAComponent(m)) if m.contains("core WebAssembly module"))
        );
        assert!(
            matches!(check_header(b"PK\x03\x04garbage"), Err(WorldError::NotAComponent(m)) if m.contains("not WebAssembly"))
        );
        assert_eq!(check_header(component), Ok(()));
    }

    #[test]
    fn grants_follow_the_worlds() {
        assert!(matches!(grant("wasi:io/streams@0.2.6"), Ok(Grant::Base)));
        assert!(matches!(
            grant("wasi:cli/terminal-stdout@0.2.0"),
            Ok(Grant::Base)
        ));
        assert!(matches!(
            grant("sluice:pipeline/inference@0.1.0"),
            Ok(Grant::Inference)
        ));
        assert!(matches!(
            grant("wasi:nn/graph@0.2.0-rc-2024-10-28"),
            Ok(Grant::Inference)
        ));
        assert!(matches!(
            grant("sluice:pipeline/features@0.1.0"),
            Ok(Grant::Features)
        ));
        for refused in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:filesystem/preopens@0.2.0",
            "wasi:http/outgoing-handler@0.2.0",
            "acme:x/y",
            "plain",
        ] {
            let err = grant(refused).err().expect(refused);
            assert!(err.to_string().contains(refused), "{err}");
        }
    }
}
