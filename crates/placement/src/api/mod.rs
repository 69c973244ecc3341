//! HTTP routes of the placement API, the middleware that negotiates the
//! microversion, authenticates and renders faults, and small helpers shared
//! by the handlers.

mod aggregates;
pub mod allocations;
mod candidates;
mod inventories;
mod providers;
mod reshaper;
mod resource_classes;
mod traits;
mod usages;

pub use candidates::engine_error as candidates_engine_error;

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
        .route("/", get(root).fallback(allow("GET")))
        .route(
            "/resource_classes",
            get(resource_classes::list)
                .post(resource_classes::create)
                .fallback(allow("GET, POST")),
        )
        .route(
            "/resource_classes/{name}",
            get(resource_classes::show)
                .put(resource_classes::update)
                .delete(resource_classes::delete)
                .fallback(allow("GET, PUT, DELETE")),
        )
        .route(
            "/resource_providers",
            get(providers::list)
                .post(providers::create)
                .fallback(allow("GET, POST")),
        )
        .route(
            "/resource_providers/{uuid}",
            get(providers::show)
                .put(providers::update)
                .delete(providers::delete)
                .fallback(allow("GET, DELETE, PUT")),
        )
        .route(
            "/resource_providers/{uuid}/inventories",
            get(inventories::list)
                .post(inventories::create)
                .put(inventories::replace_all)
                .delete(inventories::delete_all)
                .fallback(allow("GET, POST, PUT, DELETE")),
        )
        .route(
            "/resource_providers/{uuid}/inventories/{class}",
            get(inventories::show)
                .put(inventories::update)
                .delete(inventories::delete)
                .fallback(allow("GET, PUT, DELETE")),
        )
        .route(
            "/resource_providers/{uuid}/usages",
            get(usages::provider).fallback(allow("GET")),
        )
        .route(
            "/resource_providers/{uuid}/aggregates",
            get(aggregates::list)
                .put(aggregates::replace)
                .fallback(allow("GET, PUT")),
        )
        .route(
            "/resource_providers/{uuid}/allocations",
            get(allocations::for_provider).fallback(allow("GET")),
        )
        .route(
            "/resource_providers/{uuid}/traits",
            get(traits::provider_list)
                .put(traits::provider_replace)
                .delete(traits::provider_delete)
                .fallback(allow("GET, PUT, DELETE")),
        )
        .route(
            "/allocations",
            axum::routing::post(allocations::post_many).fallback(allow("POST")),
        )
        .route(
            "/allocations/{consumer}",
            get(allocations::show)
                .put(allocations::replace)
                .delete(allocations::delete)
                .fallback(allow("GET, PUT, DELETE")),
        )
        .route(
            "/allocation_candidates",
            get(candidates::list).fallback(allow("GET")),
        )
        .route("/traits", get(traits::list).fallback(allow("GET")))
        .route(
            "/traits/{name}",
            get(traits::show)
                .put(traits::create)
                .delete(traits::delete)
                .fallback(allow("GET, PUT, DELETE")),
        )
        .route("/usages", get(usages::totals).fallback(allow("GET")))
        .route(
            "/reshaper",
            axum::routing::post(reshaper::reshape).fallback(allow("POST")),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(p.clone(), middleware))
        .with_state(p)
}

/// The handler for a method a route does not have: 405 with `allow`.
fn allow(
    methods: &'static str,
) -> impl Fn() -> std::future::Ready<Error> + Clone + Send + Sync + 'static {
    move || std::future::ready(method_not_allowed(methods))
}

/// A 405 listing the methods of the route.
pub fn method_not_allowed(allow: &str) -> Error {
    let mut e = Error::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method specified is not allowed for this resource.",
    );
    e.headers.push(("allow", allow.to_string()));
    e
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
    let accept = header_str(req.headers(), header::ACCEPT).map(str::to_string);
    let host = header_str(req.headers(), header::HOST).map(str::to_string);
    let out = Out {
        method: &method,
        content_type: content_type.as_deref(),
        accept: accept.as_deref(),
        host: host.as_deref(),
        request_id: request_id.as_deref(),
    };
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
            return finish(res, None, &out);
        }
    };
    req.extensions_mut().insert(version);
    let res = match admit(&p, &mut req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    finish(res, Some(version), &out)
}

/// What `finish` needs to know about the request.
struct Out<'a> {
    method: &'a Method,
    content_type: Option<&'a str>,
    accept: Option<&'a str>,
    host: Option<&'a str>,
    request_id: Option<&'a str>,
}

