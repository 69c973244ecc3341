//! Server sub-resources over HTTP with the fake hypervisor, on SQLite and
//! PostgreSQL: metadata (validation, merge and replace, quota, lock and
//! state checks), tags (2.26: limits, 201/204, Location) and diagnostics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::fixtures::{flavor, image};
use common::{project_scope, Cloud, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn nova(
    c: &Cloud,
    method: Method,
    path: &str,
    token: &str,
    version: &str,
    body: Option<Value>,
) -> common::Reply {
    let mut rb = reqwest::Client::new()
        .request(method, format!("{}/compute/v2.1{path}", c.url))
        .header("X-Auth-Token", token)
        .header("OpenStack-API-Version", format!("compute {version}"));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    common::Reply {
        status,
        headers,
        body,
    }
}

/// The message of a Nova fault body.
fn msg(r: &common::Reply) -> String {
    r.body
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn sql(c: &Cloud, q: &str, id: &str) {
    let db = store::Db::connect(&c.db_url, 2).await.unwrap();
    store::sqlx::query(q)
        .bind(id)
        .execute(db.pool())
        .await
        .unwrap();
    db.close().await;
}

async fn wait_status(c: &Cloud, token: &str, id: &str, want: &str) -> Value {
    for _ in 0..400 {
        let r = nova(
            c,
            Method::GET,
            &format!("/servers/{id}"),
            token,
            "2.79",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let s = r.body["server"].clone();
        if s["status"] == want && s["OS-EXT-STS:task_state"].is_null() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server {id} never reached {want}");
}

async fn server(c: &Cloud, token: &str, img: &str, meta: Value) -> String {
    let r = nova(
        c,
        Method::POST,
        "/servers",
        token,
        "2.79",
        Some(
            json!({"server": {"name": "vm", "flavorRef": "1", "imageRef": img,
            "networks": "none", "metadata": meta}}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    wait_status(c, token, &id, "ACTIVE").await;
    id
}

/// A project with a member user; returns (project id, user token).
async fn member_of_new_project(c: &Cloud, admin: &str) -> (String, String) {
    let pid = c
        .create(
            admin,
            "projects",
            "project",
            json!({ "name": "mproj", "domain_id": "default" }),
        )
        .await;
    let uid = c
        .create(
            admin,
            "users",
            "user",
            json!({ "name": "muser", "password": "pw", "domain_id": "default" }),
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
    let token = c.token("muser", "pw", project_scope("mproj")).await;
    (pid, token)
}

async fn metadata(c: &Cloud, admin: &str, img: &str) {
    let id = server(c, admin, img, json!({"a": "1"})).await;
    let m = format!("/servers/{id}/metadata");
    let r = nova(c, Method::GET, &m, admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"metadata": {"a": "1"}}));
    let before = wait_status(c, admin, &id, "ACTIVE").await["updated"].clone();

    // POST merges.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = nova(
        c,
        Method::POST,
        &m,
        admin,
        "2.1",
        Some(json!({"metadata": {"b": "2", "a": "x"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"metadata": {"a": "x", "b": "2"}}));
    let s = wait_status(c, admin, &id, "ACTIVE").await;
    assert_eq!(s["metadata"], json!({"a": "x", "b": "2"}));
    assert_ne!(s["updated"], before, "updated_at is bumped");

    // PUT replaces.
    let r = nova(
        c,
        Method::PUT,
        &m,
        admin,
        "2.1",
        Some(json!({"metadata": {"c": "3"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"metadata": {"c": "3"}}));
    let r = nova(c, Method::GET, &m, admin, "2.1", None).await;
    assert_eq!(r.body, json!({"metadata": {"c": "3"}}));

    // One item.
    let r = nova(c, Method::GET, &format!("{m}/c"), admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"meta": {"c": "3"}}));
    let r = nova(c, Method::GET, &format!("{m}/nope"), admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(msg(&r), "Metadata item was not found");
    let r = nova(
        c,
        Method::PUT,
        &format!("{m}/d"),
        admin,
        "2.1",
        Some(json!({"meta": {"d": "4"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"meta": {"d": "4"}}));
    let r = nova(
        c,
        Method::PUT,
        &format!("{m}/d"),
        admin,
        "2.1",
        Some(json!({"meta": {"e": "4"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(msg(&r), "Request body and URI mismatch");
    let r = nova(
        c,
        Method::PUT,
        &format!("{m}/d"),
        admin,
        "2.1",
        Some(json!({"meta": {"d": "4", "e": "5"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        msg(&r),
        "Invalid input for field/attribute meta. Value: {'d': '4', 'e': '5'}. \
         {'d': '4', 'e': '5'} has too many properties"
    );
    let r = nova(c, Method::DELETE, &format!("{m}/d"), admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = nova(c, Method::DELETE, &format!("{m}/d"), admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(msg(&r), "Metadata item was not found");
    let r = nova(c, Method::GET, &m, admin, "2.1", None).await;
    assert_eq!(r.body, json!({"metadata": {"c": "3"}}));

    // Validation.
    for (body, want) in [
        (json!({}), "'metadata' is a required property".to_string()),
        (json!({"metadata": {}, "x": 1}), "Additional properties are not allowed ('x' was unexpected)".into()),
        (json!({"metadata": "s"}), "Invalid input for field/attribute metadata. Value: s. 's' is not of type 'object'".into()),
        (json!({"metadata": {"k": 1}}), "Invalid input for field/attribute k. Value: 1. 1 is not of type 'string'".into()),
        (json!({"metadata": {"a/b": "1"}}), "Invalid input for field/attribute metadata. Value: {'a/b': '1'}. Additional properties are not allowed ('a/b' was unexpected)".into()),
        (json!({"metadata": {"k": "v".repeat(256)}}), format!("Invalid input for field/attribute k. Value: {0}. '{0}' is too long", "v".repeat(256))),
    ] {
        let r = nova(c, Method::POST, &m, admin, "2.1", Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(msg(&r), want, "{body}");
    }
    let long_key = "k".repeat(256);
    let r = nova(
        c,
        Method::PUT,
        &m,
        admin,
        "2.1",
        Some(json!({"metadata": {long_key.clone(): "v"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let ok_key = "k".repeat(255);
    let r = nova(
        c,
        Method::POST,
        &m,
        admin,
        "2.1",
        Some(json!({"metadata": {ok_key.clone(): "v".repeat(255)}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = nova(
        c,
        Method::DELETE,
        &format!("{m}/{ok_key}"),
        admin,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = nova(
        c,
        Method::GET,
        "/servers/00000000-0000-0000-0000-000000000000/metadata",
        admin,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // State: refused unless active/paused/suspended/stopped with no task.
    let act = format!("/servers/{id}/action");
    let r = nova(
        c,
        Method::POST,
        &act,
        admin,
        "2.1",
        Some(json!({"os-resetState": {"state": "error"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = nova(
        c,
        Method::POST,
        &m,
        admin,
        "2.1",
        Some(json!({"metadata": {"z": "1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        msg(&r),
        format!("Cannot 'update metadata' instance {id} while it is in vm_state error")
    );
    let r = nova(c, Method::DELETE, &format!("{m}/c"), admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        msg(&r),
        format!("Cannot 'delete metadata' instance {id} while it is in vm_state error")
    );
    let r = nova(
        c,
        Method::POST,
        &act,
        admin,
        "2.1",
        Some(json!({"os-resetState": {"state": "active"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = nova(
        c,
        Method::POST,
        &act,
        admin,
        "2.1",
        Some(json!({"os-stop": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    wait_status(c, admin, &id, "SHUTOFF").await;
    let r = nova(
        c,
        Method::POST,
        &m,
        admin,
        "2.1",
        Some(json!({"metadata": {"z": "1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "stopped servers take metadata");
    let r = nova(
        c,
        Method::POST,
        &act,
        admin,
        "2.1",
        Some(json!({"os-start": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    wait_status(c, admin, &id, "ACTIVE").await;

    // A member's server: quota, lock, policy.
    let (pid, member) = member_of_new_project(c, admin).await;
    let mid = server(c, &member, img, json!({})).await;
    let mm = format!("/servers/{mid}/metadata");
    let r = nova(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}"),
        admin,
        "2.1",
        Some(json!({"quota_set": {"metadata_items": 2}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = nova(
        c,
        Method::POST,
        &mm,
        &member,
        "2.1",
        Some(json!({"metadata": {"a": "1", "b": "2"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = nova(
        c,
        Method::POST,
        &mm,
        &member,
        "2.1",
        Some(json!({"metadata": {"c": "3"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(msg(&r), "Maximum number of metadata items exceeds 2");
    let r = nova(
        c,
        Method::PUT,
        &format!("{mm}/a"),
        &member,
        "2.1",
        Some(json!({"meta": {"a": "9"}})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "overwriting stays within the quota"
    );
    let r = nova(
        c,
        Method::PUT,
        &mm,
        &member,
        "2.1",
        Some(json!({"metadata": {"x": "1", "y": "2", "z": "3"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = nova(c, Method::GET, &mm, &member, "2.1", None).await;
    assert_eq!(r.body, json!({"metadata": {"a": "9", "b": "2"}}));
    // The member does not see the admin's server.
    let r = nova(c, Method::GET, &m, &member, "2.1", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Locked by the admin: 409 for the member, the admin may still.
    let r = nova(
        c,
        Method::POST,
        &format!("/servers/{mid}/action"),
        admin,
        "2.1",
        Some(json!({"lock": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = nova(
        c,
        Method::POST,
        &mm,
        &member,
        "2.1",
        Some(json!({"metadata": {"a": "1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(msg(&r), format!("Instance {mid} is locked"));
    let r = nova(c, Method::DELETE, &format!("{mm}/a"), &member, "2.1", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = nova(c, Method::DELETE, &format!("{mm}/a"), admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Reading stays allowed; the member's tags still work (no lock check).
    let r = nova(c, Method::GET, &mm, &member, "2.1", None).await;
    assert_eq!(r.body, json!({"metadata": {"b": "2"}}));
    let r = nova(
        c,
        Method::PUT,
        &format!("/servers/{mid}/tags/t"),
        &member,
        "2.26",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Diagnostics are for admins.
    let r = nova(
        c,
        Method::GET,
        &format!("/servers/{mid}/diagnostics"),
        &member,
        "2.48",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn tags(c: &Cloud, admin: &str, img: &str) {
    let id = server(c, admin, img, json!({})).await;
    let t = format!("/servers/{id}/tags");
    let r = nova(c, Method::GET, &t, admin, "2.25", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = nova(c, Method::PUT, &format!("{t}/a"), admin, "2.25", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = nova(c, Method::GET, &t, admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"tags": []}));

    let r = nova(c, Method::PUT, &format!("{t}/web"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let loc = r.header("location").unwrap();
    assert!(
        loc.ends_with(&format!("/v2.1/servers/{id}/tags/web")),
        "{loc}"
    );
    let r = nova(c, Method::PUT, &format!("{t}/web"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = nova(c, Method::GET, &format!("{t}/web"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = nova(c, Method::GET, &format!("{t}/db"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(msg(&r), format!("Server {id} has no tag 'db'"));
    let r = nova(c, Method::PUT, &format!("{t}/a,b"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        msg(&r),
        "Tag 'a,b' is invalid. It must be a non empty string without characters '/' and ','. \
         Validation error message: 'a,b' does not match '^[^,/]*$'"
    );
    let long = "x".repeat(61);
    let r = nova(c, Method::PUT, &format!("{t}/{long}"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = nova(
        c,
        Method::PUT,
        &format!("{t}/{}", "x".repeat(60)),
        admin,
        "2.26",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = nova(
        c,
        Method::PUT,
        &format!("{t}/{long}"),
        admin,
        "2.26",
        Some(json!({"x": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Replace all; duplicates collapse; the server shows them.
    let r = nova(
        c,
        Method::PUT,
        &t,
        admin,
        "2.26",
        Some(json!({"tags": ["b", "a", "b"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"tags": ["a", "b"]}));
    let s = wait_status(c, admin, &id, "ACTIVE").await;
    assert_eq!(s["tags"], json!(["a", "b"]));
    let r = nova(
        c,
        Method::PUT,
        &t,
        admin,
        "2.26",
        Some(json!({"tags": ["ok", "a/b"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        msg(&r),
        "Invalid input for field/attribute 1. Value: a/b. 'a/b' does not match '^[^,/]*$'"
    );
    let r = nova(c, Method::PUT, &t, admin, "2.26", Some(json!({"tag": []}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(msg(&r), "'tags' is a required property");
    let fifty_one: Vec<String> = (0..51).map(|n| format!("t{n}")).collect();
    let r = nova(
        c,
        Method::PUT,
        &t,
        admin,
        "2.26",
        Some(json!({"tags": fifty_one})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let fifty: Vec<String> = (0..50).map(|n| format!("t{n}")).collect();
    let r = nova(
        c,
        Method::PUT,
        &t,
        admin,
        "2.26",
        Some(json!({"tags": fifty})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = nova(
        c,
        Method::PUT,
        &format!("{t}/one-more"),
        admin,
        "2.26",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        msg(&r),
        "The number of tags exceeded the per-server limit 50"
    );

    // Delete one, delete all.
    let r = nova(c, Method::DELETE, &format!("{t}/t7"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = nova(c, Method::DELETE, &format!("{t}/t7"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(msg(&r), format!("Instance {id} has no tag 't7'"));
    let r = nova(c, Method::GET, &t, admin, "2.26", None).await;
    assert_eq!(r.body["tags"].as_array().unwrap().len(), 49);
    let r = nova(c, Method::DELETE, &t, admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = nova(c, Method::GET, &t, admin, "2.26", None).await;
    assert_eq!(r.body, json!({"tags": []}));

    // The tag filter of the server list sees API-made tags.
    let r = nova(c, Method::PUT, &format!("{t}/blue"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = nova(c, Method::GET, "/servers?tags=blue", admin, "2.26", None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["servers"][0]["id"], json!(id));

    // Refused in an error state.
    let act = format!("/servers/{id}/action");
    let r = nova(
        c,
        Method::POST,
        &act,
        admin,
        "2.1",
        Some(json!({"os-resetState": {"state": "error"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = nova(c, Method::PUT, &format!("{t}/red"), admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        msg(&r),
        format!("Cannot 'update tag' instance {id} while it is in vm_state error")
    );
    let r = nova(c, Method::DELETE, &t, admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        msg(&r),
        format!("Cannot 'delete tags' instance {id} while it is in vm_state error")
    );
    let r = nova(c, Method::GET, &t, admin, "2.26", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn diagnostics(c: &Cloud, admin: &str, img: &str) {
    let id = server(c, admin, img, json!({})).await;
    let d = format!("/servers/{id}/diagnostics");
    let r = nova(c, Method::GET, &d, admin, "2.1", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["memory"], 512 * 1024);
    let r = nova(c, Method::GET, &d, admin, "2.48", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let b = &r.body;
    assert_eq!(b["state"], "running");
    assert_eq!(b["driver"], "libvirt");
    assert_eq!(b["hypervisor"], "fake");
    assert_eq!(b["hypervisor_os"], "linux");
    assert_eq!(b["config_drive"], true);
    assert_eq!(b["num_cpus"], 1);
    assert_eq!(b["cpu_details"].as_array().unwrap().len(), 1);
    assert_eq!(b["num_nics"], 0);
    assert_eq!(b["nic_details"], json!([]));
    assert_eq!(b["num_disks"], 2);
    assert_eq!(b["memory_details"]["maximum"], 512);
    assert!(b["uptime"].is_u64());
    for k in [
        "state",
        "driver",
        "hypervisor",
        "hypervisor_os",
        "uptime",
        "config_drive",
        "num_cpus",
        "num_nics",
        "num_disks",
        "cpu_details",
        "nic_details",
        "disk_details",
        "memory_details",
    ] {
        assert!(b.get(k).is_some(), "{k}");
    }

    let act = format!("/servers/{id}/action");
    let r = nova(
        c,
        Method::POST,
        &act,
        admin,
        "2.1",
        Some(json!({"os-stop": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    wait_status(c, admin, &id, "SHUTOFF").await;
    let r = nova(c, Method::GET, &d, admin, "2.48", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        msg(&r),
        format!("Cannot 'get_diagnostics' instance {id} while it is in power state shutdown")
    );

    // Not on a host (yet): not ready.
    sql(c, "UPDATE instances SET host = NULL WHERE id = $1", &id).await;
    let r = nova(c, Method::GET, &d, admin, "2.48", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(msg(&r), format!("Instance {id} is not ready"));
    let r = nova(
        c,
        Method::GET,
        "/servers/00000000-0000-0000-0000-000000000000/diagnostics",
        admin,
        "2.48",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn scenario(engine: Engine) {
    let Some(c) = Cloud::start_with(engine, |cfg| {
        cfg.compute.fake_hosts = 1;
    })
    .await
    else {
        return;
    };
    let admin = c.admin_token().await;
    flavor(&c, "1", 1, 512, 1).await;
    let img = image(&c, &admin).await;
    metadata(&c, &admin, &img).await;
    tags(&c, &admin, &img).await;
    diagnostics(&c, &admin, &img).await;
    c.stop().await;
}

#[tokio::test]
async fn compute_meta_sqlite() {
    scenario(Engine::Sqlite).await;
}

#[tokio::test]
async fn compute_meta_postgres() {
    scenario(Engine::Postgres).await;
}
