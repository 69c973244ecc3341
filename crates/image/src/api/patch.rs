//! `PATCH /v2/images/{id}`: JSON patch in Glance's two media types,
//! `application/openstack-images-v2.1-json-patch` (operations as
//! `{"op": "replace", "path": "/name", "value": ...}`) and the older
//! `application/openstack-images-v2.0-json-patch` (`{"replace": "/name",
//! "value": ...}`).

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::images::{check_property_name, schema_error, READ_ONLY, RESERVED, RESERVED_PREFIX};
use super::{Auth, State};
use crate::db::images::Image;
use crate::error::{Error, Result};
use crate::schemas;

const MEDIA_V21: &str = "application/openstack-images-v2.1-json-patch";
const MEDIA_V20: &str = "application/openstack-images-v2.0-json-patch";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Replace,
}

#[derive(Debug)]
struct Change {
    op: Op,
    path: Vec<String>,
    value: Option<Value>,
}

fn op_name(o: Op) -> &'static str {
    match o {
        Op::Add => "add",
        Op::Remove => "remove",
        Op::Replace => "replace",
    }
}

fn parse_op(s: &str) -> Option<Op> {
    Some(match s {
        "add" => Op::Add,
        "remove" => Op::Remove,
        "replace" => Op::Replace,
        _ => return None,
    })
}

/// Decodes a JSON pointer of the limited form Glance accepts.
fn pointer(p: &str) -> Result<Vec<String>> {
    if !p.starts_with('/') {
        return Err(Error::bad(format!(
            "Pointer `{p}` does not start with \"/\"."
        )));
    }
    let rest = &p[1..];
    if rest.split('/').skip(1).any(|s| s.trim().is_empty()) && rest.contains('/') {
        return Err(Error::bad(format!(
            "Pointer `{p}` contains adjacent \"/\"."
        )));
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err(Error::bad(format!("Pointer `{p}` end with \"/\".")));
    }
    if rest.trim().is_empty() {
        return Err(Error::bad(format!(
            "Pointer `{p}` does not contains valid token."
        )));
    }
    let bad_escape = {
        let b = p.as_bytes();
        b.iter()
            .enumerate()
            .any(|(i, c)| *c == b'~' && !matches!(b.get(i + 1), Some(b'0') | Some(b'1')))
    };
    if bad_escape {
        return Err(Error::bad(format!(
            "Pointer `{p}` contains \"~\" not part of a recognized escape sequence."
        )));
    }
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~").trim().to_string())
        .collect())
}

fn parse_changes(body: &[u8], draft10: bool) -> Result<Vec<Change>> {
    if body.is_empty() {
        return Err(Error::bad("Body expected in request."));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::bad(format!("Malformed JSON in request body: {e}")))?;
    let Value::Array(items) = v else {
        return Err(Error::bad(
            "Request body must be a JSON array of operation objects.",
        ));
    };
    let mut out = Vec::new();
    for raw in items {
        let Value::Object(m) = raw else {
            return Err(Error::bad("Operations must be JSON objects."));
        };
        let (op, path) = if draft10 {
            let op = match m.get("op") {
                None => {
                    return Err(Error::bad(
                        "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
                    ))
                }
                Some(o) => o.as_str().and_then(parse_op).ok_or_else(|| {
                    Error::bad(format!(
                        "Invalid operation: `{}`. It must be one of the following: add, remove, replace.",
                        o.as_str().map(str::to_string).unwrap_or_else(|| o.to_string())
                    ))
                })?,
            };
            let path = m
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::bad("Unable to find 'path' in JSON Schema change"))?;
            (op, path.to_string())
        } else {
            let found: Vec<Op> = [Op::Add, Op::Remove, Op::Replace]
                .into_iter()
                .filter(|o| m.contains_key(op_name(*o)))
                .collect();
            match found.as_slice() {
                [o] => {
                    let path = m
                        .get(op_name(*o))
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::bad("The path of an operation must be a string."))?;
                    (*o, path.to_string())
                }
                [] => {
                    return Err(Error::bad(
                        "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                    ))
                }
                _ => {
                    return Err(Error::bad(
                        "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".",
                    ))
                }
            }
        };
        let path = pointer(&path)?;
        let depth = if path[0] == "locations" && op != Op::Replace {
            2
        } else {
            1
        };
        if path.len() != depth {
            return Err(Error::bad(format!(
                "Invalid JSON pointer for this resource: '/{}'",
                path.join("/")
            )));
        }
        let value = if op == Op::Remove {
            None
        } else {
            Some(m.get("value").cloned().ok_or_else(|| {
                Error::bad(format!(
                    "Operation \"{}\" requires a member named \"value\".",
                    op_name(op)
                ))
            })?)
        };
        out.push(Change { op, path, value });
    }
    Ok(out)
}

