//! HTTP routes of the placement API, the middleware that negotiates the
//! microversion, authenticates and renders faults, and small helpers shared
//! by the handlers.

mod aggregates;
mod allocations;
mod candidates;
mod inventories;
mod providers;
mod reshaper;
mod resource_classes;
mod traits;
mod usages;

use std::sync::Arc;

use api_common::http::RequestId;
use api_common::policy::{Creds, Target};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::{Error, Fault, Result};
use crate::microversion::{self, Version, VersionError};
use crate::{AuthMode, Placement};

/// The placement router (mount it at `config.path_prefix`).
pub fn router(p: Arc<Placement>) -> Router {
    Router::new()
        .route("/", get(root))
        .route(
            "/resource_classes",
            get(resource_classes::list).post(resource_classes::create),
        )
        .route(
            "/resource_classes/{name}",
            get(resource_classes::show)
                .put(resource_classes::update)
                .delete(resource_classes::delete),
        )
        .route(
            "/resource_providers",
            get(providers::list).post(providers::create),
        )
        .route(
            "/resource_providers/{uuid}",
            get(providers::show)
                .put(providers::update)
                .delete(providers::delete),
        )
        .route(
            "/resource_providers/{uuid}/inventories",
            get(inventories::list)
                .post(inventories::create)
                .put(inventories::replace_all)
                .delete(inventories::delete_all),
        )
        .route(
            "/resource_providers/{uuid}/inventories/{class}",
            get(inventories::show)
                .put(inventories::update)
                .delete(inventories::delete),
        )
        .route("/resource_providers/{uuid}/usages", get(usages::provider))
        .route(
            "/resource_providers/{uuid}/aggregates",
            get(aggregates::list).put(aggregates::replace),
        )
        .route(
            "/resource_providers/{uuid}/allocations",
            get(allocations::for_provider),
        )
        .route(
            "/resource_providers/{uuid}/traits",
            get(traits::provider_list)
                .put(traits::provider_replace)
                .delete(traits::provider_delete),
        )
        .route("/allocations", axum::routing::post(allocations::post_many))
        .route(
            "/allocations/{consumer}",
            get(allocations::show)
                .put(allocations::replace)
                .delete(allocations::delete),
        )
        .route("/allocation_candidates", get(candidates::list))
        .route("/traits", get(traits::list))
        .route(
            "/traits/{name}",
            get(traits::show).put(traits::create).delete(traits::delete),
        )
        .route("/usages", get(usages::totals))
        .route("/reshaper", axum::routing::post(reshaper::reshape))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(p.clone(), middleware))
        .with_state(p)
}

async fn not_found() -> Error {
    Error::not_found("")
}

/// GET / : the version document (no authentication).
async fn root(v: Version) -> Response {
    let body = json!({"versions": [{
        "id": "v1.0",
        "max_version": format!("1.{}", microversion::MAX_MINOR),
        "min_version": "1.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": ""}],
    }]});
    let mut res = json_response(StatusCode::OK, &body);
    cache_headers(&mut res, v, None);
    res
}

/// What the middleware learned about the caller.
#[derive(Clone, Debug)]
struct Caller(Creds);

async fn middleware(State(p): State<Arc<Placement>>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_string);
    let requested = microversion::requested(
        req.headers()
            .get_all("openstack-api-version")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let version = match microversion::negotiate(requested.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            let (status, msg) = match e {
                VersionError::Type(m) => (StatusCode::BAD_REQUEST, m),
                VersionError::Value(m) => (StatusCode::NOT_ACCEPTABLE, m),
            };
            let res = Error::new(status, format!("Invalid microversion: {msg}")).into_response();
            return finish(res, None, request_id.as_deref(), &method, content_type.as_deref());
        }
    };
    req.extensions_mut().insert(version);
    let res = match admit(&p, &mut req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    finish(res, Some(version), request_id.as_deref(), &method, content_type.as_deref())
}

