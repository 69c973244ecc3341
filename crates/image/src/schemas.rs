//! The JSON schemas served at `/v2/schemas/*`, and the checks request
//! values go through, from one description of every image attribute.

use serde_json::{json, Map, Value};

use crate::ImageConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Bool,
    Array,
}

struct Prop {
    name: &'static str,
    ty: Ty,
    nullable: bool,
    read_only: bool,
    max_len: Option<usize>,
    uuid: bool,
    choices: Choices,
    description: &'static str,
    /// False for the extra properties every deployment describes (as
    /// Glance's shipped schema-image.json does).
    base: bool,
}

#[derive(Clone, Copy)]
enum Choices {
    None,
    Fixed(&'static [&'static str]),
    DiskFormats,
    ContainerFormats,
}

const UUID_PATTERN: &str =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

pub const STATUSES: &[&str] = &[
    "queued",
    "saving",
    "active",
    "killed",
    "deleted",
    "uploading",
    "importing",
    "pending_delete",
    "deactivated",
];
pub const VISIBILITIES: &[&str] = &["community", "public", "private", "shared"];

const fn p(name: &'static str, ty: Ty, description: &'static str) -> Prop {
    Prop {
        name,
        ty,
        nullable: false,
        read_only: false,
        max_len: None,
        uuid: false,
        choices: Choices::None,
        description,
        base: true,
    }
}

fn props() -> Vec<Prop> {
    use Ty::*;
    vec![
        Prop {
            uuid: true,
            ..p("id", Str, "The image's identifier (a UUID)")
        },
        Prop {
            nullable: true,
            max_len: Some(255),
            ..p("name", Str, "A name for the image")
        },
        Prop {
            read_only: true,
            choices: Choices::Fixed(STATUSES),
            ..p("status", Str, "Where the image is in its life cycle")
        },
        Prop {
            choices: Choices::Fixed(VISIBILITIES),
            ..p("visibility", Str, "Who may see and use the image")
        },
        p("protected", Bool, "A protected image cannot be deleted"),
        p(
            "os_hidden",
            Bool,
            "A hidden image is left out of default image lists",
        ),
        Prop {
            nullable: true,
            read_only: true,
            max_len: Some(32),
            ..p("checksum", Str, "MD5 of the image data (hex)")
        },
        Prop {
            nullable: true,
            read_only: true,
            max_len: Some(64),
            ..p("os_hash_algo", Str, "Algorithm of os_hash_value")
        },
        Prop {
            nullable: true,
            read_only: true,
            max_len: Some(128),
            ..p(
                "os_hash_value",
                Str,
                "Hash of the image data (hex) by os_hash_algo",
            )
        },
        Prop {
            nullable: true,
            max_len: Some(255),
            ..p("owner", Str, "The project that owns the image")
        },
        Prop {
            nullable: true,
            read_only: true,
            ..p("size", Int, "Size of the image data in bytes")
        },
        Prop {
            nullable: true,
            read_only: true,
            ..p(
                "virtual_size",
                Int,
                "Size of the disk the image holds, in bytes",
            )
        },
        Prop {
            nullable: true,
            choices: Choices::ContainerFormats,
            ..p("container_format", Str, "How the image data is packaged")
        },
        Prop {
            nullable: true,
            choices: Choices::DiskFormats,
            ..p("disk_format", Str, "Format of the disk image data")
        },
        Prop {
            read_only: true,
            ..p("created_at", Str, "When the image was created")
        },
        Prop {
            read_only: true,
            ..p("updated_at", Str, "When the image last changed")
        },
        p("tags", Array, "Strings attached to the image"),
        Prop {
            read_only: true,
            ..p("direct_url", Str, "Where the store keeps the data")
        },
        p("min_ram", Int, "RAM (MiB) an instance of the image needs"),
        p("min_disk", Int, "Disk (GiB) an instance of the image needs"),
        Prop {
            read_only: true,
            ..p("self", Str, "The image's URL")
        },
        Prop {
            read_only: true,
            ..p("file", Str, "URL of the image data")
        },
        Prop {
            read_only: true,
            ..p("stores", Str, "Stores holding the data, comma-separated")
        },
        Prop {
            read_only: true,
            ..p("schema", Str, "URL of this schema")
        },
        // Extra properties with a known meaning.
        Prop {
            nullable: true,
            uuid: true,
            base: false,
            ..p(
                "kernel_id",
                Str,
                "Image holding the kernel for an AMI-style image",
            )
        },
        Prop {
            nullable: true,
            uuid: true,
            base: false,
            ..p(
                "ramdisk_id",
                Str,
                "Image holding the ramdisk for an AMI-style image",
            )
        },
        Prop {
            base: false,
            ..p("instance_uuid", Str, "Server this image is a snapshot of")
        },
        Prop {
            base: false,
            ..p("architecture", Str, "CPU architecture the image needs")
        },
        Prop {
            base: false,
            ..p(
                "os_distro",
                Str,
                "Operating system distribution (lower case)",
            )
        },
        Prop {
            base: false,
            ..p("os_version", Str, "Operating system version")
        },
        Prop {
            base: false,
            ..p("description", Str, "What the image is")
        },
        Prop {
            base: false,
            ..p(
                "cinder_encryption_key_id",
                Str,
                "Key of an encrypted volume image",
            )
        },
        Prop {
            base: false,
            choices: Choices::Fixed(&["on_image_deletion", "do_not_delete"]),
            ..p(
                "cinder_encryption_key_deletion_policy",
                Str,
                "What happens to the key when the image is deleted",
            )
        },
    ]
}

