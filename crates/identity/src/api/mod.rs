//! The identity HTTP API: routes and thin handlers. Handlers parse and
//! validate input, check policy, call the store, and render.

mod app_creds;
mod auth;
mod catalog;
mod credentials;
mod domains;
mod endpoint_filter;
mod federation;
mod grants;
mod groups;
mod input;
mod limits;
mod policies;
mod projects;
mod roles;
mod users;

use std::sync::Arc;

use api_common::AuthContext;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use axum::Router;

use crate::error::{Error, Result};
use crate::Identity;

pub type State = axum::extract::State<Arc<Identity>>;

/// The authenticated caller (from `X-Auth-Token`), with the snapshot the
/// token was checked against (reused for the rest of the request).
pub struct Caller(pub Arc<AuthContext>, pub Arc<crate::Snapshot>);

impl FromRequestParts<Arc<Identity>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Identity>) -> Result<Self> {
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(Error::unauthorized)?;
        let snap = state.snapshot().await?;
        let ctx = state.validate_in(&snap, token, false).await?;
        Ok(Caller(ctx, snap))
    }
}

/// The identity root URL as the client reached it (`http://host:port/identity`).
pub struct Base(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        Ok(Base(base_url(&parts.headers)))
    }
}

pub fn base_url(headers: &axum::http::HeaderMap) -> String {
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
    format!("{scheme}://{host}/identity")
}

