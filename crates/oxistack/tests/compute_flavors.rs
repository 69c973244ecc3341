//! Compute flavors (with access lists and extra specs) and key pairs over
//! HTTP, at several microversions, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{project_scope, Cloud, Engine, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBh76G689qSPA4P/iaDoHr8T0+6gvVjufdwbHa6mLSmQ test@example";
const ED25519_FP: &str = "60:d0:b7:b9:7e:77:f6:a4:a0:e3:c6:d4:38:2e:a4:8f";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDFwKG7R62BmktNSDT281xJqQwsq/NORfPVXVtSBq7FZpZsc00HCcWCRJhVWtYkVk/Wu0+j3A241Jbdw+0rHHok3s+xcEZuATeli8GNO/HVfLGn82JVv3W0IJ3KTvfkkuPVHHyFZ+Wa/uI31OjHKgrLyv9oJ+nSG+7Jd9eXSZvAU26JbsoOKJptLFzP3I7648fIkVVy3vYhWJO7n9fTxfbGj/bF10uAxs0Dej1Cpi/rOf6imIr/xEdzAWJjReV33EDIfNRyvlnV/amQyKAA567bksR/neLZn3R2CBXSVd8LFUpbnMfeF+plCTQ0k0Yy3asbJk5TNLS8ipS22i2oDJZx rsa@example";
const RSA_FP: &str = "3d:6e:9e:09:5b:bb:97:9e:ed:95:97:84:56:a5:9b:7a";

/// A compute request at microversion 2.`mv`.
async fn nova(
    c: &Cloud,
    method: Method,
    path: &str,
    token: &str,
    mv: u16,
    body: Option<Value>,
) -> Reply {
    let version = format!("compute 2.{mv}");
    c.raw(
        method,
        &format!("/compute/v2.1{path}"),
        Some(token),
        body.map(|b| b.to_string().into_bytes()),
        &[("OpenStack-API-Version", version.as_str())],
    )
    .await
}

async fn get(c: &Cloud, path: &str, token: &str, mv: u16) -> Reply {
    nova(c, Method::GET, path, token, mv, None).await
}

async fn post(c: &Cloud, path: &str, token: &str, mv: u16, body: Value) -> Reply {
    nova(c, Method::POST, path, token, mv, Some(body)).await
}

