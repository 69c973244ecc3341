//! Metadata definitions (`/v2/metadefs`): namespaces with their objects,
//! properties, tags and resource type associations.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{query_pairs, Auth, State};
use crate::db::metadefs::{
    self as db, AssociationRow, NamespaceRow, ObjectRow, PropertyRow, TagRow,
};
use crate::error::{Error, Result};
use crate::render::time;
use crate::{Caller, ImageService};

fn body_object(body: &[u8]) -> Result<Map<String, Value>> {
    if body.is_empty() {
        return Err(Error::bad("Body expected in request."));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::bad("The request body must be a JSON object.")),
        Err(e) => Err(Error::bad(format!("Malformed JSON in request body: {e}"))),
    }
}

fn opt_str(m: &Map<String, Value>, k: &str, max: usize) -> Result<Option<String>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Error::bad(format!("'{k}' is too long (at most {max})"))),
        Some(other) => Err(Error::bad(format!(
            "{other} is not of type 'string' ('{k}')"
        ))),
    }
}

fn req_str(m: &Map<String, Value>, k: &str, max: usize) -> Result<String> {
    opt_str(m, k, max)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| Error::bad(format!("'{k}' is a required property")))
}

fn opt_bool(m: &Map<String, Value>, k: &str) -> Result<Option<bool>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Error::bad(format!(
            "{other} is not of type 'boolean' ('{k}')"
        ))),
    }
}

fn visibility(m: &Map<String, Value>) -> Result<Option<String>> {
    match opt_str(m, "visibility", 32)? {
        None => Ok(None),
        Some(v) if v == "public" || v == "private" => Ok(Some(v)),
        Some(v) => Err(Error::bad(format!(
            "'{v}' is not one of ['public', 'private']"
        ))),
    }
}

fn duplicate(e: sqlx::Error, what: String) -> Error {
    if store::is_unique_violation(&e) {
        Error::conflict(what)
    } else {
        e.into()
    }
}

impl ImageService {
    fn ns_target(&self, caller: &Caller, ns: Option<&NamespaceRow>) -> api_common::Target {
        match ns {
            Some(n) => api_common::Target::new()
                .with_opt("project_id", n.owner.clone())
                .with("visibility", n.visibility.clone()),
            None => api_common::Target::new()
                .with_opt("project_id", caller.project().map(str::to_string)),
        }
    }

    fn ns_visible(&self, caller: &Caller, n: &NamespaceRow) -> bool {
        caller.is_admin
            || n.visibility == "public"
            || (n.owner.is_some() && n.owner.as_deref() == caller.project())
    }

    /// A namespace the caller may see (404 otherwise), after `rule` allows.
    async fn namespace(&self, caller: &Caller, name: &str, rule: &str) -> Result<NamespaceRow> {
        let not_found = || {
            Error::NotFound(format!(
                "Metadata definition namespace={name} was not found."
            ))
        };
        let n = db::namespace_get(&self.db, name)
            .await?
            .ok_or_else(not_found)?;
        let t = self.ns_target(caller, Some(&n));
        if !self.ns_visible(caller, &n) || !self.allowed(caller, "get_metadef_namespace", &t) {
            return Err(not_found());
        }
        self.authorize(caller, rule, &t)?;
        Ok(n)
    }
}

fn render_object(ns: &str, o: &ObjectRow) -> Value {
    let required: Value = serde_json::from_str(&o.required).unwrap_or_else(|_| json!([]));
    let properties: Value = serde_json::from_str(&o.properties).unwrap_or_else(|_| json!({}));
    json!({
        "name": o.name,
        "description": o.description,
        "required": required,
        "properties": properties,
        "created_at": time(o.created_at),
        "updated_at": time(o.updated_at),
        "schema": "/v2/schemas/metadefs/object",
        "self": format!("/v2/metadefs/namespaces/{ns}/objects/{}", o.name),
    })
}

fn render_property(p: &PropertyRow) -> Value {
    let mut v: Value = serde_json::from_str(&p.json_schema).unwrap_or_else(|_| json!({}));
    v["name"] = json!(p.name);
    v
}

fn render_tag(t: &TagRow) -> Value {
    json!({ "name": t.name, "created_at": time(t.created_at), "updated_at": time(t.updated_at) })
}

