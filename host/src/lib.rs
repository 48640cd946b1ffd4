//! Sluice: a serverless runtime for ML inference pipelines whose stages are
//! WebAssembly components.
//!
//! The modules form layers; a module imports only from layers below it
//! (and, within a layer, only from those listed after it):
//!
//! ```text
//! front doors   cli (the binary) → lambda → http
//! service       node: the control-plane service and the data-plane calls
//! mechanisms    pipeline → engine → inference → features → access → registry
//! foundations   cache → store · tensor · observe · toolchain
//! ```
//!
//! - [`http`]: the data-plane and control-plane routers, their OpenAPI
//!   description, the OIP codecs,
//!   the HTTP client of the control plane.
//! - [`lambda`]: the same routes answering AWS Lambda events.
//! - [`node`]: the runtime core (publish, list, alias, rollback, delete;
//!   invoke, infer) every front door goes through.
//! - [`pipeline`]: pipeline manifests and versions (the node runs them).
//! - [`engine`]: wasmtime, the capability worlds, the sandbox of one call,
//!   the WIT edge.
//! - [`inference`]: ONNX models run natively by tract, the tract edge.
//! - [`features`]: feature tables in the object store: ingestion, online
//!   lookups through the cache, point-in-time export.
//! - [`access`]: API tokens and roles, the tamper-evident audit log.
//! - [`registry`]: immutable, numbered versions, aliases and rollback of
//!   any kind of record.
//! - [`cache`]: the in-memory cache in front of the store (and of loaded
//!   templates and plans).
//! - [`store`]: the object store (a local directory by default, or S3).
//! - [`tensor`]: tensors, messages and the one table of datatypes.
//! - [`observe`]: logs, request ids and counters.
//! - [`toolchain`]: building stages (Rust, Python, JavaScript) into components.
//! - `fuzz` (tests only): the mutation fuzzer every parser of what a client
//!   sends is tested with.
//!
//! A test (`layering`) reads every `crate::` path under `host/src` and
//! fails on an import against this direction.
#![deny(missing_docs)]

// mimalloc for every allocation in the process (the binary, its tests and
// benches alike): an OIP request makes ~110 small allocations (headers,
// JSON, tensors, futures), for which glibc's malloc spent 18% of the
// request's instructions and mimalloc a third of that (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod access;
pub mod cache;
pub mod engine;
pub mod features;
pub mod http;
pub mod inference;
pub mod lambda;
pub mod node;
pub mod observe;
pub mod pipeline;
pub mod registry;
pub mod store;
pub mod tensor;
pub mod toolchain;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod layering;
