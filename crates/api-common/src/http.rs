//! Request plumbing shared by every service.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-openstack-request-id");

/// The request id of the current request, as set by [`request_id`].
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Gives every request an id (`req-<uuid>`), available to handlers as an
/// extension, recorded in the request's tracing span and returned in the
/// `x-openstack-request-id` header of every response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = format!("req-{}", uuid::Uuid::new_v4());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let _enter = span.enter();
    drop(_enter);
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut res = next.run(req).await;
    let status = res.status().as_u16();
    tracing::debug!(parent: &span, %method, %path, status, elapsed_us = started.elapsed().as_micros() as u64, "handled");
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// Response extension: the service already rendered this response's body
/// in the format it wants (outer layers must not rewrite it).
#[derive(Clone, Copy, Debug)]
pub struct Rendered;

/// Why a request body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

/// Parses a JSON body, explaining what is wrong in terms a user can act on.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    if body.is_empty() {
        return Err(BodyError(
            "The request body is empty; a JSON document is required.".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                BodyError(format!("Malformed JSON in request body: {msg}"))
            }
            _ => BodyError(format!("Invalid input for field/attribute: {msg}")),
        }
    })
}

/// The reason phrase used in fault bodies.
pub fn status_title(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}