pub async fn update(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let media = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_lowercase())
        .unwrap_or_default();
    let draft10 = match media.as_str() {
        MEDIA_V21 => true,
        MEDIA_V20 => false,
        _ => {
            let mut res = Error::UnsupportedMediaType(format!(
                "Image PATCH expects Content-Type one of: {MEDIA_V20}, {MEDIA_V21}"
            ))
            .into_response();
            res.headers_mut().insert(
                "accept-patch",
                HeaderValue::from_static(
                    "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch",
                ),
            );
            return Ok(res);
        }
    };
    let changes = parse_changes(&body, draft10)?;
    // What the schema says, before looking at the image.
    for c in &changes {
        let root = c.path[0].as_str();
        if READ_ONLY.contains(&root) {
            return Err(Error::forbidden(format!(
                "Attribute '{root}' is read-only."
            )));
        }
        if RESERVED.contains(&root) || root.starts_with(RESERVED_PREFIX) {
            return Err(Error::forbidden(format!("Attribute '{root}' is reserved.")));
        }
        if let Some(v) = &c.value {
            if root != "locations" {
                schemas::check_value(&state.cfg, root, v).map_err(schema_error)?;
            }
        }
    }
    let seen = state.seen(&caller, &id).await?;
    let mut img: Image = seen.image.clone();
    for c in &changes {
        let root = c.path[0].as_str();
        if root == "locations" {
            return Err(Error::forbidden(
                "It's not allowed to update locations if locations are invisible.",
            ));
        }
        if root == "owner" && c.op == Op::Replace && !caller.is_admin {
            return Err(Error::forbidden("Owner can't be updated by non admin."));
        }
        if root == "visibility" {
            if let Some(Value::String(v)) = &c.value {
                state.check_visibility(&caller, v, &seen.target)?;
            }
        }
        state.enforce(&caller, &seen, "modify_image")?;
        let base = schemas::is_base(root);
        match c.op {
            Op::Remove => {
                if base {
                    return Err(Error::forbidden(format!(
                        "Property {root} may not be removed."
                    )));
                }
                if img.properties.remove(root).is_none() {
                    return Err(Error::conflict(format!("Property {root} does not exist.")));
                }
            }
            Op::Add | Op::Replace => {
                let v = c.value.clone().unwrap_or(Value::Null);
                if base {
                    set_base(&mut img, root, v)?;
                } else {
                    let exists = img.properties.contains_key(root);
                    if c.op == Op::Replace && !exists {
                        return Err(Error::conflict(format!("Property {root} does not exist.")));
                    }
                    if c.op == Op::Add && exists && !draft10 {
                        return Err(Error::conflict(format!("Property {root} already present.")));
                    }
                    check_property_name(root)?;
                    img.properties
                        .insert(root.to_string(), v.as_str().map(str::to_string));
                }
            }
        }
    }
    if changes.is_empty() {
        return Ok(
            Json(crate::render::image(&img, state.cfg.show_image_direct_url)).into_response(),
        );
    }
    if img.properties.len() > seen.image.properties.len() {
        state.check_property_quota(img.properties.len())?;
    }
    if img.tags.len() > seen.image.tags.len() {
        state.check_tag_quota(img.tags.len())?;
    }
    img.row.updated_at = store::now_micros();
    let mut tx = state.db.write().await?;
    if !crate::db::images::image_update_meta(&mut tx, &img).await? {
        return Err(Error::image_not_found(&id));
    }
    tx.commit().await?;
    // Re-read: an upload may have changed the status meanwhile.
    let now = crate::db::images::image_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::image_not_found(&id))?;
    Ok((
        StatusCode::OK,
        Json(crate::render::image(&now, state.cfg.show_image_direct_url)),
    )
        .into_response())
}

fn set_base(img: &mut Image, name: &str, v: Value) -> Result<()> {
    let r = &mut img.row;
    let s = || v.as_str().map(str::to_string);
    match name {
        "name" => r.name = s(),
        "visibility" => r.visibility = s().unwrap_or_else(|| r.visibility.clone()),
        "protected" => r.protected = i64::from(v.as_bool().unwrap_or(false)),
        "os_hidden" => r.os_hidden = i64::from(v.as_bool().unwrap_or(false)),
        "owner" => r.owner = s(),
        "min_disk" | "min_ram" => {
            let n = v.as_i64().unwrap_or(0);
            if n < 0 {
                return Err(Error::bad(format!(
                    "Invalid value '{n}' for parameter '{name}': Cannot be a negative value."
                )));
            }
            if name == "min_disk" {
                r.min_disk = n;
            } else {
                r.min_ram = n;
            }
        }
        "disk_format" | "container_format" => {
            if !matches!(r.status.as_str(), "queued" | "importing") {
                return Err(Error::forbidden(format!(
                    "Attribute {name} can be only replaced for a queued image."
                )));
            }
            if name == "disk_format" {
                r.disk_format = s();
            } else {
                r.container_format = s();
            }
        }
        "tags" => {
            let mut tags: Vec<String> = Vec::new();
            for t in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !tags.iter().any(|x| x == t) {
                    tags.push(t.to_string());
                }
            }
            img.tags = tags;
        }
        other => {
            return Err(Error::forbidden(format!(
                "Attribute '{other}' is read-only."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_and_operations() {
        assert_eq!(pointer("/name").unwrap(), vec!["name"]);
        assert_eq!(pointer("/a~1b~0c").unwrap(), vec!["a/b~c"]);
        assert!(pointer("name").is_err());
        assert!(pointer("/a//b").is_err());
        assert!(pointer("/a/").is_err());
        assert!(pointer("/").is_err());
        assert!(pointer("/a~2").is_err());
        let c = parse_changes(
            br#"[{"op": "replace", "path": "/name", "value": "x"}]"#,
            true,
        )
        .unwrap();
        assert_eq!(c[0].op, Op::Replace);
        let c = parse_changes(br#"[{"remove": "/foo"}]"#, false).unwrap();
        assert_eq!((c[0].op, c[0].path[0].as_str()), (Op::Remove, "foo"));
        for bad in [
            &br#"{"op": "replace"}"#[..],
            br#"[{"op": "move", "path": "/a"}]"#,
            br#"[{"op": "add", "path": "/a"}]"#,
            br#"[{"path": "/a"}]"#,
            br#"[{"op": "add", "path": "/a/b", "value": 1}]"#,
            br#"[1]"#,
            br#"[{"op": "add", "path": "/a", "value": 1"#,
        ] {
            assert!(
                parse_changes(bad, true).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_changes(br#"[{"add": "/a", "replace": "/b", "value": 1}]"#, false).is_err());
    }
}
