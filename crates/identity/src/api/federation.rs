//! OS-FEDERATION objects: identity providers (with remote ids and
//! protocols), mappings and service providers. These are stored and served
//! as upstream does; federated authentication itself (SAML2, OpenID
//! Connect) is not offered.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input;
use super::{Base, Caller, State};
use crate::db::domains::{self, DomainRow};
use crate::db::extensions::{self as db, IdpRow, MappingRow, ProtocolRow, ServiceProviderRow};
use crate::error::{Error, Result};

fn none() -> api_common::Target {
    api_common::Target::new()
}

fn fed(base: &str, path: &str) -> String {
    format!("{base}/v3/OS-FEDERATION/{path}")
}

// Identity providers.

async fn idp_json(state: &State, base: &str, i: &IdpRow) -> Result<Value> {
    Ok(json!({
        "id": i.id,
        "enabled": store::flag(i.enabled),
        "description": i.description,
        "domain_id": i.domain_id,
        "authorization_ttl": i.authorization_ttl,
        "remote_ids": db::idp_remote_ids(&state.db, &i.id).await?,
        "links": {
            "self": fed(base, &format!("identity_providers/{}", i.id)),
            "protocols": fed(base, &format!("identity_providers/{}/protocols", i.id)),
        },
    }))
}

async fn idp_404(state: &State, id: &str) -> Result<IdpRow> {
    db::idp_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("identity provider", id))
}

fn remote_ids(m: &input::Obj) -> Result<Option<Vec<String>>> {
    match m.get("remote_ids") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| !s.is_empty() && s.len() <= 255)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Error::invalid(
                            "Invalid input for field 'remote_ids': strings of 1 to 255 characters",
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field 'remote_ids': {other} is not of type 'array'"
        ))),
    }
}

fn ttl(m: &input::Obj) -> Result<Option<Option<i64>>> {
    match m.get("authorization_ttl") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Ok(Some(Some(n))),
            _ => Err(Error::invalid(format!(
                "Invalid input for field 'authorization_ttl': {v}"
            ))),
        },
    }
}

async fn remote_ids_free(state: &State, idp: &str, ids: &[String]) -> Result<()> {
    for other in db::idp_list(&state.db).await? {
        if other.id == idp {
            continue;
        }
        let taken = db::idp_remote_ids(&state.db, &other.id).await?;
        if let Some(dup) = ids.iter().find(|r| taken.contains(r)) {
            return Err(Error::Conflict(format!(
                "Duplicate remote ID: {dup} is already used by identity provider {}.",
                other.id
            )));
        }
    }
    Ok(())
}

pub async fn idp_list(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_identity_providers", &none())?;
    let mut items = Vec::new();
    for i in db::idp_list(&state.db).await? {
        items.push(idp_json(&state, &base, &i).await?);
    }
    Ok(Json(input::list(
        "identity_providers",
        items,
        fed(&base, "identity_providers"),
        None,
    )))
}

pub async fn idp_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_identity_provider", &none())?;
    let i = idp_404(&state, &id).await?;
    Ok(Json(
        json!({ "identity_provider": idp_json(&state, &base, &i).await? }),
    ))
}

pub async fn idp_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_identity_provider", &none())?;
    let m = input::entity(&body, "identity_provider")?;
    input::only(
        &m,
        "identity_provider",
        &[
            "enabled",
            "description",
            "remote_ids",
            "domain_id",
            "authorization_ttl",
        ],
    )?;
    if db::idp_get(&state.db, &id).await?.is_some() {
        return Err(Error::Conflict(format!(
            "Duplicate entry: identity provider {id} exists."
        )));
    }
    let ids = remote_ids(&m)?.unwrap_or_default();
    remote_ids_free(&state, &id, &ids).await?;
    let mut tx = state.db.write().await?;
    // Without a domain, the provider gets a new one of its own (as upstream).
    let domain_id = match input::opt_str(&m, "domain_id", 64)? {
        Some(d) => {
            if domains::domain_get(&state.db, &d).await?.is_none() {
                return Err(Error::not_found("domain", d));
            }
            d
        }
        None => {
            let d = DomainRow {
                id: input::new_id(),
                name: id.clone(),
                description: "Auto generated federated domain".into(),
                enabled: 1,
                extra: "{}".into(),
            };
            domains::domain_create(&mut tx, &d).await.map_err(|e| {
                input::conflict(e, &format!("domain - Duplicate entry found with name {id}"))
            })?;
            d.id
        }
    };
    let i = IdpRow {
        id,
        enabled: input::flag(input::opt_bool(&m, "enabled")?.unwrap_or(false)),
        description: input::opt_str(&m, "description", 65_535)?,
        domain_id,
        authorization_ttl: ttl(&m)?.flatten(),
    };
    db::idp_put(&mut tx, &i, &ids)
        .await
        .map_err(|e| input::conflict(e, "identity provider - Duplicate remote ID"))?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "identity_provider": idp_json(&state, &base, &i).await? })),
    ))
}

