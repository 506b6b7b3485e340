//! The one error type of the API: every failure becomes `{"error", "error_type", "field"?}` with
//! the status that fits it. Nothing answers an error with 200.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::catalogue::CatalogueError;
use crate::queue::QueueError;

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
    /// The body is larger than the limit.
    #[error("the request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Missing or wrong bearer secret.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Too many jobs are waiting.
    #[error("the queue is full; retry in {} s", retry_after.as_secs().max(1))]
    QueueFull { retry_after: Duration },
    /// A dependency (Redis, the catalogue) is down.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data.
    #[error("internal error: {0}")]
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
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::QueueFull { .. } => "queue_full",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        let mut res = HttpResponse::build(status);
        match self {
            Self::QueueFull { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.as_secs().max(1)));
            }
            Self::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, 1));
            }
            Self::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        let field = match self {
            Self::Validation { field, .. } => field.clone(),
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
            QueueError::Unavailable(m) => Self::Unavailable(m),
            QueueError::Corrupt(m) => Self::Internal(m),
        }
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        Self::Unavailable(format!("catalogue: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[tokio::test]
    async fn errors_carry_status_type_field_and_headers() {
        let res = ApiError::invalid("k", "k must be from 1 to 100").error_response();
        assert_eq!(res.status(), 422);
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap();
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
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap();
        assert!(body.get("field").is_none());
    }
}
