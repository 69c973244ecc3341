//! Images: create, list, show, delete, and tags.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{query_pairs, Auth, State};
use crate::db::images::{self as db, Image, ImageRow};
use crate::db::list::{Cmp, Col, Cond, ImageQuery, Viewer};
use crate::db::Arg;
use crate::error::{Error, Result};
use crate::{schemas, Caller, ImageService};

/// Attributes a client may never send.
const DISALLOWED: &[&str] = &["direct_url", "self", "file", "schema", "stores"];
/// Attributes only the service sets.
pub(crate) const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
    "stores",
];
pub(crate) const RESERVED: &[&str] = &["location", "deleted", "deleted_at"];
pub(crate) const RESERVED_PREFIX: &str = "os_glance";

pub(crate) fn schema_error(detail: String) -> Error {
    Error::bad(format!(
        "Provided object does not match schema 'image': {detail}"
    ))
}

/// Checks a custom property name.
pub(crate) fn check_property_name(key: &str) -> Result<()> {
    if key.chars().count() > 255 {
        return Err(Error::bad(
            "Custom property should not be greater than 255 characters.",
        ));
    }
    if RESERVED.contains(&key) || key.starts_with(RESERVED_PREFIX) {
        return Err(Error::forbidden(format!("Attribute '{key}' is reserved.")));
    }
    Ok(())
}

fn non_negative(name: &str, v: i64) -> Result<i64> {
    if v < 0 {
        return Err(Error::bad(format!(
            "Invalid value '{v}' for parameter '{name}': Cannot be a negative value."
        )));
    }
    Ok(v)
}

impl ImageService {
    /// Enforces publicize/communitize for a visibility change.
    pub(crate) fn check_visibility(
        &self,
        caller: &Caller,
        visibility: &str,
        target: &api_common::Target,
    ) -> Result<()> {
        match visibility {
            "public" => self.authorize(caller, "publicize_image", target),
            "community" => self.authorize(caller, "communitize_image", target),
            _ => Ok(()),
        }
    }

    pub(crate) fn check_property_quota(&self, n: usize) -> Result<()> {
        let max = self.cfg.image_property_quota;
        if max >= 0 && n as i64 > max {
            return Err(Error::TooLarge(format!(
                "The limit has been exceeded on the number of allowed image properties. \
                 Attempted: {n}, Maximum: {max}"
            )));
        }
        Ok(())
    }

    pub(crate) fn check_tag_quota(&self, n: usize) -> Result<()> {
        let max = self.cfg.image_tag_quota;
        if max >= 0 && n as i64 > max {
            return Err(Error::TooLarge(format!(
                "The limit has been exceeded on the number of allowed image tags. \
                 Attempted: {n}, Maximum: {max}"
            )));
        }
        Ok(())
    }

