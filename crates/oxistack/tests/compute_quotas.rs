//! Compute admin APIs over HTTP (quotas, limits, availability zones,
//! aggregates, server groups, simple tenant usage, migrations), on SQLite
//! and PostgreSQL.
//!
//! Servers cannot be created through the API on this branch, so where usage
//! must be non-zero the tests insert `instances`, `compute_services`,
//! `server_group_members` and `migrations` rows directly with SQL (the
//! shapes the server paths will write), then read them back through the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{project_scope, Cloud, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const HOUR: i64 = 3_600_000_000;

async fn db(c: &Cloud) -> store::Db {
    store::Db::connect(&c.db_url, 2).await.unwrap()
}

/// A call at a compute microversion.
async fn at(
    c: &Cloud,
    method: Method,
    path: &str,
    token: &str,
    mv: &str,
    body: Option<Value>,
) -> common::Reply {
    let header = format!("compute {mv}");
    c.raw(
        method,
        &format!("/compute/v2.1{path}"),
        Some(token),
        body.map(|b| b.to_string().into_bytes()),
        &[("OpenStack-API-Version", header.as_str())],
    )
    .await
}

async fn get(c: &Cloud, path: &str, token: &str, mv: &str) -> common::Reply {
    at(c, Method::GET, path, token, mv, None).await
}

