//! The route a request matched, handed out to the request tracking that
//! runs before routing ([`track`](super::track)): a `route_layer`, so one
//! instance per route and method, each making its metric handles at its
//! first request and putting them on every response after that.

use crate::observe::metrics::{RouteMetrics, metrics};
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// Adds [`Labelled`] to each route.
#[derive(Debug, Clone, Copy)]
pub struct RouteMetricsLayer;

impl<S> Layer<S> for RouteMetricsLayer {
    type Service = Labelled<S>;

    fn layer(&self, inner: S) -> Labelled<S> {
        Labelled {
            inner,
            handles: Arc::default(),
        }
    }
}

/// One route's handler, answering with the route's metric handles in the
/// response's extensions.
#[derive(Debug, Clone)]
pub struct Labelled<S> {
    inner: S,
    handles: Arc<OnceLock<Arc<RouteMetrics>>>,
}

impl<S> Service<Request> for Labelled<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Labelling<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let handles = self.handles.get_or_init(|| {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            Arc::new(metrics().http_route(route, super::method_label(request.method())))
        });
        Labelling {
            handles: Some(handles.clone()),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// A route's answer, labelled when ready.
    pub struct Labelling<F> {
        #[pin]
        inner: F,
        handles: Option<Arc<RouteMetrics>>,
    }
}

impl<F, E> Future for Labelling<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(handles) = this.handles.take() {
            response.extensions_mut().insert(handles);
        }
        Poll::Ready(Ok(response))
    }
}