fn fault(r: &Reply) -> String {
    r.body
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn expect(r: &Reply, status: StatusCode, message: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(fault(r), message, "{:?}", r.body);
}

/// A project with a member user; returns (project id, user id, token).
async fn member(c: &Cloud, admin: &str, project: &str, user: &str) -> (String, String, String) {
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
    (pid, uid, token)
}

async fn make_flavor(c: &Cloud, admin: &str, body: Value) -> Value {
    let r = post(c, "/flavors", admin, 1, json!({ "flavor": body })).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["flavor"].clone()
}

fn ids(r: &Reply) -> Vec<String> {
    r.body["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

both_engines!(flavor_crud_and_views, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (_, _, user) = member(c, &admin, "demo", "alice").await;

    // Create at 2.1: given id, views of every microversion.
    let f = make_flavor(
        c,
        &admin,
        json!({ "name": "small", "id": "s1", "ram": 512, "vcpus": 1, "disk": 1 }),
    )
    .await;
    assert_eq!(f["id"], "s1");
    assert_eq!(f["swap"], "");
    assert_eq!(f["rxtx_factor"], 1.0);
    assert_eq!(f["OS-FLV-EXT-DATA:ephemeral"], 0);
    assert_eq!(f["OS-FLV-DISABLED:disabled"], false);
    assert_eq!(f["os-flavor-access:is_public"], true);
    assert!(f.get("description").is_none());
    assert!(f["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with("/compute/v2.1/flavors/s1"));
    assert!(f["links"][1]["href"]
        .as_str()
        .unwrap()
        .ends_with("/compute/flavors/s1"));
    let r = get(c, "/flavors/s1", &user, 55).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["flavor"]["description"], Value::Null);
    assert!(r.body["flavor"].get("extra_specs").is_none());
    let r = get(c, "/flavors/s1", &user, 61).await;
    assert_eq!(r.body["flavor"]["extra_specs"], json!({}));
    assert_eq!(r.body["flavor"]["swap"], "");
    let r = get(c, "/flavors/s1", &user, 75).await;
    assert_eq!(r.body["flavor"]["swap"], 0);
    assert_eq!(r.status, StatusCode::OK);

    // Auto-generated id; numeric id; swap and ephemeral; string numbers.
    let f = make_flavor(
        c,
        &admin,
        json!({ "name": "auto", "ram": "1024", "vcpus": "2", "disk": 0, "swap": 128,
                "OS-FLV-EXT-DATA:ephemeral": 5, "rxtx_factor": 2.5,
                "os-flavor-access:is_public": "true" }),
    )
    .await;
    assert_eq!(f["id"].as_str().unwrap().len(), 36);
    assert_eq!(f["ram"], 1024);
    assert_eq!(f["swap"], 128);
    assert_eq!(f["rxtx_factor"], 2.5);
    let f = make_flavor(
        c,
        &admin,
        json!({ "name": "numeric", "id": 42, "ram": 64, "vcpus": 1, "disk": 1 }),
    )
    .await;
    assert_eq!(f["id"], "42");

    // Description from 2.55 (create and update).
    let r = post(
        c,
        "/flavors",
        &admin,
        1,
        json!({ "flavor": { "name": "d", "ram": 1, "vcpus": 1, "disk": 1, "description": "x" } }),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for field/attribute flavor. Value: {'description': 'x', 'disk': 1, 'name': 'd', 'ram': 1, 'vcpus': 1}. Additional properties are not allowed ('description' was unexpected)",
    );
    let r = post(
        c,
        "/flavors",
        &admin,
        55,
        json!({ "flavor": { "name": "described", "ram": 1, "vcpus": 1, "disk": 1,
                            "description": "for tests" } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["flavor"]["description"], "for tests");
    let id = r.body["flavor"]["id"].as_str().unwrap().to_string();
    let upd = json!({ "flavor": { "description": "changed" } });
    let r = nova(
        c,
        Method::PUT,
        &format!("/flavors/{id}"),
        &admin,
        54,
        Some(upd.clone()),
    )
    .await;
    expect(
        &r,
        StatusCode::NOT_FOUND,
        "The resource could not be found.",
    );
    let r = nova(
        c,
        Method::PUT,
        &format!("/flavors/{id}"),
        &user,
        55,
        Some(upd.clone()),
    )
    .await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Policy doesn't allow os_compute_api:os-flavor-manage:update to be performed.",
    );
    let r = nova(
        c,
        Method::PUT,
        &format!("/flavors/{id}"),
        &admin,
        55,
        Some(upd),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["flavor"]["description"], "changed");
    let r = nova(
        c,
        Method::PUT,
        &format!("/flavors/{id}"),
        &admin,
        55,
        Some(json!({ "flavor": { "name": "n" } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = nova(
        c,
        Method::PUT,
        "/flavors/nope",
        &admin,
        55,
        Some(json!({ "flavor": { "description": null } })),
    )
    .await;
    expect(&r, StatusCode::NOT_FOUND, "Flavor nope could not be found.");

    // Conflicts.
    let r = post(
        c,
        "/flavors",
        &admin,
        1,
        json!({ "flavor": { "name": "small", "ram": 1, "vcpus": 1, "disk": 1 } }),
    )
    .await;
    expect(
        &r,
        StatusCode::CONFLICT,
        "Flavor with name small already exists.",
    );
    let r = post(
        c,
        "/flavors",
        &admin,
        1,
        json!({ "flavor": { "name": "other", "id": "s1", "ram": 1, "vcpus": 1, "disk": 1 } }),
    )
    .await;
    expect(
        &r,
        StatusCode::CONFLICT,
        "Flavor with ID s1 already exists.",
    );

    // Bad input.
    for (body, msg) in [
        (json!({}), "'flavor' is a required property".to_string()),
        (
            json!({ "flavor": { "name": "b", "ram": 0, "vcpus": 1, "disk": 1 } }),
            "Invalid input for field/attribute ram. Value: 0. 0 is less than the minimum of 1".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "ram": 1, "vcpus": -1, "disk": 1 } }),
            "Invalid input for field/attribute vcpus. Value: -1. -1 is less than the minimum of 1".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "ram": 1, "vcpus": 1, "disk": "x" } }),
            "Invalid input for field/attribute disk. Value: x. 'x' does not match '^[0-9]+$'".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "ram": 1, "vcpus": 1, "disk": 2147483648u64 } }),
            "Invalid input for field/attribute disk. Value: 2147483648. 2147483648 is greater than the maximum of 2147483647".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "ram": 1.5, "vcpus": 1, "disk": 1 } }),
            "Invalid input for field/attribute ram. Value: 1.5. 1.5 is not of type 'integer', 'string'".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "ram": 1, "vcpus": 1, "disk": 1, "rxtx_factor": 0 } }),
            "Invalid input for field/attribute rxtx_factor. Value: 0. 0 is less than or equal to the minimum of 0".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "ram": 1, "vcpus": 1, "disk": 1, "rxtx_factor": "0" } }),
            "Invalid input received: 'rxtx_factor' argument must be a float between 0 and 3.40282e+38".into(),
        ),
        (
            json!({ "flavor": { "name": " b", "ram": 1, "vcpus": 1, "disk": 1 } }),
            "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace.".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "id": "a/b", "ram": 1, "vcpus": 1, "disk": 1 } }),
            "Invalid input for field/attribute id. Value: a/b. 'a/b' does not match '^(?! )[a-zA-Z0-9. _-]+(?<! )$'".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "ram": 1, "vcpus": 1, "disk": 1,
                                "os-flavor-access:is_public": "maybe" } }),
            "Invalid input for field/attribute os-flavor-access:is_public. Value: maybe. 'maybe' is not one of [True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', False, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no']".into(),
        ),
        (
            json!({ "flavor": { "name": "b", "vcpus": 1, "disk": 1 } }),
            "Invalid input for field/attribute flavor. Value: {'disk': 1, 'name': 'b', 'vcpus': 1}. 'ram' is a required property".into(),
        ),
    ] {
        let r = post(c, "/flavors", &admin, 1, body.clone()).await;
        expect(&r, StatusCode::BAD_REQUEST, &msg);
    }
    let r = c
        .raw(
            Method::POST,
            "/compute/v2.1/flavors",
            Some(&admin),
            Some(b"{not json".to_vec()),
            &[],
        )
        .await;
    expect(&r, StatusCode::BAD_REQUEST, "Malformed request body");

    // Policy: only admins create and delete; a bad body is a 400 first.
    let r = post(
        c,
        "/flavors",
        &user,
        1,
        json!({ "flavor": { "name": "mine", "ram": 1, "vcpus": 1, "disk": 1 } }),
    )
    .await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed.",
    );
    let r = nova(c, Method::DELETE, "/flavors/s1", &user, 1, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Delete: 202, then gone.
    let r = nova(c, Method::DELETE, "/flavors/s1", &admin, 1, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = get(c, "/flavors/s1", &admin, 1).await;
    expect(&r, StatusCode::NOT_FOUND, "Flavor s1 could not be found.");
    let r = nova(c, Method::DELETE, "/flavors/s1", &admin, 1, None).await;
    expect(&r, StatusCode::NOT_FOUND, "Flavor s1 could not be found.");
    // The microversion is stamped on every answer.
    assert_eq!(r.header("openstack-api-version").unwrap(), "compute 2.1");
});