pub async fn idp_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_identity_provider", &none())?;
    let mut i = idp_404(&state, &id).await?;
    let m = input::entity(&body, "identity_provider")?;
    input::only(
        &m,
        "identity_provider",
        &["enabled", "description", "remote_ids", "authorization_ttl"],
    )?;
    if let Some(e) = input::opt_bool(&m, "enabled")? {
        i.enabled = input::flag(e);
    }
    if m.contains_key("description") {
        i.description = input::opt_str(&m, "description", 65_535)?;
    }
    if let Some(t) = ttl(&m)? {
        i.authorization_ttl = t;
    }
    let ids = match remote_ids(&m)? {
        Some(ids) => ids,
        None => db::idp_remote_ids(&state.db, &id).await?,
    };
    remote_ids_free(&state, &id, &ids).await?;
    let mut tx = state.db.write().await?;
    db::idp_put(&mut tx, &i, &ids).await?;
    state.commit(tx).await?;
    Ok(Json(
        json!({ "identity_provider": idp_json(&state, &base, &i).await? }),
    ))
}

pub async fn idp_delete(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_identity_provider", &none())?;
    idp_404(&state, &id).await?;
    let mut tx = state.db.write().await?;
    db::idp_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Protocols.

fn protocol_json(base: &str, p: &ProtocolRow) -> Value {
    json!({
        "id": p.id,
        "mapping_id": p.mapping_id,
        "remote_id_attribute": p.remote_id_attribute,
        "links": {
            "self": fed(base, &format!("identity_providers/{}/protocols/{}", p.idp_id, p.id)),
            "identity_provider": fed(base, &format!("identity_providers/{}", p.idp_id)),
        },
    })
}

async fn protocol_404(state: &State, idp: &str, id: &str) -> Result<ProtocolRow> {
    idp_404(state, idp).await?;
    db::protocol_list(&state.db, idp)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| Error::not_found("federated protocol", id))
}

pub async fn protocol_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(idp): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_protocols", &none())?;
    idp_404(&state, &idp).await?;
    let items = db::protocol_list(&state.db, &idp)
        .await?
        .iter()
        .map(|p| protocol_json(&base, p))
        .collect();
    Ok(Json(input::list(
        "protocols",
        items,
        fed(&base, &format!("identity_providers/{idp}/protocols")),
        None,
    )))
}

