//! The compute HTTP API (Nova v2.1): routes and thin handlers. Handlers
//! parse and validate input, check policy, call the service, and render.
//! The middleware here negotiates the microversion and stamps it on every
//! versioned response; every fault is rendered by [`crate::Error`].

mod actions;
mod aggregates;
mod availability_zones;
mod consoles;
mod flavors;
mod hosts;
mod keypairs;
mod limits;
mod migrations;
mod quotas;
mod server_groups;
mod server_meta;
pub mod servers;
mod usage;
mod versions;

pub use aggregates::host_availability_zone;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::microversion::{self, Version};
use crate::{Caller, Compute};

pub type State = axum::extract::State<Arc<Compute>>;

/// The authenticated caller, from `X-Auth-Token`.
pub struct Auth(pub Caller);

impl FromRequestParts<Arc<Compute>> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Compute>) -> Result<Self> {
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("The request you have made requires authentication.".into())
            })?;
        Ok(Auth(state.caller(token).await?))
    }
}

/// The negotiated microversion of a request under `/v2.1`.
#[derive(Clone, Copy, Debug)]
pub struct Mv(pub Version);

impl Mv {
    pub fn at_least(self, minor: u16) -> bool {
        self.0.at_least(minor)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Mv {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(parts
            .extensions
            .get::<Mv>()
            .copied()
            .unwrap_or(Mv(microversion::MIN)))
    }
}

/// A JSON request body. Nova answers a body that is not JSON with 400
/// "Malformed request body", and a non-JSON content type with 415.
pub struct Body(pub Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        if let Some(ct) = req.headers().get(axum::http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            if !ct.is_empty() && !ct.starts_with("application/json") && !ct.contains("+json") {
                return Err(Error::UnsupportedMediaType(
                    "Unsupported Content-Type".into(),
                ));
            }
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status().as_u16() {
                413 => Error::TooLarge("Request is too large.".into()),
                _ => Error::bad("Malformed request body"),
            })?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|_| Error::bad("Malformed request body"))?;
        Ok(Body(v))
    }
}

/// Negotiates the microversion, makes it available to handlers as [`Mv`],
/// and stamps it on the response (errors included).
async fn versioned(mut req: Request, next: Next) -> Response {
    let v = match microversion::negotiate(req.headers()) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(Mv(v));
    let mut res = next.run(req).await;
    microversion::stamp(res.headers_mut(), v);
    res
}

/// Parses a raw query string keeping repeated keys in order.
pub(crate) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The request's base URL for links (`http://host:port/compute`), from
/// the Host header when there is one.
pub(crate) fn base_url(state: &Compute, headers: &HeaderMap) -> String {
    state.link_base(
        headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok()),
    )
}

async fn not_found() -> Error {
    Error::not_found("The resource could not be found.")
}

/// Every compute route, relative to `/compute`.
pub fn router(state: Arc<Compute>) -> Router {
    let v21 = Router::new()
        .route("/", get(versions::show_v21))
        .route("/servers", get(servers::list).post(servers::create))
        .route("/servers/detail", get(servers::detail))
        .route(
            "/servers/{id}",
            get(servers::show)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route("/servers/{id}/action", post(servers::action))
        .route("/servers/{id}/topology", get(servers::topology))
        .route("/servers/{id}/remote-consoles", post(consoles::create))
        .route(
            "/servers/{id}/metadata",
            get(server_meta::metadata_index)
                .post(server_meta::metadata_create)
                .put(server_meta::metadata_update_all),
        )
        .route(
            "/servers/{id}/metadata/{key}",
            get(server_meta::metadata_show)
                .put(server_meta::metadata_update)
                .delete(server_meta::metadata_delete),
        )
        .route(
            "/servers/{id}/tags",
            get(server_meta::tags_index)
                .put(server_meta::tags_update_all)
                .delete(server_meta::tags_delete_all),
        )
        .route(
            "/servers/{id}/tags/{tag}",
            get(server_meta::tag_show)
                .put(server_meta::tag_update)
                .delete(server_meta::tag_delete),
        )
        .route("/servers/{id}/diagnostics", get(server_meta::diagnostics))
        .route("/servers/{id}/os-instance-actions", get(actions::list))
        .route(
            "/servers/{id}/os-instance-actions/{request_id}",
            get(actions::show),
        )
        .route("/os-services", get(hosts::service_list))
        .route(
            "/os-services/{id}",
            put(hosts::service_update).delete(hosts::service_delete),
        )
        .route("/os-hypervisors", get(hosts::hypervisor_list))
        .route("/os-hypervisors/detail", get(hosts::hypervisor_detail))
        .route(
            "/os-hypervisors/statistics",
            get(hosts::hypervisor_statistics),
        )
        .route("/os-hypervisors/{id}", get(hosts::hypervisor_show))
        .route("/os-hypervisors/{id}/uptime", get(hosts::hypervisor_uptime))
        .route("/os-hosts", get(hosts::host_list))
        .route("/os-hosts/{host}", get(hosts::host_show))
        .route("/flavors", get(flavors::index).post(flavors::create))
        .route("/flavors/detail", get(flavors::detail))
        .route(
            "/flavors/{id}",
            get(flavors::show)
                .put(flavors::update)
                .delete(flavors::delete),
        )
        .route("/flavors/{id}/action", post(flavors::action))
        .route("/flavors/{id}/os-flavor-access", get(flavors::access_index))
        .route(
            "/flavors/{id}/os-extra_specs",
            get(flavors::specs_index).post(flavors::specs_create),
        )
        .route(
            "/flavors/{id}/os-extra_specs/{key}",
            get(flavors::specs_show)
                .put(flavors::specs_update)
                .delete(flavors::specs_delete),
        )
        .route("/os-keypairs", get(keypairs::index).post(keypairs::create))
        .route(
            "/os-keypairs/{name}",
            get(keypairs::show).delete(keypairs::delete),
        )
        .route(
            "/os-quota-sets/{id}",
            get(quotas::show).put(quotas::update).delete(quotas::delete),
        )
        .route("/os-quota-sets/{id}/defaults", get(quotas::defaults))
        .route("/os-quota-sets/{id}/detail", get(quotas::detail))
        .route(
            "/os-quota-class-sets/{id}",
            get(quotas::class_show).put(quotas::class_update),
        )
        .route("/limits", get(limits::index))
        .route("/os-availability-zone", get(availability_zones::index))
        .route(
            "/os-availability-zone/detail",
            get(availability_zones::detail),
        )
        .route(
            "/os-aggregates",
            get(aggregates::index).post(aggregates::create),
        )
        .route(
            "/os-aggregates/{id}",
            get(aggregates::show)
                .put(aggregates::update)
                .delete(aggregates::delete),
        )
        .route("/os-aggregates/{id}/action", post(aggregates::action))
        .route(
            "/os-server-groups",
            get(server_groups::index).post(server_groups::create),
        )
        .route(
            "/os-server-groups/{id}",
            get(server_groups::show).delete(server_groups::delete),
        )
        .route("/os-simple-tenant-usage", get(usage::index))
        .route("/os-simple-tenant-usage/{id}", get(usage::show))
        .route("/os-migrations", get(migrations::index))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(versioned));
    Router::new()
        .route("/", get(versions::index))
        .route("/serial", get(consoles::proxy))
        .nest("/v2.1", v21)
        .fallback(not_found)
        .with_state(state)
}
