//! The placement service's one error type and its fault body.
//!
//! Handlers return [`Error`]; its `IntoResponse` stores a [`Fault`] in the
//! response extensions, and the placement middleware (which knows the
//! request's microversion and id) renders it as upstream's
//! `{"errors": [{status, title, detail, code, request_id}]}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Error codes (the `code` member of error bodies from microversion 1.23).
pub mod codes {
    pub const DEFAULT: &str = "placement.undefined_code";
    pub const INVENTORY_INUSE: &str = "placement.inventory.inuse";
    pub const CONCURRENT_UPDATE: &str = "placement.concurrent_update";
    pub const DUPLICATE_NAME: &str = "placement.duplicate_name";
    pub const PROVIDER_IN_USE: &str = "placement.resource_provider.inuse";
    pub const PROVIDER_CANNOT_DELETE_PARENT: &str =
        "placement.resource_provider.cannot_delete_parent";
    pub const RESOURCE_PROVIDER_NOT_FOUND: &str = "placement.resource_provider.not_found";
    // The query-string codes (placement.query.*) come with the engine's
    // `QueryError`s.
}

#[derive(Debug, Clone)]
pub struct Error {
    pub status: StatusCode,
    pub message: String,
    pub code: &'static str,
    /// Extra response headers (e.g. `allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
            code: codes::DEFAULT,
            headers: Vec::new(),
        }
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::new(StatusCode::CONFLICT, message)
    }
    pub fn forbidden_action(action: &str) -> Self {
        Error::new(
            StatusCode::FORBIDDEN,
            format!("Policy does not allow {action} to be performed."),
        )
    }
    pub fn provider_not_found(uuid: &str) -> Self {
        Error::not_found(format!("No resource provider with uuid {uuid} found"))
    }
    pub fn concurrent_update() -> Self {
        Error::conflict(
            "resource provider generation conflict: Another thread concurrently updated \
             the resource provider data. Please retry your update",
        )
        .with_code(codes::CONCURRENT_UPDATE)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "placement internal error");
        Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An internal error occurred; see the server log.",
        )
    }
}

impl From<store::sqlx::Error> for Error {
    fn from(e: store::sqlx::Error) -> Self {
        Error::internal(e)
    }
}

/// The parts of a fault the middleware renders.
#[derive(Debug, Clone)]
pub struct Fault {
    pub detail: String,
    pub code: &'static str,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        for (name, value) in &self.headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(value) {
                res.headers_mut().insert(*name, v);
            }
        }
        res.extensions_mut().insert(Fault {
            detail: self.message,
            code: self.code,
        });
        res
    }
}

/// webob's explanation line for a status (the first part of `detail`).
pub fn explanation(status: u16) -> &'static str {
    match status {
        400 => "The server could not comply with the request since it is either malformed or otherwise incorrect.",
        401 => "This server could not verify that you are authorized to access the document you requested. Either you supplied the wrong credentials (e.g., bad password), or your browser does not understand how to supply the credentials required.",
        403 => "Access was denied to this resource.",
        404 => "The resource could not be found.",
        409 => "There was a conflict when trying to complete your request.",
        500 => "The server has either erred or is incapable of performing the requested operation.",
        _ => "",
    }
}

/// Builds the `detail` string the way webob formats it for a JSON fault.
pub fn detail(status: u16, message: &str, method: &str, content_type: Option<&str>) -> String {
    match status {
        405 => format!(
            "The method {method} is not allowed for this resource. \n\n {message}"
        ),
        406 => format!(
            "The resource could not be generated that was acceptable to your browser (content of type application/json. \n\n {message}"
        ),
        415 => format!(
            "The request media type {} is not supported by this server. \n\n {message}",
            content_type.unwrap_or("None")
        ),
        s => format!("{}\n\n {message}  ", explanation(s)),
    }
}