pub async fn protocol_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((idp, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_protocol", &none())?;
    let p = protocol_404(&state, &idp, &id).await?;
    Ok(Json(json!({ "protocol": protocol_json(&base, &p) })))
}

async fn protocol_write(
    state: &State,
    base: &str,
    idp: String,
    id: String,
    body: &[u8],
    create: bool,
) -> Result<Value> {
    let m = input::entity(body, "protocol")?;
    input::only(&m, "protocol", &["mapping_id", "remote_id_attribute"])?;
    let existing = if create {
        idp_404(state, &idp).await?;
        None
    } else {
        Some(protocol_404(state, &idp, &id).await?)
    };
    let mapping_id = match (input::name(&m, "mapping_id", 64)?, &existing) {
        (Some(mid), _) => mid,
        (None, Some(e)) => e.mapping_id.clone(),
        (None, None) => return Err(Error::invalid("'mapping_id' is a required property")),
    };
    if db::mapping_get(&state.db, &mapping_id).await?.is_none() {
        return Err(Error::not_found("mapping", mapping_id));
    }
    let p = ProtocolRow {
        id,
        idp_id: idp,
        mapping_id,
        remote_id_attribute: if m.contains_key("remote_id_attribute") {
            input::opt_str(&m, "remote_id_attribute", 64)?
        } else {
            existing.and_then(|e| e.remote_id_attribute)
        },
    };
    let mut tx = state.db.write().await?;
    db::protocol_put(&mut tx, &p).await?;
    state.commit(tx).await?;
    Ok(json!({ "protocol": protocol_json(base, &p) }))
}

pub async fn protocol_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((idp, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_protocol", &none())?;
    Ok((
        StatusCode::CREATED,
        Json(protocol_write(&state, &base, idp, id, &body, true).await?),
    ))
}

pub async fn protocol_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((idp, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_protocol", &none())?;
    Ok(Json(
        protocol_write(&state, &base, idp, id, &body, false).await?,
    ))
}

pub async fn protocol_delete(
    state: State,
    caller: Caller,
    Path((idp, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_protocol", &none())?;
    protocol_404(&state, &idp, &id).await?;
    let mut tx = state.db.write().await?;
    db::protocol_delete(&mut tx, &idp, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Mappings.

fn mapping_json(base: &str, m: &MappingRow) -> Value {
    json!({
        "id": m.id,
        "rules": serde_json::from_str::<Value>(&m.rules).unwrap_or(Value::Array(Vec::new())),
        "schema_version": m.schema_version,
        "links": { "self": fed(base, &format!("mappings/{}", m.id)) },
    })
}

/// Mapping rules: a non-empty list of `{"local": [...], "remote": [...]}`.
fn rules(m: &input::Obj) -> Result<Option<String>> {
    let Some(v) = m.get("rules") else {
        return Ok(None);
    };
    let Value::Array(list) = v else {
        return Err(Error::invalid(
            "Invalid input for field 'rules': not a list",
        ));
    };
    if list.is_empty() {
        return Err(Error::invalid(
            "Invalid input for field 'rules': at least one rule is required",
        ));
    }
    for r in list {
        let ok = r
            .get("local")
            .is_some_and(|l| l.as_array().is_some_and(|a| !a.is_empty()))
            && r.get("remote")
                .is_some_and(|l| l.as_array().is_some_and(|a| !a.is_empty()));
        if !ok {
            return Err(Error::invalid(
                "Invalid input for field 'rules': each rule needs non-empty 'local' and 'remote' lists",
            ));
        }
    }
    Ok(Some(v.to_string()))
}

async fn mapping_404(state: &State, id: &str) -> Result<MappingRow> {
    db::mapping_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("mapping", id))
}

pub async fn mapping_list(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_mappings", &none())?;
    let items = db::mapping_list(&state.db)
        .await?
        .iter()
        .map(|m| mapping_json(&base, m))
        .collect();
    Ok(Json(input::list(
        "mappings",
        items,
        fed(&base, "mappings"),
        None,
    )))
}

pub async fn mapping_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_mapping", &none())?;
    Ok(Json(
        json!({ "mapping": mapping_json(&base, &mapping_404(&state, &id).await?) }),
    ))
}

pub async fn mapping_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_mapping", &none())?;
    let m = input::entity(&body, "mapping")?;
    input::only(&m, "mapping", &["id", "rules", "schema_version"])?;
    if input::opt_str(&m, "id", 255)?.is_some_and(|b| b != id) {
        return Err(Error::invalid(
            "The mapping id in the body differs from the one in the URL.",
        ));
    }
    if db::mapping_get(&state.db, &id).await?.is_some() {
        return Err(Error::Conflict(format!(
            "Duplicate entry: mapping {id} exists."
        )));
    }
    let row = MappingRow {
        id,
        rules: rules(&m)?.ok_or_else(|| Error::invalid("'rules' is a required property"))?,
        schema_version: input::opt_str(&m, "schema_version", 5)?.unwrap_or_else(|| "1.0".into()),
    };
    let mut tx = state.db.write().await?;
    db::mapping_put(&mut tx, &row).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "mapping": mapping_json(&base, &row) })),
    ))
}

