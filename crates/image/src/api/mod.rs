//! The image HTTP API (Glance v2): routes and thin handlers. Handlers parse
//! and validate input, check policy, call the store, and render.

mod actions;
mod data;
mod images;
mod info;
mod members;
mod metadefs;
mod patch;
mod tasks;
mod versions;

use std::sync::Arc;

use api_common::Target;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::db::images::Image;
use crate::error::{Error, Result};
use crate::{Caller, ImageService};

pub type State = axum::extract::State<Arc<ImageService>>;

/// The authenticated caller, from `X-Auth-Token`.
pub struct Auth(pub Caller);

impl FromRequestParts<Arc<ImageService>> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ImageService>) -> Result<Self> {
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

/// The request id (for task records).
pub(crate) fn request_id(parts: &axum::http::HeaderMap) -> Option<String> {
    parts
        .get(api_common::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An image as the caller may see it, with the policy target built for it.
pub(crate) struct Seen {
    pub image: Image,
    pub target: Target,
}

impl ImageService {
    /// The policy target of an image for `caller`: the image's owner as
    /// `project_id`, and the caller's project as `member_id` when the image is
    /// shared with it.
    pub(crate) async fn target(&self, caller: &Caller, img: &Image) -> Result<Target> {
        let r = &img.row;
        let mut t = Target::new()
            .with("id", r.id.clone())
            .with("visibility", r.visibility.clone())
            .with_opt("project_id", r.owner.clone())
            .with_opt("owner", r.owner.clone());
        if let Some(p) = caller.project() {
            if r.owner.as_deref() != Some(p)
                && crate::db::members::member_get(&self.db, &r.id, p)
                    .await?
                    .is_some()
            {
                t.insert("member_id", p);
            }
        }
        Ok(t)
    }

    /// Finds an image the caller may see (404 otherwise): admins see every
    /// image; others see public and community images, their own, and shared
    /// images they are a member of; then the get_image policy applies.
    pub(crate) async fn seen(&self, caller: &Caller, id: &str) -> Result<Seen> {
        let image = crate::db::images::image_get(&self.db, id)
            .await?
            .ok_or_else(|| Error::image_not_found(id))?;
        let target = self.target(caller, &image).await?;
        let r = &image.row;
        let visible = caller.is_admin
            || r.owner.is_none()
            || matches!(r.visibility.as_str(), "public" | "community")
            || (caller.project().is_some() && r.owner.as_deref() == caller.project())
            || (r.visibility == "shared" && target.contains("member_id"));
        if !visible || !self.allowed(caller, "get_image", &target) {
            return Err(Error::image_not_found(id));
        }
        Ok(Seen { image, target })
    }

    /// Enforces `rule` on a visible image: 403, or 404 when
    /// the caller may not even see it.
    pub(crate) fn enforce(&self, caller: &Caller, seen: &Seen, rule: &str) -> Result<()> {
        if self.allowed(caller, rule, &seen.target) {
            return Ok(());
        }
        if !self.allowed(caller, "get_image", &seen.target) {
            return Err(Error::image_not_found(&seen.image.row.id));
        }
        Err(Error::forbidden(format!(
            "You are not authorized to complete {rule} action."
        )))
    }
}

/// Parses a raw query string keeping repeated keys in order.
pub(crate) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Every image route, relative to `/image`.
pub fn router(state: Arc<ImageService>) -> Router {
    let v2 = Router::new()
        .route("/images", get(images::list).post(images::create))
        .route(
            "/images/{id}",
            get(images::show)
                .patch(patch::update)
                .delete(images::delete),
        )
        .route(
            "/images/{id}/file",
            put(data::upload)
                .get(data::download)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/images/{id}/stage",
            put(data::stage).layer(DefaultBodyLimit::disable()),
        )
        .route("/images/{id}/import", post(data::import))
        .route(
            "/images/{id}/tags/{tag}",
            put(images::tag_add).delete(images::tag_remove),
        )
        .route(
            "/images/{id}/members",
            get(members::list).post(members::create),
        )
        .route(
            "/images/{id}/members/{member}",
            get(members::show)
                .put(members::update)
                .delete(members::delete),
        )
        .route("/images/{id}/actions/deactivate", post(actions::deactivate))
        .route("/images/{id}/actions/reactivate", post(actions::reactivate))
        .route("/images/{id}/tasks", get(tasks::image_tasks))
        .route("/stores/{store}/{id}", delete(data::delete_from_store))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/schemas/image", get(info::schema_image))
        .route("/schemas/images", get(info::schema_images))
        .route("/schemas/member", get(info::schema_member))
        .route("/schemas/members", get(info::schema_members))
        .route("/schemas/task", get(info::schema_task))
        .route("/schemas/tasks", get(info::schema_tasks))
        .route(
            "/metadefs/namespaces",
            get(metadefs::namespace_list).post(metadefs::namespace_create),
        )
        .route(
            "/metadefs/namespaces/{ns}",
            get(metadefs::namespace_show)
                .put(metadefs::namespace_update)
                .delete(metadefs::namespace_delete),
        )
        .route(
            "/metadefs/namespaces/{ns}/objects",
            get(metadefs::object_list)
                .post(metadefs::object_create)
                .delete(metadefs::objects_delete_all),
        )
        .route(
            "/metadefs/namespaces/{ns}/objects/{name}",
            get(metadefs::object_show)
                .put(metadefs::object_update)
                .delete(metadefs::object_delete),
        )
        .route(
            "/metadefs/namespaces/{ns}/properties",
            get(metadefs::property_list)
                .post(metadefs::property_create)
                .delete(metadefs::properties_delete_all),
        )
        .route(
            "/metadefs/namespaces/{ns}/properties/{name}",
            get(metadefs::property_show)
                .put(metadefs::property_update)
                .delete(metadefs::property_delete),
        )
        .route(
            "/metadefs/namespaces/{ns}/tags",
            get(metadefs::tag_list)
                .post(metadefs::tags_create)
                .delete(metadefs::tags_delete_all),
        )
        .route(
            "/metadefs/namespaces/{ns}/tags/{name}",
            get(metadefs::tag_show)
                .post(metadefs::tag_create)
                .put(metadefs::tag_update)
                .delete(metadefs::tag_delete),
        )
        .route(
            "/metadefs/namespaces/{ns}/resource_types",
            get(metadefs::association_list).post(metadefs::association_create),
        )
        .route(
            "/metadefs/namespaces/{ns}/resource_types/{name}",
            delete(metadefs::association_delete),
        )
        .route("/metadefs/resource_types", get(metadefs::resource_types))
        .route("/schemas/metadefs/{name}", get(metadefs::schema))
        .route("/info/import", get(info::import))
        .route("/info/stores", get(info::stores))
        .route("/info/stores/detail", get(info::stores_detail))
        .route("/info/usage", get(info::usage))
        .fallback(not_found);
    Router::new()
        .route("/", get(versions::multiple_choices))
        .route("/versions", get(versions::list))
        .route("/v2", get(versions::multiple_choices))
        .route("/v2/", get(versions::multiple_choices))
        .nest("/v2", v2)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Error {
    Error::NotFound("The resource could not be found.".into())
}
