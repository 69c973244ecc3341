//! The image service's one error type, turned into Glance's fault body in
//! exactly one place.
//!
//! Glance answers errors with webob's error documents; for JSON clients the
//! shape is `{"message": "...", "code": "404 Not Found", "title": "Not Found"}`.
//! A missing or bad token is refused the way keystonemiddleware does in front
//! of Glance (`{"error": {"code": 401, ...}}` with `WWW-Authenticate`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: malformed or invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: policy or the image's state forbids the action.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 410: the image went away during the request.
    #[error("{0}")]
    Gone(String),
    /// 413: a size limit or quota is exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// 415: wrong content type, or data that does not match its disk_format.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 416: a Range outside the data.
    #[error("Requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// 501: not offered by this deployment.
    #[error("{0}")]
    NotImplemented(String),
    /// 503: the store cannot be written.
    #[error("{0}")]
    Unavailable(String),
    /// 500: an internal failure. The detail is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Error::Forbidden(msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    pub fn image_not_found(id: &str) -> Self {
        Error::NotFound(format!("No image found with ID {id}"))
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(format!("database: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("i/o: {e}"))
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

fn title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::RANGE_NOT_SATISFIABLE => "Requested Range Not Satisfiable",
        s => api_common::http::status_title(s.as_u16()),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "The server has either erred or is incapable of performing the requested operation."
                    .to_string()
            }
            other => other.to_string(),
        };
        if status == StatusCode::UNAUTHORIZED {
            let body = serde_json::json!({ "error": {
                "code": 401, "title": "Unauthorized", "message": message,
            }});
            let mut res = (status, Json(body)).into_response();
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
            return res;
        }
        let body = serde_json::json!({
            "message": message,
            "code": format!("{} {}", status.as_u16(), title(status)),
            "title": title(status),
        });
        let mut res = (status, Json(body)).into_response();
        if let Error::RangeNotSatisfiable { size } = self {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                res.headers_mut()
                    .insert(axum::http::header::CONTENT_RANGE, v);
            }
        }
        res
    }
}