    /// The headers Glance adds to a create response.
    fn create_headers(&self, res: &mut Response, id: &str) {
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("/v2/images/{id}")) {
            h.insert(axum::http::header::LOCATION, v);
        }
        if !self.cfg.enabled_import_methods.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.cfg.enabled_import_methods.join(",")) {
                h.insert("openstack-image-import-methods", v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(self.store.id()) {
            h.insert("openstack-image-store-ids", v);
        }
    }
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>> {
    if body.is_empty() {
        return Err(Error::bad("Body expected in request."));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(schema_error("the request body is not a JSON object".into())),
        Err(e) => Err(Error::bad(format!("Malformed JSON in request body: {e}"))),
    }
}

fn get_i64(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub async fn create(state: State, Auth(caller): Auth, body: Bytes) -> Result<Response> {
    let mut m = body_object(&body)?;
    for k in DISALLOWED {
        if m.contains_key(*k) {
            return Err(Error::forbidden(format!("Attribute '{k}' is read-only.")));
        }
    }
    for (k, v) in &m {
        schemas::check_value(&state.cfg, k, v).map_err(schema_error)?;
    }
    for k in READ_ONLY {
        if *k != "id" && m.contains_key(*k) {
            return Err(Error::forbidden(format!("Attribute '{k}' is read-only.")));
        }
    }
    if m.contains_key("locations") {
        return Err(Error::forbidden("Attribute 'locations' is reserved."));
    }
    let id = match m.remove("id") {
        Some(Value::String(s)) => s.to_lowercase(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let owner = match m.remove("owner") {
        Some(Value::String(s)) => Some(s),
        Some(_) => None,
        None => caller.project().map(str::to_string),
    };
    let visibility = match m.remove("visibility") {
        Some(Value::String(s)) => s,
        _ => "shared".to_string(),
    };
    let target = api_common::Target::new()
        .with_opt("project_id", owner.clone())
        .with_opt("owner", owner.clone())
        .with("visibility", visibility.clone());
    if !state.allowed(&caller, "add_image", &target) {
        if owner.as_deref() != caller.project() {
            return Err(Error::forbidden(format!(
                "You are not permitted to create images owned by '{}'.",
                owner.unwrap_or_default()
            )));
        }
        return Err(Error::forbidden(
            "You are not authorized to complete add_image action.",
        ));
    }
    state.check_visibility(&caller, &visibility, &target)?;
    let tags: Vec<String> = match m.remove("tags") {
        Some(Value::Array(a)) => {
            let mut t: Vec<String> = Vec::new();
            for s in a.iter().filter_map(|v| v.as_str()) {
                if !t.iter().any(|x| x == s) {
                    t.push(s.to_string());
                }
            }
            t
        }
        _ => Vec::new(),
    };
    state.check_tag_quota(tags.len())?;
    let now = store::now_micros();
    let mut row = ImageRow {
        id: id.clone(),
        status: "queued".into(),
        visibility,
        owner: owner.clone(),
        created_at: now,
        updated_at: now,
        ..Default::default()
    };
    let mut properties = BTreeMap::new();
    for (k, v) in m {
        match k.as_str() {
            "name" => row.name = v.as_str().map(str::to_string),
            "protected" => row.protected = i64::from(v.as_bool().unwrap_or(false)),
            "os_hidden" => row.os_hidden = i64::from(v.as_bool().unwrap_or(false)),
            "disk_format" => row.disk_format = v.as_str().map(str::to_string),
            "container_format" => row.container_format = v.as_str().map(str::to_string),
            "min_disk" => row.min_disk = non_negative("min_disk", get_i64(&v))?,
            "min_ram" => row.min_ram = non_negative("min_ram", get_i64(&v))?,
            _ => {
                check_property_name(&k)?;
                properties.insert(k, v.as_str().map(str::to_string));
            }
        }
    }
    state.check_property_quota(properties.len())?;
    if db::image_id_taken(&state.db, &id).await? {
        return Err(Error::conflict(format!(
            "Image with identifier {id} already exists!"
        )));
    }
    if let Some(o) = &owner {
        state.check_image_count(o).await?;
    }
    let img = Image {
        row,
        properties,
        tags,
    };
    let mut tx = state.db.write().await?;
    db::image_create(&mut tx, &img).await.map_err(|e| {
        if store::is_unique_violation(&e) {
            Error::conflict(format!("Image with identifier {id} already exists!"))
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    let body = crate::render::image(&img, state.cfg.show_image_direct_url);
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    state.create_headers(&mut res, &id);
    Ok(res)
}

pub async fn show(state: State, Auth(caller): Auth, Path(id): Path<String>) -> Result<Json<Value>> {
    let seen = state.seen(&caller, &id).await?;
    Ok(Json(crate::render::image(
        &seen.image,
        state.cfg.show_image_direct_url,
    )))
}

pub async fn delete(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let seen = state.seen(&caller, &id).await?;
    state.enforce(&caller, &seen, "delete_image")?;
    if store::flag(seen.image.row.protected) {
        return Err(Error::forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    let mut tx = state.db.write().await?;
    let old = db::image_delete(&mut tx, &id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Failed to find image {id} to delete")))?;
    tx.commit().await?;
    // The data goes after the record: a failure here leaves an unreferenced
    // file, never a record without its data.
    if let Some(loc) = &old.location {
        if let Err(e) = state.store.delete(loc).await {
            tracing::warn!(image = %id, error = %e, "cannot remove image data");
        }
    }
    if let Err(e) = state.staging.delete_image(&id).await {
        tracing::warn!(image = %id, error = %e, "cannot remove staged data");
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_add(
    state: State,
    Auth(caller): Auth,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode> {
    let seen = state.seen(&caller, &id).await?;
    state.enforce(&caller, &seen, "modify_image")?;
    if tag.chars().count() > 255 {
        return Err(Error::bad(
            "Provided object does not match schema 'image': tag is too long",
        ));
    }
    if !seen.image.tags.contains(&tag) {
        state.check_tag_quota(seen.image.tags.len() + 1)?;
    }
    let mut tx = state.db.write().await?;
    db::tag_add(&mut tx, &id, &tag).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_remove(
    state: State,
    Auth(caller): Auth,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode> {
    let seen = state.seen(&caller, &id).await?;
    state.enforce(&caller, &seen, "modify_image")?;
    let mut tx = state.db.write().await?;
    let removed = db::tag_remove(&mut tx, &id, &tag).await?;
    if !removed {
        return Err(Error::NotFound(format!("Tag {tag} not found.")));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ list

const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
];

fn sort_key(k: &str) -> Result<Col> {
    if !SORT_KEYS.contains(&k) {
        return Err(Error::bad(format!(
            "Invalid sort key: {k}. It must be one of the following: {}.",
            SORT_KEYS.join(", ")
        )));
    }
    Col::from_name(k).ok_or_else(|| Error::bad(format!("Invalid sort key: {k}")))
}

fn sort_dir(d: &str) -> Result<bool> {
    match d {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(Error::bad(format!("Invalid sort direction: {other}"))),
    }
}

/// `sort=name:asc,size:desc` or `sort_key=name&sort_dir=asc...`; created_at
/// and id are appended so that the order is total.
fn sorting(params: &[(String, String)]) -> Result<Vec<(Col, bool)>> {
    let sort: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "sort")
        .map(|(_, v)| v.as_str())
        .collect();
    let keys: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "sort_key")
        .map(|(_, v)| v.trim())
        .collect();
    let dirs: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "sort_dir")
        .map(|(_, v)| v.trim())
        .collect();
    let mut out: Vec<(Col, bool)> = Vec::new();
    let default_desc;
    if !sort.is_empty() {
        if !keys.is_empty() || !dirs.is_empty() {
            return Err(Error::bad("Old and new sorting syntax cannot be combined"));
        }
        for part in sort.iter().flat_map(|s| s.trim().split(',')) {
            let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
            let d = if d.trim().is_empty() {
                "desc"
            } else {
                d.trim()
            };
            out.push((sort_key(k.trim())?, sort_dir(d)?));
        }
        default_desc = true;
    } else {
        if dirs.len() > 1 && dirs.len() != keys.len() {
            return Err(Error::bad(
                "Number of sort dirs does not match the number of sort keys",
            ));
        }
        let dirs: Vec<bool> = dirs.iter().map(|d| sort_dir(d)).collect::<Result<_>>()?;
        default_desc = dirs.first().copied().unwrap_or(true);
        for (i, k) in keys.iter().enumerate() {
            let desc = if dirs.len() > 1 {
                dirs[i]
            } else {
                default_desc
            };
            out.push((sort_key(k)?, desc));
        }
    }
    if out.is_empty() {
        out.push((Col::CreatedAt, default_desc));
    }
    for c in [Col::CreatedAt, Col::Id] {
        if !out.iter().any(|(k, _)| *k == c) {
            out.push((c, default_desc));
        }
    }
    Ok(out)
}

/// Splits `op:value`; a bare value (or an ISO time with colons) means eq.
fn split_op(v: &str) -> (&str, &str) {
    if parse_time(v).is_some() {
        return ("eq", v);
    }
    match v.split_once(':') {
        Some((op, rest)) => (op, rest),
        None => ("eq", v),
    }
}

/// ISO 8601 time in microseconds.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// `in:a,"b,c",d` values.
fn split_in(v: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = v.chars().peekable();
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(Error::bad(format!(
            "Invalid filter value {v}. The quote is not closed."
        )));
    }
    if !cur.is_empty() || was_quoted || v.ends_with(',') {
        out.push(cur);
    }
    Ok(out)
}

fn bool_filter(name: &str, v: &str) -> Result<bool> {
    match v.to_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::bad(format!(
            "Invalid value '{v}' for '{name}' filter. Valid values are 'true' or 'false'."
        ))),
    }
}

pub async fn list(
    state: State,
    Auth(caller): Auth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    let params = query_pairs(raw.as_deref());
    let list_target =
        api_common::Target::new().with_opt("project_id", caller.project().map(str::to_string));
    state.authorize(&caller, "get_images", &list_target)?;
    let mut limit = state.cfg.limit_param_default;
    let mut marker_id = None;
    let mut member_status = "accepted".to_string();
    let mut q = ImageQuery {
        visibility: None,
        member_status: String::new(),
        conds: vec![Cond::Cmp(Col::OsHidden, Cmp::Eq, Arg::Int(0))],
        properties: Vec::new(),
        tags: Vec::new(),
        sort: sorting(&params)?,
        marker: None,
        limit: 0,
    };
    for (k, v) in &params {
        match k.as_str() {
            "sort" | "sort_key" | "sort_dir" => {}
            "limit" => {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| Error::bad("limit param must be an integer"))?;
                if n < 0 {
                    return Err(Error::bad("limit param must be positive"));
                }
                limit = n as usize;
            }
            "marker" => marker_id = Some(v.clone()),
            "member_status" => {
                if !["pending", "accepted", "rejected", "all"].contains(&v.as_str()) {
                    return Err(Error::bad(format!("Invalid status: {v}")));
                }
                member_status = v.clone();
            }
            "tag" => q.tags.push(v.trim().to_string()),
            "visibility" => {
                if !["community", "public", "private", "shared", "all"].contains(&v.as_str()) {
                    return Err(Error::bad(format!("Invalid visibility value: {v}")));
                }
                q.visibility = Some(v.clone());
            }
            "changes-since" => {
                return Err(Error::bad(
                    "The \"changes-since\" filter is no longer available on v2.",
                ))
            }
            "os_hidden" => {
                q.conds[0] = Cond::Cmp(Col::OsHidden, Cmp::Eq, Arg::Int(bool_filter(k, v)? as i64));
            }
            "protected" => q.conds.push(Cond::Cmp(
                Col::Protected,
                Cmp::Eq,
                Arg::Int(bool_filter(k, v)? as i64),
            )),
            "created_at" | "updated_at" => {
                let col = Col::from_name(k).ok_or_else(|| Error::bad("bad filter"))?;
                let (op, t) = split_op(v);
                let op = Cmp::parse(op)
                    .ok_or_else(|| Error::bad("Unable to filter on a unknown operator."))?;
                let t = parse_time(t).ok_or_else(|| {
                    Error::bad(format!(
                        "Bad \"{k}\" query filter format. Use ISO 8601 DateTime notation."
                    ))
                })?;
                q.conds.push(Cond::Cmp(col, op, Arg::Int(t)));
            }
            "name" | "id" | "status" | "container_format" | "disk_format" => {
                let col = Col::from_name(k).ok_or_else(|| Error::bad("bad filter"))?;
                let (op, val) = split_op(v);
                match op {
                    "in" => q.conds.push(Cond::In(col, split_in(val)?)),
                    "eq" => q.conds.push(Cond::In(col, vec![val.to_string()])),
                    other => {
                        return Err(Error::bad(format!(
                            "Unable to filter by unknown operator '{other}'."
                        )))
                    }
                }
            }
            _ if k.ends_with("_min") || k.ends_with("_max") => {
                let col = Col::from_name(&k[..k.len() - 4])
                    .filter(|c| {
                        matches!(c, Col::Size | Col::VirtualSize | Col::MinDisk | Col::MinRam)
                    })
                    .ok_or_else(|| Error::bad(format!("Unable to filter on a range of {k}.")))?;
                let n: i64 = v.trim().parse().map_err(|_| {
                    Error::bad("Unable to filter on a range with a non-numeric value.")
                })?;
                let op = if k.ends_with("_min") {
                    Cmp::Gte
                } else {
                    Cmp::Lte
                };
                q.conds.push(Cond::Cmp(col, op, Arg::Int(n)));
            }
            "owner" | "checksum" | "os_hash_value" | "os_hash_algo" => {
                let col = Col::from_name(k).ok_or_else(|| Error::bad("bad filter"))?;
                q.conds.push(Cond::Cmp(col, Cmp::Eq, Arg::Text(v.clone())));
            }
            "size" | "virtual_size" | "min_disk" | "min_ram" => {
                let col = Col::from_name(k).ok_or_else(|| Error::bad("bad filter"))?;
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| Error::bad(format!("Invalid value '{v}' for '{k}' filter.")))?;
                q.conds.push(Cond::Cmp(col, Cmp::Eq, Arg::Int(n)));
            }
            _ => q.properties.push((k.clone(), v.clone())),
        }
    }
    q.member_status = member_status;
    q.limit = limit.min(state.cfg.api_limit_max);
    let viewer = Viewer {
        project: caller.project().map(str::to_string),
        is_admin: caller.is_admin,
    };
    if let Some(m) = &marker_id {
        let seen = state
            .seen(&caller, m)
            .await
            .map_err(|_| Error::bad(format!("No image found with ID {m}")))?;
        q.marker = Some(seen.image.row);
    }
    let rows = if q.limit == 0 {
        Vec::new()
    } else {
        crate::db::list::image_list(&state.db, &viewer, &q).await?
    };
    let full = rows.len() == q.limit && q.limit > 0;
    let images = db::image_details(&state.db, rows).await?;
    let mut out = Vec::with_capacity(images.len());
    for img in &images {
        // Each image passes get_image, as in Glance; the query has already
        // applied visibility, so membership is known without a lookup.
        let r = &img.row;
        let mut t = api_common::Target::new()
            .with("id", r.id.clone())
            .with("visibility", r.visibility.clone())
            .with_opt("project_id", r.owner.clone())
            .with_opt("owner", r.owner.clone());
        if let Some(p) = caller.project() {
            if r.visibility == "shared" && r.owner.as_deref() != Some(p) && !caller.is_admin {
                t.insert("member_id", p);
            }
        }
        if state.allowed(&caller, "get_image", &t) {
            out.push(crate::render::image(img, state.cfg.show_image_direct_url));
        }
    }
    let rest: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    let encode = |pairs: &[(String, String)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish()
    };
    let mut body = json!({
        "images": out,
        "first": if rest.is_empty() { "/v2/images".to_string() } else { format!("/v2/images?{}", encode(&rest)) },
        "schema": "/v2/schemas/images",
    });
    if full {
        if let Some(last) = images.last() {
            let mut next = rest.clone();
            next.push(("marker".into(), last.row.id.clone()));
            body["next"] = json!(format!("/v2/images?{}", encode(&next)));
        }
    }
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sort_syntaxes() {
        assert_eq!(
            sorting(&p(&[])).unwrap(),
            vec![(Col::CreatedAt, true), (Col::Id, true)]
        );
        assert_eq!(
            sorting(&p(&[("sort", "name:asc,size")])).unwrap(),
            vec![
                (Col::Name, false),
                (Col::Size, true),
                (Col::CreatedAt, true),
                (Col::Id, true)
            ]
        );
        assert_eq!(
            sorting(&p(&[("sort_key", "name"), ("sort_dir", "asc")])).unwrap(),
            vec![
                (Col::Name, false),
                (Col::CreatedAt, false),
                (Col::Id, false)
            ]
        );
        assert!(sorting(&p(&[("sort", "name"), ("sort_key", "id")])).is_err());
        assert!(sorting(&p(&[("sort_key", "owner")])).is_err());
        assert!(sorting(&p(&[("sort", "name:up")])).is_err());
        assert!(sorting(&p(&[
            ("sort_key", "name"),
            ("sort_key", "id"),
            ("sort_key", "size"),
            ("sort_dir", "asc"),
            ("sort_dir", "desc")
        ]))
        .is_err());
    }

    #[test]
    fn filter_values() {
        assert_eq!(split_op("in:a,b"), ("in", "a,b"));
        assert_eq!(
            split_op("2024-01-02T03:04:05Z"),
            ("eq", "2024-01-02T03:04:05Z")
        );
        assert_eq!(
            split_op("gt:2024-01-02T03:04:05Z"),
            ("gt", "2024-01-02T03:04:05Z")
        );
        assert_eq!(split_op("plain"), ("eq", "plain"));
        assert_eq!(split_in("a,\"b,c\",d").unwrap(), vec!["a", "b,c", "d"]);
        assert!(split_in("\"a").is_err());
        assert_eq!(
            parse_time("2024-01-02T03:04:05Z"),
            parse_time("2024-01-02T03:04:05+00:00")
        );
        assert!(parse_time("yesterday").is_none());
    }
}