fn render_association(a: &AssociationRow) -> Value {
    let mut v = json!({
        "name": a.name,
        "created_at": time(a.created_at),
        "updated_at": time(a.updated_at),
    });
    if let Some(p) = &a.prefix {
        v["prefix"] = json!(p);
    }
    if let Some(p) = &a.properties_target {
        v["properties_target"] = json!(p);
    }
    v
}

async fn render_namespace(svc: &ImageService, n: &NamespaceRow, full: bool) -> Result<Value> {
    let mut v = json!({
        "namespace": n.namespace,
        "display_name": n.display_name,
        "description": n.description,
        "visibility": n.visibility,
        "protected": store::flag(n.protected),
        "owner": n.owner,
        "created_at": time(n.created_at),
        "updated_at": time(n.updated_at),
        "schema": "/v2/schemas/metadefs/namespace",
        "self": format!("/v2/metadefs/namespaces/{}", n.namespace),
    });
    let assoc = db::association_list(&svc.db, &n.id).await?;
    if !assoc.is_empty() {
        v["resource_type_associations"] =
            Value::Array(assoc.iter().map(render_association).collect());
    }
    if full {
        let props = db::property_list(&svc.db, &n.id).await?;
        if !props.is_empty() {
            let mut m = Map::new();
            for p in &props {
                let mut d = render_property(p);
                if let Value::Object(o) = &mut d {
                    o.remove("name");
                }
                m.insert(p.name.clone(), d);
            }
            v["properties"] = Value::Object(m);
        }
        let objects = db::object_list(&svc.db, &n.id).await?;
        if !objects.is_empty() {
            v["objects"] = Value::Array(
                objects
                    .iter()
                    .map(|o| render_object(&n.namespace, o))
                    .collect(),
            );
        }
        let tags = db::tag_list(&svc.db, &n.id).await?;
        if !tags.is_empty() {
            v["tags"] = Value::Array(tags.iter().map(|t| json!({ "name": t.name })).collect());
        }
    }
    Ok(v)
}

fn object_row(m: &Map<String, Value>, ns_id: &str, id: String, created: i64) -> Result<ObjectRow> {
    let required = match m.get("required") {
        None | Some(Value::Null) => json!([]),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Value::Array(a.clone()),
        Some(_) => return Err(Error::bad("'required' must be a list of strings")),
    };
    let properties = match m.get("properties") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(o)) => Value::Object(o.clone()),
        Some(_) => return Err(Error::bad("'properties' must be an object")),
    };
    Ok(ObjectRow {
        id,
        namespace_id: ns_id.to_string(),
        name: req_str(m, "name", 80)?,
        description: opt_str(m, "description", 65_535)?,
        required: required.to_string(),
        properties: properties.to_string(),
        created_at: created,
        updated_at: store::now_micros(),
    })
}

fn property_row(
    m: &Map<String, Value>,
    ns_id: &str,
    id: String,
    created: i64,
) -> Result<PropertyRow> {
    let name = req_str(m, "name", 80)?;
    req_str(m, "title", 255)?;
    req_str(m, "type", 32)?;
    let mut def = m.clone();
    def.remove("name");
    Ok(PropertyRow {
        id,
        namespace_id: ns_id.to_string(),
        name,
        json_schema: Value::Object(def).to_string(),
        created_at: created,
        updated_at: store::now_micros(),
    })
}

// ------------------------------------------------------------ namespaces