/// Request checks upstream makes before a handler runs: content headers,
/// the accept header and authentication.
fn admit(p: &Placement, req: &mut Request) -> Result<()> {
    let headers = req.headers();
    if let Some(len) = header_str(headers, header::CONTENT_LENGTH) {
        match len.trim().parse::<u64>() {
            Ok(n) if n > 0 && header_str(headers, header::CONTENT_TYPE).is_none_or(str::is_empty) => {
                return Err(Error::bad_request(
                    "content-type header required when content-length > 0",
                ));
            }
            Ok(_) => {}
            Err(_) => return Err(Error::bad_request("content-length header must be an integer")),
        }
    }
    if let Some(accept) = header_str(headers, header::ACCEPT) {
        if !accepts_json(accept) {
            return Err(Error::new(
                StatusCode::NOT_ACCEPTABLE,
                "Only application/json is provided",
            ));
        }
    }
    let path = req.uri().path();
    if path == "/" || path.is_empty() {
        return Ok(());
    }
    let creds = match p.config.auth {
        AuthMode::Noauth => noauth_creds(headers)?,
        AuthMode::Keystone => return Ok(()), // validated asynchronously by Ctx
    };
    req.extensions_mut().insert(Caller(creds));
    Ok(())
}

/// Upstream's noauth2: `X-Auth-Token: user[:project]`, roles from `X-Roles`
/// (else `admin` for the user `admin`), `X-Project-Id` overrides the
/// project, `OpenStack-System-Scope` makes the request system scoped.
fn noauth_creds(headers: &HeaderMap) -> Result<Creds> {
    let Some(token) = header_str(headers, "x-auth-token") else {
        return Err(unauthorized());
    };
    let (user, project) = match token.split_once(':') {
        Some((u, p)) if !p.is_empty() => (u.to_string(), p.to_string()),
        Some((u, _)) => (u.to_string(), u.to_string()),
        None => (token.to_string(), token.to_string()),
    };
    let roles: Vec<String> = match header_str(headers, "x-roles") {
        Some(r) => r
            .split(',')
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect(),
        None if user == "admin" => vec!["admin".into()],
        None => Vec::new(),
    };
    let system = header_str(headers, "openstack-system-scope").filter(|s| !s.is_empty());
    let project_id = match header_str(headers, "x-project-id") {
        Some(p) => Some(p.to_string()),
        None if system.is_some() => None,
        None => Some(project),
    };
    Ok(Creds {
        user_id: user,
        project_id,
        system_scope: system.map(str::to_string),
        roles,
        ..Default::default()
    })
}

fn unauthorized() -> Error {
    Error::new(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !q_zero && matches!(media.as_str(), "application/json" | "application/*" | "*/*")
    })
}

/// Adds the microversion headers and renders a fault body, once for every
/// response of the service.
fn finish(
    mut res: Response,
    version: Option<Version>,
    request_id: Option<&str>,
    method: &Method,
    content_type: Option<&str>,
) -> Response {
    let status = res.status();
    let fault = res.extensions_mut().remove::<Fault>();
    let fault = match fault {
        Some(f) => Some(f),
        None if status == StatusCode::METHOD_NOT_ALLOWED => {
            // The router's own 405: list the allowed methods as upstream does.
            let allow = header_str(res.headers(), header::ALLOW).unwrap_or_default();
            let methods: Vec<&str> = allow
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty() && *m != "HEAD")
                .collect();
            if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
                res.headers_mut().insert(header::ALLOW, v);
            }
            Some(Fault {
                detail: "The method specified is not allowed for this resource.".into(),
                code: crate::error::codes::DEFAULT,
            })
        }
        None => None,
    };
    if let Some(fault) = fault {
        let code = status.as_u16();
        let mut err = serde_json::Map::new();
        err.insert("status".into(), json!(code));
        err.insert(
            "title".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        err.insert(
            "detail".into(),
            json!(crate::error::detail(code, &fault.detail, method.as_str(), content_type)),
        );
        if version.is_some_and(|v| v.at_least(23)) {
            err.insert("code".into(), json!(fault.code));
        }
        if let Some(id) = request_id {
            err.insert("request_id".into(), json!(id));
        }
        if version.is_none() && code == 406 {
            err.insert(
                "max_version".into(),
                json!(format!("1.{}", microversion::MAX_MINOR)),
            );
            err.insert("min_version".into(), json!("1.0"));
        }
        let body = json!({ "errors": [Value::Object(err)] }).to_string();
        let (mut parts, _) = res.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res = Response::from_parts(parts, axum::body::Body::from(body));
    }
    if let Some(v) = version {
        if let Ok(h) = HeaderValue::from_str(&format!("placement 1.{}", v.0)) {
            res.headers_mut().insert("openstack-api-version", h);
        }
        res.headers_mut()
            .append(header::VARY, HeaderValue::from_static("openstack-api-version"));
    }
    res
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl<S: Send + Sync> FromRequestParts<S> for Version {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<Version>()
            .copied()
            .ok_or_else(|| Error::internal("microversion missing"))
    }
}

