//! Key pairs (`/os-keypairs`): list, show, create (generated or
//! imported), delete, as Nova's v2.1 API serves them at 2.1 to 2.79:
//! `type` from 2.2 (and 201/204 instead of 200/202), `user_id` for admins
//! from 2.10, paging from 2.35, strict query strings from 2.75.

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::flavors::{check, query_extras, MAX_LIMIT};
use super::{base_url, query_pairs, Auth, Body, Mv, State};
use crate::db::keypairs::{self as db, Keypair};
use crate::error::{Error, Result};
use crate::{keygen, quota, Compute};

const NAME_PATTERN: &str = r"^[_\- a-zA-Z0-9]+$";

fn target(user_id: &str) -> api_common::Target {
    api_common::Target::new().with("user_id", user_id)
}

/// The first `user_id` of the query, honoured from 2.10 on.
fn query_user(q: &[(String, String)], mv: Mv) -> Option<&str> {
    if !mv.at_least(10) {
        return None;
    }
    q.iter()
        .find(|(k, _)| k == "user_id")
        .map(|(_, v)| v.as_str())
}

fn check_query(q: &[(String, String)], mv: Mv, paging: bool) -> Result<()> {
    if paging && mv.at_least(35) {
        let limits: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "limit")
            .map(|(_, v)| v.as_str())
            .collect();
        check::query_limit("limit", &limits)?;
    }
    if mv.at_least(75) {
        if paging {
            query_extras(q, &["user_id", "limit", "marker"])?;
        } else {
            query_extras(q, &["user_id"])?;
        }
    }
    Ok(())
}

fn created_at(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

fn not_found(user_id: &str, name: &str) -> Error {
    Error::not_found(format!("Keypair {name} not found for user {user_id}"))
}

pub async fn index(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    let q = query_pairs(raw.as_deref());
    check_query(&q, mv, true)?;
    let user_id = query_user(&q, mv).unwrap_or(caller.user()).to_string();
    state.authorize(
        &caller,
        "os_compute_api:os-keypairs:index",
        &target(&user_id),
    )?;
    let last = |key: &str| {
        q.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let (limit, marker) = if mv.at_least(35) {
        let limit = last("limit")
            .map(|l| l.parse::<i64>().unwrap_or(i64::MAX).min(MAX_LIMIT))
            .unwrap_or(MAX_LIMIT);
        (Some(limit), last("marker"))
    } else {
        (None, None)
    };
    if let Some(m) = marker {
        if db::keypair_get(&state.db, &user_id, m).await?.is_none() {
            return Err(Error::bad(format!("Marker {m} could not be found.")));
        }
    }
    let keys = db::keypair_list(&state.db, &user_id, marker, limit).await?;
    let items: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut v = json!({
                "name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint,
            });
            if mv.at_least(2) {
                v["type"] = json!(k.kind);
            }
            json!({ "keypair": v })
        })
        .collect();
    let mut body = json!({ "keypairs": items });
    if mv.at_least(35) {
        let max_items = last("limit")
            .map(|l| l.parse::<i64>().unwrap_or(i64::MAX).min(MAX_LIMIT))
            .unwrap_or(MAX_LIMIT);
        if let Some(k) = keys.last() {
            if max_items > 0 && keys.len() as i64 == max_items {
                let base = base_url(&state, &headers);
                body["keypairs_links"] = json!([{
                    "rel": "next",
                    "href": format!("{base}/v2.1/os-keypairs?{}", check::next_query(&q, &k.name)),
                }]);
            }
        }
    }
    Ok(Json(body))
}

fn show_body(k: &Keypair, mv: Mv) -> Value {
    let mut v = json!({
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "user_id": k.user_id,
        "created_at": created_at(k.created_at),
        "deleted": false,
        "deleted_at": null,
        "updated_at": null,
        "id": k.id,
    });
    if mv.at_least(2) {
        v["type"] = json!(k.kind);
    }
    json!({ "keypair": v })
}

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    let q = query_pairs(raw.as_deref());
    check_query(&q, mv, false)?;
    let user_id = query_user(&q, mv).unwrap_or(caller.user()).to_string();
    state.authorize(
        &caller,
        "os_compute_api:os-keypairs:show",
        &target(&user_id),
    )?;
    let k = db::keypair_get(&state.db, &user_id, &name)
        .await?
        .ok_or_else(|| not_found(&user_id, &name))?;
    Ok(Json(show_body(&k, mv)))
}

