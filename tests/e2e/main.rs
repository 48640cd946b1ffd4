//! End-to-end tests: real components built from this repository, the real
//! `sluice` binary in its own process, real HTTP.

mod support;

mod access;
mod cli;
mod deploy;
mod drift;
mod explain;
mod features;
mod fraud;
mod guard;
mod http_functions;
mod image;
mod infra;
mod invoke;
mod lambda;
mod languages;
mod models;
mod nodes;
mod observe;
mod openapi;
mod pipelines;
mod rollout;
mod s3;
mod sandbox;
mod scale;
mod server;
mod store;
mod templates;
mod zoo;
