//! The identity service's one error type, turned into Keystone's fault body
//! (`{"error": {"code", "title", "message"}}`) in exactly one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed or fails validation.
    #[error("{0}")]
    Validation(String),
    /// 401: authentication failed. The message is what the user sees; it never
    /// says whether the user or the password was wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: policy denies the action.
    #[error("{0}")]
    Forbidden(String),
    /// 404: `kind` with `id` does not exist.
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: &'static str, id: String },
    /// 409: conflicts with existing state (a duplicate name, say).
    #[error("{0}")]
    Conflict(String),
    /// 501: a feature this deployment does not offer.
    #[error("{0}")]
    NotImplemented(String),
    /// 500: an internal failure. The detail is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Error::Unauthorized("The request you have made requires authentication.".into())
    }

    pub fn forbidden() -> Self {
        Error::Forbidden("You are not authorized to perform the requested action.".into())
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Validation(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(format!("database: {e}"))
    }
}

impl From<api_common::http::BodyError> for Error {
    fn from(e: api_common::http::BodyError) -> Self {
        Error::Validation(e.0)
    }
}

impl From<api_common::TokenError> for Error {
    fn from(e: api_common::TokenError) -> Self {
        match e {
            api_common::TokenError::Backend(m) => Error::Internal(m),
            other => Error::Unauthorized(other.to_string()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "An unexpected error prevented the server from fulfilling your request.".to_string()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({
            "error": {
                "code": status.as_u16(),
                "title": api_common::http::status_title(status.as_u16()),
                "message": message,
            }
        });
        let mut res = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        res
    }
}