pub async fn delete(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode> {
    let q = query_pairs(raw.as_deref());
    check_query(&q, mv, false)?;
    let user_id = query_user(&q, mv).unwrap_or(caller.user()).to_string();
    state.authorize(
        &caller,
        "os_compute_api:os-keypairs:delete",
        &target(&user_id),
    )?;
    let mut tx = state.db.write().await?;
    if !db::keypair_delete(&mut tx, &user_id, &name).await? {
        return Err(not_found(&user_id, &name));
    }
    tx.commit().await?;
    Ok(if mv.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

struct CreateReq {
    name: String,
    kind: String,
    public_key: Option<String>,
    user_id: Option<String>,
}

/// Nova's `keypair_name_special_chars`: the `name` format, then the
/// character set.
fn check_name(v: &Value) -> Result<String> {
    check::type_check(v, &["string"]).map_err(|m| check::field("name", v, m))?;
    let s = v.as_str().unwrap_or_default();
    check::name_format(s)?;
    check::min_length(s, 1).map_err(|m| check::field("name", v, m))?;
    check::max_length(s, 255).map_err(|m| check::field("name", v, m))?;
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ')
    {
        return Err(check::field("name", v, check::no_match(s, NAME_PATTERN)));
    }
    Ok(s.trim().to_string())
}

fn parse_create(body: &Value, mv: Mv) -> Result<CreateReq> {
    let Some(top) = body.as_object() else {
        return Err(Error::bad(check::not_type(body, &["object"])));
    };
    let mut out = None;
    if let Some(kv) = top.get("keypair") {
        let Some(k) = kv.as_object() else {
            return Err(check::field(
                "keypair",
                kv,
                check::not_type(kv, &["object"]),
            ));
        };
        let mut req = CreateReq {
            name: String::new(),
            kind: "ssh".into(),
            public_key: None,
            user_id: None,
        };
        if let Some(v) = k.get("name") {
            req.name = check_name(v)?;
        }
        if mv.at_least(2) {
            if let Some(v) = k.get("type") {
                check::type_check(v, &["string"]).map_err(|m| check::field("type", v, m))?;
                let opts = [json!("ssh"), json!("x509")];
                if !opts.contains(v) {
                    return Err(check::field("type", v, check::not_one_of(v, &opts)));
                }
                req.kind = v.as_str().unwrap_or("ssh").to_string();
            }
        }
        if let Some(v) = k.get("public_key") {
            check::type_check(v, &["string"]).map_err(|m| check::field("public_key", v, m))?;
            req.public_key = v.as_str().map(str::to_string);
        }
        if mv.at_least(10) {
            if let Some(v) = k.get("user_id") {
                check::type_check(v, &["string"]).map_err(|m| check::field("user_id", v, m))?;
                req.user_id = v.as_str().map(str::to_string);
            }
        }
        if !k.contains_key("name") {
            return Err(check::field("keypair", kv, check::required("name")));
        }
        let mut allowed = vec!["name", "public_key"];
        if mv.at_least(2) {
            allowed.push("type");
        }
        if mv.at_least(10) {
            allowed.push("user_id");
        }
        let extra = check::extras(k, &allowed);
        if !extra.is_empty() {
            return Err(check::field("keypair", kv, check::additional(&extra)));
        }
        out = Some(req);
    }
    let Some(out) = out else {
        return Err(Error::bad(check::required("keypair")));
    };
    let extra = check::extras(top, &["keypair"]);
    if !extra.is_empty() {
        return Err(Error::bad(check::additional(&extra)));
    }
    Ok(out)
}

impl Compute {
    /// Nova's `KeypairLimitExceeded` when one more key pair would exceed
    /// `max` (from [`quota::key_pair_limit`]).
    async fn keypair_quota(tx: &mut store::Tx<'_>, user_id: &str, max: i64) -> Result<()> {
        if max >= 0 && db::keypair_count(tx, user_id).await? + 1 > max {
            return Err(Error::forbidden("Quota exceeded, too many key pairs."));
        }
        Ok(())
    }

    /// Stores a key pair: 409 when the name is taken, 403 over quota.
    async fn keypair_store(&self, mut k: Keypair, max: i64) -> Result<Keypair> {
        for _ in 0..5 {
            let mut tx = self.db.write().await?;
            if db::keypair_exists(&mut tx, &k.user_id, &k.name).await? {
                return Err(Error::conflict(format!(
                    "Key pair '{}' already exists.",
                    k.name
                )));
            }
            Self::keypair_quota(&mut tx, &k.user_id, max).await?;
            match db::keypair_create(&mut tx, &k).await {
                Ok(id) => {
                    tx.commit().await?;
                    k.id = id;
                    return Ok(k);
                }
                // A concurrent writer took the id (or the name): again.
                Err(e) if store::is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::conflict(format!(
            "Key pair '{}' already exists.",
            k.name
        )))
    }
}

pub async fn create(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Body(body): Body,
) -> Result<Response> {
    let req = parse_create(&body, mv)?;
    let user_id = req
        .user_id
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| caller.user().to_string());
    state.authorize(
        &caller,
        "os_compute_api:os-keypairs:create",
        &target(&user_id),
    )?;
    create_keypair(&state, mv, req, caller.project(), user_id).await
}

async fn create_keypair(
    state: &Compute,
    mv: Mv,
    req: CreateReq,
    project: &str,
    user_id: String,
) -> Result<Response> {
    // Nova checks the quota before it looks at the key.
    let max = quota::key_pair_limit(state, project, &user_id).await?;
    {
        let mut tx = state.db.write().await?;
        Compute::keypair_quota(&mut tx, &user_id, max).await?;
    }
    let invalid = |e: keygen::Invalid| Error::bad(format!("Keypair data is invalid: {}", e.0));
    let (public_key, fingerprint, private_key) = match &req.public_key {
        Some(pk) => {
            let fp = if req.kind == "x509" {
                keygen::x509_fingerprint(pk).map_err(invalid)?
            } else {
                keygen::ssh_fingerprint(pk).map_err(invalid)?
            };
            (pk.clone(), fp, None)
        }
        None => {
            let kind = req.kind.clone();
            let uid = user_id.clone();
            let g = tokio::task::spawn_blocking(move || {
                if kind == "x509" {
                    keygen::generate_x509(&uid)
                } else {
                    keygen::generate_ssh()
                }
            })
            .await
            .map_err(|e| Error::internal(format!("key generation: {e}")))?
            .map_err(|e| Error::internal(format!("key generation: {e}")))?;
            (g.public_key, g.fingerprint, Some(g.private_key))
        }
    };
    let k = state
        .keypair_store(
            Keypair {
                id: 0,
                name: req.name,
                user_id,
                kind: req.kind,
                fingerprint,
                public_key,
                created_at: store::now_micros(),
            },
            max,
        )
        .await?;
    let mut v = json!({
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "user_id": k.user_id,
    });
    if let Some(p) = private_key {
        v["private_key"] = json!(p);
    }
    if mv.at_least(2) {
        v["type"] = json!(k.kind);
    }
    let status = if mv.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "keypair": v }))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypair_schema_messages() {
        let v21 = Mv(crate::microversion::Version(1));
        let v22 = Mv(crate::microversion::Version(2));
        let e = parse_create(&json!({"keypair": {"name": "bad!"}}), v21)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "Invalid input for field/attribute name. Value: bad!. 'bad!' does not match '^[_\\\\- a-zA-Z0-9]+$'"
        );
        let e = parse_create(&json!({"keypair": {"name": "k", "type": "ssh"}}), v21)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .ends_with("Additional properties are not allowed ('type' was unexpected)"),
            "{e}"
        );
        let e = parse_create(&json!({"keypair": {"name": "k", "type": "pgp"}}), v22)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "Invalid input for field/attribute type. Value: pgp. 'pgp' is not one of ['ssh', 'x509']"
        );
        let e = parse_create(&json!({"keypair": {}}), v22).err().unwrap();
        assert_eq!(
            e.to_string(),
            "Invalid input for field/attribute keypair. Value: {}. 'name' is a required property"
        );
        assert!(parse_create(&json!({"keypair": {"name": "ok name-1_"}}), v22).is_ok());
    }
}
