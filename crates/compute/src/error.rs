//! The compute service's one error type, turned into Nova's fault body in
//! exactly one place ([`IntoResponse`]).
//!
//! Nova wraps every error as `{"<faultName>": {"code": N, "message": "..."}}`
//! where the name follows the status (`badRequest`, `itemNotFound`,
//! `conflictingRequest`, ...; `computeFault` for anything else). A missing or
//! bad token is refused as keystonemiddleware does in front of Nova.

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
    /// 403: policy forbids it, or a quota is exceeded.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406: an unsupported microversion.
    #[error("{0}")]
    NotAcceptable(String),
    /// 409: conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: a limit on the request's size.
    #[error("{0}")]
    TooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 501: not offered by this deployment.
    #[error("{0}")]
    NotImplemented(String),
    /// 503.
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

    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    pub fn server_not_found(id: &str) -> Self {
        Error::NotFound(format!("Instance {id} could not be found."))
    }

    pub fn flavor_not_found(id: &str) -> Self {
        Error::NotFound(format!("Flavor {id} could not be found."))
    }

    /// Nova's `InstanceInvalidState` as the API reports it.
    pub fn invalid_state(attr: &str, state: &str, action: &str, id: &str) -> Self {
        Error::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in {attr} {state}"
        ))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Nova's fault names (`nova.api.openstack.wsgi.Fault._fault_names`).
pub fn fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
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

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("json: {e}"))
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

impl From<placement::Error> for Error {
    fn from(e: placement::Error) -> Self {
        Error::Internal(format!("placement: {e:?}"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.\n<class 'nova.exception.InternalError'>".to_string()
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
            fault_name(status): { "code": status.as_u16(), "message": message }
        });
        let mut res = (status, Json(body)).into_response();
        res.extensions_mut().insert(api_common::http::Rendered);
        res
    }
}