impl Identity {
    /// Bumps the identity revision and commits: every process drops its
    /// cached tokens and catalog on its next request.
    pub(crate) async fn commit(&self, mut tx: store::WriteTx<'_>) -> Result<()> {
        store::bump_revision(&mut tx, "identity").await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Every identity route, relative to `/identity`.
pub fn router(state: Arc<Identity>) -> Router {
    let v3 = Router::new()
        .route("/", get(auth::version))
        .route(
            "/auth/tokens",
            post(auth::issue)
                .get(auth::validate)
                .head(auth::check)
                .delete(auth::revoke),
        )
        .route("/auth/catalog", get(auth::catalog))
        .route("/auth/projects", get(auth::projects))
        .route("/auth/domains", get(auth::domains))
        .route("/auth/system", get(auth::system))
        .route("/domains", get(domains::list).post(domains::create))
        .route(
            "/domains/{id}",
            get(domains::show)
                .patch(domains::update)
                .delete(domains::delete),
        )
        .route("/projects", get(projects::list).post(projects::create))
        .route(
            "/projects/{id}",
            get(projects::show)
                .patch(projects::update)
                .delete(projects::delete),
        )
        .route(
            "/projects/{id}/tags",
            get(projects::tags_list)
                .put(projects::tags_replace)
                .delete(projects::tags_clear),
        )
        .route(
            "/projects/{id}/tags/{tag}",
            get(projects::tag_check)
                .put(projects::tag_add)
                .delete(projects::tag_remove),
        )
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{id}",
            get(users::show).patch(users::update).delete(users::delete),
        )
        .route("/users/{id}/password", post(users::change_password))
        .route("/users/{id}/groups", get(users::groups))
        .route("/users/{id}/projects", get(users::projects))
        .route(
            "/users/{id}/application_credentials",
            get(app_creds::list).post(app_creds::create),
        )
        .route(
            "/users/{id}/application_credentials/{cred}",
            get(app_creds::show).delete(app_creds::delete),
        )
        .route("/users/{id}/access_rules", get(app_creds::rules_list))
        .route(
            "/users/{id}/access_rules/{rule}",
            get(app_creds::rule_show).delete(app_creds::rule_delete),
        )
        .route("/groups", get(groups::list).post(groups::create))
        .route(
            "/groups/{id}",
            get(groups::show)
                .patch(groups::update)
                .delete(groups::delete),
        )
        .route("/groups/{id}/users", get(groups::members))
        .route(
            "/groups/{id}/users/{user}",
            put(groups::add_member)
                .head(groups::check_member)
                .get(groups::check_member)
                .delete(groups::remove_member),
        )
        .route("/roles", get(roles::list).post(roles::create))
        .route(
            "/roles/{id}",
            get(roles::show).patch(roles::update).delete(roles::delete),
        )
        .route("/roles/{id}/implies", get(roles::implies_list))
        .route(
            "/roles/{id}/implies/{implied}",
            put(roles::implies_add)
                .get(roles::implies_show)
                .head(roles::implies_check)
                .delete(roles::implies_remove),
        )
        .route("/role_inferences", get(roles::inferences))
        .route("/role_assignments", get(grants::assignments))
        .route(
            "/regions",
            get(catalog::regions_list).post(catalog::region_create),
        )
        .route(
            "/regions/{id}",
            get(catalog::region_show)
                .put(catalog::region_create_with_id)
                .patch(catalog::region_update)
                .delete(catalog::region_delete),
        )
        .route(
            "/services",
            get(catalog::services_list).post(catalog::service_create),
        )
        .route(
            "/services/{id}",
            get(catalog::service_show)
                .patch(catalog::service_update)
                .delete(catalog::service_delete),
        )
        .route(
            "/endpoints",
            get(catalog::endpoints_list).post(catalog::endpoint_create),
        )
        .route(
            "/endpoints/{id}",
            get(catalog::endpoint_show)
                .patch(catalog::endpoint_update)
                .delete(catalog::endpoint_delete),
        )
        .route(
            "/registered_limits",
            get(limits::registered_list).post(limits::registered_create),
        )
        .route(
            "/registered_limits/{id}",
            get(limits::registered_show)
                .patch(limits::registered_update)
                .delete(limits::registered_delete),
        )
        .route("/policies", get(policies::list).post(policies::create))
        .route(
            "/policies/{id}",
            get(policies::show)
                .patch(policies::update)
                .delete(policies::delete),
        )
        .route(
            "/OS-EP-FILTER/projects/{id}/endpoints/{endpoint}",
            put(endpoint_filter::project_endpoint_add)
                .get(endpoint_filter::project_endpoint_check)
                .head(endpoint_filter::project_endpoint_check)
                .delete(endpoint_filter::project_endpoint_remove),
        )
        .route(
            "/OS-EP-FILTER/projects/{id}/endpoints",
            get(endpoint_filter::project_endpoints_list),
        )
        .route(
            "/OS-EP-FILTER/projects/{id}/endpoint_groups",
            get(endpoint_filter::project_groups),
        )
        .route(
            "/OS-EP-FILTER/endpoints/{id}/projects",
            get(endpoint_filter::endpoint_projects_list),
        )
        .route(
            "/OS-EP-FILTER/endpoint_groups",
            get(endpoint_filter::groups_list).post(endpoint_filter::group_create),
        )
        .route(
            "/OS-EP-FILTER/endpoint_groups/{id}",
            get(endpoint_filter::group_show)
                .head(endpoint_filter::group_show)
                .patch(endpoint_filter::group_update)
                .delete(endpoint_filter::group_delete),
        )
        .route(
            "/OS-EP-FILTER/endpoint_groups/{id}/endpoints",
            get(endpoint_filter::group_endpoints),
        )
        .route(
            "/OS-EP-FILTER/endpoint_groups/{id}/projects",
            get(endpoint_filter::group_projects),
        )
        .route(
            "/OS-EP-FILTER/endpoint_groups/{id}/projects/{project}",
            put(endpoint_filter::group_project_add)
                .get(endpoint_filter::group_project_check)
                .head(endpoint_filter::group_project_check)
                .delete(endpoint_filter::group_project_remove),
        )
        .route(
            "/OS-FEDERATION/identity_providers",
            get(federation::idp_list),
        )
        .route(
            "/OS-FEDERATION/identity_providers/{id}",
            get(federation::idp_show)
                .put(federation::idp_create)
                .patch(federation::idp_update)
                .delete(federation::idp_delete),
        )
        .route(
            "/OS-FEDERATION/identity_providers/{id}/protocols",
            get(federation::protocol_list),
        )
        .route(
            "/OS-FEDERATION/identity_providers/{id}/protocols/{protocol}",
            get(federation::protocol_show)
                .put(federation::protocol_create)
                .patch(federation::protocol_update)
                .delete(federation::protocol_delete),
        )
        .route("/OS-FEDERATION/mappings", get(federation::mapping_list))
        .route(
            "/OS-FEDERATION/mappings/{id}",
            get(federation::mapping_show)
                .put(federation::mapping_create)
                .patch(federation::mapping_update)
                .delete(federation::mapping_delete),
        )
        .route("/OS-FEDERATION/service_providers", get(federation::sp_list))
        .route(
            "/OS-FEDERATION/service_providers/{id}",
            get(federation::sp_show)
                .put(federation::sp_create)
                .patch(federation::sp_update)
                .delete(federation::sp_delete),
        )
        .route("/limits", get(limits::list).post(limits::create))
        .route("/limits/model", get(limits::model))
        .route(
            "/limits/{id}",
            get(limits::show)
                .patch(limits::update)
                .delete(limits::delete),
        )
        .route(
            "/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/credentials/{id}",
            get(credentials::show)
                .patch(credentials::update)
                .delete(credentials::delete),
        )
        .fallback(not_found);
    let mut v3 = v3;
    for target in ["projects", "domains"] {
        for actor in ["users", "groups"] {
            v3 = v3
                .route(&format!("/{target}/{{id}}/{actor}/{{actor}}/roles"), get(grants::list))
                .route(
                    &format!("/{target}/{{id}}/{actor}/{{actor}}/roles/{{role}}"),
                    put(grants::add)
                        .head(grants::check)
                        .get(grants::check)
                        .delete(grants::remove),
                )
                .route(
                    &format!(
                        "/OS-INHERIT/{target}/{{id}}/{actor}/{{actor}}/roles/{{role}}/inherited_to_projects"
                    ),
                    put(grants::add)
                        .head(grants::check)
                        .get(grants::check)
                        .delete(grants::remove),
                )
                .route(
                    &format!("/OS-INHERIT/{target}/{{id}}/{actor}/{{actor}}/roles/inherited_to_projects"),
                    get(grants::list),
                );
        }
    }
    for actor in ["users", "groups"] {
        v3 = v3
            .route(
                &format!("/system/{actor}/{{actor}}/roles"),
                get(grants::list),
            )
            .route(
                &format!("/system/{actor}/{{actor}}/roles/{{role}}"),
                put(grants::add)
                    .head(grants::check)
                    .get(grants::check)
                    .delete(grants::remove),
            );
    }
    Router::new()
        .route("/", get(auth::versions))
        .nest("/v3", v3)
        .route("/v3/", get(auth::version))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Error {
    Error::NotFound {
        kind: "resource",
        id: uri.path().to_string(),
    }
}
