//! The one place errors become HTTP responses: a status code and one JSON
//! shape, `{"error": ..., "stage": ..., "request_id": ...}`.

use crate::access::AccessError;
use crate::engine::CallError;
use crate::features::FeatureError;
use crate::inference::InferenceError;
use crate::node::NodeError;
use crate::registry::RegistryError;
use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// Seconds a client should wait before retrying (503s).
    retry_after: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<Arc<str>>,
    /// On a 409: the state the request lost to.
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: message.into(),
                stage: None,
                request_id: None,
                current: None,
            },
            retry_after: None,
        }
    }

    /// Ask the client to retry after `secs` seconds (`Retry-After`).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Name the stage (`name@version`) the error came from.
    pub fn in_stage(mut self, stage: Option<String>) -> Self {
        self.body.stage = stage;
        self
    }

    /// Attach the request id.
    pub fn with_request_id(mut self, id: &Arc<str>) -> Self {
        self.body.request_id = Some(id.clone());
        self
    }

    /// What went wrong, as the client reads it.
    pub fn message(&self) -> &str {
        &self.body.error
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The status of a registry failure, wherever it surfaces.
fn registry_status(e: &RegistryError) -> StatusCode {
    match e {
        RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
        RegistryError::NotFound { .. }
        | RegistryError::VersionNotFound { .. }
        | RegistryError::AliasNotFound { .. } => StatusCode::NOT_FOUND,
        RegistryError::Conflict { .. } | RegistryError::Store(StoreError::Conflict { .. }) => {
            StatusCode::CONFLICT
        }
        RegistryError::Contended(_) | RegistryError::Store(StoreError::Unavailable { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        RegistryError::Store(_) | RegistryError::BadRecord { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The status of a feature-store failure.
fn feature_status(e: &FeatureError) -> StatusCode {
    match e {
        FeatureError::Registry(r) => registry_status(r),
        FeatureError::Store(s) => registry_status(&RegistryError::Store(s.clone())),
        FeatureError::Breaking { .. } => StatusCode::CONFLICT,
        FeatureError::UnknownFeature { .. } => StatusCode::NOT_FOUND,
        e if e.is_input() => StatusCode::BAD_REQUEST,
        FeatureError::Contended(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status of a node failure; a step's failure has its cause's.
fn node_status(e: &NodeError) -> StatusCode {
    match e {
        NodeError::InvalidName(_)
        | NodeError::Refused(_)
        | NodeError::InvalidSetting(_)
        | NodeError::Pipeline(_) => StatusCode::BAD_REQUEST,
        NodeError::Call(call) => match call {
            CallError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            CallError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            CallError::Failed(_)
            | CallError::MemoryLimit(_)
            | CallError::FuelExhausted(_)
            | CallError::Trap(_)
            | CallError::OutputTooLarge { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        },
        NodeError::Registry(r) | NodeError::Inference(InferenceError::Registry(r)) => {
            registry_status(r)
        }
        NodeError::Inference(InferenceError::InvalidInput(_) | InferenceError::Unsupported(_)) => {
            StatusCode::BAD_REQUEST
        }
        NodeError::Inference(InferenceError::Internal(_)) | NodeError::Engine(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        NodeError::Busy { .. } | NodeError::Inference(InferenceError::QueueFull { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        NodeError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
        NodeError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        NodeError::Step { source, .. } => node_status(source),
        NodeError::PipelineTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        NodeError::Features(f) => feature_status(f),
        NodeError::Access(a) => access_status(a),
        NodeError::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status of an access-control failure.
pub(super) fn access_status(e: &AccessError) -> StatusCode {
    match e {
        AccessError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AccessError::Forbidden { .. } => StatusCode::FORBIDDEN,
        AccessError::Invalid(_) => StatusCode::BAD_REQUEST,
        AccessError::NotFound(_) => StatusCode::NOT_FOUND,
        AccessError::Store(s) => registry_status(&RegistryError::Store(s.clone())),
        AccessError::Contended(_) => StatusCode::SERVICE_UNAVAILABLE,
        AccessError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = node_status(&e);
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        let mut error = Self::new(status, e.to_string());
        if let NodeError::Registry(RegistryError::Conflict { current, .. })
        | NodeError::Inference(InferenceError::Registry(RegistryError::Conflict {
            current,
            ..
        })) = &e
        {
            error.body.current = serde_json::to_value(current).ok();
        }
        error.retry_after = retry_after(&e);
        error
    }
}

/// How long a caller turned away by load shedding, a rate limit or an
/// open circuit should wait.
fn retry_after(e: &NodeError) -> Option<u64> {
    match e {
        // One second: slots free up within a call's duration, far sooner;
        // a client that waits longer only loses time.
        NodeError::Busy { .. } | NodeError::Inference(InferenceError::QueueFull { .. }) => Some(1),
        NodeError::RateLimited {
            retry_after_secs, ..
        }
        | NodeError::CircuitOpen {
            retry_after_secs, ..
        } => Some(*retry_after_secs),
        NodeError::Step { source, .. } => retry_after(source),
        _ => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