pub async fn mapping_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_mapping", &none())?;
    let mut row = mapping_404(&state, &id).await?;
    let m = input::entity(&body, "mapping")?;
    input::only(&m, "mapping", &["id", "rules", "schema_version"])?;
    if input::opt_str(&m, "id", 255)?.is_some_and(|b| b != id) {
        return Err(Error::invalid("The mapping id cannot change."));
    }
    if let Some(r) = rules(&m)? {
        row.rules = r;
    }
    if let Some(v) = input::opt_str(&m, "schema_version", 5)? {
        row.schema_version = v;
    }
    let mut tx = state.db.write().await?;
    db::mapping_put(&mut tx, &row).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "mapping": mapping_json(&base, &row) })))
}

pub async fn mapping_delete(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_mapping", &none())?;
    mapping_404(&state, &id).await?;
    let mut tx = state.db.write().await?;
    db::mapping_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Service providers.

fn sp_json(base: &str, s: &ServiceProviderRow) -> Value {
    json!({
        "id": s.id,
        "enabled": store::flag(s.enabled),
        "description": s.description,
        "auth_url": s.auth_url,
        "sp_url": s.sp_url,
        "relay_state_prefix": s.relay_state_prefix,
        "links": { "self": fed(base, &format!("service_providers/{}", s.id)) },
    })
}

fn url(m: &input::Obj, field: &str) -> Result<Option<String>> {
    let v = input::opt_str(m, field, 256)?;
    if let Some(u) = &v {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "Invalid input for field '{field}': {u:?} is not a URL"
            )));
        }
    }
    Ok(v)
}

async fn sp_404(state: &State, id: &str) -> Result<ServiceProviderRow> {
    db::sp_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("service provider", id))
}

const SP_FIELDS: &[&str] = &[
    "enabled",
    "description",
    "auth_url",
    "sp_url",
    "relay_state_prefix",
];

pub async fn sp_list(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_service_providers", &none())?;
    let items = db::sp_list(&state.db)
        .await?
        .iter()
        .map(|s| sp_json(&base, s))
        .collect();
    Ok(Json(input::list(
        "service_providers",
        items,
        fed(&base, "service_providers"),
        None,
    )))
}

pub async fn sp_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_service_provider", &none())?;
    Ok(Json(
        json!({ "service_provider": sp_json(&base, &sp_404(&state, &id).await?) }),
    ))
}

pub async fn sp_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_service_provider", &none())?;
    let m = input::entity(&body, "service_provider")?;
    input::only(&m, "service_provider", SP_FIELDS)?;
    if db::sp_get(&state.db, &id).await?.is_some() {
        return Err(Error::Conflict(format!(
            "Duplicate entry: service provider {id} exists."
        )));
    }
    let s = ServiceProviderRow {
        id,
        enabled: input::flag(input::opt_bool(&m, "enabled")?.unwrap_or(false)),
        description: input::opt_str(&m, "description", 65_535)?,
        auth_url: url(&m, "auth_url")?
            .ok_or_else(|| Error::invalid("'auth_url' is a required property"))?,
        sp_url: url(&m, "sp_url")?
            .ok_or_else(|| Error::invalid("'sp_url' is a required property"))?,
        relay_state_prefix: input::opt_str(&m, "relay_state_prefix", 256)?
            .unwrap_or_else(|| "ss:mem:".into()),
    };
    let mut tx = state.db.write().await?;
    db::sp_put(&mut tx, &s).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "service_provider": sp_json(&base, &s) })),
    ))
}

pub async fn sp_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_service_provider", &none())?;
    let mut s = sp_404(&state, &id).await?;
    let m = input::entity(&body, "service_provider")?;
    input::only(&m, "service_provider", SP_FIELDS)?;
    if let Some(e) = input::opt_bool(&m, "enabled")? {
        s.enabled = input::flag(e);
    }
    if m.contains_key("description") {
        s.description = input::opt_str(&m, "description", 65_535)?;
    }
    if let Some(u) = url(&m, "auth_url")? {
        s.auth_url = u;
    }
    if let Some(u) = url(&m, "sp_url")? {
        s.sp_url = u;
    }
    if let Some(r) = input::opt_str(&m, "relay_state_prefix", 256)? {
        s.relay_state_prefix = r;
    }
    let mut tx = state.db.write().await?;
    db::sp_put(&mut tx, &s).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "service_provider": sp_json(&base, &s) })))
}

pub async fn sp_delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_service_provider", &none())?;
    sp_404(&state, &id).await?;
    let mut tx = state.db.write().await?;
    db::sp_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