pub async fn namespace_list(
    state: State,
    Auth(caller): Auth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "get_metadef_namespaces",
        &state.ns_target(&caller, None),
    )?;
    let params = query_pairs(raw.as_deref());
    let get = |k: &str| params.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let vis = get("visibility");
    if let Some(v) = &vis {
        if v != "public" && v != "private" {
            return Err(Error::bad(format!("Invalid visibility value: {v}")));
        }
    }
    let limit: usize = match get("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| Error::bad("limit param must be an integer"))?,
        None => state.cfg.limit_param_default,
    };
    let limit = limit.min(state.cfg.api_limit_max);
    let sort_key = get("sort_key").unwrap_or_else(|| "created_at".into());
    if !["created_at", "updated_at", "namespace", "display_name"].contains(&sort_key.as_str()) {
        return Err(Error::bad(format!("Invalid sort key: {sort_key}")));
    }
    let desc = match get("sort_dir").as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(d) => return Err(Error::bad(format!("Invalid sort direction: {d}"))),
    };
    let types: Vec<String> = get("resource_types")
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let with_types = db::namespaces_with_types(&state.db, &types).await?;
    let mut all: Vec<NamespaceRow> = db::namespace_list(&state.db)
        .await?
        .into_iter()
        .filter(|n| state.ns_visible(&caller, n))
        .filter(|n| vis.as_deref().is_none_or(|v| n.visibility == v))
        .filter(|n| types.is_empty() || with_types.contains(&n.id))
        .collect();
    all.sort_by(|a, b| {
        let o = match sort_key.as_str() {
            "namespace" => a.namespace.cmp(&b.namespace),
            "display_name" => a.display_name.cmp(&b.display_name),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            _ => a.created_at.cmp(&b.created_at),
        }
        .then(a.namespace.cmp(&b.namespace));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    if let Some(m) = get("marker") {
        let pos = all.iter().position(|n| n.namespace == m).ok_or_else(|| {
            Error::bad(format!("Metadata definition namespace={m} was not found."))
        })?;
        all.drain(..=pos);
    }
    let more = all.len() > limit;
    all.truncate(limit);
    let mut out = Vec::new();
    for n in &all {
        out.push(render_namespace(&state, n, false).await?);
    }
    let mut body = json!({
        "namespaces": out,
        "first": "/v2/metadefs/namespaces",
        "schema": "/v2/schemas/metadefs/namespaces",
    });
    if more {
        if let Some(last) = all.last() {
            body["next"] = json!(format!(
                "/v2/metadefs/namespaces?marker={}&limit={limit}",
                last.namespace
            ));
        }
    }
    Ok(Json(body))
}

pub async fn namespace_create(
    state: State,
    Auth(caller): Auth,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(
        &caller,
        "add_metadef_namespace",
        &state.ns_target(&caller, None),
    )?;
    let m = body_object(&body)?;
    let now = store::now_micros();
    let owner = opt_str(&m, "owner", 255)?.or_else(|| caller.project().map(str::to_string));
    if !caller.is_admin && owner.as_deref() != caller.project() {
        return Err(Error::forbidden(
            "You are not permitted to create namespaces owned by another project.",
        ));
    }
    let n = NamespaceRow {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: req_str(&m, "namespace", 80)?,
        display_name: opt_str(&m, "display_name", 80)?,
        description: opt_str(&m, "description", 500)?,
        visibility: visibility(&m)?.unwrap_or_else(|| "private".into()),
        protected: i64::from(opt_bool(&m, "protected")?.unwrap_or(false)),
        owner,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.write().await?;
    db::namespace_create(&mut tx, &n)
        .await
        .map_err(|e| duplicate(e, format!("Namespace {} already exists", n.namespace)))?;
    if let Some(Value::Object(props)) = m.get("properties") {
        for (name, def) in props {
            let mut d = def.as_object().cloned().unwrap_or_default();
            d.insert("name".into(), json!(name));
            let p = property_row(&d, &n.id, uuid::Uuid::new_v4().to_string(), now)?;
            db::property_create(&mut tx, &p).await?;
        }
    }
    if let Some(Value::Array(objects)) = m.get("objects") {
        for o in objects {
            let o = object_row(
                o.as_object().unwrap_or(&Map::new()),
                &n.id,
                uuid::Uuid::new_v4().to_string(),
                now,
            )?;
            db::object_create(&mut tx, &o).await?;
        }
    }
    if let Some(Value::Array(tags)) = m.get("tags") {
        for t in tags {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::bad("A tag needs a 'name'"))?;
            let tag = TagRow {
                id: uuid::Uuid::new_v4().to_string(),
                namespace_id: n.id.clone(),
                name: name.to_string(),
                created_at: now,
                updated_at: now,
            };
            db::tag_create(&mut tx, &tag)
                .await
                .map_err(|e| duplicate(e, format!("Duplicate tag {name}")))?;
        }
    }
    if let Some(Value::Array(assocs)) = m.get("resource_type_associations") {
        for a in assocs {
            let a = a.as_object().cloned().unwrap_or_default();
            let name = req_str(&a, "name", 80)?;
            let rt = db::resource_type_ensure(&mut tx, &name, now).await?;
            let row = AssociationRow {
                name,
                prefix: opt_str(&a, "prefix", 80)?,
                properties_target: opt_str(&a, "properties_target", 80)?,
                created_at: now,
                updated_at: now,
            };
            db::association_create(&mut tx, &n.id, &rt, &row).await?;
        }
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(render_namespace(&state, &n, true).await?),
    ))
}

