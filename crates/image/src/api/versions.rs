//! Version discovery: `/image`, `/image/versions`, `/image/v2`.

use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

/// The image root URL as the client reached it (`http://host:port/image`).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or(if headers.contains_key("x-oxistack-tls") {
            "https"
        } else {
            "http"
        });
    format!("{scheme}://{host}/image")
}

/// The v2 minor versions served: 2.15 (current, with `/v2/info/usage`) down
/// to 2.0. Not offered: 2.14 and 2.16 (the image cache API) and 2.17 (the
/// service-to-service location API).
const VERSIONS: &[&str] = &[
    "2.15", "2.13", "2.12", "2.11", "2.10", "2.9", "2.8", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2",
    "2.1", "2.0",
];

fn document(headers: &HeaderMap) -> Value {
    let href = format!("{}/v2/", base_url(headers));
    let versions: Vec<Value> = VERSIONS
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "id": format!("v{v}"),
                "status": if i == 0 { "CURRENT" } else { "SUPPORTED" },
                "links": [{ "rel": "self", "href": href }],
            })
        })
        .collect();
    json!({ "versions": versions })
}

/// `GET /image`, `/image/v2`: 300 Multiple Choices, as Glance.
pub async fn multiple_choices(headers: HeaderMap) -> (StatusCode, Json<Value>) {
    (StatusCode::MULTIPLE_CHOICES, Json(document(&headers)))
}

/// `GET /image/versions`: 200.
pub async fn list(headers: HeaderMap) -> Json<Value> {
    Json(document(&headers))
}