fn prop_schema(pr: &Prop, cfg: &ImageConfig) -> Value {
    let mut m = Map::new();
    let ty = match pr.ty {
        Ty::Str => "string",
        Ty::Int => "integer",
        Ty::Bool => "boolean",
        Ty::Array => "array",
    };
    m.insert(
        "type".into(),
        if pr.nullable {
            json!(["null", ty])
        } else {
            json!(ty)
        },
    );
    m.insert("description".into(), json!(pr.description));
    if pr.read_only {
        m.insert("readOnly".into(), json!(true));
    }
    if let Some(n) = pr.max_len {
        m.insert("maxLength".into(), json!(n));
    }
    if pr.uuid {
        m.insert("pattern".into(), json!(UUID_PATTERN));
    }
    let choices: Option<Vec<Value>> = match pr.choices {
        Choices::None => None,
        Choices::Fixed(c) => Some(c.iter().map(|s| json!(s)).collect()),
        Choices::DiskFormats => Some(cfg.disk_formats.iter().map(|s| json!(s)).collect()),
        Choices::ContainerFormats => Some(cfg.container_formats.iter().map(|s| json!(s)).collect()),
    };
    if let Some(mut c) = choices {
        if pr.nullable {
            c.insert(0, Value::Null);
        }
        m.insert("enum".into(), Value::Array(c));
    }
    if pr.ty == Ty::Array {
        m.insert(
            "items".into(),
            json!({ "type": "string", "maxLength": 255 }),
        );
    }
    if !pr.base {
        m.insert("is_base".into(), json!(false));
    }
    Value::Object(m)
}

/// `/v2/schemas/image`.
pub fn image(cfg: &ImageConfig) -> Value {
    let mut properties: Map<String, Value> = props()
        .iter()
        .map(|p| (p.name.to_string(), prop_schema(p, cfg)))
        .collect();
    properties.insert(
        "locations".into(),
        json!({
            "type": "array",
            "description": "Where the image data is kept (shown only when the deployment allows)",
            "items": {
                "type": "object",
                "properties": {
                    "url": { "type": "string", "maxLength": 255 },
                    "metadata": { "type": "object" }
                },
                "required": ["url", "metadata"]
            }
        }),
    );
    json!({
        "name": "image",
        "properties": properties,
        "additionalProperties": { "type": "string" },
        "links": [
            { "rel": "self", "href": "{self}" },
            { "rel": "enclosure", "href": "{file}" },
            { "rel": "describedby", "href": "{schema}" }
        ]
    })
}

/// `/v2/schemas/images`.
pub fn images(cfg: &ImageConfig) -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": { "type": "array", "items": image(cfg) },
            "schema": { "type": "string" },
            "first": { "type": "string" },
            "next": { "type": "string" }
        },
        "links": [
            { "rel": "first", "href": "{first}" },
            { "rel": "next", "href": "{next}" },
            { "rel": "describedby", "href": "{schema}" }
        ]
    })
}

/// `/v2/schemas/member`.
pub fn member() -> Value {
    json!({
        "name": "member",
        "properties": {
            "created_at": { "type": "string", "description": "When the membership was created" },
            "updated_at": { "type": "string", "description": "When the membership last changed" },
            "image_id": {
                "type": "string",
                "pattern": UUID_PATTERN,
                "description": "The shared image"
            },
            "member_id": { "type": "string", "description": "The project the image is shared with" },
            "status": {
                "type": "string",
                "enum": ["pending", "accepted", "rejected"],
                "description": "Whether the member project has accepted the image"
            },
            "schema": { "type": "string", "readOnly": true }
        }
    })
}

/// `/v2/schemas/members`.
pub fn members() -> Value {
    json!({
        "name": "members",
        "properties": {
            "members": { "type": "array", "items": member() },
            "schema": { "type": "string" }
        },
        "links": [{ "rel": "describedby", "href": "{schema}" }]
    })
}

/// `/v2/schemas/task`.
pub fn task() -> Value {
    json!({
        "name": "task",
        "properties": {
            "id": { "type": "string", "pattern": UUID_PATTERN, "description": "The task's identifier" },
            "type": { "type": "string", "enum": ["import", "api_image_import", "location_import"], "description": "What the task does" },
            "status": { "type": "string", "enum": ["pending", "processing", "success", "failure"], "description": "Where the task is" },
            "input": { "type": ["null", "object"], "description": "What the task was given" },
            "result": { "type": ["null", "object"], "description": "What the task produced" },
            "owner": { "type": "string", "description": "Project that created the task" },
            "message": { "type": "string", "description": "Why the task failed, if it did" },
            "image_id": { "type": "string", "description": "The image the task works on" },
            "request_id": { "type": "string", "description": "The request that created the task" },
            "user_id": { "type": "string", "description": "The user that created the task" },
            "expires_at": { "type": ["null", "string"], "description": "When the task record goes away" },
            "created_at": { "type": "string", "description": "When the task was created" },
            "updated_at": { "type": "string", "description": "When the task last changed" },
            "self": { "type": "string" },
            "schema": { "type": "string" }
        },
        "links": [
            { "rel": "self", "href": "{self}" },
            { "rel": "describedby", "href": "{schema}" }
        ]
    })
}