pub async fn namespace_show(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<Json<Value>> {
    let n = state
        .namespace(&caller, &ns, "get_metadef_namespace")
        .await?;
    Ok(Json(render_namespace(&state, &n, true).await?))
}

pub async fn namespace_update(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut n = state
        .namespace(&caller, &ns, "modify_metadef_namespace")
        .await?;
    let m = body_object(&body)?;
    n.namespace = req_str(&m, "namespace", 80)?;
    n.display_name = opt_str(&m, "display_name", 80)?;
    n.description = opt_str(&m, "description", 500)?;
    if let Some(v) = visibility(&m)? {
        n.visibility = v;
    }
    if let Some(p) = opt_bool(&m, "protected")? {
        n.protected = i64::from(p);
    }
    if let Some(o) = opt_str(&m, "owner", 255)? {
        n.owner = Some(o);
    }
    n.updated_at = store::now_micros();
    let mut tx = state.db.write().await?;
    db::namespace_update(&mut tx, &n)
        .await
        .map_err(|e| duplicate(e, format!("Namespace {} already exists", n.namespace)))?;
    tx.commit().await?;
    Ok(Json(render_namespace(&state, &n, true).await?))
}

pub async fn namespace_delete(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<StatusCode> {
    let n = state
        .namespace(&caller, &ns, "delete_metadef_namespace")
        .await?;
    if store::flag(n.protected) {
        return Err(Error::forbidden(format!(
            "Namespace {ns} is protected and cannot be deleted."
        )));
    }
    let mut tx = state.db.write().await?;
    db::namespace_delete(&mut tx, &n.id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// --------------------------------------------------------------- objects

pub async fn object_list(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<Json<Value>> {
    let n = state.namespace(&caller, &ns, "get_metadef_objects").await?;
    let objects: Vec<Value> = db::object_list(&state.db, &n.id)
        .await?
        .iter()
        .map(|o| render_object(&ns, o))
        .collect();
    Ok(Json(
        json!({ "objects": objects, "schema": "v2/schemas/metadefs/objects" }),
    ))
}

pub async fn object_create(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let n = state.namespace(&caller, &ns, "add_metadef_object").await?;
    let m = body_object(&body)?;
    let now = store::now_micros();
    let o = object_row(&m, &n.id, uuid::Uuid::new_v4().to_string(), now)?;
    let mut tx = state.db.write().await?;
    db::object_create(&mut tx, &o).await.map_err(|e| {
        duplicate(
            e,
            format!(
                "A metadata definition object with name={} already exists in namespace={ns}.",
                o.name
            ),
        )
    })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render_object(&ns, &o))))
}

async fn object_or_404(state: &ImageService, n: &NamespaceRow, name: &str) -> Result<ObjectRow> {
    db::object_get(&state.db, &n.id, name)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "Metadata definition object not found for namespace={} and object={name}",
                n.namespace
            ))
        })
}

pub async fn object_show(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let n = state.namespace(&caller, &ns, "get_metadef_object").await?;
    Ok(Json(render_object(
        &ns,
        &object_or_404(&state, &n, &name).await?,
    )))
}

pub async fn object_update(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    let n = state
        .namespace(&caller, &ns, "modify_metadef_object")
        .await?;
    let old = object_or_404(&state, &n, &name).await?;
    let m = body_object(&body)?;
    let o = object_row(&m, &n.id, old.id.clone(), old.created_at)?;
    let mut tx = state.db.write().await?;
    db::object_update(&mut tx, &o).await.map_err(|e| {
        duplicate(
            e,
            format!(
                "A metadata definition object with name={} already exists in namespace={ns}.",
                o.name
            ),
        )
    })?;
    tx.commit().await?;
    Ok(Json(render_object(&ns, &o)))
}

