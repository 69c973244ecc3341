//! Placement through the real server: Keystone tokens, policy, providers,
//! inventories, allocations and candidates, concurrency, and the model's
//! coherence across processes sharing one database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Cloud, Engine};

/// These tests count providers and candidates: no compute hosts.
fn no_compute(cfg: &mut oxistack::config::Config) {
    cfg.compute.enabled = false;
}
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MV: (&str, &str) = ("openstack-api-version", "placement 1.39");

async fn pcall(
    c: &Cloud,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> common::Reply {
    c.raw(
        method,
        &format!("/placement{path}"),
        Some(token),
        body.map(|b| b.to_string().into_bytes()),
        &[MV],
    )
    .await
}

async fn provider(c: &Cloud, token: &str, name: &str, inventories: Value) -> String {
    let r = pcall(
        c,
        Method::POST,
        "/resource_providers",
        token,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let uuid = r.body["uuid"].as_str().unwrap().to_string();
    let r = pcall(
        c,
        Method::PUT,
        &format!("/resource_providers/{uuid}/inventories"),
        token,
        Some(json!({ "resource_provider_generation": 0, "inventories": inventories })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    uuid
}

both_engines!(
    keystone_tokens_policy_and_the_basic_flow,
    tweak = no_compute,
    async |c: &Cloud| {
        let admin = c.admin_token().await;
        // Root is open; everything else needs a token.
        let r = c.raw(Method::GET, "/placement", None, None, &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["versions"][0]["max_version"], "1.39");
        let r = c
            .raw(
                Method::GET,
                "/placement/resource_providers",
                None,
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = c
            .raw(
                Method::GET,
                "/placement/resource_providers",
                Some("bogus"),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // A member of a project is not a placement admin.
        let project = c
            .create(
                &admin,
                "projects",
                "project",
                json!({"name": "p1", "domain_id": "default"}),
            )
            .await;
        let user = c
            .create(
                &admin,
                "users",
                "user",
                json!({"name": "u1", "password": "pw-u1", "domain_id": "default"}),
            )
            .await;
        let member = c.get("/identity/v3/roles?name=member", &admin).await.body["roles"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = c
            .put(
                &format!("/identity/v3/projects/{project}/users/{user}/roles/{member}"),
                &admin,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let user_token = c.token("u1", "pw-u1", common::project_scope("p1")).await;
        let r = pcall(c, Method::GET, "/resource_providers", &user_token, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("placement:resource_providers:list"));
        // The admin manages providers, inventory and allocations.
        let rp = provider(
            c,
            &admin,
            "cn1",
            json!({"VCPU": {"total": 8}, "MEMORY_MB": {"total": 4096}}),
        )
        .await;
        let consumer = "9f0f9c3e-44a3-4b3a-9a43-7f2ab1f1a001";
        let r = pcall(
            c,
            Method::PUT,
            &format!("/allocations/{consumer}"),
            &admin,
            Some(json!({
                "allocations": {rp.clone(): {"resources": {"VCPU": 2, "MEMORY_MB": 512}}},
                "project_id": project, "user_id": user, "consumer_generation": null,
                "consumer_type": "INSTANCE"
            })),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        let r = pcall(
            c,
            Method::GET,
            &format!("/resource_providers/{rp}/usages"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.body["usages"], json!({"VCPU": 2, "MEMORY_MB": 512}));
        let r = pcall(
            c,
            Method::GET,
            &format!("/allocations/{consumer}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.body["consumer_generation"], 1);
        assert_eq!(r.body["consumer_type"], "INSTANCE");
        // Candidates see the new usage at once (the model follows the write).
        let r = pcall(
            c,
            Method::GET,
            "/allocation_candidates?resources=VCPU:6",
            &admin,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
        let r = pcall(
            c,
            Method::GET,
            "/allocation_candidates?resources=VCPU:7",
            &admin,
            None,
        )
        .await;
        assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 0);
        // Usage by project, as a project reader may see it for their project.
        let r = pcall(
            c,
            Method::GET,
            &format!("/usages?project_id={project}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.body["usages"]["INSTANCE"]["VCPU"], 2);
        // Inventory in use cannot be removed.
        let r = pcall(
            c,
            Method::DELETE,
            &format!("/resource_providers/{rp}/inventories"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.body["errors"][0]["code"], "placement.inventory.inuse");
        // Bad input gets 400s, not 500s.
        let r = pcall(
            c,
            Method::POST,
            "/resource_providers",
            &admin,
            Some(json!({"name": 5})),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = c
            .raw(
                Method::POST,
                "/placement/resource_providers",
                Some(&admin),
                Some(b"{not json".to_vec()),
                &[MV],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("Malformed JSON"));
        let r = pcall(
            c,
            Method::GET,
            "/allocation_candidates?resources=VCPU:x",
            &admin,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
);

both_engines!(
    fifty_concurrent_claimants_never_oversubscribe,
    tweak = no_compute,
    async |c: &Cloud| {
        let admin = Arc::new(c.admin_token().await);
        // A provider with 20 VCPUs and a second one with plenty of disk: every
        // claim takes 1 VCPU from the first and 10 GB from the second, so a
        // refused claim must leave no partial allocation on the second.
        let cpu = provider(c, &admin, "cpu", json!({"VCPU": {"total": 20}})).await;
        let disk = provider(c, &admin, "disk", json!({"DISK_GB": {"total": 100000}})).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let url = format!(
                "{}/placement/allocations/00000000-0000-4000-8000-{i:012}",
                c.url
            );
            let admin = admin.clone();
            let body = json!({
                "allocations": {
                    cpu.clone(): {"resources": {"VCPU": 1}},
                    disk.clone(): {"resources": {"DISK_GB": 10}},
                },
                "project_id": "p", "user_id": "u", "consumer_generation": null,
                "consumer_type": "INSTANCE",
            });
            tasks.push(tokio::spawn(async move {
                let res = reqwest::Client::new()
                    .put(url)
                    .header("x-auth-token", admin.as_str())
                    .header(MV.0, MV.1)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                res.status()
            }));
        }
        let mut ok = 0;
        let mut conflicts = 0;
        for t in tasks {
            match t.await.unwrap() {
                StatusCode::NO_CONTENT => ok += 1,
                StatusCode::CONFLICT => conflicts += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(ok, 20, "exactly the capacity is granted");
        assert_eq!(conflicts, 30);
        let r = pcall(
            c,
            Method::GET,
            &format!("/resource_providers/{cpu}/usages"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.body["usages"]["VCPU"], 20);
        let r = pcall(
            c,
            Method::GET,
            &format!("/resource_providers/{disk}/usages"),
            &admin,
            None,
        )
        .await;
        assert_eq!(
            r.body["usages"]["DISK_GB"], 200,
            "no partial allocation from refused claims"
        );
        let r = pcall(
            c,
            Method::GET,
            &format!("/resource_providers/{cpu}/allocations"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.body["allocations"].as_object().unwrap().len(), 20);
        // Generations conflict with 409 as upstream.
        let r = pcall(
            c,
            Method::PUT,
            &format!("/resource_providers/{cpu}/inventories"),
            &admin,
            Some(
                json!({"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 40}}}),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.body["errors"][0]["code"], "placement.concurrent_update");
    }
);

both_engines!(
    a_second_process_sees_every_write,
    tweak = no_compute,
    async |c: &Cloud| {
        use tower::ServiceExt;
        let admin = c.admin_token().await;
        // A second placement service on the same database, as a second API
        // process would run it (no message bus between them).
        let db = store::Db::connect(&c.db_url, 4).await.unwrap();
        let tokens: Arc<dyn api_common::TokenValidator> = c.identity.clone();
        let other = placement::Placement::new(db, c.cfg.placement.clone(), Some(tokens))
            .await
            .unwrap();
        let router = placement::api::router(other);
        let ask = |path: String| {
            let router = router.clone();
            let admin = admin.clone();
            async move {
                let req = axum::http::Request::builder()
                    .uri(path)
                    .header("x-auth-token", admin)
                    .header(MV.0, MV.1)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let res = router.oneshot(req).await.unwrap();
                let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                    .await
                    .unwrap();
                serde_json::from_slice::<Value>(&bytes).unwrap()
            }
        };
        let before = ask("/allocation_candidates?resources=VCPU:1".into()).await;
        assert_eq!(before["allocation_requests"].as_array().unwrap().len(), 0);
        let rp = provider(c, &admin, "cn-shared", json!({"VCPU": {"total": 4}})).await;
        let after = ask("/allocation_candidates?resources=VCPU:1".into()).await;
        assert_eq!(after["allocation_requests"].as_array().unwrap().len(), 1);
        assert!(after["provider_summaries"].get(&rp).is_some());
        let r = pcall(
            c,
            Method::DELETE,
            &format!("/resource_providers/{rp}/inventories"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let gone = ask("/allocation_candidates?resources=VCPU:1".into()).await;
        assert_eq!(gone["allocation_requests"].as_array().unwrap().len(), 0);
        let listed = ask("/resource_providers?name=cn-shared".into()).await;
        assert_eq!(listed["resource_providers"][0]["uuid"], rp.as_str());
    }
);
