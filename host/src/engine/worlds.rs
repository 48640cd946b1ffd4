//! Which capability world a component fits, decided from its imports and
//! exports, and the reasons a component fits none.
//!
//! A component is a **stage** when it exports `sluice:pipeline/stage`, or
//! an **HTTP function** when it exports the standard
//! `wasi:http/incoming-handler` (what `wasmtime serve` and Spin run); not
//! both. Other exports (a toolchain's own, such as componentize-py's
//! `exports`) are never called. It may import:
//! - `sluice:pipeline/{log,config}` (every world), `sluice:pipeline/features`
//!   (featurizer) or `sluice:pipeline/inference` and the standard
//!   `wasi:nn/*` (predictor), never both, and neither in an HTTP function;
//! - from WASI 0.2, what the standard libraries of Rust, Python and
//!   JavaScript import, linked to a context that grants nothing: `wasi:io`,
//!   `wasi:clocks`, `wasi:random`, `wasi:cli` (no arguments, stdin empty,
//!   stdout/stderr captured into the node's log; an HTTP function's
//!   environment is its deploy config), `wasi:filesystem` (no directory
//!   is opened), `wasi:sockets` (every socket and name lookup denied) and
//!   `wasi:http` (every outgoing request denied except to the origins the
//!   deploy allows with `--allow-outbound`).

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
    /// A standard `wasi:http/incoming-handler` component, called with the
    /// HTTP request itself.
    Http,
}

impl World {
    /// Whether it runs as a pipeline stage (`sluice:pipeline/stage`).
    pub fn is_stage(self) -> bool {
        self != Self::Http
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Preprocessor => "preprocessor",
            Self::Featurizer => "featurizer",
            Self::Predictor => "predictor",
            Self::Http => "http",
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
    /// It exports both entry points.
    #[error(
        "the component exports both `sluice:pipeline/stage` and `wasi:http/incoming-handler`; a component is a stage or an HTTP function: build one of each"
    )]
    TwoEntryPoints,
    /// It exports neither entry point.
    #[error(
        "the component exports neither `sluice:pipeline/stage` (a stage: with sluice-sdk, `export_stage!(MyStage)`) nor `wasi:http/incoming-handler` (an HTTP function); it exports {0}"
    )]
    MissingEntryPoint(String),
    /// An HTTP function imports models or features.
    #[error(
        "the component is an HTTP function and imports `{0}`; models and feature tables are reached by stages: put a predictor or featurizer stage in a pipeline"
    )]
    HttpReach(String),
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

/// The entry point an export provides, if it is one.
enum Entry {
    Stage,
    Http,
}

fn entry(export: &str) -> Option<Entry> {
    match interface_of(export)? {
        (PACKAGE, "stage") => Some(Entry::Stage),
        ("wasi:http", "incoming-handler") => Some(Entry::Http),
        _ => None,
    }
}

/// The narrowest world that grants every import of `component`.
pub fn classify(engine: &wasmtime::Engine, component: &Component) -> Result<World, WorldError> {
    let ty = component.component_type();
    let (mut stage, mut http, mut others) = (false, false, Vec::new());
    for (name, _) in ty.exports(engine) {
        match entry(name) {
            Some(Entry::Stage) => stage = true,
            Some(Entry::Http) => http = true,
            None => others.push(format!("`{name}`")),
        }
    }
    let mut features = None;
    let mut inference = None;
    for (name, _) in ty.imports(engine) {
        match grant(name)? {
            Grant::Base => {}
            Grant::Features => features = Some(name),
            Grant::Inference => inference = Some(name),
        }
    }
    match (stage, http, features, inference) {
        (true, true, _, _) => Err(WorldError::TwoEntryPoints),
        (false, false, _, _) if others.is_empty() => {
            Err(WorldError::MissingEntryPoint("nothing".into()))
        }
        (false, false, _, _) => Err(WorldError::MissingEntryPoint(others.join(", "))),
        (false, true, None, None) => Ok(World::Http),
        (false, true, Some(reach), _) | (false, true, None, Some(reach)) => {
            Err(WorldError::HttpReach(reach.to_string()))
        }
        (true, false, None, None) => Ok(World::Preprocessor),
        (true, false, Some(_), None) => Ok(World::Featurizer),
        (true, false, None, Some(_)) => Ok(World::Predictor),
        (true, false, Some(_), Some(_)) => Err(WorldError::FeaturesAndInference),
    }
}

fn grant(import: &str) -> Result<Grant, WorldError> {
    let forbid = |reason: &str| WorldError::ForbiddenImport {
        import: import.to_string(),
        reason: reason.to_string(),
    };
    let Some((package, interface)) = interface_of(import) else {
        return Err(forbid(
            "components import only WIT interfaces (`namespace:package/interface`)",
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
        // Linked to a context that grants nothing (see the module's docs).
        ("wasi:io" | "wasi:clocks" | "wasi:random" | "wasi:cli" | "wasi:filesystem", _) => {
            Ok(Grant::Base)
        }
        ("wasi:sockets" | "wasi:http", _) => Ok(Grant::Base),
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
    fn the_entry_point_decides_stage_or_http() {
        use crate::engine::{Engine, EngineConfig, EngineError};
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let world = |text: &str| match engine.compile(&wat::parse_str(text).unwrap()) {
            Ok((_, world)) => Ok(world),
            Err(EngineError::Refused(e)) => Err(e.to_string()),
            Err(other) => panic!("{other:?}"),
        };
        let http = r#"(component
            (import "wasi:http/types@0.2.6" (instance))
            (instance $h)
            (export "wasi:http/incoming-handler@0.2.6" (instance $h))
            (export "exports" (instance $h)))"#;
        assert_eq!(world(http), Ok(World::Http));
        let both = r#"(component (instance $s)
            (export "sluice:pipeline/stage@0.1.0" (instance $s))
            (export "wasi:http/incoming-handler@0.2.6" (instance $s)))"#;
        assert!(
            world(both)
                .unwrap_err()
                .contains("a stage or an HTTP function")
        );
        let neither = r#"(component (instance $s) (export "run" (instance $s)))"#;
        assert!(world(neither).unwrap_err().ends_with("it exports `run`"));
        let reaching = r#"(component
            (import "sluice:pipeline/inference@0.1.0" (instance))
            (instance $h)
            (export "wasi:http/incoming-handler@0.2.6" (instance $h)))"#;
        assert!(
            world(reaching)
                .unwrap_err()
                .contains("HTTP function and imports `sluice:pipeline/inference@0.1.0`")
        );
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
        // Linked to a context that grants nothing until a deploy allows it.
        for linked in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:filesystem/preopens@0.2.0",
            "wasi:http/outgoing-handler@0.2.0",
        ] {
            assert!(matches!(grant(linked), Ok(Grant::Base)), "{linked}");
        }
        for refused in ["acme:x/y", "sluice:pipeline/other", "plain"] {
            let err = grant(refused).err().expect(refused);
            assert!(err.to_string().contains(refused), "{err}");
        }
    }
}