pub async fn object_delete(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let n = state
        .namespace(&caller, &ns, "delete_metadef_object")
        .await?;
    object_or_404(&state, &n, &name).await?;
    let mut tx = state.db.write().await?;
    db::object_delete(&mut tx, &n.id, Some(&name)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn objects_delete_all(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<StatusCode> {
    let n = state
        .namespace(&caller, &ns, "delete_metadef_object")
        .await?;
    let mut tx = state.db.write().await?;
    db::object_delete(&mut tx, &n.id, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ properties

pub async fn property_list(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<Json<Value>> {
    let n = state
        .namespace(&caller, &ns, "get_metadef_properties")
        .await?;
    let mut m = Map::new();
    for p in db::property_list(&state.db, &n.id).await? {
        let mut d = render_property(&p);
        if let Value::Object(o) = &mut d {
            o.remove("name");
        }
        m.insert(p.name.clone(), d);
    }
    Ok(Json(json!({ "properties": m })))
}

pub async fn property_create(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let n = state
        .namespace(&caller, &ns, "add_metadef_property")
        .await?;
    let m = body_object(&body)?;
    let p = property_row(
        &m,
        &n.id,
        uuid::Uuid::new_v4().to_string(),
        store::now_micros(),
    )?;
    let mut tx = state.db.write().await?;
    db::property_create(&mut tx, &p).await.map_err(|e| {
        duplicate(
            e,
            format!(
                "A metadata definition property with name={} already exists in namespace={ns}.",
                p.name
            ),
        )
    })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render_property(&p))))
}

async fn property_or_404(
    state: &ImageService,
    n: &NamespaceRow,
    name: &str,
) -> Result<PropertyRow> {
    db::property_get(&state.db, &n.id, name)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "Metadata definition property not found for namespace={} and property={name}",
                n.namespace
            ))
        })
}

pub async fn property_show(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let n = state
        .namespace(&caller, &ns, "get_metadef_property")
        .await?;
    Ok(Json(render_property(
        &property_or_404(&state, &n, &name).await?,
    )))
}

pub async fn property_update(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    let n = state
        .namespace(&caller, &ns, "modify_metadef_property")
        .await?;
    let old = property_or_404(&state, &n, &name).await?;
    let m = body_object(&body)?;
    let p = property_row(&m, &n.id, old.id.clone(), old.created_at)?;
    let mut tx = state.db.write().await?;
    db::property_update(&mut tx, &p).await.map_err(|e| {
        duplicate(
            e,
            format!(
                "A metadata definition property with name={} already exists in namespace={ns}.",
                p.name
            ),
        )
    })?;
    tx.commit().await?;
    Ok(Json(render_property(&p)))
}

pub async fn property_delete(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let n = state
        .namespace(&caller, &ns, "remove_metadef_property")
        .await?;
    property_or_404(&state, &n, &name).await?;
    let mut tx = state.db.write().await?;
    db::property_delete(&mut tx, &n.id, Some(&name)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn properties_delete_all(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<StatusCode> {
    let n = state
        .namespace(&caller, &ns, "remove_metadef_property")
        .await?;
    let mut tx = state.db.write().await?;
    db::property_delete(&mut tx, &n.id, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ tags

pub async fn tag_list(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<Json<Value>> {
    let n = state.namespace(&caller, &ns, "get_metadef_tags").await?;
    let tags: Vec<Value> = db::tag_list(&state.db, &n.id)
        .await?
        .iter()
        .map(render_tag)
        .collect();
    Ok(Json(json!({ "tags": tags })))
}

/// `POST .../tags`: sets the namespace's tags (adds to them with
/// `X-Openstack-Append: True`).
pub async fn tags_create(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let n = state.namespace(&caller, &ns, "add_metadef_tags").await?;
    let m = body_object(&body)?;
    let Some(Value::Array(list)) = m.get("tags") else {
        return Err(Error::bad("'tags' is a required property"));
    };
    let mut names: Vec<String> = Vec::new();
    for t in list {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.chars().count() <= 80)
            .ok_or_else(|| Error::bad("Every tag needs a 'name' of at most 80 characters"))?;
        if names.iter().any(|x| x == name) {
            return Err(Error::conflict(format!(
                "Duplicate tag {name} in the request"
            )));
        }
        names.push(name.to_string());
    }
    let append = headers
        .get("x-openstack-append")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let now = store::now_micros();
    let mut tx = state.db.write().await?;
    if !append {
        db::tag_delete(&mut tx, &n.id, None).await?;
    }
    for name in &names {
        let t = TagRow {
            id: uuid::Uuid::new_v4().to_string(),
            namespace_id: n.id.clone(),
            name: name.clone(),
            created_at: now,
            updated_at: now,
        };
        db::tag_create(&mut tx, &t).await.map_err(|e| {
            duplicate(
                e,
                format!("A metadata tag with name={name} already exists in namespace={ns}."),
            )
        })?;
    }
    tx.commit().await?;
    let tags: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    Ok((StatusCode::CREATED, Json(json!({ "tags": tags }))))
}

pub async fn tag_create(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>)> {
    let n = state.namespace(&caller, &ns, "add_metadef_tag").await?;
    if name.chars().count() > 80 {
        return Err(Error::bad("A tag name has at most 80 characters"));
    }
    let now = store::now_micros();
    let t = TagRow {
        id: uuid::Uuid::new_v4().to_string(),
        namespace_id: n.id.clone(),
        name: name.clone(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.write().await?;
    db::tag_create(&mut tx, &t).await.map_err(|e| {
        duplicate(
            e,
            format!("A metadata tag with name={name} already exists in namespace={ns}."),
        )
    })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render_tag(&t))))
}

async fn tag_or_404(state: &ImageService, n: &NamespaceRow, name: &str) -> Result<TagRow> {
    db::tag_get(&state.db, &n.id, name).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "Metadata tag not found for namespace={} and tag={name}",
            n.namespace
        ))
    })
}