both_engines!(flavor_listing, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (pid, _, user) = member(c, &admin, "demo", "alice").await;
    for (id, name, ram, disk, public) in [
        ("a", "fa", 256, 1, true),
        ("b", "fb", 1024, 10, true),
        ("c", "fc", 2048, 20, true),
        ("d", "fd", 4096, 40, true),
        ("p", "private", 512, 5, false),
        ("q", "private-shared", 512, 5, false),
    ] {
        make_flavor(
            c,
            &admin,
            json!({ "name": name, "id": id, "ram": ram, "vcpus": 1, "disk": disk,
                    "os-flavor-access:is_public": public }),
        )
        .await;
    }
    let r = post(
        c,
        "/flavors/q/action",
        &admin,
        1,
        json!({ "addTenantAccess": { "tenant": pid } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Default: public flavors plus private ones shared with the project,
    // sorted by flavor id.
    let r = get(c, "/flavors", &user, 1).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ids(&r), ["a", "b", "c", "d", "q"]);
    assert_eq!(
        r.body["flavors"][0].as_object().unwrap().len(),
        3,
        "{:?}",
        r.body
    );
    let r = get(c, "/flavors", &user, 55).await;
    assert!(r.body["flavors"][0].get("description").is_some());
    // Admins: is_public filters (default true: public + shared with the
    // admin project, so not p or q).
    let r = get(c, "/flavors", &admin, 1).await;
    assert_eq!(ids(&r), ["a", "b", "c", "d"]);
    let r = get(c, "/flavors?is_public=false", &admin, 1).await;
    assert_eq!(ids(&r), ["p", "q"]);
    let r = get(c, "/flavors?is_public=None", &admin, 1).await;
    assert_eq!(ids(&r), ["a", "b", "c", "d", "p", "q"]);
    let r = get(c, "/flavors?is_public=perhaps", &admin, 1).await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid is_public filter [perhaps]",
    );
    // Non-admins cannot widen the filter.
    let r = get(c, "/flavors?is_public=none", &user, 1).await;
    assert_eq!(ids(&r), ["a", "b", "c", "d", "q"]);
    // A private flavor: shown to its projects and admins only.
    assert_eq!(get(c, "/flavors/q", &user, 1).await.status, StatusCode::OK);
    expect(
        &get(c, "/flavors/p", &user, 1).await,
        StatusCode::NOT_FOUND,
        "Flavor p could not be found.",
    );
    assert_eq!(get(c, "/flavors/p", &admin, 1).await.status, StatusCode::OK);

    // minRam / minDisk.
    let r = get(c, "/flavors?minRam=1024&minDisk=20", &user, 1).await;
    assert_eq!(ids(&r), ["c", "d"]);
    let r = get(c, "/flavors?minRam=lots", &user, 1).await;
    expect(&r, StatusCode::BAD_REQUEST, "Invalid minRam filter [lots]");
    let r = get(c, "/flavors?minDisk=1.5", &user, 1).await;
    expect(&r, StatusCode::BAD_REQUEST, "Invalid minDisk filter [1.5]");

    // Sorting.
    let r = get(c, "/flavors?sort_key=memory_mb&sort_dir=desc", &user, 1).await;
    assert_eq!(ids(&r), ["d", "c", "b", "q", "a"]);
    let r = get(c, "/flavors?sort_key=name", &user, 1).await;
    assert_eq!(ids(&r), ["a", "b", "c", "d", "q"]);
    let r = get(c, "/flavors?sort_key=color", &user, 1).await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for query parameters sort_key. Value: color. 'color' is not one of ['created_at', 'description', 'disabled', 'ephemeral_gb', 'flavorid', 'id', 'is_public', 'memory_mb', 'name', 'root_gb', 'rxtx_factor', 'swap', 'updated_at', 'vcpu_weight', 'vcpus']",
    );
    let r = get(c, "/flavors?sort_dir=up", &user, 1).await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for query parameters sort_dir. Value: up. 'up' is not one of ['asc', 'desc']",
    );

    // Paging: limit, marker, next links.
    let r = get(c, "/flavors/detail?limit=2", &user, 1).await;
    assert_eq!(ids(&r), ["a", "b"]);
    let next = r.body["flavors_links"][0]["href"].as_str().unwrap();
    assert_eq!(r.body["flavors_links"][0]["rel"], "next");
    assert!(
        next.ends_with("/compute/v2.1/flavors/detail?limit=2&marker=b"),
        "{next}"
    );
    let r = get(c, "/flavors/detail?limit=2&marker=b", &user, 1).await;
    assert_eq!(ids(&r), ["c", "d"]);
    let r = get(c, "/flavors/detail?limit=2&marker=d", &user, 1).await;
    assert_eq!(ids(&r), ["q"]);
    assert!(r.body.get("flavors_links").is_none());
    let r = get(
        c,
        "/flavors?limit=2&marker=b&sort_key=memory_mb&sort_dir=desc",
        &user,
        1,
    )
    .await;
    assert_eq!(ids(&r), ["q", "a"]);
    let r = get(c, "/flavors?marker=p", &user, 1).await;
    expect(&r, StatusCode::BAD_REQUEST, "marker [p] not found");
    let r = get(c, "/flavors?limit=-1", &user, 1).await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for query parameters limit. Value: -1. '-1' does not match '^[0-9]*$'",
    );
    let r = get(c, "/flavors?limit=0", &user, 1).await;
    assert_eq!(ids(&r), Vec::<String>::new());

    // Unknown query parameters: ignored until 2.75.
    assert_eq!(
        get(c, "/flavors?color=red", &user, 74).await.status,
        StatusCode::OK
    );
    let r = get(c, "/flavors?color=red", &user, 75).await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Additional properties are not allowed ('color' was unexpected)",
    );

    // Detail views by microversion, extra specs embedded from 2.61.
    let r = nova(
        c,
        Method::POST,
        "/flavors/a/os-extra_specs",
        &admin,
        1,
        Some(json!({ "extra_specs": { "hw:cpu_policy": "shared" } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(c, "/flavors/detail?limit=1", &user, 60).await;
    assert!(r.body["flavors"][0].get("extra_specs").is_none());
    assert_eq!(r.body["flavors"][0]["swap"], "");
    let r = get(c, "/flavors/detail?limit=1", &user, 61).await;
    assert_eq!(
        r.body["flavors"][0]["extra_specs"],
        json!({ "hw:cpu_policy": "shared" })
    );
    let r = get(c, "/flavors/detail?limit=1", &user, 75).await;
    assert_eq!(r.body["flavors"][0]["swap"], 0);
});

both_engines!(flavor_access, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (pid, _, user) = member(c, &admin, "demo", "alice").await;
    make_flavor(
        c,
        &admin,
        json!({ "name": "priv", "id": "priv", "ram": 1, "vcpus": 1, "disk": 1,
                "os-flavor-access:is_public": false }),
    )
    .await;
    make_flavor(
        c,
        &admin,
        json!({ "name": "pub", "id": "pub", "ram": 1, "vcpus": 1, "disk": 1 }),
    )
    .await;
    let r = get(c, "/flavors/priv/os-flavor-access", &admin, 1).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({ "flavor_access": [] }));
    let r = get(c, "/flavors/pub/os-flavor-access", &admin, 1).await;
    expect(
        &r,
        StatusCode::NOT_FOUND,
        "Access list not available for public flavors.",
    );
    let r = get(c, "/flavors/priv/os-flavor-access", &user, 1).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let add = json!({ "addTenantAccess": { "tenant": pid } });
    let r = post(c, "/flavors/priv/action", &user, 1, add.clone()).await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Policy doesn't allow os_compute_api:os-flavor-access:add_tenant_access to be performed.",
    );
    assert_eq!(
        get(c, "/flavors/priv", &user, 1).await.status,
        StatusCode::NOT_FOUND
    );
    let r = post(c, "/flavors/priv/action", &admin, 1, add.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({ "flavor_access": [{ "flavor_id": "priv", "tenant_id": pid }] })
    );
    assert_eq!(
        get(c, "/flavors/priv", &user, 1).await.status,
        StatusCode::OK
    );
    let r = post(c, "/flavors/priv/action", &admin, 1, add.clone()).await;
    expect(
        &r,
        StatusCode::CONFLICT,
        &format!("Flavor access already exists for flavor priv and project {pid} combination."),
    );
    let r = post(
        c,
        "/flavors/priv/action",
        &admin,
        1,
        json!({ "addTenantAccess": { "tenant": "no-such-project" } }),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Project ID no-such-project is not a valid project.",
    );
    let r = post(c, "/flavors/nope/action", &admin, 1, add.clone()).await;
    expect(&r, StatusCode::NOT_FOUND, "Flavor nope could not be found.");
    // Public flavors: refused from 2.7, accepted (and pointless) before.
    let r = post(c, "/flavors/pub/action", &admin, 7, add.clone()).await;
    expect(
        &r,
        StatusCode::CONFLICT,
        "Can not add access to a public flavor.",
    );
    let r = post(c, "/flavors/pub/action", &admin, 6, add.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Bad bodies and actions.
    let r = post(
        c,
        "/flavors/priv/action",
        &admin,
        1,
        json!({ "addTenantAccess": { "tenant": "" } }),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for field/attribute tenant. Value: . '' should be non-empty",
    );
    let r = post(
        c,
        "/flavors/priv/action",
        &admin,
        1,
        json!({ "addTenantAccess": {} }),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for field/attribute addTenantAccess. Value: {}. 'tenant' is a required property",
    );
    let r = post(
        c,
        "/flavors/priv/action",
        &admin,
        1,
        json!({ "explode": {} }),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "There is no such action: explode",
    );

    let list = get(c, "/flavors/priv/os-flavor-access", &admin, 1).await;
    assert_eq!(list.body["flavor_access"].as_array().unwrap().len(), 1);
    let remove = json!({ "removeTenantAccess": { "tenant": pid } });
    let r = post(c, "/flavors/priv/action", &admin, 1, remove.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({ "flavor_access": [] }));
    let r = post(c, "/flavors/priv/action", &admin, 1, remove).await;
    expect(
        &r,
        StatusCode::NOT_FOUND,
        &format!("Flavor access not found for priv / {pid} combination."),
    );
    assert_eq!(
        get(c, "/flavors/priv", &user, 1).await.status,
        StatusCode::NOT_FOUND
    );
});

