//! Version documents, tokens and the /v3/auth/* listings.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, query_bool};
use super::{Base, Caller, State};
use crate::db::{assignments, domains, projects};
use crate::error::{Error, Result};
use crate::render;

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{ "rel": "self", "href": format!("{base}/v3/") }],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"
        }]
    })
}

/// GET /identity: the versions this service offers.
pub async fn versions(Base(base): Base) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({ "versions": { "values": [version_doc(&base)] } })),
    )
        .into_response()
}

/// GET /identity/v3.
pub async fn version(Base(base): Base) -> Json<Value> {
    Json(json!({ "version": version_doc(&base) }))
}

fn subject(headers: &HeaderMap) -> Result<&str> {
    headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid("X-Subject-Token header is required"))
}

fn with_subject(token: &str, status: StatusCode, body: Option<Value>) -> Result<Response> {
    let value = HeaderValue::from_str(token)
        .map_err(|_| Error::Internal("token is not a valid header".into()))?;
    let mut res = match body {
        Some(b) => (status, Json(b)).into_response(),
        None => status.into_response(),
    };
    res.headers_mut().insert("x-subject-token", value);
    Ok(res)
}

/// POST /v3/auth/tokens.
pub async fn issue(state: State, Query(q): Query<input::Query>, body: Bytes) -> Result<Response> {
    let body: Value = api_common::http::parse_json(&body)?;
    let issued = state.authenticate(&body).await?;
    let catalog = (!query_bool(&q, "nocatalog").unwrap_or(false)).then_some(&issued.snap.catalog);
    with_subject(
        &issued.token,
        StatusCode::CREATED,
        Some(render::token(&issued.ctx, catalog)),
    )
}

/// Validates the subject token for a caller allowed to.
async fn validated_subject(
    state: &State,
    caller: &Caller,
    headers: &HeaderMap,
    q: &input::Query,
) -> Result<(String, std::sync::Arc<api_common::AuthContext>)> {
    let token = subject(headers)?.to_string();
    let allow_expired = query_bool(q, "allow_expired").unwrap_or(false);
    let ctx = state
        .validate_in(&caller.1, &token, allow_expired)
        .await
        .map_err(|e| match e {
            Error::Internal(_) => e,
            _ => Error::not_found("token", "the subject token is invalid or has expired"),
        })?;
    let target = api_common::Target::new().with("target.token.user_id", ctx.user_id.clone());
    state.authorize(&caller.0, "identity:validate_token", &target)?;
    Ok((token, ctx))
}

/// GET /v3/auth/tokens.
pub async fn validate(
    state: State,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<input::Query>,
) -> Result<Response> {
    let (token, ctx) = validated_subject(&state, &caller, &headers, &q).await?;
    let catalog = (!query_bool(&q, "nocatalog").unwrap_or(false)).then_some(&caller.1.catalog);
    with_subject(&token, StatusCode::OK, Some(render::token(&ctx, catalog)))
}

/// HEAD /v3/auth/tokens.
pub async fn check(
    state: State,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<input::Query>,
) -> Result<Response> {
    let (token, _) = validated_subject(&state, &caller, &headers, &q).await?;
    with_subject(&token, StatusCode::OK, None)
}

