//! The one error type of the API: every failure becomes `{"error", "error_type", "field"?}` with
//! the status that fits it. Nothing answers an error with 200. A server-side failure answers a
//! fixed message: its cause (a Redis or SQLite error text) goes to the log, on the request's access
//! line (see [`super::access_log`]), never to the client.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::catalogue::CatalogueError;
use crate::queue::QueueError;

/// Seconds a client is told to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// A stable machine-readable kind, e.g. `validation`.
    pub error_type: &'static str,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A dependency the API needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The job queue (Redis, or the in-process queue).
    Queue,
    /// The SQLite catalogue.
    Catalogue,
}

impl Dependency {
    /// How the client's message names it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Queue => "the job queue",
            Self::Catalogue => "the catalogue",
        }
    }
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// A field is missing or has a bad value.
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    /// No such job, movie or route.
    #[error("{0}")]
    NotFound(String),
    /// A field names something that does not exist (a model nobody serves).
    #[error("{message}")]
    UnknownName {
        field: &'static str,
        message: String,
    },
    /// The request is well formed but conflicts with the current state (a promotion that would
    /// leave no traffic, or a model that does not load).
    #[error("{message}")]
    Conflict {
        field: &'static str,
        message: String,
    },
    /// The route exists, but not for this method.
    #[error("this route answers {allow} only")]
    MethodNotAllowed { allow: &'static str },
    /// The body is larger than the limit.
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body did not arrive within the request timeout.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    RequestTimeout { timeout_ms: u64 },
    /// No credentials, or wrong ones.
    #[error(
        "missing or wrong credentials: send `Authorization: Bearer <secret>`, or sign in on the page"
    )]
    Unauthorized,
    /// The route is switched off by the server's settings; the message says which.
    #[error("{0}")]
    Forbidden(String),
    /// Too many jobs are waiting.
    #[error("the queue is full; retry in {} s", retry_after.as_secs().max(1))]
    QueueFull { retry_after: Duration },
    /// This process already handles its maximum of recommend requests (see
    /// [`super::admission`]).
    #[error(
        "the server is busy with its maximum of {bound} recommend requests \
         (RECSYS_MAX_PENDING); retry in {RETRY_AFTER_SECS} s"
    )]
    Busy { bound: usize },
    /// The connection came in over `RECSYS_MAX_CONNECTIONS` (see [`super::connections`]).
    #[error(
        "the server holds its maximum of {limit} connections (RECSYS_MAX_CONNECTIONS); retry in \
         {RETRY_AFTER_SECS} s"
    )]
    TooManyConnections { limit: usize },
    /// A dependency (Redis, the catalogue) is down; `cause` is logged, not answered.
    #[error("{} is unavailable; retry shortly", dependency.describe())]
    Unavailable {
        dependency: Dependency,
        cause: String,
    },
    /// A bug or corrupt data; the cause is logged, not answered.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A validation error on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The `error_type` of the JSON body.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::Validation { .. } => "validation",
            Self::NotFound(_) | Self::UnknownName { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::QueueFull { .. } => "queue_full",
            Self::Busy { .. } => "busy",
            Self::TooManyConnections { .. } => "too_many_connections",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// What the log says about a server-side failure (never sent to the client).
    pub fn cause(&self) -> Option<&str> {
        match self {
            Self::Unavailable { cause, .. } | Self::Internal(cause) => Some(cause),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) | Self::UnknownName { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::QueueFull { .. } | Self::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::TooManyConnections { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            Self::QueueFull { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.as_secs().max(1)));
            }
            Self::Unavailable { .. } | Self::Busy { .. } => {
                res.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            // Closed after the answer: the client retries on a new connection, which the
            // server counts afresh.
            Self::TooManyConnections { .. } => {
                res.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
                res.force_close();
            }
            Self::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            // The rest of the body may still be on its way: close rather than read it.
            Self::RequestTimeout { .. } | Self::PayloadTooLarge { .. } => {
                res.force_close();
            }
            _ => {}
        }
        let field = match self {
            Self::Validation { field, .. } => field.clone(),
            Self::UnknownName { field, .. } | Self::Conflict { field, .. } => {
                Some((*field).to_owned())
            }
            _ => None,
        };
        res.json(ErrorBody {
            error: self.to_string(),
            error_type: self.error_type(),
            field,
        })
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full { retry_after, .. } => Self::QueueFull { retry_after },
            QueueError::Unavailable(cause) => Self::Unavailable {
                dependency: Dependency::Queue,
                cause,
            },
            QueueError::Corrupt(m) => Self::Internal(m),
        }
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        Self::Unavailable {
            dependency: Dependency::Catalogue,
            cause: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(res: HttpResponse) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn errors_carry_status_type_field_and_headers() {
        let res = ApiError::invalid("k", "k must be from 1 to 100").error_response();
        assert_eq!(res.status(), 422);
        let body = body_of(res).await;
        assert_eq!(body["field"], "k");
        assert_eq!(body["error_type"], "validation");

        let res = ApiError::QueueFull {
            retry_after: Duration::from_secs(2),
        }
        .error_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers().get("retry-after").unwrap(), "2");

        let res = ApiError::Unauthorized.error_response();
        assert_eq!(res.status(), 401);
        assert!(body_of(res).await.get("field").is_none());

        let res = ApiError::TooManyConnections { limit: 8 }.error_response();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers().get("retry-after").unwrap(), "1");
        let body = body_of(res).await;
        assert_eq!(body["error_type"], "too_many_connections");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("maximum of 8 connections")
        );

        let res = ApiError::MethodNotAllowed { allow: "GET" }.error_response();
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers().get("allow").unwrap(), "GET");
    }

    #[tokio::test]
    async fn a_dependency_failure_answers_a_fixed_message_and_keeps_the_cause_for_the_log() {
        let cause = "Connection refused (os error 111)";
        let error = ApiError::from(QueueError::Unavailable(cause.into()));
        assert_eq!(error.cause(), Some(cause));
        let res = error.error_response();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers().get("retry-after").unwrap(), "1");
        let body = body_of(res).await;
        assert_eq!(body["error"], "the job queue is unavailable; retry shortly");
        assert!(!body.to_string().contains("os error"), "{body}");

        let res = ApiError::Internal("broken pipe".into()).error_response();
        assert_eq!(res.status(), 500);
        assert!(!body_of(res).await.to_string().contains("broken pipe"));
    }
}