/// Everything a handler needs about the request: the service, the
/// negotiated microversion and the caller.
pub struct Ctx {
    pub p: Arc<Placement>,
    pub v: Version,
    pub creds: Creds,
}

impl FromRequestParts<Arc<Placement>> for Ctx {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, p: &Arc<Placement>) -> Result<Self> {
        let v = Version::from_request_parts(parts, p).await?;
        let creds = match parts.extensions.get::<Caller>() {
            Some(c) => c.0.clone(),
            None => {
                let token = header_str(&parts.headers, "x-auth-token").ok_or_else(unauthorized)?;
                let validator = p.tokens.as_ref().ok_or_else(unauthorized)?;
                let ctx = validator.validate(token).await.map_err(|_| unauthorized())?;
                ctx.creds()
            }
        };
        Ok(Ctx {
            p: p.clone(),
            v,
            creds,
        })
    }
}

impl Ctx {
    /// Checks a policy rule with upstream's default target (the caller's own
    /// project and user).
    pub fn can(&self, rule: &str) -> Result<()> {
        let target = Target::new()
            .with_opt("project_id", self.creds.project_id.clone())
            .with("user_id", self.creds.user_id.clone());
        self.p.authorize(&self.creds, rule, &target)
    }

    pub fn at_least(&self, minor: u16) -> bool {
        self.v.at_least(minor)
    }

    /// Errors get a `code` only from 1.23; handlers pass it along regardless.
    pub fn prefix(&self) -> &str {
        &self.p.config.path_prefix
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// `last-modified` and `cache-control: no-cache` from microversion 1.15.
/// `micros` is the newest change time of what the response shows (now when
/// unknown).
pub fn cache_headers(res: &mut Response, v: Version, micros: Option<i64>) {
    if !v.at_least(15) {
        return;
    }
    let micros = micros.unwrap_or_else(store::now_micros);
    let when = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    if let Ok(h) = HeaderValue::from_str(&when.format("%a, %d %b %Y %H:%M:%S GMT").to_string()) {
        res.headers_mut().insert(header::LAST_MODIFIED, h);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// A 204 with no body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a JSON request body (upstream's `require_content` + `extract_json`).
pub fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value> {
    let ct = header_str(headers, header::CONTENT_TYPE);
    let media = ct
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media != "application/json" {
        return Err(Error::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "The media type {} is not supported, use application/json",
                ct.unwrap_or("None")
            ),
        ));
    }
    serde_json::from_slice(body).map_err(|e| Error::bad_request(format!("Malformed JSON: {e}")))
}

/// Query-string pairs in order, percent-decoded.
pub fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Upstream's `validate_query_params` failure.
pub fn bad_query(message: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("Invalid query string parameters: {message}"))
}

/// The URL path of a provider, as upstream's links show it.
pub fn provider_url(prefix: &str, uuid: &str) -> String {
    format!("{prefix}/resource_providers/{uuid}")
}