pub async fn tag_show(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let n = state.namespace(&caller, &ns, "get_metadef_tag").await?;
    Ok(Json(render_tag(&tag_or_404(&state, &n, &name).await?)))
}

pub async fn tag_update(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    let n = state.namespace(&caller, &ns, "modify_metadef_tag").await?;
    let mut t = tag_or_404(&state, &n, &name).await?;
    let m = body_object(&body)?;
    t.name = req_str(&m, "name", 80)?;
    t.updated_at = store::now_micros();
    let mut tx = state.db.write().await?;
    db::tag_rename(&mut tx, &t.id, &t.name, t.updated_at)
        .await
        .map_err(|e| {
            duplicate(
                e,
                format!(
                    "A metadata tag with name={} already exists in namespace={ns}.",
                    t.name
                ),
            )
        })?;
    tx.commit().await?;
    Ok(Json(render_tag(&t)))
}

pub async fn tag_delete(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let n = state.namespace(&caller, &ns, "delete_metadef_tag").await?;
    tag_or_404(&state, &n, &name).await?;
    let mut tx = state.db.write().await?;
    db::tag_delete(&mut tx, &n.id, Some(&name)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tags_delete_all(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<StatusCode> {
    let n = state.namespace(&caller, &ns, "delete_metadef_tags").await?;
    let mut tx = state.db.write().await?;
    db::tag_delete(&mut tx, &n.id, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// -------------------------------------------------------- resource types

pub async fn resource_types(state: State, Auth(caller): Auth) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "list_metadef_resource_types",
        &state.ns_target(&caller, None),
    )?;
    let types: Vec<Value> = db::resource_type_list(&state.db)
        .await?
        .iter()
        .map(|r| json!({ "name": r.name, "created_at": time(r.created_at), "updated_at": time(r.updated_at) }))
        .collect();
    Ok(Json(json!({ "resource_types": types })))
}

pub async fn association_list(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
) -> Result<Json<Value>> {
    let n = state
        .namespace(&caller, &ns, "get_metadef_resource_type")
        .await?;
    let list: Vec<Value> = db::association_list(&state.db, &n.id)
        .await?
        .iter()
        .map(render_association)
        .collect();
    Ok(Json(json!({ "resource_type_associations": list })))
}

pub async fn association_create(
    state: State,
    Auth(caller): Auth,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let n = state
        .namespace(&caller, &ns, "add_metadef_resource_type_association")
        .await?;
    let m = body_object(&body)?;
    let now = store::now_micros();
    let a = AssociationRow {
        name: req_str(&m, "name", 80)?,
        prefix: opt_str(&m, "prefix", 80)?,
        properties_target: opt_str(&m, "properties_target", 80)?,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.write().await?;
    let rt = db::resource_type_ensure(&mut tx, &a.name, now).await?;
    db::association_create(&mut tx, &n.id, &rt, &a)
        .await
        .map_err(|e| duplicate(e, format!("The metadata definition resource-type association of resource-type={} to namespace={ns}, already exists.", a.name)))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render_association(&a))))
}

pub async fn association_delete(
    state: State,
    Auth(caller): Auth,
    Path((ns, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let n = state
        .namespace(&caller, &ns, "remove_metadef_resource_type_association")
        .await?;
    let mut tx = state.db.write().await?;
    if db::association_delete(&mut tx, &n.id, &name).await? == 0 {
        return Err(Error::NotFound(format!(
            "The metadata definition resource-type association of resource-type={name} to namespace={ns}, was not found."
        )));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// --------------------------------------------------------------- schemas

pub async fn schema(Auth(_): Auth, Path(name): Path<String>) -> Result<Json<Value>> {
    let item = |n: &str, props: Value, required: &[&str]| json!({ "name": n, "properties": props, "required": required, "additionalProperties": false });
    let ns = item(
        "namespace",
        json!({
            "namespace": { "type": "string", "maxLength": 80, "description": "The namespace's unique name" },
            "display_name": { "type": "string", "maxLength": 80, "description": "A name for people" },
            "description": { "type": "string", "maxLength": 500, "description": "What the namespace describes" },
            "visibility": { "type": "string", "enum": ["public", "private"], "description": "Who may see the namespace" },
            "protected": { "type": "boolean", "description": "A protected namespace cannot be deleted" },
            "owner": { "type": "string", "maxLength": 255, "description": "The owning project" },
            "created_at": { "type": "string", "readOnly": true },
            "updated_at": { "type": "string", "readOnly": true },
            "schema": { "type": "string", "readOnly": true },
            "self": { "type": "string", "readOnly": true },
            "resource_type_associations": { "type": "array" },
            "properties": { "type": "object" },
            "objects": { "type": "array" },
            "tags": { "type": "array" }
        }),
        &["namespace"],
    );
    let object = item(
        "object",
        json!({
            "name": { "type": "string", "maxLength": 80 },
            "description": { "type": "string" },
            "required": { "type": "array", "items": { "type": "string" } },
            "properties": { "type": "object" },
            "created_at": { "type": "string", "readOnly": true },
            "updated_at": { "type": "string", "readOnly": true },
            "schema": { "type": "string", "readOnly": true },
            "self": { "type": "string", "readOnly": true }
        }),
        &["name"],
    );
    let property = item(
        "property",
        json!({
            "name": { "type": "string", "maxLength": 80 },
            "title": { "type": "string" },
            "description": { "type": "string" },
            "type": { "type": "string", "enum": ["array", "boolean", "integer", "number", "object", "string"] },
            "enum": { "type": "array" },
            "default": {},
            "readonly": { "type": "boolean" }
        }),
        &["name", "title", "type"],
    );
    let tag = item(
        "tag",
        json!({
            "name": { "type": "string", "maxLength": 80 },
            "created_at": { "type": "string", "readOnly": true },
            "updated_at": { "type": "string", "readOnly": true }
        }),
        &["name"],
    );
    let rt = item(
        "resource_type_association",
        json!({
            "name": { "type": "string", "maxLength": 80 },
            "prefix": { "type": "string", "maxLength": 80 },
            "properties_target": { "type": "string", "maxLength": 80 },
            "created_at": { "type": "string", "readOnly": true },
            "updated_at": { "type": "string", "readOnly": true }
        }),
        &["name"],
    );
    let collection = |n: &str, key: &str, it: &Value| {
        json!({
            "name": n,
            "properties": { key: { "type": "array", "items": it }, "schema": { "type": "string" }, "first": { "type": "string" }, "next": { "type": "string" } },
            "links": [{ "rel": "first", "href": "{first}" }, { "rel": "next", "href": "{next}" }, { "rel": "describedby", "href": "{schema}" }]
        })
    };
    Ok(Json(match name.as_str() {
        "namespace" => ns,
        "namespaces" => collection("namespaces", "namespaces", &ns),
        "object" => object,
        "objects" => collection("objects", "objects", &object),
        "property" => property,
        "properties" => collection("properties", "properties", &property),
        "tag" => tag,
        "tags" => collection("tags", "tags", &tag),
        "resource_type" => rt,
        "resource_types" => collection(
            "resource_type_associations",
            "resource_type_associations",
            &rt,
        ),
        _ => return Err(Error::NotFound(format!("No schema {name}"))),
    }))
}
