//! Credentials (`ec2`, `cert`, `totp` and other blobs stored for a user).

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sha2::Digest;

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::credentials::{self as db, CredentialRow};
use crate::error::{Error, Result};
use crate::fernet::Keys;
use crate::render;

const CORE: &[&str] = &["id", "user_id", "project_id", "type", "blob"];

fn target(c: &CredentialRow) -> api_common::Target {
    api_common::Target::new()
        .with("target.credential.user_id", c.user_id.clone())
        .with_opt("target.credential.project_id", c.project_id.clone())
}

/// The row as stored: the blob sealed with the credential keys.
fn sealed(keys: &Keys, mut c: CredentialRow) -> CredentialRow {
    c.encrypted_blob = keys.seal(c.encrypted_blob.as_bytes());
    c
}

/// The row as shown: the blob opened.
fn opened(keys: &Keys, mut c: CredentialRow) -> Result<CredentialRow> {
    let plain = keys.open(&c.encrypted_blob).ok_or_else(|| {
        Error::Internal(format!(
            "credential {} cannot be decrypted with the current keys",
            c.id
        ))
    })?;
    c.encrypted_blob = String::from_utf8(plain)
        .map_err(|_| Error::Internal(format!("credential {} is not UTF-8", c.id)))?;
    Ok(c)
}

fn json_of(base: &str, c: &CredentialRow) -> Value {
    let mut v = json!({
        "id": c.id,
        "user_id": c.user_id,
        "project_id": c.project_id,
        "type": c.kind,
        "blob": c.encrypted_blob,
        "links": render::links(base, &format!("credentials/{}", c.id)),
    });
    if let (Value::Object(m), Ok(Value::Object(e))) =
        (&mut v, serde_json::from_str::<Value>(&c.extra))
    {
        for (k, x) in e {
            m.entry(k).or_insert(x);
        }
    }
    v
}

/// ec2 credentials: the blob is JSON with an access key, the project is
/// required, and the id is the SHA-256 of the access key (as upstream).
fn ec2_id(kind: &str, blob: &str, project: Option<&String>) -> Result<Option<String>> {
    if kind != "ec2" {
        return Ok(None);
    }
    if project.is_none() {
        return Err(Error::invalid(
            "Invalid input for field 'project_id': ec2 credentials need a project.",
        ));
    }
    let v: Value = serde_json::from_str(blob).map_err(|_| {
        Error::invalid(
            "Invalid input for field 'blob': ec2 blobs are JSON with 'access' and 'secret'",
        )
    })?;
    let access = v
        .get("access")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("Invalid input for field 'blob': 'access' is required"))?;
    Ok(Some(hex(&sha2::Sha256::digest(access.as_bytes()))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The credential with its blob decrypted.
async fn get_or_404(state: &State, keys: &Keys, id: &str) -> Result<CredentialRow> {
    let c = db::credential_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("credential", id))?;
    opened(keys, c)
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let creds = caller.0.creds();
    let mut items = Vec::new();
    for c in db::credential_list(&state.db).await? {
        if q.get("user_id").is_none_or(|u| c.user_id == *u)
            && q.get("type").is_none_or(|t| c.kind == *t)
            && state.allowed(&creds, "identity:list_credentials", &target(&c))
        {
            items.push(json_of(&base, &opened(&caller.1.credential_keys, c)?));
        }
    }
    Ok(Json(input::list(
        "credentials",
        items,
        format!("{base}/v3/credentials"),
        state.cfg.list_limit,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let c = get_or_404(&state, &caller.1.credential_keys, &id).await?;
    state.authorize(&caller.0, "identity:get_credential", &target(&c))?;
    Ok(Json(json!({ "credential": json_of(&base, &c) })))
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let m = input::entity(&body, "credential")?;
    let user_id = input::req_name(&m, "user_id", 64)?;
    let kind = input::req_name(&m, "type", 255)?;
    let blob = input::opt_str(&m, "blob", 65_535)?
        .ok_or_else(|| Error::invalid("'blob' is a required property"))?;
    let project_id = input::opt_str(&m, "project_id", 64)?;
    let id = ec2_id(&kind, &blob, project_id.as_ref())?.unwrap_or_else(input::new_id);
    let c = CredentialRow {
        id,
        user_id,
        project_id,
        kind,
        encrypted_blob: blob,
        extra: input::extra(&m, CORE, "{}"),
    };
    state.authorize(&caller.0, "identity:create_credential", &target(&c))?;
    if crate::db::users::user_get(&state.db, &c.user_id)
        .await?
        .is_none()
    {
        return Err(Error::not_found("user", c.user_id.clone()));
    }
    let mut tx = state.db.write().await?;
    db::credential_create(&mut tx, &sealed(&caller.1.credential_keys, c.clone()))
        .await
        .map_err(|e| input::conflict(e, "credential - Duplicate entry"))?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "credential": json_of(&base, &c) })),
    ))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut c = get_or_404(&state, &caller.1.credential_keys, &id).await?;
    state.authorize(&caller.0, "identity:update_credential", &target(&c))?;
    let m = input::entity(&body, "credential")?;
    if let Some(u) = input::name(&m, "user_id", 64)? {
        c.user_id = u;
    }
    if m.contains_key("project_id") {
        c.project_id = input::opt_str(&m, "project_id", 64)?;
    }
    if let Some(t) = input::name(&m, "type", 255)? {
        c.kind = t;
    }
    if let Some(b) = input::opt_str(&m, "blob", 65_535)? {
        c.encrypted_blob = b;
    }
    if ec2_id(&c.kind, &c.encrypted_blob, c.project_id.as_ref())?.is_some_and(|new| new != c.id) {
        return Err(Error::invalid(
            "The access key of an ec2 credential cannot change.",
        ));
    }
    c.extra = input::extra(&m, CORE, &c.extra);
    state.authorize(&caller.0, "identity:update_credential", &target(&c))?;
    let mut tx = state.db.write().await?;
    db::credential_update(&mut tx, &sealed(&caller.1.credential_keys, c.clone())).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "credential": json_of(&base, &c) })))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let c = db::credential_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("credential", id.clone()))?;
    state.authorize(&caller.0, "identity:delete_credential", &target(&c))?;
    let mut tx = state.db.write().await?;
    db::credential_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