/// Request checks upstream makes before a handler runs: content headers,
/// the accept header and authentication.
fn admit(p: &Placement, req: &mut Request) -> Result<()> {
    let headers = req.headers();
    if headers.contains_key("x-malformed-cl") {
        // The server's listener renamed a Content-Length hyper would refuse.
        let mut e = Error::bad_request("content-length header must be an integer");
        e.headers.push(("connection", "close".into()));
        return Err(e);
    }
    if let Some(len) = header_str(headers, header::CONTENT_LENGTH) {
        match len.trim().parse::<u64>() {
            Ok(n)
                if n > 0 && header_str(headers, header::CONTENT_TYPE).is_none_or(str::is_empty) =>
            {
                return Err(Error::bad_request(
                    "content-type header required when content-length > 0",
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(Error::bad_request(
                    "content-length header must be an integer",
                ))
            }
        }
    }
    // Like upstream's `check_accept`, only the GET handlers look at Accept.
    let routed = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .is_some();
    if let Some(accept) =
        header_str(headers, header::ACCEPT).filter(|_| routed && req.method() == Method::GET)
    {
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
fn finish(mut res: Response, version: Option<Version>, out: &Out<'_>) -> Response {
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
            json!(crate::error::detail(
                code,
                &fault.detail,
                out.method.as_str(),
                out.content_type
            )),
        );
        if version.is_some_and(|v| v.at_least(23)) {
            err.insert("code".into(), json!(fault.code));
        }
        if let Some(id) = out.request_id {
            err.insert("request_id".into(), json!(id));
        }
        if version.is_none() && code == 406 {
            err.insert(
                "max_version".into(),
                json!(format!("1.{}", microversion::MAX_MINOR)),
            );
            err.insert("min_version".into(), json!("1.0"));
        }
        let (body, content_type) = fault_body(Value::Object(err), out.accept);
        let (mut parts, _) = res.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        res = Response::from_parts(parts, axum::body::Body::from(body));
    }
    // Locations are absolute, as webob makes them.
    let relative = header_str(res.headers(), header::LOCATION)
        .filter(|l| l.starts_with('/'))
        .map(str::to_string);
    if let (Some(loc), Some(host)) = (relative, out.host) {
        if let Ok(v) = HeaderValue::from_str(&format!("http://{host}{loc}")) {
            res.headers_mut().insert(header::LOCATION, v);
        }
    }
    res.extensions_mut().insert(api_common::http::Rendered);
    if let Some(v) = version {
        if let Ok(h) = HeaderValue::from_str(&format!("placement 1.{}", v.0)) {
            res.headers_mut().insert("openstack-api-version", h);
        }
        res.headers_mut().append(
            header::VARY,
            HeaderValue::from_static("openstack-api-version"),
        );
    }
    res
}

/// A fault in the format the client accepts: JSON unless it asked for
/// HTML or plain text only (webob's behaviour).
fn fault_body(err: Value, accept: Option<&str>) -> (String, &'static str) {
    let wants = |m: &str| accept.is_some_and(|a| a.split(',').any(|r| r.trim().starts_with(m)));
    if accept.is_none() || accepts_json(accept.unwrap_or_default()) {
        return (json!({ "errors": [err] }).to_string(), "application/json");
    }
    let status = err["status"].as_u64().unwrap_or(500);
    let title = err["title"].as_str().unwrap_or_default();
    let detail = err["detail"].as_str().unwrap_or_default();
    if wants("text/html") {
        (
            format!(
                "<html>\n <head>\n  <title>{status} {title}</title>\n </head>\n <body>\n  <h1>{status} {title}</h1>\n  {}\n </body>\n</html>",
                detail.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
            ),
            "text/html; charset=UTF-8",
        )
    } else {
        (
            format!("{status} {title}\n\n{detail}"),
            "text/plain; charset=UTF-8",
        )
    }
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
                let ctx = validator
                    .validate(token)
                    .await
                    .map_err(|_| unauthorized())?;
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

    /// The path the API is mounted at (for links and locations).
    pub fn prefix(&self) -> &str {
        &self.p.config.path_prefix
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
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
    require_json(headers)?;
    serde_json::from_slice(body).map_err(|e| Error::bad_request(format!("Malformed JSON: {e}")))
}

/// Upstream's `require_content('application/json')`, checked before the
/// handler looks anything up.
pub fn require_json(headers: &HeaderMap) -> Result<()> {
    let ct = header_str(headers, header::CONTENT_TYPE);
    let media = ct
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
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
    Ok(())
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
