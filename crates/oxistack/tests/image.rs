//! Image (Glance v2) behaviour over HTTP, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{project_scope, Cloud, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;

const PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// Sends bytes with a content type (uploads, JSON patches).
async fn send(
    c: &Cloud,
    method: Method,
    path: &str,
    token: &str,
    ctype: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> common::Reply {
    let mut rb = reqwest::Client::new()
        .request(method, format!("{}{path}", c.url))
        .header("X-Auth-Token", token)
        .header("Content-Type", ctype)
        .body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    common::Reply {
        status,
        headers,
        body,
    }
}

async fn patch(c: &Cloud, token: &str, id: &str, ops: Value) -> common::Reply {
    send(
        c,
        Method::PATCH,
        &format!("/image/v2/images/{id}"),
        token,
        PATCH,
        ops.to_string().into_bytes(),
        &[],
    )
    .await
}

async fn upload(c: &Cloud, token: &str, id: &str, data: &[u8]) -> common::Reply {
    send(
        c,
        Method::PUT,
        &format!("/image/v2/images/{id}/file"),
        token,
        "application/octet-stream",
        data.to_vec(),
        &[],
    )
    .await
}

async fn download(
    c: &Cloud,
    token: &str,
    id: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut rb = reqwest::Client::new()
        .get(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", token);
    if let Some(r) = range {
        rb = rb.header("Range", r);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

async fn create(c: &Cloud, token: &str, body: Value) -> Value {
    let r = c.post("/image/v2/images", token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

async fn show(c: &Cloud, token: &str, id: &str) -> Value {
    let r = c.get(&format!("/image/v2/images/{id}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn id_of(v: Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// A minimal qcow2 v3 header (1 GiB virtual), padded to `len`.
fn qcow2(backing: bool, len: usize) -> Vec<u8> {
    let mut h = vec![0u8; len.max(4096)];
    h[0..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    if backing {
        h[8..16].copy_from_slice(&512u64.to_be_bytes());
        h[16..20].copy_from_slice(&9u32.to_be_bytes());
        h[512..521].copy_from_slice(b"/etc/host");
    }
    h[20..24].copy_from_slice(&16u32.to_be_bytes());
    h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    h[96..100].copy_from_slice(&4u32.to_be_bytes());
    h[100..104].copy_from_slice(&112u32.to_be_bytes());
    h
}

/// Files of the store that are not committed images (partial uploads).
fn partial_files(c: &Cloud) -> usize {
    let dir = c.cfg.image.store_dir.clone().unwrap().join(".incoming");
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// A project with a member user; returns (project id, user token).
async fn member_of_new_project(
    c: &Cloud,
    admin: &str,
    project: &str,
    user: &str,
) -> (String, String) {
    let pid = c
        .create(
            admin,
            "projects",
            "project",
            json!({ "name": project, "domain_id": "default" }),
        )
        .await;
    let uid = c
        .create(
            admin,
            "users",
            "user",
            json!({ "name": user, "password": "pw", "domain_id": "default" }),
        )
        .await;
    let roles = c.get("/identity/v3/roles?name=member", admin).await;
    let rid = roles.body["roles"][0]["id"].as_str().unwrap().to_string();
    let r = c
        .put(
            &format!("/identity/v3/projects/{pid}/users/{uid}/roles/{rid}"),
            admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let token = c.token(user, "pw", project_scope(project)).await;
    (pid, token)
}

both_engines!(version_discovery_and_catalog, async |c: &Cloud| {
    let r = c.call(Method::GET, "/image", None, None).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let v = &r.body["versions"][0];
    assert_eq!(v["id"], "v2.15");
    assert_eq!(v["status"], "CURRENT");
    assert_eq!(v["links"][0]["href"], format!("{}/image/v2/", c.url));
    assert!(r.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["id"] == "v2.0"));
    let r = c.call(Method::GET, "/image/versions", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    // The API needs a token; the fault is keystonemiddleware's.
    let r = c.call(Method::GET, "/image/v2/images", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").is_some());
    let r = c
        .call(Method::GET, "/image/v2/images", Some("bogus"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // In the catalog of every token.
    let t = c
        .password_auth("admin", &c.admin_password, project_scope("admin"))
        .await;
    let image = t.body["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "image")
        .cloned()
        .unwrap();
    assert_eq!(image["name"], "glance");
    assert_eq!(image["endpoints"][0]["url"], format!("{}/image", c.url));
    // Unknown paths are Glance-style 404s.
    let admin = c.admin_token().await;
    let r = c.get("/image/v2/nothing", &admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["code"], "404 Not Found");
});

both_engines!(create_show_update_delete, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let img = create(
        c,
        &admin,
        json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare",
               "tags": ["a", "b", "a"], "hw_disk_bus": "virtio", "min_ram": 64}),
    )
    .await;
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(img["status"], "queued");
    assert_eq!(img["visibility"], "shared");
    assert_eq!(img["protected"], false);
    assert_eq!(img["os_hidden"], false);
    assert_eq!(img["size"], Value::Null);
    assert_eq!(img["checksum"], Value::Null);
    assert_eq!(img["tags"], json!(["a", "b"]));
    assert_eq!(img["hw_disk_bus"], "virtio");
    assert_eq!(img["min_ram"], 64);
    assert_eq!(img["self"], format!("/v2/images/{id}"));
    assert_eq!(img["file"], format!("/v2/images/{id}/file"));
    assert_eq!(img["schema"], "/v2/schemas/image");
    assert!(img["created_at"].as_str().unwrap().ends_with('Z'));
    let admin_project = show(c, &admin, &id).await["owner"].clone();
    assert!(admin_project.is_string());

    // JSON patch: replace, add, remove, tags.
    let r = patch(
        c,
        &admin,
        &id,
        json!([
            {"op": "replace", "path": "/name", "value": "cirros-0.6"},
            {"op": "add", "path": "/os_distro", "value": "cirros"},
            {"op": "remove", "path": "/hw_disk_bus"},
            {"op": "replace", "path": "/tags", "value": ["x"]},
            {"op": "replace", "path": "/min_disk", "value": 2}
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "cirros-0.6");
    assert_eq!(r.body["os_distro"], "cirros");
    assert!(r.body.get("hw_disk_bus").is_none());
    assert_eq!(r.body["tags"], json!(["x"]));
    assert_eq!(r.body["min_disk"], 2);
    // The old draft-4 media type works too.
    let r = send(
        c,
        Method::PATCH,
        &format!("/image/v2/images/{id}"),
        &admin,
        "application/openstack-images-v2.0-json-patch",
        br#"[{"replace": "/name", "value": "old-style"}]"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "old-style");

    // Refusals, and none of them changed anything.
    let cases = [
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/size", "value": 1}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/deleted", "value": "x"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/os_glance_x", "value": "x"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/name"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/nope"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "replace", "path": "/nope", "value": "x"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": "lots"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": -1}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/visibility", "value": "everyone"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/disk_format", "value": "qcow3"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "add", "path": "/custom", "value": 5}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "move", "path": "/name", "value": "x"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "name", "value": "x"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/name"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"op": "replace", "path": "/name", "value": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/locations", "value": []}]),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (ops, want) in cases {
        let r = patch(c, &admin, &id, ops.clone()).await;
        assert_eq!(r.status, want, "{ops}: {:?}", r.body);
        assert!(r.body["message"].is_string(), "{ops}: {:?}", r.body);
    }
    // Malformed JSON and the wrong media type.
    let r = send(
        c,
        Method::PATCH,
        &format!("/image/v2/images/{id}"),
        &admin,
        PATCH,
        b"[{\"op\":".to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = send(
        c,
        Method::PATCH,
        &format!("/image/v2/images/{id}"),
        &admin,
        "application/json",
        b"[]".to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r
        .header("accept-patch")
        .unwrap()
        .contains("v2.1-json-patch"));
    let now = show(c, &admin, &id).await;
    assert_eq!(now["name"], "old-style");
    assert_eq!(now["min_ram"], 64);

    // Create-time refusals.
    for (body, want) in [
        (json!({"status": "active"}), StatusCode::FORBIDDEN),
        (json!({"self": "x"}), StatusCode::FORBIDDEN),
        (json!({"deleted": "x"}), StatusCode::FORBIDDEN),
        (json!({"disk_format": "floppy"}), StatusCode::BAD_REQUEST),
        (json!({"min_disk": -1}), StatusCode::BAD_REQUEST),
        (json!({"protected": "yes"}), StatusCode::BAD_REQUEST),
        (json!({"id": "not-a-uuid"}), StatusCode::BAD_REQUEST),
        (json!(["not", "an", "object"]), StatusCode::BAD_REQUEST),
        (json!({"name": "x".repeat(256)}), StatusCode::BAD_REQUEST),
    ] {
        let r = c.post("/image/v2/images", &admin, body.clone()).await;
        assert_eq!(r.status, want, "{body}: {:?}", r.body);
    }
    let r = c
        .raw(
            Method::POST,
            "/image/v2/images",
            Some(&admin),
            Some(b"{oops".to_vec()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A chosen id; ids are never reused, even after delete.
    let chosen = "7b1f6a5e-1d2c-4c0e-9d55-2a1f3e0b9c11";
    let img = create(c, &admin, json!({"id": chosen, "name": "mine"})).await;
    assert_eq!(img["id"], chosen);
    let r = c
        .post("/image/v2/images", &admin, json!({"id": chosen}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = c
        .delete(&format!("/image/v2/images/{chosen}"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(&format!("/image/v2/images/{chosen}"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.delete(&format!("/image/v2/images/{chosen}"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = c
        .post("/image/v2/images", &admin, json!({"id": chosen}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Tags one at a time.
    let r = c
        .put(&format!("/image/v2/images/{id}/tags/t1"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(show(c, &admin, &id).await["tags"], json!(["x", "t1"]));
    let r = c
        .delete(&format!("/image/v2/images/{id}/tags/x"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = c
        .delete(&format!("/image/v2/images/{id}/tags/x"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(show(c, &admin, &id).await["tags"], json!(["t1"]));
});

both_engines!(upload_download_checksums_and_ranges, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let id = create(
        c,
        &admin,
        json!({"name": "raw", "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Nothing to download yet.
    let (st, _, _) = download(c, &admin, &id, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // Uploads must be octet-streams.
    let r = send(
        c,
        Method::PUT,
        &format!("/image/v2/images/{id}/file"),
        &admin,
        "text/plain",
        b"x".to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let bytes = data(700_000);
    let r = upload(c, &admin, &id, &bytes).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let img = show(c, &admin, &id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], 700_000);
    assert_eq!(img["virtual_size"], 700_000);
    assert_eq!(img["checksum"], hex::encode(md5::Md5::digest(&bytes)));
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(
        img["os_hash_value"],
        hex::encode(sha2::Sha512::digest(&bytes))
    );
    assert_eq!(img["stores"], "file");
    // Active images accept no more data, and keep their formats.
    let r = upload(c, &admin, &id, b"again").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = patch(
        c,
        &admin,
        &id,
        json!([{"op": "replace", "path": "/disk_format", "value": "iso"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let (st, h, body) = download(c, &admin, &id, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, bytes);
    assert_eq!(h["content-md5"], img["checksum"].as_str().unwrap());
    assert_eq!(h["content-type"], "application/octet-stream");
    let (st, h, body) = download(c, &admin, &id, Some("bytes=10-19")).await;
    assert_eq!(st, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes[10..20]);
    assert_eq!(h["content-range"], "bytes 10-19/700000");
    let (st, _, body) = download(c, &admin, &id, Some("bytes=-5")).await;
    assert_eq!(st, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes[699_995..]);
    let (st, _, body) = download(c, &admin, &id, Some("bytes=699990-")).await;
    assert_eq!((st, body.len()), (StatusCode::PARTIAL_CONTENT, 10));
    for bad in ["bytes=700000-", "bytes=5-2", "lines=1-2", "bytes=1-2,4-5"] {
        let (st, _, _) = download(c, &admin, &id, Some(bad)).await;
        assert_eq!(st, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
    }

    // Data before formats: refused, the image stays queued.
    let bare = create(c, &admin, json!({"name": "noformat"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = upload(c, &admin, &bare, b"data").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(show(c, &admin, &bare).await["status"], "queued");
    // An announced size that the data does not match.
    let sized = create(
        c,
        &admin,
        json!({"name": "s", "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        c,
        Method::PUT,
        &format!("/image/v2/images/{sized}/file"),
        &admin,
        "application/octet-stream",
        b"12345".to_vec(),
        &[("x-openstack-image-size", "9")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(show(c, &admin, &sized).await["status"], "queued");
    assert_eq!(partial_files(c), 0);

    // Deleting removes the data from the store.
    let file = c.cfg.image.store_dir.clone().unwrap().join(&id);
    assert!(file.exists());
    assert_eq!(
        c.delete(&format!("/image/v2/images/{id}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(!file.exists());
});

both_engines!(format_inspection_refuses_bad_data, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let new = |name: &str, fmt: &str| json!({"name": name, "disk_format": fmt, "container_format": "bare"});
    // Declared qcow2, uploaded raw data: 415, back to queued, nothing stored.
    let id = id_of(create(c, &admin, new("mismatch", "qcow2")).await);
    let r = upload(c, &admin, &id, &data(200_000)).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{:?}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{:?}",
        r.body
    );
    let img = show(c, &admin, &id).await;
    assert_eq!(img["status"], "queued");
    assert_eq!(img["size"], Value::Null);
    assert_eq!(partial_files(c), 0);
    assert!(!c.cfg.image.store_dir.clone().unwrap().join(&id).exists());
    // A qcow2 naming a backing file (the CVE-2024-32498 class): refused.
    let id2 = id_of(create(c, &admin, new("backing", "qcow2")).await);
    let r = upload(c, &admin, &id2, &qcow2(true, 300_000)).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{:?}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().contains("backing file"),
        "{:?}",
        r.body
    );
    assert_eq!(show(c, &admin, &id2).await["status"], "queued");
    // ... even when declared raw.
    let id3 = id_of(create(c, &admin, new("backing-raw", "raw")).await);
    let r = upload(c, &admin, &id3, &qcow2(true, 300_000)).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{:?}", r.body);
    assert_eq!(partial_files(c), 0);
    // The same image retried with good data works.
    let r = upload(c, &admin, &id, &qcow2(false, 300_000)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let img = show(c, &admin, &id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["virtual_size"], 1u64 << 30);
    assert_eq!(img["size"], 300_000);
    // Non-bare containers are archives: not inspected (as upstream).
    let ova = create(
        c,
        &admin,
        json!({"name": "ova", "disk_format": "vmdk", "container_format": "ova"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        upload(c, &admin, &ova, b"tar data").await.status,
        StatusCode::NO_CONTENT
    );
});

both_engines!(quotas_from_keystone_limits, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let svc = c.get("/identity/v3/services?type=image", &admin).await.body["services"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (demo, alice) = member_of_new_project(c, &admin, "demo", "alice").await;
    // 1 MiB of image data and 2 images for demo.
    // Keystone wants a registered (default) limit before project limits.
    for name in ["image_size_total", "image_count_total"] {
        let r = c
            .post(
                "/identity/v3/registered_limits",
                &admin,
                json!({"registered_limits": [{"service_id": svc, "resource_name": name,
                        "default_limit": -1, "region_id": "RegionOne"}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    for (name, limit) in [("image_size_total", 1), ("image_count_total", 2)] {
        let r = c
            .post("/identity/v3/limits", &admin, json!({"limits": [{
                "service_id": svc, "project_id": demo, "resource_name": name, "resource_limit": limit,
                "region_id": "RegionOne"}]}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let a = create(
        c,
        &alice,
        json!({"name": "a", "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Over the size quota: refused while streaming, nothing stored.
    let r = upload(c, &alice, &a, &data((1 << 20) + 10)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("image_size_total"),
        "{:?}",
        r.body
    );
    assert_eq!(show(c, &alice, &a).await["status"], "queued");
    assert_eq!(partial_files(c), 0);
    assert_eq!(
        upload(c, &alice, &a, &data(600_000)).await.status,
        StatusCode::NO_CONTENT
    );
    let b = create(
        c,
        &alice,
        json!({"name": "b", "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // 600 000 used: 500 000 more does not fit.
    assert_eq!(
        upload(c, &alice, &b, &data(500_000)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        upload(c, &alice, &b, &data(400_000)).await.status,
        StatusCode::NO_CONTENT
    );
    // Two images: a third is refused.
    let r = c
        .post("/image/v2/images", &alice, json!({"name": "c"}))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("image_count_total"));
    let usage = c.get("/image/v2/info/usage", &alice).await;
    assert_eq!(
        usage.body["usage"]["image_count_total"],
        json!({"limit": 2, "usage": 2})
    );
    assert_eq!(usage.body["usage"]["image_size_total"]["limit"], 1);
    // The admin project has no limits.
    let r = c
        .post("/image/v2/images", &admin, json!({"name": "free"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_size_cap_is_enforced_while_streaming() {
    let c = Cloud::start_with(Engine::Sqlite, |cfg| cfg.image.image_size_cap = 100_000)
        .await
        .unwrap();
    let admin = c.admin_token().await;
    let id = create(
        &c,
        &admin,
        json!({"name": "big", "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Announced too large: refused before reading.
    let r = send(
        &c,
        Method::PUT,
        &format!("/image/v2/images/{id}/file"),
        &admin,
        "application/octet-stream",
        data(150_000),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("too large"));
    // Chunked, no size given: cut off once past the cap.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![1u8; 20_000])).collect();
    let res = reqwest::Client::new()
        .put(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", &admin)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(show(&c, &admin, &id).await["status"], "queued");
    assert_eq!(partial_files(&c), 0);
    assert_eq!(
        upload(&c, &admin, &id, &data(100_000)).await.status,
        StatusCode::NO_CONTENT
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_upload_leaves_nothing_and_image_queued() {
    let c = Cloud::start(Engine::Sqlite).await.unwrap();
    let admin = c.admin_token().await;
    let id = create(
        &c,
        &admin,
        json!({"name": "x", "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The client sends some data, then its stream fails: the connection is
    // cut in the middle of the body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let url = format!("{}/image/v2/images/{id}/file", c.url);
    let token = admin.clone();
    let req = tokio::spawn(async move {
        reqwest::Client::new()
            .put(url)
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", "10000000")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
    });
    tx.send(Ok(vec![7u8; 300_000])).await.unwrap();
    // While data flows the image is saving.
    let mut saw_saving = false;
    for _ in 0..50 {
        if show(&c, &admin, &id).await["status"] == "saving" {
            saw_saving = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(saw_saving);
    tx.send(Err(std::io::Error::other("client gave up")))
        .await
        .unwrap();
    drop(tx);
    let _ = req.await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = show(&c, &admin, &id).await["status"].clone();
        if status == "queued" && partial_files(&c) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "queued");
    assert_eq!(partial_files(&c), 0);
    assert!(!c.cfg.image.store_dir.clone().unwrap().join(&id).exists());
    // And it can be uploaded afterwards.
    assert_eq!(
        upload(&c, &admin, &id, b"fine").await.status,
        StatusCode::NO_CONTENT
    );
    c.stop().await;
}

both_engines!(list_filters_sort_and_pages, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let mut ids = Vec::new();
    for (i, name) in ["delta", "alpha", "charlie", "bravo", "echo"]
        .iter()
        .enumerate()
    {
        let mut body = json!({"name": name, "disk_format": "raw", "container_format": "bare",
                              "tags": ["all", format!("t{}", i % 2)], "flavour": if i < 2 { "x" } else { "y" }});
        if *name == "echo" {
            body["os_hidden"] = json!(true);
        }
        let img = create(c, &admin, body).await;
        let id = img["id"].as_str().unwrap().to_string();
        assert_eq!(
            upload(c, &admin, &id, &data(1000 * (i + 1))).await.status,
            StatusCode::NO_CONTENT
        );
        ids.push(id);
    }
    let names = |r: &common::Reply| -> Vec<String> {
        r.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Newest first by default; hidden images left out.
    let r = c.get("/image/v2/images", &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(names(&r), vec!["bravo", "charlie", "alpha", "delta"]);
    assert_eq!(r.body["first"], "/v2/images");
    assert_eq!(r.body["schema"], "/v2/schemas/images");
    assert!(r.body.get("next").is_none());
    let r = c.get("/image/v2/images?os_hidden=true", &admin).await;
    assert_eq!(names(&r), vec!["echo"]);
    let r = c.get("/image/v2/images?sort=name:asc", &admin).await;
    assert_eq!(names(&r), vec!["alpha", "bravo", "charlie", "delta"]);
    let r = c
        .get("/image/v2/images?sort_key=size&sort_dir=desc", &admin)
        .await;
    assert_eq!(names(&r), vec!["bravo", "charlie", "alpha", "delta"]);
    let r = c.get("/image/v2/images?name=alpha", &admin).await;
    assert_eq!(names(&r), vec!["alpha"]);
    let r = c
        .get("/image/v2/images?name=in:alpha,delta&sort=name:asc", &admin)
        .await;
    assert_eq!(names(&r), vec!["alpha", "delta"]);
    let r = c.get("/image/v2/images?tag=t1&sort=name", &admin).await;
    assert_eq!(names(&r), vec!["bravo", "alpha"]);
    let r = c
        .get(
            "/image/v2/images?tag=t1&tag=all&flavour=x&sort=name:asc",
            &admin,
        )
        .await;
    assert_eq!(names(&r), vec!["alpha"]);
    let r = c
        .get(
            "/image/v2/images?size_min=2000&size_max=3000&sort=name:asc",
            &admin,
        )
        .await;
    assert_eq!(names(&r), vec!["alpha", "charlie"]);
    let r = c
        .get(
            "/image/v2/images?status=active&visibility=shared&sort=name:asc",
            &admin,
        )
        .await;
    assert_eq!(names(&r).len(), 4);
    let r = c.get("/image/v2/images?visibility=public", &admin).await;
    assert_eq!(names(&r).len(), 0);
    let created = show(c, &admin, &ids[2]).await["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .get(
            &format!("/image/v2/images?created_at=gte:{created}&sort=name:asc"),
            &admin,
        )
        .await;
    assert!(names(&r).contains(&"charlie".to_string()), "{:?}", r.body);
    let r = c
        .get(
            "/image/v2/images?created_at=gt:2999-01-01T00:00:00Z",
            &admin,
        )
        .await;
    assert!(names(&r).is_empty());

    // Pages of two, following `next`.
    let mut seen = Vec::new();
    let mut url = "/image/v2/images?limit=2&sort=name:asc".to_string();
    for _ in 0..5 {
        let r = c.get(&url, &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {:?}", r.body);
        seen.extend(names(&r));
        match r.body.get("next").and_then(Value::as_str) {
            Some(n) => {
                assert!(n.starts_with("/v2/images?") && n.contains("marker="), "{n}");
                url = format!("/image{n}");
            }
            None => break,
        }
    }
    assert_eq!(seen, vec!["alpha", "bravo", "charlie", "delta"]);

    for bad in [
        "limit=-1",
        "limit=x",
        "sort_key=owner",
        "sort_dir=sideways",
        "sort=name&sort_key=id",
        "visibility=everyone",
        "member_status=maybe",
        "os_hidden=perhaps",
        "size_min=big",
        "created_at=gt:yesterday",
        "name=like:x",
        "marker=4b3b1c5e-0000-4000-8000-000000000000",
        "changes-since=2020-01-01",
    ] {
        let r = c.get(&format!("/image/v2/images?{bad}"), &admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
});

both_engines!(sharing_visibility_and_policy, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (demo, alice) = member_of_new_project(c, &admin, "demo", "alice").await;
    let (_other, bob) = member_of_new_project(c, &admin, "other", "bob").await;
    let mk = |name: &str, vis: &str| json!({"name": name, "visibility": vis, "disk_format": "raw", "container_format": "bare"});
    let private = id_of(create(c, &admin, mk("private", "private")).await);
    let shared = id_of(create(c, &admin, mk("shared", "shared")).await);
    let public = id_of(create(c, &admin, mk("public", "public")).await);
    let community = id_of(create(c, &admin, mk("community", "community")).await);
    for id in [&shared, &public] {
        assert_eq!(
            upload(c, &admin, id, b"image data").await.status,
            StatusCode::NO_CONTENT
        );
    }
    let names = |r: &common::Reply| -> Vec<String> {
        let mut v: Vec<String> = r.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    // Alice sees the public image; the community one only when asked.
    assert_eq!(
        names(&c.get("/image/v2/images", &alice).await),
        vec!["public"]
    );
    assert_eq!(
        names(&c.get("/image/v2/images?visibility=community", &alice).await),
        vec!["community"]
    );
    assert_eq!(
        c.get(&format!("/image/v2/images/{community}"), &alice)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        c.get(&format!("/image/v2/images/{private}"), &alice)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get(&format!("/image/v2/images/{shared}"), &alice)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Admin sees everything.
    assert_eq!(
        names(&c.get("/image/v2/images?visibility=all", &admin).await),
        vec!["community", "private", "public", "shared"]
    );

    // Members: only shared images have them.
    let r = c
        .post(
            &format!("/image/v2/images/{private}/members"),
            &admin,
            json!({"member": demo}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .post(
            &format!("/image/v2/images/{shared}/members"),
            &admin,
            json!({"member": demo}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["member_id"], demo.as_str());
    assert_eq!(r.body["image_id"], shared.as_str());
    assert_eq!(r.body["schema"], "/v2/schemas/member");
    let r = c
        .post(
            &format!("/image/v2/images/{shared}/members"),
            &admin,
            json!({"member": demo}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    for bad in [json!({}), json!({"member": ""}), json!({"member": 5})] {
        let r = c
            .post(
                &format!("/image/v2/images/{shared}/members"),
                &admin,
                bad.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Pending: visible to alice by id and with member_status, not in her default list.
    assert_eq!(
        c.get(&format!("/image/v2/images/{shared}"), &alice)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        names(&c.get("/image/v2/images", &alice).await),
        vec!["public"]
    );
    assert_eq!(
        names(
            &c.get("/image/v2/images?member_status=pending", &alice)
                .await
        ),
        vec!["public", "shared"]
    );
    // Only the member changes its status; the owner cannot.
    let url = format!("/image/v2/images/{shared}/members/{demo}");
    let r = c
        .call(
            Method::PUT,
            &url,
            Some(&admin),
            Some(json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "admin may: {:?}", r.body);
    let r = c
        .call(
            Method::PUT,
            &url,
            Some(&alice),
            Some(json!({"status": "bogus"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .call(
            Method::PUT,
            &url,
            Some(&alice),
            Some(json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(
        names(&c.get("/image/v2/images", &alice).await),
        vec!["public", "shared"]
    );
    // Alice sees only her own membership; bob sees nothing of it.
    let r = c
        .get(&format!("/image/v2/images/{shared}/members"), &alice)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["schema"], "/v2/schemas/members");
    assert_eq!(c.get(&url, &alice).await.status, StatusCode::OK);
    assert_eq!(c.get(&url, &bob).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        c.get(&format!("/image/v2/images/{shared}"), &bob)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Alice may download the shared image but not change or delete it.
    let (st, _, body) = download(c, &alice, &shared, None).await;
    assert_eq!((st, body), (StatusCode::OK, b"image data".to_vec()));
    let r = patch(
        c,
        &alice,
        &shared,
        json!([{"op": "replace", "path": "/name", "value": "mine"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.delete(&format!("/image/v2/images/{shared}"), &alice)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = c
        .post(
            &format!("/image/v2/images/{shared}/members"),
            &alice,
            json!({"member": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Rejecting takes it out of her list again; the owner removes members.
    let r = c
        .call(
            Method::PUT,
            &url,
            Some(&alice),
            Some(json!({"status": "rejected"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        names(&c.get("/image/v2/images", &alice).await),
        vec!["public"]
    );
    assert_eq!(c.delete(&url, &alice).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.delete(&url, &admin).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(&format!("/image/v2/images/{shared}"), &alice)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Non-admins: no public images, no images for other projects.
    let r = c
        .post(
            "/image/v2/images",
            &alice,
            json!({"name": "p", "visibility": "public"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = c
        .post(
            "/image/v2/images",
            &alice,
            json!({"name": "p", "owner": "someone-else"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let mine = create(c, &alice, json!({"name": "mine"})).await;
    assert_eq!(mine["owner"], demo.as_str());
    let mid = mine["id"].as_str().unwrap();
    let r = patch(
        c,
        &alice,
        mid,
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = patch(
        c,
        &alice,
        mid,
        json!([{"op": "replace", "path": "/owner", "value": "x"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = patch(
        c,
        &alice,
        mid,
        json!([{"op": "replace", "path": "/visibility", "value": "community"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // An admin may do both.
    let r = patch(
        c,
        &admin,
        mid,
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(show(c, &bob, mid).await["visibility"], "public");

    // Deactivated: only admins download.
    assert_eq!(
        c.call(
            Method::POST,
            &format!("/image/v2/images/{public}/actions/deactivate"),
            Some(&admin),
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(show(c, &alice, &public).await["status"], "deactivated");
    assert_eq!(
        download(c, &alice, &public, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(download(c, &admin, &public, None).await.0, StatusCode::OK);
    assert_eq!(
        c.call(
            Method::POST,
            &format!("/image/v2/images/{public}/actions/reactivate"),
            Some(&alice),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
});

both_engines!(protected_deactivate_and_hidden, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let id = create(
        c,
        &admin,
        json!({"name": "p", "protected": true, "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c.delete(&format!("/image/v2/images/{id}"), &admin).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["message"].as_str().unwrap().contains("protected"));
    let act = |a: &str| format!("/image/v2/images/{id}/actions/{a}");
    // Not active yet: cannot be deactivated.
    assert_eq!(
        c.call(Method::POST, &act("deactivate"), Some(&admin), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        upload(c, &admin, &id, b"x").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.call(Method::POST, &act("deactivate"), Some(&admin), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.call(Method::POST, &act("deactivate"), Some(&admin), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(show(c, &admin, &id).await["status"], "deactivated");
    assert_eq!(
        c.call(Method::POST, &act("reactivate"), Some(&admin), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(show(c, &admin, &id).await["status"], "active");
    let r = patch(
        c,
        &admin,
        &id,
        json!([{"op": "replace", "path": "/protected", "value": false},
                                          {"op": "replace", "path": "/os_hidden", "value": true}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let listed = c.get("/image/v2/images", &admin).await;
    assert!(listed.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["id"] != id.as_str()));
    assert_eq!(
        c.delete(&format!("/image/v2/images/{id}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
});

both_engines!(stage_and_import, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let info = c.get("/image/v2/info/import", &admin).await;
    assert_eq!(
        info.body["import-methods"]["value"],
        json!(["glance-direct"])
    );
    let stores = c.get("/image/v2/info/stores", &admin).await;
    assert_eq!(stores.body["stores"][0]["id"], "file");
    assert_eq!(stores.body["stores"][0]["default"], true);
    let r = c
        .post(
            "/image/v2/images",
            &admin,
            json!({"name": "imp", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    assert_eq!(
        r.header("openstack-image-import-methods").unwrap(),
        "glance-direct"
    );
    let id = r.body["id"].as_str().unwrap().to_string();
    let import = |body: Value| {
        let url = format!("/image/v2/images/{id}/import");
        let token = admin.clone();
        async move { c.post(&url, &token, body).await }
    };
    // Not staged yet.
    let r = import(json!({"method": {"name": "glance-direct"}})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    for bad in [
        json!({}),
        json!({"method": {}}),
        json!({"method": {"name": "web-download", "uri": "http://x"}}),
        json!({"method": {"name": "glance-direct"}, "all_stores": "yes"}),
    ] {
        assert_eq!(
            import(bad.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let bytes = data(333_333);
    let r = send(
        c,
        Method::PUT,
        &format!("/image/v2/images/{id}/stage"),
        &admin,
        "application/octet-stream",
        bytes.clone(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(show(c, &admin, &id).await["status"], "uploading");
    let r = import(json!({"method": {"name": "glance-direct"}, "stores": ["elsewhere"]})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = import(json!({"method": {"name": "glance-direct"}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let mut img = Value::Null;
    for _ in 0..100 {
        img = show(c, &admin, &id).await;
        if img["status"] == "active" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(img["status"], "active", "{img:?}");
    assert_eq!(
        img["os_hash_value"],
        hex::encode(sha2::Sha512::digest(&bytes))
    );
    assert!(img.get("os_glance_importing_to_stores").is_none());
    assert_eq!(download(c, &admin, &id, None).await.2, bytes);
    // The task record follows the image.
    let mut tasks = Value::Null;
    for _ in 0..100 {
        tasks = c
            .get(&format!("/image/v2/images/{id}/tasks"), &admin)
            .await
            .body;
        if tasks["tasks"][0]["status"] == "success" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(tasks["tasks"][0]["status"], "success", "{tasks:?}");
    assert_eq!(tasks["tasks"][0]["type"], "api_image_import");
    // A staged qcow2 with a backing file fails its import: back to queued.
    let bad = create(
        c,
        &admin,
        json!({"name": "bad", "disk_format": "qcow2", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        c,
        Method::PUT,
        &format!("/image/v2/images/{bad}/stage"),
        &admin,
        "application/octet-stream",
        qcow2(true, 100_000),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = c
        .post(
            &format!("/image/v2/images/{bad}/import"),
            &admin,
            json!({"method": {"name": "glance-direct"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for _ in 0..100 {
        img = show(c, &admin, &bad).await;
        if img["status"] == "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(img["status"], "queued", "{img:?}");
    assert_eq!(img["os_glance_failed_import"], "file");
    let tasks = c
        .get(&format!("/image/v2/images/{bad}/tasks"), &admin)
        .await;
    assert_eq!(tasks.body["tasks"][0]["status"], "failure");
    assert!(tasks.body["tasks"][0]["message"]
        .as_str()
        .unwrap()
        .contains("backing file"));
    assert_eq!(partial_files(c), 0);
});

both_engines!(schemas_and_info, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let s = c.get("/image/v2/schemas/image", &admin).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.body["name"], "image");
    assert_eq!(s.body["additionalProperties"], json!({"type": "string"}));
    assert!(s.body["properties"]["disk_format"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("qcow2")));
    assert_eq!(s.body["properties"]["status"]["readOnly"], true);
    let s = c.get("/image/v2/schemas/images", &admin).await;
    assert_eq!(s.body["properties"]["images"]["items"]["name"], "image");
    let s = c.get("/image/v2/schemas/member", &admin).await;
    assert_eq!(
        s.body["properties"]["status"]["enum"],
        json!(["pending", "accepted", "rejected"])
    );
    assert_eq!(
        c.get("/image/v2/schemas/members", &admin).await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.get("/image/v2/schemas/task", &admin).await.status,
        StatusCode::OK
    );
    let d = c.get("/image/v2/info/stores/detail", &admin).await;
    assert_eq!(d.body["stores"][0]["type"], "file");
    let u = c.get("/image/v2/info/usage", &admin).await;
    assert_eq!(u.body["usage"]["image_count_total"]["limit"], -1);
});

/// web-download is off by default; an operator enables it and its filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_download_import_when_enabled() {
    // A tiny HTTP server with the image.
    let payload = data(123_456);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = payload.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let body = served.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    let c = Cloud::start_with(Engine::Sqlite, |cfg| {
        cfg.image.enabled_import_methods = vec!["glance-direct".into(), "web-download".into()];
        cfg.image.web_download.allowed_ports = vec![port];
        cfg.image.web_download.disallowed_hosts = vec!["169.254.169.254".into()];
    })
    .await
    .unwrap();
    let admin = c.admin_token().await;
    let id = create(
        &c,
        &admin,
        json!({"name": "web", "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("/image/v2/images/{id}/import");
    for uri in [
        "http://127.0.0.1:1/x",
        "ftp://127.0.0.1/x",
        &format!("http://169.254.169.254:{port}/x"),
    ] {
        let r = c
            .post(
                &url,
                &admin,
                json!({"method": {"name": "web-download", "uri": uri}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
    }
    let r = c
        .post(&url, &admin, json!({"method": {"name": "web-download", "uri": format!("http://127.0.0.1:{port}/image.raw")}}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let mut img = Value::Null;
    for _ in 0..100 {
        img = show(&c, &admin, &id).await;
        if img["status"] == "active" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(img["status"], "active", "{img:?}");
    assert_eq!(img["size"], 123_456);
    assert_eq!(download(&c, &admin, &id, None).await.2, payload);
    c.stop().await;
}

both_engines!(metadata_definitions, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (_demo, alice) = member_of_new_project(c, &admin, "demo", "alice").await;
    let r = c
        .post(
            "/image/v2/metadefs/namespaces",
            &admin,
            json!({"namespace": "OS::Compute::Test", "display_name": "Test", "visibility": "public",
                   "protected": true,
                   "properties": {"hw_x": {"title": "X", "type": "string", "enum": ["a", "b"]}},
                   "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "hw_"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["self"], "/v2/metadefs/namespaces/OS::Compute::Test");
    assert_eq!(r.body["properties"]["hw_x"]["type"], "string");
    assert_eq!(r.body["resource_type_associations"][0]["prefix"], "hw_");
    let r = c
        .post(
            "/image/v2/metadefs/namespaces",
            &admin,
            json!({"namespace": "OS::Compute::Test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = c
        .post(
            "/image/v2/metadefs/namespaces",
            &admin,
            json!({"display_name": "no name"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .post(
            "/image/v2/metadefs/namespaces",
            &admin,
            json!({"namespace": "secret"}),
        )
        .await;
    assert_eq!(r.body["visibility"], "private");
    // Readers see public namespaces; only admins change them.
    let r = c.get("/image/v2/metadefs/namespaces", &alice).await;
    let names: Vec<&str> = r.body["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["OS::Compute::Test"]);
    assert_eq!(
        c.get("/image/v2/metadefs/namespaces/secret", &alice)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = c
        .post(
            "/image/v2/metadefs/namespaces",
            &alice,
            json!({"namespace": "mine"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let ns = "/image/v2/metadefs/namespaces/OS::Compute::Test";
    // Objects.
    let r = c
        .post(
            &format!("{ns}/objects"),
            &admin,
            json!({"name": "CPU", "required": ["a"], "properties": {"a": {"type": "integer"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        c.post(&format!("{ns}/objects"), &admin, json!({"name": "CPU"}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        c.post(&format!("{ns}/objects"), &alice, json!({"name": "X"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = c
        .call(
            Method::PUT,
            &format!("{ns}/objects/CPU"),
            Some(&admin),
            Some(json!({"name": "CPU2", "description": "d"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        c.get(&format!("{ns}/objects/CPU"), &alice).await.status,
        StatusCode::NOT_FOUND
    );
    let r = c.get(&format!("{ns}/objects/CPU2"), &alice).await;
    assert_eq!(r.body["description"], "d");
    assert_eq!(
        c.get(&format!("{ns}/objects"), &alice).await.body["objects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Properties and tags.
    let r = c
        .post(
            &format!("{ns}/properties"),
            &admin,
            json!({"name": "hw_y", "title": "Y", "type": "integer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        c.post(&format!("{ns}/properties"), &admin, json!({"name": "hw_z"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let r = c.get(&format!("{ns}/properties"), &alice).await;
    assert_eq!(r.body["properties"].as_object().unwrap().len(), 2);
    let r = c
        .post(
            &format!("{ns}/tags"),
            &admin,
            json!({"tags": [{"name": "t1"}, {"name": "t2"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        c.get(&format!("{ns}/tags"), &alice).await.body["tags"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        c.delete(&format!("{ns}/tags/t1"), &admin).await.status,
        StatusCode::NO_CONTENT
    );
    // Resource types.
    let r = c
        .post(
            &format!("{ns}/resource_types"),
            &admin,
            json!({"name": "OS::Nova::Flavor", "prefix": "hw:"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = c.get("/image/v2/metadefs/resource_types", &alice).await;
    assert_eq!(r.body["resource_types"].as_array().unwrap().len(), 2);
    let r = c
        .get(
            "/image/v2/metadefs/namespaces?resource_types=OS::Nova::Flavor",
            &admin,
        )
        .await;
    assert_eq!(r.body["namespaces"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.delete(&format!("{ns}/resource_types/OS::Nova::Flavor"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.delete(&format!("{ns}/resource_types/OS::Nova::Flavor"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Protected namespaces stay until unprotected.
    assert_eq!(c.delete(ns, &admin).await.status, StatusCode::FORBIDDEN);
    let r = c
        .call(
            Method::PUT,
            ns,
            Some(&admin),
            Some(json!({"namespace": "OS::Compute::Test", "protected": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(c.delete(ns, &admin).await.status, StatusCode::NO_CONTENT);
    assert_eq!(c.get(ns, &admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        c.get("/image/v2/schemas/metadefs/namespace", &admin)
            .await
            .body["name"],
        "namespace"
    );
});