both_engines!(flavor_extra_specs, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (_, _, user) = member(c, &admin, "demo", "alice").await;
    make_flavor(
        c,
        &admin,
        json!({ "name": "f", "id": "f", "ram": 1, "vcpus": 1, "disk": 1 }),
    )
    .await;
    let path = "/flavors/f/os-extra_specs";
    let body = json!({ "extra_specs": {
        "hw:cpu_policy": "dedicated", "resources:VCPU": 2, "trait:HW_CPU_X86_AVX2": "required",
        "mycorp:anything": "goes",
    } });
    let r = nova(c, Method::POST, path, &user, 1, Some(body.clone())).await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Policy doesn't allow os_compute_api:os-flavor-extra-specs:create to be performed.",
    );
    let r = nova(c, Method::POST, path, &admin, 1, Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The answer echoes the request; values are stored as text.
    assert_eq!(r.body, body);
    let r = get(c, path, &user, 1).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({ "extra_specs": { "hw:cpu_policy": "dedicated", "resources:VCPU": "2",
            "trait:HW_CPU_X86_AVX2": "required", "mycorp:anything": "goes" } })
    );
    let r = get(c, &format!("{path}/hw:cpu_policy"), &user, 1).await;
    assert_eq!(r.body, json!({ "hw:cpu_policy": "dedicated" }));
    let r = get(c, &format!("{path}/hw:nothing"), &user, 1).await;
    expect(
        &r,
        StatusCode::NOT_FOUND,
        "Flavor f has no extra specs with key hw:nothing.",
    );
    // Update one key.
    let r = nova(
        c,
        Method::PUT,
        &format!("{path}/hw:cpu_policy"),
        &admin,
        1,
        Some(json!({ "hw:cpu_policy": "shared" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({ "hw:cpu_policy": "shared" }));
    let r = nova(
        c,
        Method::PUT,
        &format!("{path}/hw:cpu_policy"),
        &admin,
        1,
        Some(json!({ "hw:mem_page_size": "large" })),
    )
    .await;
    expect(&r, StatusCode::BAD_REQUEST, "Request body and URI mismatch");
    let r = nova(
        c,
        Method::PUT,
        &format!("{path}/a"),
        &admin,
        1,
        Some(json!({ "a": "1", "b": "2" })),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "{'a': '1', 'b': '2'} has too many properties",
    );
    // Bad keys and values.
    let r = nova(
        c,
        Method::POST,
        path,
        &admin,
        1,
        Some(json!({ "extra_specs": { "bad/key": "v" } })),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for field/attribute extra_specs. Value: {'bad/key': 'v'}. 'bad/key' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{1,255}$'",
    );
    let r = nova(
        c,
        Method::POST,
        path,
        &admin,
        1,
        Some(json!({ "extra_specs": { "k": null } })),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Invalid input for field/attribute k. Value: None. None is not of type 'string', 'number'",
    );
    let r = nova(
        c,
        Method::POST,
        path,
        &admin,
        1,
        Some(json!({ "specs": {} })),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "'extra_specs' is a required property",
    );
    // Below 2.86, values of known namespaces are not checked (as Nova).
    let r = nova(
        c,
        Method::POST,
        path,
        &admin,
        79,
        Some(json!({ "extra_specs": { "hw:cpu_policy": "whatever" } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = nova(
        c,
        Method::POST,
        "/flavors/nope/os-extra_specs",
        &admin,
        1,
        Some(json!({ "extra_specs": { "a": "b" } })),
    )
    .await;
    expect(&r, StatusCode::NOT_FOUND, "Flavor nope could not be found.");
    // Delete.
    let r = nova(
        c,
        Method::DELETE,
        &format!("{path}/hw:cpu_policy"),
        &user,
        1,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = nova(
        c,
        Method::DELETE,
        &format!("{path}/hw:cpu_policy"),
        &admin,
        1,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = nova(
        c,
        Method::DELETE,
        &format!("{path}/hw:cpu_policy"),
        &admin,
        1,
        None,
    )
    .await;
    expect(
        &r,
        StatusCode::NOT_FOUND,
        "Flavor f has no extra specs with key hw:cpu_policy.",
    );
    let r = get(c, "/flavors/f", &admin, 61).await;
    assert_eq!(r.body["flavor"]["extra_specs"]["resources:VCPU"], "2");
    assert!(r.body["flavor"]["extra_specs"]
        .get("hw:cpu_policy")
        .is_none());
    // Deleting the flavor takes its specs along.
    assert_eq!(
        nova(c, Method::DELETE, "/flavors/f", &admin, 1, None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    expect(
        &get(c, path, &admin, 1).await,
        StatusCode::NOT_FOUND,
        "Flavor f could not be found.",
    );
});

both_engines!(keypairs, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (_, alice_id, alice) = member(c, &admin, "demo", "alice").await;
    let (_, _, bob) = member(c, &admin, "other", "bob").await;

    // Generated at 2.1: 200, a private key, no type.
    let r = post(
        c,
        "/os-keypairs",
        &alice,
        1,
        json!({ "keypair": { "name": "gen1" } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let k = &r.body["keypair"];
    assert!(k["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(k["public_key"].as_str().unwrap().starts_with("ssh-rsa "));
    assert_eq!(k["user_id"], alice_id.as_str());
    assert_eq!(k["fingerprint"].as_str().unwrap().len(), 47);
    assert!(k.get("type").is_none());
    // At 2.2: 201 and a type.
    let r = post(
        c,
        "/os-keypairs",
        &alice,
        2,
        json!({ "keypair": { "name": "gen2" } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["type"], "ssh");

    // Imported: no private key, Nova's fingerprints.
    let r = post(
        c,
        "/os-keypairs",
        &alice,
        2,
        json!({ "keypair": { "name": "imp-ed", "public_key": ED25519 } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["fingerprint"], ED25519_FP);
    assert!(r.body["keypair"].get("private_key").is_none());
    let r = post(
        c,
        "/os-keypairs",
        &alice,
        2,
        json!({ "keypair": { "name": "imp-rsa", "public_key": RSA } }),
    )
    .await;
    assert_eq!(r.body["keypair"]["fingerprint"], RSA_FP);
    let r = post(
        c,
        "/os-keypairs",
        &alice,
        2,
        json!({ "keypair": { "name": "imp-rsa", "public_key": RSA } }),
    )
    .await;
    expect(
        &r,
        StatusCode::CONFLICT,
        "Key pair 'imp-rsa' already exists.",
    );
    // The same name for another user is fine.
    let r = post(
        c,
        "/os-keypairs",
        &bob,
        2,
        json!({ "keypair": { "name": "imp-rsa", "public_key": RSA } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = post(
        c,
        "/os-keypairs",
        &alice,
        2,
        json!({ "keypair": { "name": "junk", "public_key": "ssh-rsa AAAAnotakey" } }),
    )
    .await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Keypair data is invalid: failed to generate fingerprint",
    );

    // x509: generated, then its certificate imported.
    let r = post(
        c,
        "/os-keypairs",
        &alice,
        2,
        json!({ "keypair": { "name": "cert", "type": "x509" } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["type"], "x509");
    let cert = r.body["keypair"]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let fp = r.body["keypair"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(fp.len(), 59);
    let r = post(
        c,
        "/os-keypairs",
        &bob,
        2,
        json!({ "keypair": { "name": "cert", "type": "x509", "public_key": cert } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["fingerprint"], fp.as_str());
    let r = post(
        c,
        "/os-keypairs",
        &bob,
        2,
        json!({ "keypair": { "name": "cert2", "type": "x509", "public_key": ED25519 } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(fault(&r).starts_with(
        "Keypair data is invalid: failed to generate X509 fingerprint. Error message: "
    ));

    // Bad input by microversion.
    for (mv, body, msg) in [
        (
            2,
            json!({ "keypair": { "name": "bad!" } }),
            "Invalid input for field/attribute name. Value: bad!. 'bad!' does not match '^[_\\\\- a-zA-Z0-9]+$'",
        ),
        (
            2,
            json!({ "keypair": { "name": "" } }),
            "Invalid input for field/attribute name. Value: . '' should be non-empty",
        ),
        (
            2,
            json!({ "keypair": { "name": " lead" } }),
            "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace.",
        ),
        (
            1,
            json!({ "keypair": { "name": "t", "type": "ssh" } }),
            "Invalid input for field/attribute keypair. Value: {'name': 't', 'type': 'ssh'}. Additional properties are not allowed ('type' was unexpected)",
        ),
        (
            2,
            json!({ "keypair": { "name": "t", "type": "pgp" } }),
            "Invalid input for field/attribute type. Value: pgp. 'pgp' is not one of ['ssh', 'x509']",
        ),
        (
            9,
            json!({ "keypair": { "name": "t", "user_id": "x" } }),
            "Invalid input for field/attribute keypair. Value: {'name': 't', 'user_id': 'x'}. Additional properties are not allowed ('user_id' was unexpected)",
        ),
        (2, json!({ "key": {} }), "'keypair' is a required property"),
    ] {
        let r = post(c, "/os-keypairs", &alice, mv, body).await;
        expect(&r, StatusCode::BAD_REQUEST, msg);
    }

    // Show.
    let r = get(c, "/os-keypairs/imp-ed", &alice, 1).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let k = &r.body["keypair"];
    assert_eq!(k["deleted"], false);
    assert_eq!(k["deleted_at"], Value::Null);
    assert_eq!(k["updated_at"], Value::Null);
    assert!(k["id"].as_i64().unwrap() > 0);
    assert_eq!(k["created_at"].as_str().unwrap().len(), 26);
    assert!(k.get("type").is_none());
    let r = get(c, "/os-keypairs/imp-ed", &alice, 2).await;
    assert_eq!(r.body["keypair"]["type"], "ssh");
    let r = get(c, "/os-keypairs/nope", &alice, 2).await;
    expect(
        &r,
        StatusCode::NOT_FOUND,
        &format!("Keypair nope not found for user {alice_id}"),
    );

    // List, paging from 2.35.
    let r = get(c, "/os-keypairs", &alice, 2).await;
    let names: Vec<&str> = r.body["keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keypair"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cert", "gen1", "gen2", "imp-ed", "imp-rsa"]);
    assert_eq!(r.body["keypairs"][0]["keypair"]["type"], "x509");
    let r = get(c, "/os-keypairs?limit=2", &alice, 34).await;
    assert_eq!(r.body["keypairs"].as_array().unwrap().len(), 5);
    let r = get(c, "/os-keypairs?limit=2", &alice, 35).await;
    assert_eq!(r.body["keypairs"].as_array().unwrap().len(), 2);
    let next = r.body["keypairs_links"][0]["href"].as_str().unwrap();
    assert!(
        next.ends_with("/compute/v2.1/os-keypairs?limit=2&marker=gen1"),
        "{next}"
    );
    let r = get(c, "/os-keypairs?limit=2&marker=gen1", &alice, 35).await;
    assert_eq!(r.body["keypairs"][0]["keypair"]["name"], "gen2");
    let r = get(c, "/os-keypairs?marker=zzz", &alice, 35).await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Marker zzz could not be found.",
    );
    let r = get(c, "/os-keypairs?limit=x", &alice, 35).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(c, "/os-keypairs?foo=1", &alice, 75).await;
    expect(
        &r,
        StatusCode::BAD_REQUEST,
        "Additional properties are not allowed ('foo' was unexpected)",
    );

    // Other users' key pairs: admins only, from 2.10.
    let uid = format!("/os-keypairs?user_id={alice_id}");
    let r = get(c, &uid, &bob, 10).await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Policy doesn't allow os_compute_api:os-keypairs:index to be performed.",
    );
    // Before 2.10 the parameter is ignored: bob sees his own.
    let r = get(c, &uid, &bob, 9).await;
    assert_eq!(r.body["keypairs"].as_array().unwrap().len(), 2);
    let r = get(c, &uid, &admin, 10).await;
    assert_eq!(r.body["keypairs"].as_array().unwrap().len(), 5);
    let r = get(
        c,
        &format!("/os-keypairs/gen1?user_id={alice_id}"),
        &admin,
        10,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(
        c,
        "/os-keypairs",
        &admin,
        10,
        json!({ "keypair": { "name": "for-alice", "user_id": alice_id, "public_key": ED25519 } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["user_id"], alice_id.as_str());
    assert_eq!(
        get(c, "/os-keypairs/for-alice", &alice, 2).await.status,
        StatusCode::OK
    );
    let r = post(
        c,
        "/os-keypairs",
        &bob,
        10,
        json!({ "keypair": { "name": "sneaky", "user_id": alice_id, "public_key": ED25519 } }),
    )
    .await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Policy doesn't allow os_compute_api:os-keypairs:create to be performed.",
    );

    // Delete: 202 at 2.1, 204 from 2.2.
    let r = nova(c, Method::DELETE, "/os-keypairs/gen1", &alice, 1, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = nova(c, Method::DELETE, "/os-keypairs/gen2", &alice, 2, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = nova(c, Method::DELETE, "/os-keypairs/gen2", &alice, 2, None).await;
    expect(
        &r,
        StatusCode::NOT_FOUND,
        &format!("Keypair gen2 not found for user {alice_id}"),
    );
    let r = nova(
        c,
        Method::DELETE,
        &format!("/os-keypairs/imp-ed?user_id={alice_id}"),
        &admin,
        10,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
});

async fn keypair_quota(engine: Engine) {
    let Some(c) = Cloud::start_with(engine, |cfg| cfg.compute.quota_key_pairs = 2).await else {
        return;
    };
    let admin = c.admin_token().await;
    let (pid, uid, user) = member(&c, &admin, "demo", "alice").await;
    for name in ["k1", "k2"] {
        let r = post(
            &c,
            "/os-keypairs",
            &user,
            2,
            json!({ "keypair": { "name": name, "public_key": ED25519 } }),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let r = post(
        &c,
        "/os-keypairs",
        &user,
        2,
        json!({ "keypair": { "name": "k3", "public_key": ED25519 } }),
    )
    .await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Quota exceeded, too many key pairs.",
    );
    // The quota is per user.
    let r = post(
        &c,
        "/os-keypairs",
        &admin,
        2,
        json!({ "keypair": { "name": "k3" } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = nova(&c, Method::DELETE, "/os-keypairs/k1", &user, 2, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = post(
        &c,
        "/os-keypairs",
        &user,
        2,
        json!({ "keypair": { "name": "k3", "public_key": ED25519 } }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // A per-project override (os-quota-sets) raises the user's limit; a
    // per-user override lowers it again.
    let k4 = json!({ "keypair": { "name": "k4", "public_key": ED25519 } });
    let r = post(&c, "/os-keypairs", &user, 2, k4.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = nova(
        &c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}"),
        &admin,
        1,
        Some(json!({ "quota_set": { "key_pairs": 3 } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = post(&c, "/os-keypairs", &user, 2, k4).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = nova(
        &c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}?user_id={uid}"),
        &admin,
        1,
        Some(json!({ "quota_set": { "key_pairs": 1 } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = post(
        &c,
        "/os-keypairs",
        &user,
        2,
        json!({ "keypair": { "name": "k5", "public_key": ED25519 } }),
    )
    .await;
    expect(
        &r,
        StatusCode::FORBIDDEN,
        "Quota exceeded, too many key pairs.",
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keypair_quota_sqlite() {
    keypair_quota(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keypair_quota_postgres() {
    keypair_quota(Engine::Postgres).await;
}
