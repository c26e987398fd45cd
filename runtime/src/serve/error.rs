//! Errors of `vrf serve`: [`ServeError`] when the server cannot start, [`ApiError`] for one
//! request (a status and a JSON body `{"error": message, "type": kind}`, never a plain-text or
//! empty answer).

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::batcher::BatchError;
use super::store::StoreError;
use crate::error::RuntimeError;
use vrf_format::ModelError;

/// Why `vrf serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A non-loopback address without a token.
    #[error(
        "{0} is reachable from other machines: give a bearer token (--token-file or \
         VRF_API_TOKEN), or bind a loopback address"
    )]
    TokenRequired(SocketAddr),
    /// An option is out of range.
    #[error("{0}")]
    Config(String),
    /// The token is unusable.
    #[error("bearer token: {0}")]
    Token(String),
    /// The user store cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A thread or the async runtime could not start, or the server failed while running.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// A request's failure: status, machine-readable kind, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable kind (`validation`, `not_found`, …).
    pub kind: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds a client should wait before retrying (503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 422: the request is well-formed JSON but its content is unusable.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    /// 404: no such user (or route).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (header `Authorization: Bearer <token>`)",
        )
    }

    /// 503 with Retry-After: the backbone queue is full.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    /// 504: the request ran past the server's per-request timeout.
    pub fn timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the request took longer than {} ms", limit.as_millis()),
        )
    }

    /// 405 on a known route.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    }

    /// 500: the server's own failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A JSON body axum could not read: syntax (400), types and fields (422), size (413),
    /// content type (415).
    pub(super) fn from_json_rejection(r: &JsonRejection) -> Self {
        let mut status = r.status();
        let text = r.body_text();
        // serde_json counts these as syntax errors, but the JSON is well-formed (RFC 8259 allows
        // any number and any depth): the content is what is refused, 422 like a wrong type.
        if status == StatusCode::BAD_REQUEST
            && (text.contains("number out of range") || text.contains("recursion limit exceeded"))
        {
            status = StatusCode::UNPROCESSABLE_ENTITY;
        }
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::BAD_REQUEST => "invalid_json",
            _ => "validation",
        };
        Self::new(status, kind, text)
    }
}

impl ApiError {
    /// A path axum could not read.
    pub(super) fn from_path_rejection(r: &PathRejection) -> Self {
        Self::new(r.status(), "invalid_path", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "type": self.kind });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::QueueFull(_) => Self::overloaded(e.to_string()),
            BatchError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
            BatchError::Failed(_) => Self::internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Update(m) => m.into(),
            StoreError::Busy(_) => Self::overloaded(e.to_string()),
            StoreError::Unavailable(_) => Self {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    e.to_string(),
                )
            },
            StoreError::Expired => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the request's deadline passed before the update was written; nothing was stored",
            ),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        // What the per-user math refuses comes from the request (a bad posterior, a state that
        // does not fit); the model's own files were checked at start.
        Self::validation(e.to_string())
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Model(m) => m.into(),
            RuntimeError::Input(_) | RuntimeError::Text(_) | RuntimeError::Vector { .. } => {
                Self::validation(e.to_string())
            }
            RuntimeError::UnknownUser(id) => Self::not_found(format!("unknown user {id:?}")),
            other => Self::internal(other.to_string()),
        }
    }
}
