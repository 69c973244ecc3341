//! Compute (Nova v2.1) over HTTP with the fake hypervisor, on SQLite and
//! PostgreSQL: version discovery, microversions, the server life cycle,
//! scheduling through placement, hypervisors and services.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::fixtures::{flavor, image};
use common::{Cloud, Engine};
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
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    common::Reply {
        status,
        headers,
        body,
    }
}

async fn wait_status(c: &Cloud, token: &str, id: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
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
        last = s;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "server {id} never reached {want}: status {} task {} fault {}",
        last["status"], last["OS-EXT-STS:task_state"], last["fault"]
    );
}

/// Creates a server of flavor "1" from `image` with no network and waits
/// until it is ACTIVE: its id and body.
async fn boot(c: &Cloud, token: &str, name: &str, image: &str) -> (String, Value) {
    let r = nova(
        c,
        Method::POST,
        "/servers",
        token,
        "2.79",
        Some(json!({"server": {"name": name, "flavorRef": "1", "imageRef": image, "networks": "none"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(c, token, &id, "ACTIVE").await;
    (id, s)
}

/// Waits (bounded) until the image is active; its body.
async fn wait_image_active(c: &Cloud, token: &str, id: &str) -> Value {
    let mut img = Value::Null;
    for _ in 0..200 {
        img = c.get(&format!("/image/v2/images/{id}"), token).await.body;
        if img["status"] == "active" {
            return img;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("image {id} never became active: {img:?}");
}

/// Asserts that a server's fault message contains `text`.
fn assert_fault(server: &Value, text: &str) {
    let message = server["fault"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "fault {text:?} expected: {server}");
}

/// Deletes a server (204) and waits (bounded) until showing it is a 404;
/// that last reply.
async fn delete_server(c: &Cloud, token: &str, id: &str) -> common::Reply {
    let path = format!("/servers/{id}");
    let r = nova(c, Method::DELETE, &path, token, "2.79", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    for _ in 0..200 {
        let r = nova(c, Method::GET, &path, token, "2.79", None).await;
        if r.status == StatusCode::NOT_FOUND {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server {id} still there 5 s after its delete");
}

async fn scenario(engine: Engine) {
    let Some(c) = Cloud::start_with(engine, |cfg| {
        cfg.compute.fake_hosts = 3;
    })
    .await
    else {
        return;
    };
    let admin = c.admin_token().await;

    // Version discovery.
    let r = c.get("/compute", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let v21 = &r.body["versions"][1];
    assert_eq!(v21["id"], "v2.1");
    assert_eq!(v21["version"], "2.79");
    assert_eq!(v21["min_version"], "2.1");
    let r = c.get("/compute/v2.1", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = c.get("/compute/v2.1", &admin).await;
    assert_eq!(r.body["version"]["status"], "CURRENT");

    // Microversion negotiation.
    let r = nova(&c, Method::GET, "/servers", &admin, "2.80", None).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(r.body["computeFault"]["code"], 406);
    let r = nova(&c, Method::GET, "/servers", &admin, "2.x", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = nova(&c, Method::GET, "/servers", &admin, "latest", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("openstack-api-version").unwrap(), "compute 2.79");
    assert_eq!(r.header("x-openstack-nova-api-version").unwrap(), "2.79");

    // Hosts: three fake hypervisors, up and enabled, each a provider.
    let r = nova(
        &c,
        Method::GET,
        "/os-hypervisors/detail",
        &admin,
        "2.79",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let hv = r.body["hypervisors"].as_array().unwrap();
    assert_eq!(hv.len(), 3);
    assert!(hv
        .iter()
        .all(|h| h["state"] == "up" && h["status"] == "enabled"));
    let r = nova(
        &c,
        Method::GET,
        "/os-services?binary=nova-compute",
        &admin,
        "2.79",
        None,
    )
    .await;
    assert_eq!(r.body["services"].as_array().unwrap().len(), 3);

    flavor(&c, "1", 1, 512, 1).await;
    let img = image(&c, &admin).await;

    // Bad input.
    let create = |flavor: &str, image: &str| json!({"server": {"name": "vm", "flavorRef": flavor, "imageRef": image, "networks": "none"}});
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &admin,
        "2.79",
        Some(create("nope", &img)),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["badRequest"]["message"],
        "Flavor nope could not be found."
    );
    let missing = "6f0d3a4e-1b2c-4d5e-8f90-123456789abc".to_string();
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &admin,
        "2.79",
        Some(create("1", &missing)),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["badRequest"]["message"],
        format!("Image {missing} could not be found.")
    );
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &admin,
        "2.79",
        Some(json!({"server": {"name": "vm", "flavorRef": "1", "imageRef": img}})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "networks is required from 2.37"
    );
    let r = nova(&c, Method::POST, "/servers", &admin, "2.79", Some(json!({"server": {"name": "vm", "flavorRef": "1", "imageRef": img, "networks": "none", "key_name": "nokey"}}))).await;
    assert_eq!(
        r.body["badRequest"]["message"],
        "Invalid key_name provided."
    );

    // Create, and the life cycle.
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &admin,
        "2.79",
        Some(create("1", &img)),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    assert!(r.body["server"]["adminPass"].is_string());
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert_eq!(s["flavor"]["original_name"], "f-1");
    assert!(s["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .unwrap()
        .starts_with("fake-host-"));
    assert!(!s["hostId"].as_str().unwrap().is_empty());
    assert_eq!(s["OS-EXT-AZ:availability_zone"], "nova");
    // Its allocation is in placement.
    let alloc = c.get(&format!("/placement/allocations/{id}"), &admin).await;
    let allocs = alloc.body["allocations"].as_object().unwrap();
    assert_eq!(allocs.len(), 1);
    let res = &allocs.values().next().unwrap()["resources"];
    assert_eq!(res["VCPU"], 1);
    assert_eq!(res["MEMORY_MB"], 512);

    // Starting a running server is refused as Nova does.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"os-start": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        format!("Cannot 'start' instance {id} while it is in vm_state active")
    );
    for (action, status) in [
        (json!({"os-stop": null}), "SHUTOFF"),
        (json!({"os-start": null}), "ACTIVE"),
        (json!({"reboot": {"type": "HARD"}}), "ACTIVE"),
        (json!({"pause": null}), "PAUSED"),
        (json!({"unpause": null}), "ACTIVE"),
        (json!({"suspend": null}), "SUSPENDED"),
        (json!({"resume": null}), "ACTIVE"),
    ] {
        let r = nova(
            &c,
            Method::POST,
            &format!("/servers/{id}/action"),
            &admin,
            "2.79",
            Some(action.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{action}: {:?}", r.body);
        wait_status(&c, &admin, &id, status).await;
    }
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"reboot": {"type": "sideways"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Lock with a reason (2.73).
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"lock": {"locked_reason": "maintenance"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert_eq!(s["locked"], true);
    assert_eq!(s["locked_reason"], "maintenance");
    nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"unlock": null})),
    )
    .await;

    // Snapshot (createImage): an image of type snapshot, active once
    // uploaded; the server is back to no task.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"createImage": {"name": "snap1", "metadata": {"k": "v"}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let snap = r.body["image_id"].as_str().unwrap().to_string();
    let snap_img = wait_image_active(&c, &admin, &snap).await;
    assert_eq!(snap_img["image_type"], "snapshot");
    assert_eq!(snap_img["instance_uuid"], id.as_str());
    assert_eq!(snap_img["k"], "v");
    wait_status(&c, &admin, &id, "ACTIVE").await;
    // Before 2.45 the image is in the Location header.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.44",
        Some(json!({"createImage": {"name": "snap2"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").unwrap().contains("/image/v2/images/"));
    wait_status(&c, &admin, &id, "ACTIVE").await;
    // Rebuild from the snapshot, with a new name.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"rebuild": {"imageRef": snap, "name": "vm-rebuilt"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["server"]["name"], "vm-rebuilt");
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert_eq!(s["image"]["id"], snap.as_str());
    // A rebuild to an unknown image is refused.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"rebuild": {"imageRef": "6f0d3a4e-1b2c-4d5e-8f90-123456789abc"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Resize with revert, then with confirm: the allocation follows.
    flavor(&c, "2", 2, 1024, 2).await;
    let act = |body: Value| {
        let path = format!("/servers/{id}/action");
        let c = &c;
        let admin = admin.clone();
        async move { nova(c, Method::POST, &path, &admin, "2.79", Some(body)).await }
    };
    let alloc_of = |consumer: String| {
        let c = &c;
        let admin = admin.clone();
        async move {
            let r = c
                .get(&format!("/placement/allocations/{consumer}"), &admin)
                .await;
            r.body["allocations"]
                .as_object()
                .and_then(|m| m.values().next())
                .map(|a| a["resources"].clone())
                .unwrap_or(Value::Null)
        }
    };
    let r = act(json!({"resize": {"flavorRef": "1"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "same flavor");
    let r = act(json!({"resize": {"flavorRef": "2"}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let s = wait_status(&c, &admin, &id, "VERIFY_RESIZE").await;
    assert_eq!(s["flavor"]["vcpus"], 2);
    assert_eq!(alloc_of(id.clone()).await["MEMORY_MB"], 1024);
    let r = act(json!({"revertResize": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert_eq!(s["flavor"]["vcpus"], 1);
    assert_eq!(alloc_of(id.clone()).await["MEMORY_MB"], 512);
    let r = act(json!({"resize": {"flavorRef": "2"}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    wait_status(&c, &admin, &id, "VERIFY_RESIZE").await;
    let r = act(json!({"confirmResize": null})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert_eq!(s["flavor"]["ram"], 1024);
    assert_eq!(alloc_of(id.clone()).await["MEMORY_MB"], 1024);
    let r = nova(&c, Method::GET, "/os-migrations", &admin, "2.79", None).await;
    let statuses: Vec<&str> = r.body["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"reverted") && statuses.contains(&"confirmed"),
        "{statuses:?}"
    );

    // Shelve (offloaded at once: no host, no allocation), then unshelve.
    let r = act(json!({"shelve": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let s = wait_status(&c, &admin, &id, "SHELVED_OFFLOADED").await;
    assert!(s["OS-EXT-SRV-ATTR:host"].is_null());
    assert_eq!(alloc_of(id.clone()).await, Value::Null);
    let r = act(json!({"os-start": null})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = act(json!({"unshelve": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert!(s["OS-EXT-SRV-ATTR:host"].is_string());
    assert_eq!(alloc_of(id.clone()).await["MEMORY_MB"], 1024);

    // Lists.
    let r = nova(&c, Method::GET, "/servers", &admin, "2.79", None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1);
    let r = nova(
        &c,
        Method::GET,
        "/servers/detail?status=SHUTOFF",
        &admin,
        "2.79",
        None,
    )
    .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 0);
    let r = nova(
        &c,
        Method::GET,
        "/servers/detail?name=^v",
        &admin,
        "2.79",
        None,
    )
    .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1);
    // The flavor as a link before 2.47.
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{id}"),
        &admin,
        "2.46",
        None,
    )
    .await;
    assert_eq!(
        r.body["server"]["flavor"]["id"], "2",
        "resized to flavor 2 above"
    );
    assert!(r.body["server"].get("tags").is_some());
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{id}"),
        &admin,
        "2.1",
        None,
    )
    .await;
    assert!(r.body["server"].get("tags").is_none());
    assert!(r.body["server"].get("locked").is_none());

    // Several at once, and paging.
    let r = nova(&c, Method::POST, "/servers", &admin, "2.79", Some(json!({"server": {"name": "many", "flavorRef": "1", "imageRef": img, "networks": "none", "min_count": 3, "return_reservation_id": true}}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let rid = r.body["reservation_id"].as_str().unwrap().to_string();
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers?reservation_id={rid}"),
        &admin,
        "2.79",
        None,
    )
    .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 3);
    let r = nova(&c, Method::GET, "/servers?limit=2", &admin, "2.79", None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 2);
    let next = r.body["servers_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let next_path = next.split("/v2.1").nth(1).unwrap().to_string();
    let r = nova(&c, Method::GET, &next_path, &admin, "2.79", None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 2);

    // No valid host: a flavor bigger than any host.
    flavor(&c, "huge", 1, 512, 5000).await;
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &admin,
        "2.79",
        Some(create("huge", &img)),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let big = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&c, &admin, &big, "ERROR").await;
    assert!(s["fault"]["message"]
        .as_str()
        .unwrap()
        .starts_with("No valid host was found."));
    assert_eq!(s["fault"]["code"], 500);
    let alloc = c
        .get(&format!("/placement/allocations/{big}"), &admin)
        .await;
    assert_eq!(alloc.body["allocations"], json!({}));

    // Delete frees the allocation and the server goes away.
    let r = delete_server(&c, &admin, &id).await;
    assert_eq!(r.body["itemNotFound"]["code"], 404);
    let alloc = c.get(&format!("/placement/allocations/{id}"), &admin).await;
    assert_eq!(alloc.body["allocations"], json!({}));

    // Disabling a host's service keeps the scheduler away from it.
    let r = nova(
        &c,
        Method::GET,
        "/os-services?binary=nova-compute",
        &admin,
        "2.79",
        None,
    )
    .await;
    for s in r.body["services"].as_array().unwrap() {
        let r = nova(
            &c,
            Method::PUT,
            &format!("/os-services/{}", s["id"].as_str().unwrap()),
            &admin,
            "2.79",
            Some(json!({"status": "disabled", "disabled_reason": "test"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["service"]["status"], "disabled");
    }
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &admin,
        "2.79",
        Some(create("1", &img)),
    )
    .await;
    let none = r.body["server"]["id"].as_str().unwrap().to_string();
    wait_status(&c, &admin, &none, "ERROR").await;
    c.stop().await;
}

#[tokio::test]
async fn compute_sqlite() {
    scenario(Engine::Sqlite).await;
}

#[tokio::test]
async fn compute_postgres() {
    scenario(Engine::Postgres).await;
}

/// rescue / unrescue: states, responses, bad input and what the host did.
async fn rescue(engine: Engine) {
    let Some(c) = Cloud::start(engine).await else {
        return;
    };
    let admin = c.admin_token().await;
    flavor(&c, "1", 1, 512, 1).await;
    let img = image(&c, &admin).await;
    let (id, _) = boot(&c, &admin, "vm", &img).await;
    let act = |body: Value| {
        let c = &c;
        let admin = admin.clone();
        let id = id.clone();
        async move {
            nova(
                c,
                Method::POST,
                &format!("/servers/{id}/action"),
                &admin,
                "2.79",
                Some(body),
            )
            .await
        }
    };

    // Not rescued: unrescue is refused.
    let r = act(json!({"unrescue": null})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        format!("Cannot 'unrescue' instance {id} while it is in vm_state active")
    );
    // Bad input.
    let r = act(json!({"rescue": {"rescue_image_ref": "nope"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = act(json!({"rescue": {"colour": "red"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let missing = "6f0d3a4e-1b2c-4d5e-8f90-123456789abc";
    let r = act(json!({"rescue": {"rescue_image_ref": missing}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        format!("Image {missing} could not be found.")
    );
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");

    // Rescue: a generated password, then RESCUE with the vm_state rescued.
    let r = act(json!({"rescue": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["adminPass"].as_str().unwrap().len(), 12);
    let s = wait_status(&c, &admin, &id, "RESCUE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "rescued");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    let r = act(json!({"rescue": null})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    let r = act(json!({"unrescue": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let s = wait_status(&c, &admin, &id, "ACTIVE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");

    // From SHUTOFF, with a password and an image named: unrescue ends
    // ACTIVE, as upstream.
    let r = act(json!({"os-stop": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_status(&c, &admin, &id, "SHUTOFF").await;
    let r = act(json!({"rescue": {"adminPass": "s3cret", "rescue_image_ref": img}})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["adminPass"], "s3cret");
    wait_status(&c, &admin, &id, "RESCUE").await;
    let r = act(json!({"unrescue": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_status(&c, &admin, &id, "ACTIVE").await;

    // Both were recorded as instance actions.
    let r = nova(
        &c,
        Method::GET,
        &format!("/servers/{id}/os-instance-actions"),
        &admin,
        "2.79",
        None,
    )
    .await;
    let actions: Vec<&str> = r.body["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "rescue").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "unrescue").count(),
        2,
        "{actions:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn rescue_sqlite() {
    rescue(Engine::Sqlite).await;
}

#[tokio::test]
async fn rescue_postgres() {
    rescue(Engine::Postgres).await;
}

/// The serial console: URLs from remote-consoles (2.6) and the old action,
/// the WebSocket proxy joined to the host's serial port (the fake driver's
/// echoes), and what is refused.
async fn serial_console(engine: Engine) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let Some(c) = Cloud::start(engine).await else {
        return;
    };
    let admin = c.admin_token().await;
    flavor(&c, "1", 1, 512, 1).await;
    let img = image(&c, &admin).await;
    let (id, _) = boot(&c, &admin, "vm", &img).await;
    let consoles = format!("/servers/{id}/remote-consoles");
    let serial = json!({"remote_console": {"protocol": "serial", "type": "serial"}});

    // Before 2.6 there is no remote-consoles; other console types and bad
    // bodies are 400s.
    let r = nova(
        &c,
        Method::POST,
        &consoles,
        &admin,
        "2.5",
        Some(serial.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let vnc = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
    let r = nova(&c, Method::POST, &consoles, &admin, "2.6", Some(vnc)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        "Unavailable console type novnc."
    );
    let bad = json!({"remote_console": {"protocol": "telnet", "type": "serial"}});
    let r = nova(&c, Method::POST, &consoles, &admin, "2.6", Some(bad)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        "Invalid input for field/attribute protocol. Value: telnet. 'telnet' is not one of \
         ['vnc', 'spice', 'serial', 'rdp', 'mks']"
    );
    let extra = json!({"remote_console": {"protocol": "serial", "type": "serial", "x": 1}});
    let r = nova(&c, Method::POST, &consoles, &admin, "2.6", Some(extra)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert!(
        r.body["badRequest"]["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("Additional properties are not allowed ('x' was unexpected)"),
        "{:?}",
        r.body
    );

    // The old action, then remote-consoles.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.1",
        Some(json!({"os-getSerialConsole": {"type": "serial"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["console"]["type"], "serial");
    let r = nova(
        &c,
        Method::POST,
        &consoles,
        &admin,
        "2.6",
        Some(serial.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["remote_console"]["protocol"], "serial");
    let url = r.body["remote_console"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = format!("{}/compute/serial?token=", c.url.replacen("http", "ws", 1));
    assert!(url.starts_with(&expected), "{url}");

    // Bytes both ways through the proxy.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let mut got = Vec::new();
    let greeting = b"fake serial console\r\n";
    while got.len() < greeting.len() {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(&got[..], greeting);
    ws.send(Message::Binary(b"uname -a\n".to_vec().into()))
        .await
        .unwrap();
    let mut echo = Vec::new();
    while echo.len() < 9 {
        if let Message::Binary(b) = ws.next().await.unwrap().unwrap() {
            echo.extend_from_slice(&b);
        }
    }
    assert_eq!(&echo[..], b"uname -a\n");
    ws.close(None).await.unwrap();

    // A wrong token is refused before the upgrade.
    let bad_url = format!("{expected}{}", "0".repeat(64));
    let e = tokio_tungstenite::connect_async(bad_url.as_str())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");

    // A stopped server has no console.
    let r = nova(
        &c,
        Method::POST,
        &format!("/servers/{id}/action"),
        &admin,
        "2.79",
        Some(json!({"os-stop": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    wait_status(&c, &admin, &id, "SHUTOFF").await;
    let r = nova(&c, Method::POST, &consoles, &admin, "2.79", Some(serial)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        format!("Instance {id} is not ready.")
    );
    // And the URL handed out while it ran does not reach it any more.
    let e = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");
    c.stop().await;
}

#[tokio::test]
async fn serial_console_sqlite() {
    serial_console(Engine::Sqlite).await;
}

#[tokio::test]
async fn serial_console_postgres() {
    serial_console(Engine::Postgres).await;
}

/// An `oxistack agent` process (fake driver) on a loopback port.
struct AgentProcess {
    child: tokio::process::Child,
}

impl AgentProcess {
    /// `tls`: serve HTTPS with `cert.pem` / `key.pem` of `dir`.
    async fn start(port: u16, dir: &std::path::Path, tls: bool) -> AgentProcess {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxistack"));
        cmd.args(["agent", "--driver", "fake", "--host", "remote-host-1"]);
        if tls {
            cmd.arg("--tls-cert")
                .arg(dir.join("cert.pem"))
                .arg("--tls-key")
                .arg(dir.join("key.pem"));
        }
        let mut child = cmd
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .env("OXISTACK_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the agent starts within 30 s")
            .unwrap()
            .unwrap_or_default();
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        AgentProcess { child }
    }
}

/// Waits (bounded) until `f` holds for the body of `GET path`.
async fn wait_for(c: &Cloud, token: &str, path: &str, what: &str, f: impl Fn(&Value) -> bool) {
    let mut last = Value::Null;
    for _ in 0..150 {
        let r = nova(c, Method::GET, path, token, "2.79", None).await;
        if r.status == StatusCode::OK && f(&r.body) {
            return;
        }
        last = r.body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: never seen in 15 s; last {path}: {last}");
}

/// A control plane with no host of its own drives a host agent in another
/// process over the internal API: the agent joins when it comes up, the
/// server life cycle runs on it, and the host goes down when the agent
/// dies. `tls`: the agent serves HTTPS and the control plane trusts its
/// certificate only.
async fn remote_agent(engine: Engine, tls: bool) {
    let agent_dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(agent_dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        agent_dir.path().join("key.pem"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    let scheme = if tls { "https" } else { "http" };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token_file = agent_dir.path().join("agent-token");
    let Some(c) = Cloud::start_with(engine, |cfg| {
        cfg.compute.driver = compute::Driver::None;
        cfg.compute.remote_agents = vec![compute::RemoteAgent {
            url: format!("{scheme}://localhost:{port}"),
            token_file: token_file.clone(),
            ca_file: tls.then(|| agent_dir.path().join("cert.pem")),
        }];
        cfg.compute.report_interval_seconds = 1;
        cfg.compute.service_down_time_seconds = 3;
    })
    .await
    else {
        return;
    };
    let admin = c.admin_token().await;
    // The agent is not running yet: no hypervisor.
    let r = nova(&c, Method::GET, "/os-hypervisors", &admin, "2.79", None).await;
    assert_eq!(r.body["hypervisors"], json!([]), "{:?}", r.body);

    let mut agent = AgentProcess::start(port, agent_dir.path(), tls).await;
    let mode = std::fs::metadata(&token_file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    wait_for(
        &c,
        &admin,
        "/os-hypervisors/detail",
        "the agent joins",
        |b| {
            b["hypervisors"][0]["hypervisor_hostname"] == "remote-host-1"
                && b["hypervisors"][0]["state"] == "up"
        },
    )
    .await;

    flavor(&c, "1", 1, 512, 1).await;
    let img = image(&c, &admin).await;
    let (id, s) = boot(&c, &admin, "far", &img).await;
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], "remote-host-1");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);

    // What the agent itself says runs there.
    let token = std::fs::read_to_string(&token_file).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let on_agent = || async {
        http.get(format!("{scheme}://localhost:{port}/v1/servers"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let list = on_agent().await;
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    assert_eq!(list[0]["state"], "running", "{list}");

    let action = |body: Value| {
        let path = format!("/servers/{id}/action");
        let c = &c;
        let admin = &admin;
        async move { nova(c, Method::POST, &path, admin, "2.79", Some(body)).await }
    };
    assert_eq!(
        action(json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    wait_status(&c, &admin, &id, "SHUTOFF").await;
    assert_eq!(on_agent().await[0]["state"], "shutoff");
    assert_eq!(
        action(json!({"os-start": null})).await.status,
        StatusCode::ACCEPTED
    );
    wait_status(&c, &admin, &id, "ACTIVE").await;
    let r = action(json!({"os-getConsoleOutput": {"length": 5}})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["output"].is_string());

    // A snapshot travels back from the agent into the image service.
    let r = action(json!({"createImage": {"name": "far-snap"}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let snap = r.body["image_id"].as_str().unwrap().to_string();
    wait_image_active(&c, &admin, &snap).await;
    let data = c
        .get(&format!("/image/v2/images/{snap}/file"), &admin)
        .await;
    assert!(
        data.body.as_str().unwrap_or_default().contains(&id),
        "{:?}",
        data.body
    );
    wait_status(&c, &admin, &id, "ACTIVE").await;

    delete_server(&c, &admin, &id).await;
    for _ in 0..100 {
        if on_agent().await == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(on_agent().await, json!([]));

    // The agent dies: its host is reported down.
    let (doomed, _) = boot(&c, &admin, "doomed", &img).await;
    let (lost, _) = boot(&c, &admin, "lost", &img).await;
    agent.child.kill().await.unwrap();
    wait_for(
        &c,
        &admin,
        "/os-services?binary=nova-compute",
        "the host goes down",
        |b| b["services"][0]["host"] == "remote-host-1" && b["services"][0]["state"] == "down",
    )
    .await;
    // A delete meanwhile is done here (Nova's local delete); the host
    // removes the server when it is back.
    delete_server(&c, &admin, &doomed).await;
    // No host is up: a new server has nowhere to go.
    let r = nova(
        &c,
        Method::POST,
        "/servers",
        &admin,
        "2.79",
        Some(json!({"server": {"name": "nowhere", "flavorRef": "1", "imageRef": img, "networks": "none"}})),
    )
    .await;
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let s = wait_status(&c, &admin, &id, "ERROR").await;
    assert_fault(&s, "No valid host");

    // The agent comes back (a fake host: it remembers nothing): the host
    // is up again and reconciled, so the server it lost is in ERROR.
    agent = AgentProcess::start(port, agent_dir.path(), tls).await;
    wait_for(
        &c,
        &admin,
        "/os-services?binary=nova-compute",
        "the host comes back",
        |b| b["services"][0]["state"] == "up",
    )
    .await;
    let s = wait_status(&c, &admin, &lost, "ERROR").await;
    assert_fault(&s, "not on its host");
    let (again, s) = boot(&c, &admin, "again", &img).await;
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], "remote-host-1");
    // An agent that restarts at once (perhaps with no failed ping in
    // between) is noticed by the run it names: what it lost is reconciled
    // all the same.
    agent.child.kill().await.unwrap();
    let _agent = AgentProcess::start(port, agent_dir.path(), tls).await;
    let s = wait_status(&c, &admin, &again, "ERROR").await;
    assert_fault(&s, "not on its host");
    c.stop().await;
}

#[tokio::test]
async fn remote_agent_sqlite() {
    remote_agent(Engine::Sqlite, true).await;
}

#[tokio::test]
async fn remote_agent_postgres() {
    remote_agent(Engine::Postgres, false).await;
}