/// `/v2/schemas/tasks`.
pub fn tasks() -> Value {
    json!({
        "name": "tasks",
        "properties": {
            "tasks": { "type": "array", "items": task() },
            "schema": { "type": "string" },
            "first": { "type": "string" },
            "next": { "type": "string" }
        },
        "links": [
            { "rel": "first", "href": "{first}" },
            { "rel": "next", "href": "{next}" },
            { "rel": "describedby", "href": "{schema}" }
        ]
    })
}

/// Names of the core (base) attributes of an image.
pub fn is_base(name: &str) -> bool {
    props().iter().any(|p| p.base && p.name == name) || name == "locations"
}

/// Checks one attribute value as the image schema would. Extra properties
/// without a description must be strings.
pub fn check_value(cfg: &ImageConfig, name: &str, v: &Value) -> Result<(), String> {
    let all = props();
    let Some(pr) = all.iter().find(|p| p.name == name) else {
        return match v {
            Value::String(_) => Ok(()),
            other => Err(format!("{other} is not of type 'string'")),
        };
    };
    if v.is_null() {
        return if pr.nullable {
            Ok(())
        } else {
            Err(format!("None is not of type '{}'", ty_name(pr.ty)))
        };
    }
    match (pr.ty, v) {
        (Ty::Str, Value::String(s)) => {
            if let Some(n) = pr.max_len {
                if s.chars().count() > n {
                    return Err(format!("'{s}' is too long"));
                }
            }
            if pr.uuid
                && uuid::Uuid::parse_str(s)
                    .map(|u| u.hyphenated().to_string().len())
                    .ok()
                    != Some(s.len())
            {
                return Err(format!("'{s}' does not match '{UUID_PATTERN}'"));
            }
            let choices: Option<Vec<String>> = match pr.choices {
                Choices::None => None,
                Choices::Fixed(c) => Some(c.iter().map(|x| x.to_string()).collect()),
                Choices::DiskFormats => Some(cfg.disk_formats.clone()),
                Choices::ContainerFormats => Some(cfg.container_formats.clone()),
            };
            if let Some(c) = choices {
                if !c.iter().any(|x| x == s) {
                    return Err(format!("'{s}' is not one of {c:?}"));
                }
            }
            Ok(())
        }
        (Ty::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        (Ty::Bool, Value::Bool(_)) => Ok(()),
        (Ty::Array, Value::Array(items)) => {
            for it in items {
                match it {
                    Value::String(s) if s.chars().count() <= 255 => {}
                    Value::String(s) => return Err(format!("'{s}' is too long")),
                    other => return Err(format!("{other} is not of type 'string'")),
                }
            }
            Ok(())
        }
        (t, other) => Err(format!("{other} is not of type '{}'", ty_name(t))),
    }
}

fn ty_name(t: Ty) -> &'static str {
    match t {
        Ty::Str => "string",
        Ty::Int => "integer",
        Ty::Bool => "boolean",
        Ty::Array => "array",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_like_the_schema() {
        let cfg = ImageConfig::default();
        assert!(check_value(&cfg, "name", &json!(null)).is_ok());
        assert!(check_value(&cfg, "name", &json!("x".repeat(256))).is_err());
        assert!(check_value(&cfg, "min_ram", &json!("5")).is_err());
        assert!(check_value(&cfg, "min_ram", &json!(5)).is_ok());
        assert!(check_value(&cfg, "protected", &json!("yes")).is_err());
        assert!(check_value(&cfg, "disk_format", &json!("qcow2")).is_ok());
        assert!(check_value(&cfg, "disk_format", &json!("qcow3")).is_err());
        assert!(check_value(&cfg, "disk_format", &json!(null)).is_ok());
        assert!(check_value(&cfg, "visibility", &json!("everyone")).is_err());
        assert!(check_value(&cfg, "tags", &json!(["a", 1])).is_err());
        assert!(check_value(&cfg, "kernel_id", &json!(null)).is_ok());
        assert!(check_value(&cfg, "kernel_id", &json!("not-a-uuid")).is_err());
        assert!(check_value(
            &cfg,
            "kernel_id",
            &json!("0b6f4a5e-1d2c-4c0e-9d55-2a1f3e0b9c11")
        )
        .is_ok());
        assert!(check_value(&cfg, "hw_disk_bus", &json!("virtio")).is_ok());
        assert!(check_value(&cfg, "hw_disk_bus", &json!(1)).is_err());
        let s = image(&cfg);
        assert_eq!(s["properties"]["disk_format"]["enum"][0], Value::Null);
        assert_eq!(s["additionalProperties"]["type"], "string");
    }
}
