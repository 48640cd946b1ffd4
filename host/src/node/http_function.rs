//! HTTP functions: standard `wasi:http/incoming-handler` components,
//! called with the HTTP request itself through the same registry, rollout,
//! concurrency cap and sandbox as stages.
//!
//! A function name holds stages or HTTP functions, never both (checked at
//! deploy), so the version a call would pick tells which path serves it.
//! Rollouts split HTTP functions as they split stages; shadow copies are
//! not sent (an HTTP request may have side effects).

use super::templates::Loaded;
use super::{Keys, Kind, Node, NodeError};
use crate::engine::{Template, World};
use crate::registry::{Invocation, Name, Routed, Selector};
use axum::http::{HeaderMap, Request, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// An HTTP function version picked for one request.
pub struct HttpCall {
    name: Name,
    loaded: Arc<Loaded>,
    routed: Option<Routed>,
    takes_token: bool,
}

impl HttpCall {
    /// Whether calls need a Sluice token (`--invoke token`): the node
    /// consumed the request's `Authorization`.
    pub fn takes_token(&self) -> bool {
        self.takes_token
    }

    /// `name@version`, for the `x-sluice-stage` header.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.loaded.record.version)
    }
}

impl Node {
    /// The version of function `name` that `selector` picks (through its
    /// rollout, routed by `headers`) when the name holds HTTP functions;
    /// `None` when it holds stages.
    pub async fn http_function(
        &self,
        name: &str,
        selector: &Selector,
        headers: &HeaderMap,
    ) -> Result<Option<HttpCall>, NodeError> {
        let name = Name::parse(name)?;
        // Unrouted first: a stage's call is then routed once, by its input.
        let (_, version, _) = self.pick(&name, selector, None).await?;
        if self.load(name.clone(), version).await?.record.world != World::Http {
            return Ok(None);
        }
        let keys = Keys {
            headers: Some(headers),
            input: None,
        };
        let (head, version, routed) = self.pick(&name, selector, Some(keys)).await?;
        let loaded = self.load(name.clone(), version).await?;
        Ok(Some(HttpCall {
            name,
            loaded,
            routed,
            takes_token: head.invocation == Invocation::Token,
        }))
    }

    /// Serve `request` with the HTTP function `call` picked.
    pub async fn serve_http<B>(
        &self,
        call: HttpCall,
        request_id: Arc<str>,
        request: Request<B>,
    ) -> Result<Response<axum::body::Body>, NodeError>
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let HttpCall {
            name,
            loaded,
            routed,
            ..
        } = call;
        let Template::Http(pre) = &loaded.template else {
            return Err(NodeError::InvalidSetting(format!(
                "function `{name}` version {} is a stage: call it with POST /fn/{name}",
                loaded.record.version
            )));
        };
        let _slot = match loaded.record.concurrency {
            Some(cap) => Some(self.gate(&loaded.record, cap)?.enter().await?),
            None => None,
        };
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let served = self
            .engine
            .serve(
                pre,
                loaded.identity(request_id),
                loaded.config.clone(),
                loaded.record.limits,
                self.reach(&loaded, None),
                request,
            )
            .await;
        if let Some(routed) = routed {
            let ok = served.as_ref().is_ok_and(|r| !r.status().is_server_error());
            let version = loaded.record.version;
            let took = started.elapsed();
            self.judged(Kind::Function, &name, version, routed.arm, took, ok);
        }
        Ok(served?)
    }

    /// Refuse a deploy that would mix stages and HTTP functions under one
    /// name: its calls are served by one path or the other.
    pub(super) async fn check_same_kind(&self, name: &Name, world: World) -> Result<(), NodeError> {
        let Some((head, _)) = self.functions.head(name).await? else {
            return Ok(());
        };
        let Some(&latest) = head.versions.last() else {
            return Ok(());
        };
        let before = self.functions.record_of(name, latest).await?.world;
        if before.is_stage() == world.is_stage() {
            return Ok(());
        }
        let (was, is) = match world {
            World::Http => ("stages", "an HTTP function"),
            _ => ("HTTP functions", "a stage"),
        };
        Err(NodeError::InvalidSetting(format!(
            "function `{name}` holds {was} (version {latest} is {before}); this component is {is}: deploy it under another name"
        )))
    }
}
