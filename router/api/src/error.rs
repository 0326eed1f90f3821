//! [`ApiError`]: every refusal of the API, each with its HTTP status; the body is
//! `{"error": TEXT}`.

use hyper::StatusCode;
use tracing::warn;

use crate::service::ServiceError;
use crate::store::StoreError;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401: no credentials, or credentials that do not verify.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: valid credentials of the wrong scope.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: no such route, tenant or key (or another tenant's: it is not confirmed to exist).
    #[error("not found")]
    NotFound,
    /// 405: the route exists with other methods.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// 400: the body or query is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 409: exists already, or read-only (the tenants file's).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the API takes.
    #[error("request body too large")]
    TooLarge,
    /// 503: the store or room service did not answer; retry.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A store failure: logged with its cause here, since the client sees only that it failed.
    pub fn store(error: StoreError) -> ApiError {
        warn!(error = %switchboard_runtime::describe(&error), "control API: tenant store failed");
        ApiError::Unavailable("tenant store unavailable, try again")
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Unavailable => {
                ApiError::Unavailable("room service unavailable, try again")
            }
        }
    }
}
