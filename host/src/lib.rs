//! Sluice: a serverless runtime for ML inference pipelines whose stages are
//! WebAssembly components.
//!
//! - [`engine`]: wasmtime, the capability worlds, the sandbox of one call.
//! - [`store`]: the object store (a local directory by default, or S3).
//! - [`cache`]: the in-memory cache in front of the store (and of loaded templates).
//! - [`registry`]: immutable, numbered versions, aliases and rollback.
//! - [`inference`]: ONNX models run natively by tract.
//! - [`node`]: the runtime core tying them together (deploy, load, invoke).
//! - [`http`]: HTTP triggers and the admin API.
//! - [`lambda`]: the same router answering AWS Lambda events.
//! - [`toolchain`]: building stage crates into components.
//! - [`observe`]: logs, request ids and counters.
#![deny(missing_docs)]

pub mod cache;
pub mod engine;
pub mod http;
pub mod inference;
pub mod lambda;
pub mod node;
pub mod observe;
pub mod registry;
pub mod store;
pub mod toolchain;