/// DELETE /v3/auth/tokens.
pub async fn revoke(state: State, caller: Caller, headers: HeaderMap) -> Result<StatusCode> {
    let token = subject(&headers)?;
    let ctx = state
        .validate_in(&caller.1, token, false)
        .await
        .map_err(|e| match e {
            Error::Internal(_) => e,
            _ => Error::not_found("token", "the subject token is invalid or has expired"),
        })?;
    let target = api_common::Target::new().with("target.token.user_id", ctx.user_id.clone());
    state.authorize(&caller.0, "identity:revoke_token", &target)?;
    state.revoke_token(&ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v3/auth/catalog.
pub async fn catalog(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:get_auth_catalog",
        &api_common::Target::new(),
    )?;
    if matches!(caller.0.scope, api_common::Scope::Unscoped) {
        return Err(Error::Forbidden(
            "A scoped token is required to list the catalog.".into(),
        ));
    }
    Ok(Json(json!({
        "catalog": caller.1.catalog,
        "links": { "self": format!("{base}/v3/auth/catalog"), "previous": null, "next": null }
    })))
}

/// Projects the user holds a role on (direct, through groups, or inherited).
pub(crate) async fn user_projects(
    state: &State,
    user_id: &str,
) -> Result<Vec<projects::ProjectRow>> {
    let mut actors = vec![user_id.to_string()];
    actors.extend(
        crate::db::groups::groups_of_user(&state.db, user_id)
            .await?
            .into_iter()
            .map(|g| g.id),
    );
    let rows = assignments::assignments_of_actors(&state.db, &actors).await?;
    let mut ids = std::collections::BTreeSet::new();
    for r in &rows {
        match assignments::Kind::parse(&r.kind) {
            Some(assignments::Kind::UserProject | assignments::Kind::GroupProject) => {
                ids.insert(r.target_id.clone());
                if store::flag(r.inherited) {
                    for p in projects::project_subtree(&state.db, &r.target_id).await? {
                        ids.insert(p.id);
                    }
                    ids.remove(&r.target_id);
                }
            }
            Some(assignments::Kind::UserDomain | assignments::Kind::GroupDomain)
                if store::flag(r.inherited) =>
            {
                let f = projects::ProjectFilter {
                    domain_id: Some(r.target_id.clone()),
                    ..Default::default()
                };
                for p in projects::project_list(&state.db, &f).await? {
                    ids.insert(p.id);
                }
            }
            _ => {}
        }
    }
    let f = projects::ProjectFilter {
        ids: Some(ids.into_iter().collect()),
        ..Default::default()
    };
    Ok(projects::project_list(&state.db, &f).await?)
}

/// GET /v3/auth/projects: projects the caller can scope to.
pub async fn projects(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:get_auth_projects",
        &api_common::Target::new(),
    )?;
    let list = user_projects(&state, &caller.0.user_id).await?;
    let mut enabled_domains = std::collections::HashMap::new();
    let mut out = Vec::new();
    for p in list.iter().filter(|p| store::flag(p.enabled)) {
        let ok = match enabled_domains.get(&p.domain_id) {
            Some(ok) => *ok,
            None => {
                let ok = domains::domain_get(&state.db, &p.domain_id)
                    .await?
                    .is_some_and(|d| store::flag(d.enabled));
                enabled_domains.insert(p.domain_id.clone(), ok);
                ok
            }
        };
        if ok {
            out.push(render::project(&base, p, &[]));
        }
    }
    Ok(Json(input::list(
        "projects",
        out,
        format!("{base}/v3/auth/projects"),
        None,
    )))
}

/// GET /v3/auth/domains: domains the caller can scope to.
pub async fn domains(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:get_auth_domains",
        &api_common::Target::new(),
    )?;
    let mut actors = vec![caller.0.user_id.clone()];
    actors.extend(
        crate::db::groups::groups_of_user(&state.db, &caller.0.user_id)
            .await?
            .into_iter()
            .map(|g| g.id),
    );
    let rows = assignments::assignments_of_actors(&state.db, &actors).await?;
    let ids: std::collections::BTreeSet<String> = rows
        .iter()
        .filter(|r| {
            !store::flag(r.inherited)
                && matches!(
                    assignments::Kind::parse(&r.kind),
                    Some(assignments::Kind::UserDomain | assignments::Kind::GroupDomain)
                )
        })
        .map(|r| r.target_id.clone())
        .collect();
    let mut out = Vec::new();
    for id in ids {
        if let Some(d) = domains::domain_get(&state.db, &id).await? {
            if store::flag(d.enabled) {
                out.push(render::domain(&base, &d));
            }
        }
    }
    Ok(Json(input::list(
        "domains",
        out,
        format!("{base}/v3/auth/domains"),
        None,
    )))
}

/// GET /v3/auth/system.
pub async fn system(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:get_auth_system",
        &api_common::Target::new(),
    )?;
    let mut actors = vec![caller.0.user_id.clone()];
    actors.extend(
        crate::db::groups::groups_of_user(&state.db, &caller.0.user_id)
            .await?
            .into_iter()
            .map(|g| g.id),
    );
    let rows = assignments::assignments_for(&state.db, &actors, &[assignments::SYSTEM.to_string()])
        .await?;
    let system = if rows.is_empty() {
        json!([])
    } else {
        json!([{ "all": true }])
    };
    Ok(Json(json!({
        "system": system,
        "links": { "self": format!("{base}/v3/auth/system"), "previous": null, "next": null }
    })))
}