fn message(r: &common::Reply) -> String {
    r.body
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A project with a member user; returns (project id, user id, user token).
async fn member_of_new_project(
    c: &Cloud,
    admin: &str,
    project: &str,
    user: &str,
) -> (String, String, String) {
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

/// A server row as the create path writes it.
#[allow(clippy::too_many_arguments)]
async fn insert_instance(
    db: &store::Db,
    id: &str,
    project: &str,
    user: &str,
    host: Option<&str>,
    vcpus: i64,
    ram: i64,
    launched_at: Option<i64>,
    deleted_at: Option<i64>,
) {
    let flavor = json!({"id": "f1", "name": "m1.test", "vcpus": vcpus, "memory_mb": ram,
        "root_gb": 1, "ephemeral_gb": 2, "swap": 0, "rxtx_factor": 1.0, "is_public": true,
        "disabled": false, "description": null});
    let now = store::now_micros();
    store::sqlx::query(
        "INSERT INTO instances (id, name, project_id, user_id, host, flavor, vcpus, memory_mb, \
         root_gb, hostname, vm_state, reservation_id, launched_at, terminated_at, created_at, \
         updated_at, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $2, 'active', 'r-1', \
         $9, $10, $11, $11, $10)",
    )
    .bind(id)
    .bind(format!("vm-{id}"))
    .bind(project)
    .bind(user)
    .bind(host)
    .bind(flavor.to_string())
    .bind(vcpus)
    .bind(ram)
    .bind(launched_at)
    .bind(deleted_at)
    .bind(launched_at.unwrap_or(now))
    .execute(db.pool())
    .await
    .unwrap();
}

async fn insert_service(db: &store::Db, binary: &str, host: &str, last_seen: Option<i64>) {
    store::sqlx::query(
        "INSERT INTO compute_services (id, binary_name, host, last_seen_up, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(format!("{binary}-{host}"))
    .bind(binary)
    .bind(host)
    .bind(last_seen)
    .bind(store::now_micros())
    .execute(db.pool())
    .await
    .unwrap();
}

both_engines!(quota_sets_classes_and_limits, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (pid, uid, member) = member_of_new_project(c, &admin, "qproj", "quser").await;
    let db = db(c).await;

    // Defaults come from the configuration; the network quotas go at 2.36,
    // the injected-file ones at 2.57.
    let r = get(c, &format!("/os-quota-sets/{pid}"), &member, "2.1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let qs = &r.body["quota_set"];
    assert_eq!(qs["id"], json!(pid));
    assert_eq!(qs["instances"], json!(10));
    assert_eq!(qs["cores"], json!(20));
    assert_eq!(qs["ram"], json!(51200));
    assert_eq!(qs["floating_ips"], json!(-1));
    assert_eq!(qs["injected_files"], json!(5));
    assert_eq!(qs.as_object().unwrap().len(), 15);
    let r = get(c, &format!("/os-quota-sets/{pid}"), &member, "2.36").await;
    assert!(r.body["quota_set"].get("floating_ips").is_none());
    assert!(r.body["quota_set"].get("injected_files").is_some());
    let r = get(c, &format!("/os-quota-sets/{pid}"), &member, "2.57").await;
    let keys: Vec<&String> = r.body["quota_set"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "cores",
            "id",
            "instances",
            "key_pairs",
            "metadata_items",
            "ram",
            "server_group_members",
            "server_groups"
        ]
    );
    // Unknown query parameters are refused from 2.75.
    let r = get(c, &format!("/os-quota-sets/{pid}?foo=1"), &member, "2.75").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(c, &format!("/os-quota-sets/{pid}?foo=1"), &member, "2.74").await;
    assert_eq!(r.status, StatusCode::OK);
    // An unknown project.
    let r = get(c, "/os-quota-sets/no-such-project", &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        "Project ID no-such-project is not a valid project."
    );

    // Only admins update; members read their own project only.
    let body = json!({"quota_set": {"instances": 3}});
    let r = at(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}"),
        &member,
        "2.1",
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(c, "/os-quota-sets/admin", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Usage: two servers of the member, one of another user, one deleted.
    let now = store::now_micros();
    insert_instance(&db, "i-1", &pid, &uid, None, 2, 1024, Some(now), None).await;
    insert_instance(&db, "i-2", &pid, &uid, None, 2, 1024, Some(now), None).await;
    insert_instance(
        &db,
        "i-3",
        &pid,
        "other-user",
        None,
        4,
        2048,
        Some(now),
        None,
    )
    .await;
    insert_instance(&db, "i-4", &pid, &uid, None, 8, 8192, Some(now), Some(now)).await;
    let r = get(c, &format!("/os-quota-sets/{pid}/detail"), &member, "2.1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["quota_set"]["instances"],
        json!({"in_use": 3, "limit": 10, "reserved": 0})
    );
    assert_eq!(r.body["quota_set"]["cores"]["in_use"], json!(8));
    assert_eq!(r.body["quota_set"]["ram"]["in_use"], json!(4096));
    let r = get(
        c,
        &format!("/os-quota-sets/{pid}/detail?user_id={uid}"),
        &member,
        "2.1",
    )
    .await;
    assert_eq!(r.body["quota_set"]["instances"]["in_use"], json!(2));

    // A limit below usage needs force.
    let r = at(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}"),
        &admin,
        "2.1",
        Some(json!({"quota_set": {"instances": 2}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        "Quota limit 2 for instances must be greater than or equal to already used and reserved 3."
    );
    let r = at(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}"),
        &admin,
        "2.1",
        Some(json!({"quota_set": {"instances": "2", "cores": 10, "force": "True"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["quota_set"].get("id").is_none());
    assert_eq!(r.body["quota_set"]["instances"], json!(2));
    assert_eq!(r.body["quota_set"]["cores"], json!(10));
    // Schema errors.
    for (bad, msg) in [
        (
            json!({"quota_set": {"instances": -2}}),
            "-2 is less than the minimum of -1",
        ),
        (
            json!({"quota_set": {"instances": "x"}}),
            "'x' does not match '^-?[0-9]+$'",
        ),
        (
            json!({"quota_set": {"instances": 1.5}}),
            "is not of type 'integer', 'string'",
        ),
        (
            json!({"quota_set": {"bogus": 1}}),
            "Additional properties are not allowed ('bogus' was unexpected)",
        ),
        (json!({"quota": {}}), "'quota_set' is a required property"),
    ] {
        let r = at(
            c,
            Method::PUT,
            &format!("/os-quota-sets/{pid}"),
            &admin,
            "2.1",
            Some(bad),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(message(&r).contains(msg), "{} !~ {msg}", message(&r));
    }
    // floating_ips may not be set from 2.36.
    let r = at(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}"),
        &admin,
        "2.36",
        Some(json!({"quota_set": {"floating_ips": 1}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Per-user limits: at most what the project has left.
    let r = at(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}?user_id={uid}"),
        &admin,
        "2.1",
        Some(json!({"quota_set": {"cores": 11}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        "Quota limit 11 for cores must be less than or equal to 10."
    );
    let r = at(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}?user_id={uid}"),
        &admin,
        "2.1",
        Some(json!({"quota_set": {"cores": 5}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["quota_set"]["cores"], json!(5));
    let r = get(
        c,
        &format!("/os-quota-sets/{pid}?user_id={uid}"),
        &member,
        "2.1",
    )
    .await;
    assert_eq!(r.body["quota_set"]["cores"], json!(5));
    assert_eq!(r.body["quota_set"]["instances"], json!(2));

    // The checks the server paths call.
    let cfg = c.cfg.clone();
    let (_db2, services) = oxistack::server::start_services(&cfg, false).await.unwrap();
    let compute = services.compute.clone().unwrap();
    let e = compute::quota::check_instances(&compute, &pid, &uid, 1, 1, 64)
        .await
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        e.to_string(),
        "Quota exceeded for instances: Requested 1, but already used 3 of 2 instances"
    );
    // The user's own cores limit (5, 4 used) is the tighter one.
    store::sqlx::query("DELETE FROM compute_quotas WHERE project_id = $1 AND user_id = '' AND resource = 'instances'")
        .bind(&pid)
        .execute(db.pool())
        .await
        .unwrap();
    let e = compute::quota::check_instances(&compute, &pid, &uid, 1, 2, 64)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Quota exceeded for cores: Requested 2, but already used 4 of 5 cores"
    );
    compute::quota::check_instances(&compute, &pid, &uid, 1, 1, 64)
        .await
        .unwrap();
    // min_count..max_count: as many as fit.
    let n = compute::quota::check_num_instances(&compute, &pid, &uid, 1, 64, 1, 3)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let e = compute::quota::check_num_instances(&compute, &pid, &uid, 1, 64, 2, 3)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Quota exceeded for cores: Requested 2, but already used 4 of 5 cores"
    );
    compute::quota::check_resize(&compute, &pid, &uid, 1, 0)
        .await
        .unwrap();
    assert!(compute::quota::check_resize(&compute, &pid, &uid, 2, 0)
        .await
        .is_err());
    compute::quota::check_metadata_items(&compute, &pid, &uid, 128)
        .await
        .unwrap();
    let e = compute::quota::check_metadata_items(&compute, &pid, &uid, 129)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Maximum number of metadata items exceeds 128"
    );
    compute.stop();

    // Deleting the user's limits, then the project's.
    let r = at(
        c,
        Method::DELETE,
        &format!("/os-quota-sets/{pid}?user_id={uid}"),
        &admin,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = get(
        c,
        &format!("/os-quota-sets/{pid}?user_id={uid}"),
        &member,
        "2.1",
    )
    .await;
    assert_eq!(r.body["quota_set"]["cores"], json!(10));
    let r = at(
        c,
        Method::DELETE,
        &format!("/os-quota-sets/{pid}"),
        &admin,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = get(c, &format!("/os-quota-sets/{pid}"), &member, "2.1").await;
    assert_eq!(r.body["quota_set"]["cores"], json!(20));

    // The default class overrides the configuration for every project.
    let r = get(c, "/os-quota-class-sets/default", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(c, "/os-quota-class-sets/default", &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["quota_class_set"]["id"], json!("default"));
    assert!(r.body["quota_class_set"].get("server_groups").is_none());
    assert!(r.body["quota_class_set"].get("floating_ips").is_some());
    let r = get(c, "/os-quota-class-sets/default", &admin, "2.50").await;
    assert!(r.body["quota_class_set"].get("server_groups").is_some());
    assert!(r.body["quota_class_set"].get("floating_ips").is_none());
    let r = at(
        c,
        Method::PUT,
        "/os-quota-class-sets/default",
        &admin,
        "2.57",
        Some(json!({"quota_class_set": {"instances": 50, "cores": 100}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["quota_class_set"]["instances"], json!(50));
    assert!(r.body["quota_class_set"].get("id").is_none());
    let r = at(
        c,
        Method::PUT,
        "/os-quota-class-sets/default",
        &admin,
        "2.57",
        Some(json!({"quota_class_set": {"injected_files": 1}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(c, &format!("/os-quota-sets/{pid}/defaults"), &member, "2.1").await;
    assert_eq!(r.body["quota_set"]["instances"], json!(50));
    assert_eq!(r.body["quota_set"]["id"], json!(pid));
    let r = get(c, &format!("/os-quota-sets/{pid}"), &member, "2.1").await;
    assert_eq!(r.body["quota_set"]["cores"], json!(100));

    // Limits: absolute limits with usage, by microversion.
    let r = get(c, "/limits", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["limits"]["rate"], json!([]));
    let a = &r.body["limits"]["absolute"];
    assert_eq!(a["maxTotalInstances"], json!(50));
    assert_eq!(a["totalInstancesUsed"], json!(3));
    assert_eq!(a["maxTotalCores"], json!(100));
    assert_eq!(a["totalCoresUsed"], json!(8));
    assert_eq!(a["maxTotalRAMSize"], json!(51200));
    assert_eq!(a["totalRAMUsed"], json!(4096));
    assert_eq!(a["maxServerMeta"], json!(128));
    assert_eq!(a["maxImageMeta"], json!(128));
    assert_eq!(a["maxTotalFloatingIps"], json!(-1));
    assert_eq!(a["totalFloatingIpsUsed"], json!(0));
    assert_eq!(a["maxPersonality"], json!(5));
    assert_eq!(a["maxServerGroups"], json!(10));
    assert_eq!(a["totalServerGroupsUsed"], json!(0));
    let r = get(c, "/limits", &member, "2.57").await;
    let mut keys: Vec<&String> = r.body["limits"]["absolute"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "maxServerGroupMembers",
            "maxServerGroups",
            "maxServerMeta",
            "maxTotalCores",
            "maxTotalInstances",
            "maxTotalKeypairs",
            "maxTotalRAMSize",
            "totalCoresUsed",
            "totalInstancesUsed",
            "totalRAMUsed",
            "totalServerGroupsUsed"
        ]
    );
    // Another project's limits: admins only.
    let r = get(c, "/limits?tenant_id=admin", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(c, &format!("/limits?tenant_id={pid}"), &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["limits"]["absolute"]["totalInstancesUsed"], json!(3));
});

both_engines!(availability_zones_and_aggregates, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (_pid, _uid, member) = member_of_new_project(c, &admin, "azproj", "azuser").await;
    let db = db(c).await;
    let now = store::now_micros();
    insert_service(&db, "nova-compute", "qt-host1", Some(now)).await;
    insert_service(
        &db,
        "nova-compute",
        "qt-host2",
        Some(now - 3600 * 1_000_000),
    )
    .await;
    insert_service(&db, "nova-scheduler", "qt-ctl", Some(now)).await;

    let r = get(c, "/os-availability-zone", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["availabilityZoneInfo"],
        json!([{"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}])
    );
    let r = get(c, "/os-availability-zone/detail", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Aggregates are admin-only.
    let r = get(c, "/os-aggregates", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = at(
        c,
        Method::POST,
        "/os-aggregates",
        &admin,
        "2.1",
        Some(json!({"aggregate": {"name": "agg1", "availability_zone": "az1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let a1 = &r.body["aggregate"];
    let id1 = a1["id"].as_i64().unwrap();
    assert_eq!(a1["availability_zone"], json!("az1"));
    assert_eq!(a1["deleted"], json!(false));
    assert!(a1.get("hosts").is_none() && a1.get("uuid").is_none());
    let r = at(
        c,
        Method::POST,
        "/os-aggregates",
        &admin,
        "2.41",
        Some(json!({"aggregate": {"name": "agg2"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let id2 = r.body["aggregate"]["id"].as_i64().unwrap();
    assert_eq!(id2, id1 + 1);
    assert!(r.body["aggregate"]["uuid"].as_str().unwrap().len() == 36);
    assert_eq!(r.body["aggregate"]["availability_zone"], Value::Null);
    // Names are unique; names and zones are validated.
    let r = at(
        c,
        Method::POST,
        "/os-aggregates",
        &admin,
        "2.1",
        Some(json!({"aggregate": {"name": "agg1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(message(&r), "Aggregate agg1 already exists.");
    for bad in [
        json!({"aggregate": {"name": " x"}}),
        json!({"aggregate": {"name": "x", "availability_zone": "a:b"}}),
        json!({"aggregate": {}}),
        json!({"aggregate": {"name": "x", "foo": 1}}),
    ] {
        let r = at(c, Method::POST, "/os-aggregates", &admin, "2.1", Some(bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    }
    let r = get(c, "/os-aggregates/abc", &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(c, "/os-aggregates/999", &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(message(&r), "Aggregate 999 could not be found.");

    // Hosts: known compute hosts only, once per aggregate.
    let action = |id: i64| format!("/os-aggregates/{id}/action");
    let r = at(
        c,
        Method::POST,
        &action(id1),
        &admin,
        "2.1",
        Some(json!({"add_host": {"host": "nohost"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(message(&r), "Host 'nohost' is not mapped to any cell");
    let r = at(
        c,
        Method::POST,
        &action(id1),
        &admin,
        "2.1",
        Some(json!({"add_host": {"host": "qt-host1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["aggregate"]["hosts"], json!(["qt-host1"]));
    assert_eq!(
        r.body["aggregate"]["metadata"],
        json!({"availability_zone": "az1"})
    );
    let r = at(
        c,
        Method::POST,
        &action(id1),
        &admin,
        "2.1",
        Some(json!({"add_host": {"host": "qt-host1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        message(&r),
        format!("Aggregate {id1} already has host qt-host1.")
    );

    // A host cannot be in two zones.
    let r = at(
        c,
        Method::PUT,
        &format!("/os-aggregates/{id2}"),
        &admin,
        "2.1",
        Some(json!({"aggregate": {"availability_zone": "az2"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["aggregate"]["availability_zone"], json!("az2"));
    let r = at(
        c,
        Method::POST,
        &action(id2),
        &admin,
        "2.1",
        Some(json!({"add_host": {"host": "qt-host1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        message(&r),
        format!(
            "Cannot add host to aggregate {id2}. Reason: One or more hosts already in \
             availability zone(s) ['az1']."
        )
    );
    // Nor can the zone of an aggregate move its host into a conflict.
    let r = at(
        c,
        Method::POST,
        &action(id2),
        &admin,
        "2.1",
        Some(json!({"add_host": {"host": "qt-host2"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = at(
        c,
        Method::POST,
        &action(id2),
        &admin,
        "2.1",
        Some(json!({"set_metadata": {"metadata": {"availability_zone": null}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        format!(
            "Cannot update metadata of aggregate {id2}. Reason: Aggregate agg2 does not \
             support empty named availability zone."
        )
    );
    let r = at(
        c,
        Method::POST,
        &action(id2),
        &admin,
        "2.41",
        Some(json!({"set_metadata": {"metadata": {"ssd": "true", "gpu": "x"}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = at(
        c,
        Method::POST,
        &action(id2),
        &admin,
        "2.41",
        Some(json!({"set_metadata": {"metadata": {"gpu": null}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["aggregate"]["metadata"],
        json!({"availability_zone": "az2", "ssd": "true"})
    );
    assert!(r.body["aggregate"]["updated_at"].is_string());
    let r = at(
        c,
        Method::POST,
        &action(id2),
        &admin,
        "2.1",
        Some(json!({"set_metadata": {"metadata": {"bad/key": "1"}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Zones as users and admins see them.
    let r = get(c, "/os-availability-zone", &member, "2.1").await;
    let names: Vec<&str> = r.body["availabilityZoneInfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zoneName"].as_str().unwrap())
        .collect();
    // The test's own hosts, and the harness's fake compute host in the
    // default zone.
    assert_eq!(names, ["az1", "az2", "nova"]);
    let r = get(c, "/os-availability-zone/detail", &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::OK);
    let info = r.body["availabilityZoneInfo"].as_array().unwrap();
    let zone = |n: &str| {
        info.iter()
            .find(|z| z["zoneName"] == json!(n))
            .unwrap()
            .clone()
    };
    let az1 = zone("az1");
    assert_eq!(
        az1["hosts"]["qt-host1"]["nova-compute"]["available"],
        json!(true)
    );
    assert_eq!(
        az1["hosts"]["qt-host1"]["nova-compute"]["active"],
        json!(true)
    );
    let az2 = zone("az2");
    assert_eq!(
        az2["hosts"]["qt-host2"]["nova-compute"]["available"],
        json!(false)
    );
    let internal = zone("internal");
    assert!(internal["hosts"]["qt-ctl"]["nova-scheduler"].is_object());

    // The lookups the scheduler uses.
    let aggs = compute::db::aggregates::host_aggregates(&db, "qt-host2")
        .await
        .unwrap();
    assert_eq!(aggs.len(), 1);
    assert_eq!(
        aggs[0].metadata.get("ssd").map(String::as_str),
        Some("true")
    );

    // Removing hosts, deleting aggregates.
    let r = at(
        c,
        Method::DELETE,
        &format!("/os-aggregates/{id1}"),
        &admin,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        format!("Cannot remove host from aggregate {id1}. Reason: Host aggregate is not empty.")
    );
    let r = at(
        c,
        Method::POST,
        &action(id1),
        &admin,
        "2.1",
        Some(json!({"remove_host": {"host": "qt-host2"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&r),
        format!("Cannot remove host qt-host2 in aggregate {id1}")
    );
    let r = at(
        c,
        Method::POST,
        &action(id1),
        &admin,
        "2.1",
        Some(json!({"remove_host": {"host": "qt-host1"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["aggregate"]["hosts"], json!([]));
    let r = at(
        c,
        Method::DELETE,
        &format!("/os-aggregates/{id1}"),
        &admin,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(c, "/os-aggregates", &admin, "2.41").await;
    let list = r.body["aggregates"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["hosts"], json!(["qt-host2"]));
    // qt-host1 is back in the default zone.
    let r = get(c, "/os-availability-zone", &member, "2.1").await;
    let names: Vec<&str> = r.body["availabilityZoneInfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zoneName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["az2", "nova"]);
    // Ids are never below the highest one: a new aggregate gets max + 1.
    let r = at(
        c,
        Method::POST,
        "/os-aggregates",
        &admin,
        "2.1",
        Some(json!({"aggregate": {"name": "agg3"}})),
    )
    .await;
    assert_eq!(r.body["aggregate"]["id"], json!(id2 + 1));
});

both_engines!(server_groups, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (pid, uid, member) = member_of_new_project(c, &admin, "sgproj", "sguser").await;
    let db = db(c).await;

    let r = at(
        c,
        Method::POST,
        "/os-server-groups",
        &member,
        "2.1",
        Some(json!({"server_group": {"name": "g1", "policies": ["anti-affinity"]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let g1 = r.body["server_group"].clone();
    assert_eq!(g1["policies"], json!(["anti-affinity"]));
    assert_eq!(g1["metadata"], json!({}));
    assert_eq!(g1["members"], json!([]));
    assert!(g1.get("project_id").is_none());
    let g1id = g1["id"].as_str().unwrap().to_string();
    // soft policies from 2.15, policy + rules from 2.64.
    let soft = json!({"server_group": {"name": "g", "policies": ["soft-affinity"]}});
    let r = at(
        c,
        Method::POST,
        "/os-server-groups",
        &member,
        "2.14",
        Some(soft.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = at(
        c,
        Method::POST,
        "/os-server-groups",
        &member,
        "2.15",
        Some(soft),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["server_group"]["project_id"], json!(pid));
    assert_eq!(r.body["server_group"]["user_id"], json!(uid));
    let r = at(
        c,
        Method::POST,
        "/os-server-groups",
        &member,
        "2.64",
        Some(
            json!({"server_group": {"name": "g3", "policy": "anti-affinity",
            "rules": {"max_server_per_host": 2}}}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["server_group"]["policy"], json!("anti-affinity"));
    assert_eq!(
        r.body["server_group"]["rules"],
        json!({"max_server_per_host": 2})
    );
    assert!(r.body["server_group"].get("policies").is_none());
    let r = at(
        c,
        Method::POST,
        "/os-server-groups",
        &member,
        "2.64",
        Some(json!({"server_group": {"name": "g4", "policy": "affinity",
            "rules": {"max_server_per_host": 2}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&r), "Only anti-affinity policy supports rules.");
    for bad in [
        json!({"server_group": {"name": "g", "policies": ["anti-affinity"]}}),
        json!({"server_group": {"name": "g", "policy": "bogus"}}),
        json!({"server_group": {"name": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}}),
        json!({"server_group": {"policy": "affinity"}}),
    ] {
        let r = at(
            c,
            Method::POST,
            "/os-server-groups",
            &member,
            "2.64",
            Some(bad),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    }

    // Members: instances not deleted.
    let now = store::now_micros();
    insert_instance(&db, "sg-i1", &pid, &uid, None, 1, 64, Some(now), None).await;
    insert_instance(&db, "sg-i2", &pid, &uid, None, 1, 64, Some(now), Some(now)).await;
    let mut tx = db.write().await.unwrap();
    for i in ["sg-i1", "sg-i2"] {
        compute::db::server_groups::group_add_member(&mut tx, &g1id, i)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let r = get(c, &format!("/os-server-groups/{g1id}"), &member, "2.13").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["server_group"]["members"], json!(["sg-i1"]));
    let g = compute::db::server_groups::group_get(&db, &g1id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.members.len(), 2);

    // Listing, paging, other projects.
    let r = get(c, "/os-server-groups", &member, "2.1").await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 3);
    let r = get(c, "/os-server-groups?limit=1&offset=1", &member, "2.1").await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 1);
    let r = get(c, "/os-server-groups?limit=-1", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(c, "/os-server-groups", &admin, "2.1").await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 0);
    let r = get(c, "/os-server-groups?all_projects=True", &admin, "2.1").await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 3);
    // A member asking for all projects gets its own.
    let r = get(c, "/os-server-groups?all_projects=True", &member, "2.1").await;
    assert_eq!(r.body["server_groups"].as_array().unwrap().len(), 3);
    let (_p2, _u2, other) = member_of_new_project(c, &admin, "sgproj2", "sguser2").await;
    let r = get(c, &format!("/os-server-groups/{g1id}"), &other, "2.1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The server_groups quota.
    let r = at(
        c,
        Method::PUT,
        &format!("/os-quota-sets/{pid}"),
        &admin,
        "2.1",
        Some(json!({"quota_set": {"server_groups": 3}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = at(
        c,
        Method::POST,
        "/os-server-groups",
        &member,
        "2.1",
        Some(json!({"server_group": {"name": "g5", "policies": ["affinity"]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(message(&r), "Quota exceeded, too many server groups.");
    let r = get(c, "/limits", &member, "2.1").await;
    assert_eq!(
        r.body["limits"]["absolute"]["totalServerGroupsUsed"],
        json!(3)
    );

    // Delete.
    let r = at(
        c,
        Method::DELETE,
        &format!("/os-server-groups/{g1id}"),
        &other,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = at(
        c,
        Method::DELETE,
        &format!("/os-server-groups/{g1id}"),
        &member,
        "2.1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = get(c, &format!("/os-server-groups/{g1id}"), &member, "2.1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&r),
        format!("Instance group {g1id} could not be found.")
    );
});

both_engines!(tenant_usage_and_migrations, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let (pid, uid, member) = member_of_new_project(c, &admin, "uproj", "uuser").await;
    let db = db(c).await;
    let now = store::now_micros();
    // Ran for 2 hours and ended an hour ago; running for 3 hours; another
    // project's, running for an hour.
    insert_instance(
        &db,
        "u-1",
        &pid,
        &uid,
        Some("h"),
        2,
        1024,
        Some(now - 3 * HOUR),
        Some(now - HOUR),
    )
    .await;
    insert_instance(
        &db,
        "u-2",
        &pid,
        &uid,
        Some("h"),
        1,
        512,
        Some(now - 3 * HOUR),
        None,
    )
    .await;
    insert_instance(
        &db,
        "u-3",
        "other-project",
        &uid,
        Some("h"),
        4,
        2048,
        Some(now - HOUR),
        None,
    )
    .await;
    // Never launched: not counted.
    insert_instance(&db, "u-4", &pid, &uid, None, 4, 2048, None, None).await;

    let start = "2000-01-01T00:00:00";
    let r = get(
        c,
        &format!("/os-simple-tenant-usage?start={start}"),
        &member,
        "2.1",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(
        c,
        &format!("/os-simple-tenant-usage?start={start}&detailed=1"),
        &admin,
        "2.1",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let usages = r.body["tenant_usages"].as_array().unwrap();
    assert_eq!(usages.len(), 2);
    let mine = usages
        .iter()
        .find(|u| u["tenant_id"] == json!(pid))
        .unwrap();
    let hours = mine["total_hours"].as_f64().unwrap();
    assert!((hours - 5.0).abs() < 0.01, "{hours}");
    let vcpu_hours = mine["total_vcpus_usage"].as_f64().unwrap();
    assert!((vcpu_hours - 7.0).abs() < 0.01, "{vcpu_hours}");
    let servers = mine["server_usages"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["instance_id"], json!("u-1"));
    assert_eq!(servers[0]["state"], json!("terminated"));
    assert_eq!(servers[0]["flavor"], json!("m1.test"));
    assert_eq!(servers[0]["local_gb"], json!(3));
    assert_eq!(servers[1]["state"], json!("active"));
    assert!(servers[1]["ended_at"].is_null());
    let started = servers[1]["started_at"].as_str().unwrap();
    assert_eq!(started.len(), 26, "{started}");
    assert_eq!(mine["start"], json!("2000-01-01T00:00:00.000000"));
    // Not detailed: no server_usages.
    let r = get(
        c,
        &format!("/os-simple-tenant-usage?start={start}"),
        &admin,
        "2.1",
    )
    .await;
    assert!(r.body["tenant_usages"][0].get("server_usages").is_none());
    // One project; the member may see its own.
    let r = get(
        c,
        &format!("/os-simple-tenant-usage/{pid}?start={start}"),
        &member,
        "2.1",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["tenant_usage"]["server_usages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = get(
        c,
        &format!("/os-simple-tenant-usage/nobody?start={start}"),
        &admin,
        "2.1",
    )
    .await;
    assert_eq!(r.body["tenant_usage"], json!({}));
    // Paging at 2.40.
    let r = get(
        c,
        &format!("/os-simple-tenant-usage?start={start}&limit=1&detailed=1"),
        &admin,
        "2.40",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let link = r.body["tenant_usages_links"][0]["href"].as_str().unwrap();
    assert!(
        link.contains("/compute/v2.1/os-simple-tenant-usage?"),
        "{link}"
    );
    assert!(link.contains("marker=u-1"), "{link}");
    let r = get(
        c,
        &format!("/os-simple-tenant-usage?start={start}&limit=1&marker=u-1&detailed=1"),
        &admin,
        "2.40",
    )
    .await;
    assert_eq!(
        r.body["tenant_usages"][0]["server_usages"][0]["instance_id"],
        json!("u-2")
    );
    let r = get(
        c,
        &format!("/os-simple-tenant-usage?start={start}&marker=nope"),
        &admin,
        "2.40",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&r), "Marker nope could not be found.");
    // Bad periods.
    let r = get(c, "/os-simple-tenant-usage?start=yesterday", &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(
        c,
        "/os-simple-tenant-usage?start=2030-01-01T00:00:00&end=2020-01-01T00:00:00",
        &admin,
        "2.1",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&r),
        "Invalid start time. The start time cannot occur after the end time."
    );

    // Migrations.
    for (id, status, mtype, at_) in [
        (1i64, "finished", "resize", now - 2 * HOUR),
        (2, "running", "live-migration", now - HOUR),
        (3, "error", "migration", now),
    ] {
        store::sqlx::query(
            "INSERT INTO migrations (id, uuid, instance_id, migration_type, status, \
             source_compute, dest_compute, source_node, dest_node, old_flavor_id, new_flavor_id, \
             old_instance_type_id, new_instance_type_id, created_at) \
             VALUES ($1, $2, 'u-2', $3, $4, 'h1', 'h2', 'n1', 'n2', 'f1', 'f2', 1, 2, $5)",
        )
        .bind(id)
        .bind(format!("00000000-0000-0000-0000-00000000000{id}"))
        .bind(mtype)
        .bind(status)
        .bind(at_)
        .execute(db.pool())
        .await
        .unwrap();
    }
    let r = get(c, "/os-migrations", &member, "2.1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(c, "/os-migrations", &admin, "2.1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let m = r.body["migrations"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[0]["id"], json!(3));
    assert!(m[0].get("migration_type").is_none() && m[0].get("uuid").is_none());
    assert_eq!(m[0]["old_instance_type_id"], json!(1));
    assert_eq!(m[0]["instance_uuid"], json!("u-2"));
    let r = get(c, "/os-migrations?status=running", &admin, "2.23").await;
    let m = r.body["migrations"].as_array().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["migration_type"], json!("live-migration"));
    assert!(m[0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with("/servers/u-2/migrations/2"));
    let r = get(c, "/os-migrations?limit=2", &admin, "2.59").await;
    let m = r.body["migrations"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["uuid"], json!("00000000-0000-0000-0000-000000000002"));
    let next = r.body["migrations_links"][0]["href"].as_str().unwrap();
    assert!(
        next.contains("marker=00000000-0000-0000-0000-000000000002"),
        "{next}"
    );
    let r = get(
        c,
        "/os-migrations?limit=2&marker=00000000-0000-0000-0000-000000000002",
        &admin,
        "2.59",
    )
    .await;
    assert_eq!(r.body["migrations"].as_array().unwrap().len(), 1);
    assert!(r.body.get("migrations_links").is_none());
    let r = get(c, "/os-migrations?bogus=1", &admin, "2.59").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(
        c,
        "/os-migrations?migration_type=resize&host=h2",
        &admin,
        "2.59",
    )
    .await;
    assert_eq!(r.body["migrations"].as_array().unwrap().len(), 1);
});
