//! Image members: sharing an image with other projects.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{Auth, Seen, State};
use crate::db::members::{self as db, MemberRow};
use crate::error::{Error, Result};
use crate::{render, Caller, ImageService};

fn body_field(body: &[u8], field: &str, missing: &str, form: &str) -> Result<String> {
    if body.is_empty() {
        return Err(Error::bad("Body expected in request."));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::bad(format!("Malformed JSON in request body: {e}")))?;
    match v.get(field) {
        None => Err(Error::bad(missing.to_string())),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::bad(form.to_string())),
    }
}

impl ImageService {
    /// The membership `member` of a shared image, as the caller may see it:
    /// owners and admins see every member, a member project only its own.
    async fn visible_member(
        &self,
        caller: &Caller,
        seen: &Seen,
        member: &str,
    ) -> Result<MemberRow> {
        let r = &seen.image.row;
        let owner = caller.project().is_some() && r.owner.as_deref() == caller.project();
        let not_found = || {
            Error::NotFound(format!(
                "{member} not found in the member list of the image {}.",
                r.id
            ))
        };
        if !(caller.is_admin || owner || caller.project() == Some(member)) {
            return Err(not_found());
        }
        db::member_get(&self.db, &r.id, member)
            .await?
            .ok_or_else(not_found)
    }
}

pub async fn create(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let member = body_field(
        &body,
        "member",
        "Member to be added not specified",
        "Expected a member in the form: {\"member\": \"image_id\"}",
    )?;
    if member.trim().is_empty() {
        return Err(Error::bad("Member can't be empty"));
    }
    if member.chars().count() > 255 {
        return Err(Error::bad("Member is too long"));
    }
    let seen = state.seen(&caller, &id).await?;
    let denied = || Error::forbidden(format!("Not allowed to create members for image {id}."));
    if seen.image.row.visibility != "shared" {
        return Err(denied());
    }
    state
        .enforce(&caller, &seen, "add_member")
        .map_err(|e| match e {
            Error::Forbidden(_) => denied(),
            other => other,
        })?;
    let now = store::now_micros();
    let m = MemberRow {
        image_id: id.clone(),
        member: member.clone(),
        status: "pending".into(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.write().await?;
    let max = state.cfg.image_member_quota;
    if max >= 0 {
        let n = db::member_count(&mut tx, &id).await?;
        if n + 1 > max {
            return Err(Error::TooLarge(format!(
                "Image member limit exceeded for image {id}: The limit has been exceeded on the \
                 number of allowed image members for this image. Attempted: {}, Maximum: {max}",
                n + 1
            )));
        }
    }
    db::member_create(&mut tx, &m).await.map_err(|e| {
        if store::is_unique_violation(&e) {
            Error::conflict(format!("Member {member} is duplicated for image {id}"))
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    Ok(Json(render::member(&m)))
}

pub async fn list(state: State, Auth(caller): Auth, Path(id): Path<String>) -> Result<Json<Value>> {
    let seen = state.seen(&caller, &id).await?;
    if seen.image.row.visibility != "shared" {
        return Err(Error::forbidden(format!(
            "Not allowed to list members for image {id}: Only shared images have members."
        )));
    }
    state
        .enforce(&caller, &seen, "get_members")
        .map_err(|e| match e {
            Error::Forbidden(m) => {
                Error::forbidden(format!("Not allowed to list members for image {id}: {m}"))
            }
            other => other,
        })?;
    let r = &seen.image.row;
    let owner = caller.project().is_some() && r.owner.as_deref() == caller.project();
    let members: Vec<Value> = db::member_list(&state.db, &id)
        .await?
        .iter()
        .filter(|m| caller.is_admin || owner || caller.project() == Some(m.member.as_str()))
        .map(render::member)
        .collect();
    Ok(Json(
        json!({ "members": members, "schema": "/v2/schemas/members" }),
    ))
}

pub async fn show(
    state: State,
    Auth(caller): Auth,
    Path((id, member)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let seen = state.seen(&caller, &id).await?;
    if seen.image.row.visibility != "shared" {
        return Err(Error::NotFound("Only shared images have members.".into()));
    }
    if !state.allowed(&caller, "get_member", &seen.target) {
        return Err(Error::NotFound(format!(
            "{member} not found in the member list of the image {id}."
        )));
    }
    let m = state.visible_member(&caller, &seen, &member).await?;
    Ok(Json(render::member(&m)))
}

pub async fn update(
    state: State,
    Auth(caller): Auth,
    Path((id, member)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    let status = body_field(
        &body,
        "status",
        "Status not specified",
        "Expected a status in the form: {\"status\": \"status\"}",
    )?;
    if !["pending", "accepted", "rejected"].contains(&status.as_str()) {
        return Err(Error::bad(format!(
            "Incorrect request: Invalid status '{status}': it must be one of pending, accepted, rejected"
        )));
    }
    let seen = state.seen(&caller, &id).await?;
    let denied = || Error::forbidden(format!("Not allowed to update members for image {id}."));
    if seen.image.row.visibility != "shared" {
        return Err(denied());
    }
    let mut m = state.visible_member(&caller, &seen, &member).await?;
    state
        .enforce(&caller, &seen, "modify_member")
        .map_err(|e| match e {
            Error::Forbidden(_) => denied(),
            other => other,
        })?;
    m.status = status;
    m.updated_at = store::now_micros();
    let mut tx = state.db.write().await?;
    if !db::member_update(&mut tx, &m).await? {
        return Err(Error::NotFound(format!(
            "{member} not found in the member list of the image {id}."
        )));
    }
    tx.commit().await?;
    Ok(Json(render::member(&m)))
}

pub async fn delete(
    state: State,
    Auth(caller): Auth,
    Path((id, member)): Path<(String, String)>,
) -> Result<StatusCode> {
    let seen = state.seen(&caller, &id).await?;
    let denied = || Error::forbidden(format!("Not allowed to delete members for image {id}."));
    if seen.image.row.visibility != "shared" {
        return Err(denied());
    }
    state.visible_member(&caller, &seen, &member).await?;
    state
        .enforce(&caller, &seen, "delete_member")
        .map_err(|e| match e {
            Error::Forbidden(_) => denied(),
            other => other,
        })?;
    let mut tx = state.db.write().await?;
    db::member_delete(&mut tx, &id, &member).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
