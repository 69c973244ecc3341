//! Identity (Keystone v3) behaviour over HTTP, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{project_scope, Cloud, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_engines!(version_discovery_and_request_ids, async |c: &Cloud| {
    let r = c.call(Method::GET, "/identity", None, None).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let v = &r.body["versions"]["values"][0];
    assert_eq!(v["id"], "v3.14");
    assert_eq!(v["links"][0]["href"], format!("{}/identity/v3/", c.url));
    let r = c.call(Method::GET, "/identity/v3", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"]["status"], "stable");
    let id = r.header("x-openstack-request-id").unwrap();
    assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    // Every response carries one, errors included, and they differ.
    let r2 = c
        .call(Method::GET, "/identity/v3/projects", None, None)
        .await;
    assert_eq!(r2.status, StatusCode::UNAUTHORIZED);
    assert_ne!(r2.header("x-openstack-request-id").unwrap(), id);
    assert_eq!(r2.body["error"]["code"], 401);
    let r3 = c.call(Method::GET, "/nowhere", None, None).await;
    assert_eq!(r3.status, StatusCode::NOT_FOUND);
    assert!(r3.header("x-openstack-request-id").is_some());
});

both_engines!(token_issue_validate_and_revoke, async |c: &Cloud| {
    let r = c
        .password_auth("admin", &c.admin_password, project_scope("admin"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = r.header("x-subject-token").unwrap();
    let t = &r.body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(t["user"]["domain"]["id"], "default");
    assert_eq!(t["project"]["name"], "admin");
    assert_eq!(t["project"]["domain"]["name"], "Default");
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // admin implies member implies reader.
    assert_eq!(roles, vec!["admin", "member", "reader"]);
    assert_eq!(t["audit_ids"].as_array().unwrap().len(), 1);
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    let catalog = t["catalog"].as_array().unwrap();
    let ident = catalog.iter().find(|s| s["type"] == "identity").unwrap();
    assert_eq!(ident["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(ident["endpoints"][0]["url"], format!("{}/identity", c.url));

    // nocatalog.
    let r = c
        .call(
            Method::POST,
            "/identity/v3/auth/tokens?nocatalog",
            None,
            Some(json!({"auth": {
                "identity": {"methods": ["token"], "token": {"id": token}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}
            }})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(r.body["token"].get("catalog").is_none());
    // A token from a token keeps the audit chain and the methods.
    let chain = r.body["token"]["audit_ids"].as_array().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], t["audit_ids"][0]);
    let rescoped = r.header("x-subject-token").unwrap();

    // Validate, HEAD, then revoke.
    let v = c
        .raw(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&token),
            None,
            &[("X-Subject-Token", &rescoped)],
        )
        .await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.header("x-subject-token").unwrap(), rescoped);
    assert_eq!(v.body["token"]["user"]["name"], "admin");
    let h = c
        .raw(
            Method::HEAD,
            "/identity/v3/auth/tokens",
            Some(&token),
            None,
            &[("X-Subject-Token", &rescoped)],
        )
        .await;
    assert_eq!(h.status, StatusCode::OK);
    let d = c
        .raw(
            Method::DELETE,
            "/identity/v3/auth/tokens",
            Some(&token),
            None,
            &[("X-Subject-Token", &rescoped)],
        )
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    // The revoked token is refused everywhere, the other still works.
    let v = c
        .raw(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&token),
            None,
            &[("X-Subject-Token", &rescoped)],
        )
        .await;
    assert_eq!(v.status, StatusCode::NOT_FOUND);
    assert_eq!(
        c.get("/identity/v3/projects", &rescoped).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get("/identity/v3/projects", &token).await.status,
        StatusCode::OK
    );
    // Garbage and tampered tokens.
    assert_eq!(
        c.get("/identity/v3/projects", "garbage").await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut bad = token.clone().into_bytes();
    let mid = bad.len() / 2;
    bad[mid] = if bad[mid] == b'a' { b'b' } else { b'a' };
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(
        c.get("/identity/v3/projects", &bad).await.status,
        StatusCode::UNAUTHORIZED
    );
});

both_engines!(
    unknown_user_and_wrong_password_look_the_same,
    async |c: &Cloud| {
        let wrong = c
            .password_auth("admin", "nope", project_scope("admin"))
            .await;
        let unknown = c
            .password_auth("nobody", "nope", project_scope("admin"))
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.body, unknown.body);
        assert!(wrong.header("www-authenticate").is_some());
        // Scoping to a project that does not exist, or has no role for the user.
        let r = c
            .password_auth("admin", &c.admin_password, project_scope("missing"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
);

both_engines!(unscoped_domain_and_system_tokens, async |c: &Cloud| {
    let admin = c.admin_token().await;
    // Admin has a default project, so no scope means project scope.
    let r = c
        .password_auth("admin", &c.admin_password, Value::Null)
        .await;
    assert_eq!(r.body["token"]["project"]["name"], "admin");
    let r = c
        .password_auth("admin", &c.admin_password, json!("unscoped"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["token"].get("project").is_none());
    assert!(r.body["token"].get("roles").is_none());
    let unscoped = r.header("x-subject-token").unwrap();
    let sys = c
        .password_auth("admin", &c.admin_password, json!({"system": {"all": true}}))
        .await;
    assert_eq!(sys.status, StatusCode::CREATED, "{:?}", sys.body);
    assert_eq!(sys.body["token"]["system"], json!({"all": true}));
    // No domain role yet: domain scope is refused, then granted.
    let dom = json!({"domain": {"id": "default"}});
    assert_eq!(
        c.password_auth("admin", &c.admin_password, dom.clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let users = c.get("/identity/v3/users?name=admin", &admin).await;
    let uid = users.body["users"][0]["id"].as_str().unwrap().to_string();
    let roles = c.get("/identity/v3/roles?name=reader", &admin).await;
    let rid = roles.body["roles"][0]["id"].as_str().unwrap().to_string();
    let g = c
        .put(
            &format!("/identity/v3/domains/default/users/{uid}/roles/{rid}"),
            &admin,
        )
        .await;
    assert_eq!(g.status, StatusCode::NO_CONTENT, "{:?}", g.body);
    let r = c.password_auth("admin", &c.admin_password, dom).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["token"]["domain"]["id"], "default");
    assert_eq!(r.body["token"]["roles"][0]["name"], "reader");
    // The auth listings.
    let p = c.get("/identity/v3/auth/projects", &unscoped).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "admin"));
    let d = c.get("/identity/v3/auth/domains", &unscoped).await;
    assert_eq!(d.body["domains"][0]["id"], "default");
    let s = c.get("/identity/v3/auth/system", &unscoped).await;
    assert_eq!(s.body["system"], json!([{"all": true}]));
    // The catalog needs a scoped token.
    assert_eq!(
        c.get("/identity/v3/auth/catalog", &unscoped).await.status,
        StatusCode::FORBIDDEN
    );
    let cat = c.get("/identity/v3/auth/catalog", &admin).await;
    let types: Vec<&str> = cat.body["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"identity"), "{types:?}");
    assert!(types.contains(&"compute"), "{types:?}");
});

both_engines!(project_crud_and_bad_input, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let r = c
        .post(
            "/identity/v3/projects",
            &admin,
            json!({"project": {"name": "demo", "tags": ["a", "b"], "color": "blue"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let p = &r.body["project"];
    assert_eq!(p["domain_id"], "default");
    assert_eq!(p["parent_id"], "default");
    assert_eq!(p["enabled"], true);
    assert_eq!(p["tags"], json!(["a", "b"]));
    assert_eq!(p["color"], "blue", "extra attributes are kept");
    let id = p["id"].as_str().unwrap().to_string();
    // Duplicate name in the same domain: 409.
    let dup = c
        .post(
            "/identity/v3/projects",
            &admin,
            json!({"project": {"name": "demo"}}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.body["error"]["code"], 409);
    // Bad input: 400 with a message naming the problem.
    for (body, needle) in [
        (b"{not json".to_vec(), "Malformed JSON"),
        (br#"{"project": {"name": 5}}"#.to_vec(), "'name'"),
        (
            br#"{"project": {}}"#.to_vec(),
            "'name' is a required property",
        ),
        (
            br#"{"project": {"name": "x", "enabled": "yes"}}"#.to_vec(),
            "'enabled'",
        ),
        (
            br#"{"project": {"name": "x", "tags": ["a/b"]}}"#.to_vec(),
            "'tags'",
        ),
        (br#"{"project": {"name": "   "}}"#.to_vec(), "blank"),
        (br#"["project"]"#.to_vec(), "object"),
        (
            format!(r#"{{"project": {{"name": "{}"}}}}"#, "x".repeat(65)).into_bytes(),
            "longer than 64",
        ),
    ] {
        let r = c
            .raw(
                Method::POST,
                "/identity/v3/projects",
                Some(&admin),
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    // Nothing half-written by the failures.
    let list = c.get("/identity/v3/projects?name=x", &admin).await;
    assert_eq!(list.body["projects"], json!([]));
    // Show, filters, update, tags.
    assert_eq!(
        c.get(&format!("/identity/v3/projects/{id}"), &admin)
            .await
            .body["project"]["name"],
        "demo"
    );
    assert_eq!(
        c.get("/identity/v3/projects/nope", &admin).await.status,
        StatusCode::NOT_FOUND
    );
    let l = c
        .get("/identity/v3/projects?name__icontains=DEM", &admin)
        .await;
    assert_eq!(l.body["projects"].as_array().unwrap().len(), 1);
    let l = c.get("/identity/v3/projects?tags-any=b,z", &admin).await;
    assert_eq!(l.body["projects"][0]["id"], id.as_str());
    let u = c
        .patch(
            &format!("/identity/v3/projects/{id}"),
            &admin,
            json!({"project": {"description": "d", "enabled": false}}),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK);
    assert_eq!(u.body["project"]["enabled"], false);
    assert_eq!(
        c.put(&format!("/identity/v3/projects/{id}/tags/c"), &admin)
            .await
            .status,
        StatusCode::CREATED
    );
    let tags = c
        .get(&format!("/identity/v3/projects/{id}/tags"), &admin)
        .await;
    assert_eq!(tags.body["tags"], json!(["a", "b", "c"]));
    // Hierarchy: a child, then the parent cannot be deleted.
    let child = c
        .create(
            &admin,
            "projects",
            "project",
            json!({"name": "child", "parent_id": id}),
        )
        .await;
    let sub = c
        .get(
            &format!("/identity/v3/projects/{id}?subtree_as_ids"),
            &admin,
        )
        .await;
    assert_eq!(
        sub.body["project"]["subtree"],
        json!({ child.clone(): null })
    );
    let par = c
        .get(
            &format!("/identity/v3/projects/{child}?parents_as_ids"),
            &admin,
        )
        .await;
    assert_eq!(par.body["project"]["parents"], json!({ id.clone(): null }));
    assert_eq!(
        c.delete(&format!("/identity/v3/projects/{id}"), &admin)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.delete(&format!("/identity/v3/projects/{child}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.delete(&format!("/identity/v3/projects/{id}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(&format!("/identity/v3/projects/{id}"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
});

both_engines!(users_roles_and_policy, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let demo = c
        .create(&admin, "projects", "project", json!({"name": "demo"}))
        .await;
    let alice = c
        .create(
            &admin,
            "users",
            "user",
            json!({"name": "alice", "password": "alice-pw", "email": "a@example.org"}),
        )
        .await;
    let shown = c.get(&format!("/identity/v3/users/{alice}"), &admin).await;
    assert!(
        shown.body["user"].get("password").is_none(),
        "password must never be returned"
    );
    assert_eq!(shown.body["user"]["email"], "a@example.org");
    // No role yet: alice cannot scope to demo.
    assert_eq!(
        c.password_auth("alice", "alice-pw", project_scope("demo"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let member = c.get("/identity/v3/roles?name=member", &admin).await.body["roles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let grant = format!("/identity/v3/projects/{demo}/users/{alice}/roles/{member}");
    assert_eq!(c.put(&grant, &admin).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.call(Method::HEAD, &grant, Some(&admin), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let tok = c.token("alice", "alice-pw", project_scope("demo")).await;
    let me = c
        .raw(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&tok),
            None,
            &[("X-Subject-Token", &tok)],
        )
        .await;
    let roles: Vec<&str> = me.body["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["member", "reader"]);
    // A member may not administer identity: 403.
    let r = c
        .post(
            "/identity/v3/projects",
            &tok,
            json!({"project": {"name": "evil"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["code"], 403);
    assert_eq!(
        c.get("/identity/v3/users", &tok).await.status,
        StatusCode::FORBIDDEN
    );
    // ...but may read its own user and project.
    assert_eq!(
        c.get(&format!("/identity/v3/users/{alice}"), &tok)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        c.get(&format!("/identity/v3/projects/{demo}"), &tok)
            .await
            .status,
        StatusCode::OK
    );
    // Assignment listing with names.
    let l = c
        .get(
            &format!("/identity/v3/role_assignments?include_names&user.id={alice}"),
            &admin,
        )
        .await;
    let a = &l.body["role_assignments"][0];
    assert_eq!(a["role"]["name"], "member");
    assert_eq!(a["user"]["name"], "alice");
    assert_eq!(a["scope"]["project"]["name"], "demo");
    // Effective listing adds implied roles.
    let l = c
        .get(
            &format!("/identity/v3/role_assignments?effective&user.id={alice}&include_names=1"),
            &admin,
        )
        .await;
    let names: Vec<&str> = l.body["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"member") && names.contains(&"reader"),
        "{names:?}"
    );
    // Removing the role ends the token at once.
    assert_eq!(
        c.delete(&grant, &admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(&format!("/identity/v3/projects/{demo}"), &tok)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(c.delete(&grant, &admin).await.status, StatusCode::NOT_FOUND);
    // Duplicate user: 409.
    let dup = c
        .post(
            "/identity/v3/users",
            &admin,
            json!({"user": {"name": "alice"}}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
});

both_engines!(groups_and_inheritance_grant_access, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let parent = c
        .create(&admin, "projects", "project", json!({"name": "parent"}))
        .await;
    let child = c
        .create(
            &admin,
            "projects",
            "project",
            json!({"name": "kid", "parent_id": parent}),
        )
        .await;
    let bob = c
        .create(
            &admin,
            "users",
            "user",
            json!({"name": "bob", "password": "bob-pw"}),
        )
        .await;
    let devs = c
        .create(&admin, "groups", "group", json!({"name": "devs"}))
        .await;
    assert_eq!(
        c.put(&format!("/identity/v3/groups/{devs}/users/{bob}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.call(
            Method::HEAD,
            &format!("/identity/v3/groups/{devs}/users/{bob}"),
            Some(&admin),
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let members = c
        .get(&format!("/identity/v3/groups/{devs}/users"), &admin)
        .await;
    assert_eq!(members.body["users"][0]["name"], "bob");
    let reader = c.get("/identity/v3/roles?name=reader", &admin).await.body["roles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Inherited to the parent's subtree, through the group.
    let r = c
        .put(&format!("/identity/v3/OS-INHERIT/projects/{parent}/groups/{devs}/roles/{reader}/inherited_to_projects"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(
        c.password_auth("bob", "bob-pw", project_scope("parent"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let t = c.token("bob", "bob-pw", project_scope("kid")).await;
    assert_eq!(
        c.get(&format!("/identity/v3/projects/{child}"), &t)
            .await
            .status,
        StatusCode::OK
    );
    let eff = c
        .get(
            &format!("/identity/v3/role_assignments?effective&user.id={bob}"),
            &admin,
        )
        .await;
    let a = &eff.body["role_assignments"][0];
    assert_eq!(a["scope"]["project"]["id"], child.as_str());
    assert!(a["links"]["membership"].as_str().unwrap().contains(&devs));
    // Leaving the group ends access.
    assert_eq!(
        c.delete(&format!("/identity/v3/groups/{devs}/users/{bob}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(&format!("/identity/v3/projects/{child}"), &t)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
});

both_engines!(
    password_change_revokes_and_disable_blocks,
    async |c: &Cloud| {
        let admin = c.admin_token().await;
        let demo = c
            .create(&admin, "projects", "project", json!({"name": "demo"}))
            .await;
        let carol = c
            .create(
                &admin,
                "users",
                "user",
                json!({"name": "carol", "password": "old-pw", "default_project_id": demo}),
            )
            .await;
        let member = c.get("/identity/v3/roles?name=member", &admin).await.body["roles"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        c.put(
            &format!("/identity/v3/projects/{demo}/users/{carol}/roles/{member}"),
            &admin,
        )
        .await;
        let t = c.token("carol", "old-pw", Value::Null).await;
        assert_eq!(
            c.get(&format!("/identity/v3/users/{carol}"), &t)
                .await
                .status,
            StatusCode::OK
        );
        // Wrong original password: 401, nothing changes.
        let r = c
            .call(
                Method::POST,
                &format!("/identity/v3/users/{carol}/password"),
                None,
                Some(json!({"user": {"original_password": "bad", "password": "new-pw"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = c
            .call(
                Method::POST,
                &format!("/identity/v3/users/{carol}/password"),
                Some(&t),
                Some(json!({"user": {"original_password": "old-pw", "password": "new-pw"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        assert_eq!(
            c.get(&format!("/identity/v3/users/{carol}"), &t)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            c.password_auth("carol", "old-pw", Value::Null).await.status,
            StatusCode::UNAUTHORIZED
        );
        let t2 = c.token("carol", "new-pw", Value::Null).await;
        assert_eq!(
            c.get(&format!("/identity/v3/users/{carol}"), &t2)
                .await
                .status,
            StatusCode::OK
        );
        // Disabling the user ends its tokens and its logins; so does disabling the project.
        let r = c
            .patch(
                &format!("/identity/v3/users/{carol}"),
                &admin,
                json!({"user": {"enabled": false}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            c.get(&format!("/identity/v3/users/{carol}"), &t2)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            c.password_auth("carol", "new-pw", Value::Null).await.status,
            StatusCode::UNAUTHORIZED
        );
        c.patch(
            &format!("/identity/v3/users/{carol}"),
            &admin,
            json!({"user": {"enabled": true}}),
        )
        .await;
        let t3 = c.token("carol", "new-pw", project_scope("demo")).await;
        c.patch(
            &format!("/identity/v3/projects/{demo}"),
            &admin,
            json!({"project": {"enabled": false}}),
        )
        .await;
        assert_eq!(
            c.get(&format!("/identity/v3/users/{carol}"), &t3)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
);

both_engines!(application_credentials_authenticate, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let me = c
        .raw(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            None,
            &[("X-Subject-Token", &admin)],
        )
        .await;
    let uid = me.body["token"]["user"]["id"].as_str().unwrap().to_string();
    let r = c
        .post(
            &format!("/identity/v3/users/{uid}/application_credentials"),
            &admin,
            json!({"application_credential": {"name": "ci", "roles": [{"name": "reader"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let ac = &r.body["application_credential"];
    let id = ac["id"].as_str().unwrap().to_string();
    let secret = ac["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    assert_eq!(ac["roles"][0]["name"], "reader");
    // The secret is shown once.
    let shown = c
        .get(
            &format!("/identity/v3/users/{uid}/application_credentials/{id}"),
            &admin,
        )
        .await;
    assert!(shown.body["application_credential"].get("secret").is_none());
    // Unknown fields are refused (as upstream's schema does).
    let bad = c
        .post(
            &format!("/identity/v3/users/{uid}/application_credentials"),
            &admin,
            json!({"application_credential": {"name": "x", "bogus": 1}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let dup = c
        .post(
            &format!("/identity/v3/users/{uid}/application_credentials"),
            &admin,
            json!({"application_credential": {"name": "ci"}}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let auth = |secret: String| {
        json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret}}}})
    };
    let r = c
        .call(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            Some(auth(secret.clone())),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let t = &r.body["token"];
    assert_eq!(t["methods"], json!(["application_credential"]));
    assert_eq!(t["project"]["name"], "admin");
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        vec!["reader"],
        "restricted to the credential's roles"
    );
    let actok = r.header("x-subject-token").unwrap();
    // A reader cannot create projects even though the user is admin.
    assert_eq!(
        c.post(
            "/identity/v3/projects",
            &actok,
            json!({"project": {"name": "z"}})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // ...nor more application credentials.
    let r = c
        .post(
            &format!("/identity/v3/users/{uid}/application_credentials"),
            &actok,
            json!({"application_credential": {"name": "more"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.call(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            Some(auth("wrong".into()))
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // Deleting the credential ends its tokens.
    assert_eq!(
        c.delete(
            &format!("/identity/v3/users/{uid}/application_credentials/{id}"),
            &admin
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get("/identity/v3/projects", &actok).await.status,
        StatusCode::UNAUTHORIZED
    );
});

both_engines!(catalog_regions_services_endpoints, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let r = c
        .post(
            "/identity/v3/regions",
            &admin,
            json!({"region": {"id": "RegionTwo", "description": "two"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        c.post(
            "/identity/v3/regions",
            &admin,
            json!({"region": {"id": "RegionTwo"}})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let svc = c
        .create(
            &admin,
            "services",
            "service",
            json!({"type": "compute", "name": "nova"}),
        )
        .await;
    let bad = c
        .post(
            "/identity/v3/endpoints",
            &admin,
            json!({"endpoint": {"service_id": svc, "interface": "sideways", "url": "http://x"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = c
        .post(
            "/identity/v3/endpoints",
            &admin,
            json!({"endpoint": {"service_id": svc, "interface": "public", "url": "not a url"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let ep = c.create(&admin, "endpoints", "endpoint", json!({"service_id": svc, "interface": "public", "url": "http://127.0.0.1:1/compute/v2.1", "region_id": "RegionTwo"})).await;
    let list = c
        .get("/identity/v3/endpoints?interface=public", &admin)
        .await;
    assert!(list.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["id"] == ep.as_str()));
    // New tokens carry the new service.
    let t = c.admin_token().await;
    let tok = c
        .raw(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&t),
            None,
            &[("X-Subject-Token", &t)],
        )
        .await;
    assert!(tok.body["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["type"] == "compute"));
    assert_eq!(
        c.delete(&format!("/identity/v3/services/{svc}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(&format!("/identity/v3/endpoints/{ep}"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
});

both_engines!(implied_roles_and_domains, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let a = c
        .create(&admin, "roles", "role", json!({"name": "observer"}))
        .await;
    let b = c
        .create(&admin, "roles", "role", json!({"name": "auditor"}))
        .await;
    let r = c
        .put(&format!("/identity/v3/roles/{a}/implies/{b}"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["role_inference"]["implies"]["name"], "auditor");
    // A cycle is refused, and so is implying admin.
    assert_eq!(
        c.put(&format!("/identity/v3/roles/{b}/implies/{a}"), &admin)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let admin_role = c.get("/identity/v3/roles?name=admin", &admin).await.body["roles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.put(
            &format!("/identity/v3/roles/{a}/implies/{admin_role}"),
            &admin
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let inf = c.get("/identity/v3/role_inferences", &admin).await;
    assert!(inf.body["role_inferences"].as_array().unwrap().len() >= 3);
    // Domains: create, refuse deleting while enabled, then delete with content.
    let d = c
        .create(&admin, "domains", "domain", json!({"name": "acme"}))
        .await;
    c.create(
        &admin,
        "projects",
        "project",
        json!({"name": "p1", "domain_id": d}),
    )
    .await;
    c.create(
        &admin,
        "users",
        "user",
        json!({"name": "u1", "domain_id": d}),
    )
    .await;
    assert_eq!(
        c.delete(&format!("/identity/v3/domains/{d}"), &admin)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    c.patch(
        &format!("/identity/v3/domains/{d}"),
        &admin,
        json!({"domain": {"enabled": false}}),
    )
    .await;
    assert_eq!(
        c.delete(&format!("/identity/v3/domains/{d}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let ps = c
        .get(&format!("/identity/v3/projects?domain_id={d}"), &admin)
        .await;
    assert_eq!(ps.body["projects"], json!([]));
    assert_eq!(
        c.get(&format!("/identity/v3/users?domain_id={d}"), &admin)
            .await
            .body["users"],
        json!([])
    );
});

/// Two processes on one database: a change made through one is seen by the
/// other on its very next request (no message bus, no delay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_immediate_across_processes() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(a) = Cloud::start(engine).await else {
            continue;
        };
        let db = store::Db::connect(&a.db_url, 4).await.unwrap();
        let other = identity::Identity::new(db, a.cfg.identity.clone())
            .await
            .unwrap();
        let admin = a.admin_token().await;
        // The second process accepts the first's token (shared key repository).
        let ctx = other.validate_token(&admin, false).await.unwrap();
        assert_eq!(ctx.user_name, "admin");
        let t2 = a.admin_token().await;
        other.validate_token(&t2, false).await.unwrap();
        let d = a
            .raw(
                Method::DELETE,
                "/identity/v3/auth/tokens",
                Some(&admin),
                None,
                &[("X-Subject-Token", &t2)],
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT);
        assert!(
            other.validate_token(&t2, false).await.is_err(),
            "{engine:?}: revoked token still valid elsewhere"
        );
        assert!(other.validate_token(&admin, false).await.is_ok());
        // Key rotation in one process: tokens from before stay valid, new
        // ones made by the other process are accepted.
        identity::fernet::rotate(&a.identity.db, 3).await.unwrap();
        assert!(other.validate_token(&admin, false).await.is_ok());
        let t3 = a.admin_token().await;
        assert!(other.validate_token(&t3, false).await.is_ok());
        a.stop().await;
    }
}

/// Lockout after repeated failures, and password rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_compliance() {
    let c = Cloud::start_with(Engine::Sqlite, |cfg| {
        cfg.identity.security_compliance.lockout_failure_attempts = Some(2);
        cfg.identity.security_compliance.unique_last_password_count = 2;
        cfg.identity.security_compliance.password_regex = Some("^.{8,}$".into());
        cfg.identity.security_compliance.password_regex_description =
            Some("at least 8 characters".into());
    })
    .await
    .unwrap();
    let admin = c.admin_token().await;
    let short = c
        .post(
            "/identity/v3/users",
            &admin,
            json!({"user": {"name": "d", "password": "short"}}),
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at least 8 characters"));
    let dave = c
        .create(
            &admin,
            "users",
            "user",
            json!({"name": "dave", "password": "long-enough"}),
        )
        .await;
    // Reusing the current password is refused.
    let r = c
        .call(
            Method::POST,
            &format!("/identity/v3/users/{dave}/password"),
            None,
            Some(json!({"user": {"original_password": "long-enough", "password": "long-enough"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for _ in 0..2 {
        assert_eq!(
            c.password_auth("dave", "wrong-one", json!("unscoped"))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = c
        .password_auth("dave", "long-enough", json!("unscoped"))
        .await;
    assert_eq!(locked.status, StatusCode::UNAUTHORIZED);
    assert!(locked.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("locked"));
    c.stop().await;
}

/// Policy overrides from an oslo.policy-style file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        "\"identity:list_regions\": \"role:admin\"\n\"identity:list_projects\": \"!\"\n",
    )
    .unwrap();
    let c = Cloud::start_with(Engine::Sqlite, |cfg| {
        cfg.identity.policy_file = Some(file.clone())
    })
    .await
    .unwrap();
    let admin = c.admin_token().await;
    assert_eq!(
        c.get("/identity/v3/projects", &admin).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get("/identity/v3/regions", &admin).await.status,
        StatusCode::OK
    );
    c.stop().await;
}

/// Oversized bodies are refused with a JSON fault, not a panic or a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let c = Cloud::start_with(Engine::Sqlite, |cfg| cfg.server.max_body_bytes = 1024)
        .await
        .unwrap();
    let admin = c.admin_token().await;
    let big = json!({"project": {"name": "x", "description": "y".repeat(4096)}});
    let r = c.post("/identity/v3/projects", &admin, big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["error"]["code"], 413);
    c.stop().await;
}

both_engines!(credentials_are_encrypted_at_rest, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let me = c
        .raw(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            None,
            &[("X-Subject-Token", &admin)],
        )
        .await;
    let uid = me.body["token"]["user"]["id"].as_str().unwrap().to_string();
    let pid = me.body["token"]["project"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = r#"{"access": "AKIA-TEST", "secret": "very-secret-value"}"#;
    let r = c
        .post(
            "/identity/v3/credentials",
            &admin,
            json!({"credential": {"type": "ec2", "user_id": uid, "project_id": pid, "blob": blob}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // The ec2 id is the SHA-256 of the access key.
    let id = r.body["credential"]["id"].as_str().unwrap().to_string();
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(b"AKIA-TEST")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(id, expected);
    assert_eq!(
        c.get(&format!("/identity/v3/credentials/{id}"), &admin)
            .await
            .body["credential"]["blob"],
        blob
    );
    // Stored sealed: the secret is not in the database.
    let db = store::Db::connect(&c.db_url, 1).await.unwrap();
    let stored: String =
        store::sqlx::query_scalar("SELECT encrypted_blob FROM credentials WHERE id = $1")
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(!stored.contains("very-secret-value"));
    db.close().await;
    // ec2 without a project is refused; a second one with the same access key conflicts.
    let r = c
        .post(
            "/identity/v3/credentials",
            &admin,
            json!({"credential": {"type": "ec2", "user_id": uid, "blob": blob}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .post(
            "/identity/v3/credentials",
            &admin,
            json!({"credential": {"type": "ec2", "user_id": uid, "project_id": pid, "blob": blob}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        c.delete(&format!("/identity/v3/credentials/{id}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
});

both_engines!(registered_and_project_limits, async |c: &Cloud| {
    let admin = c.admin_token().await;
    let svc = c
        .get("/identity/v3/services?type=identity", &admin)
        .await
        .body["services"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let demo = c
        .create(&admin, "projects", "project", json!({"name": "demo"}))
        .await;
    // A limit needs a registered limit first.
    let l = json!({"limits": [{"service_id": svc, "project_id": demo, "resource_name": "cores", "resource_limit": 10}]});
    assert_eq!(
        c.post("/identity/v3/limits", &admin, l.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = c
        .post("/identity/v3/registered_limits", &admin,
              json!({"registered_limits": [{"service_id": svc, "resource_name": "cores", "default_limit": 20, "region_id": "RegionOne"}]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["registered_limits"][0]["default_limit"], 20);
    let bad = c
        .post("/identity/v3/registered_limits", &admin,
              json!({"registered_limits": [{"service_id": svc, "resource_name": "x", "default_limit": "many"}]}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let l = json!({"limits": [{"service_id": svc, "region_id": "RegionOne", "project_id": demo, "resource_name": "cores", "resource_limit": 10}]});
    let r = c.post("/identity/v3/limits", &admin, l.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["limits"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.post("/identity/v3/limits", &admin, l).await.status,
        StatusCode::CONFLICT
    );
    let u = c
        .patch(
            &format!("/identity/v3/limits/{id}"),
            &admin,
            json!({"limit": {"resource_limit": 5}}),
        )
        .await;
    assert_eq!(u.body["limit"]["resource_limit"], 5);
    let list = c
        .get(&format!("/identity/v3/limits?project_id={demo}"), &admin)
        .await;
    assert_eq!(list.body["limits"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.get("/identity/v3/limits/model", &admin).await.body["model"]["name"],
        "flat"
    );
    assert_eq!(
        c.delete(&format!("/identity/v3/limits/{id}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
});

both_engines!(
    policies_endpoint_filter_and_federation_objects,
    async |c: &Cloud| {
        let admin = c.admin_token().await;
        // Policy blobs.
        let p = c
            .create(
                &admin,
                "policies",
                "policy",
                json!({"type": "application/json", "blob": "{\"x\": 1}"}),
            )
            .await;
        assert_eq!(
            c.get(&format!("/identity/v3/policies/{p}"), &admin)
                .await
                .body["policy"]["blob"],
            "{\"x\": 1}"
        );
        assert_eq!(
            c.post(
                "/identity/v3/policies",
                &admin,
                json!({"policy": {"type": "t"}})
            )
            .await
            .status,
            StatusCode::BAD_REQUEST
        );
        // Endpoint filter: direct association and a group.
        let demo = c
            .create(&admin, "projects", "project", json!({"name": "demo"}))
            .await;
        let eps = c
            .get("/identity/v3/endpoints?interface=public", &admin)
            .await;
        let ep = eps.body["endpoints"][0]["id"].as_str().unwrap().to_string();
        let assoc = format!("/identity/v3/OS-EP-FILTER/projects/{demo}/endpoints/{ep}");
        assert_eq!(
            c.call(Method::HEAD, &assoc, Some(&admin), None)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(c.put(&assoc, &admin).await.status, StatusCode::NO_CONTENT);
        assert_eq!(
            c.call(Method::HEAD, &assoc, Some(&admin), None)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        let listed = c
            .get(
                &format!("/identity/v3/OS-EP-FILTER/endpoints/{ep}/projects"),
                &admin,
            )
            .await;
        assert_eq!(listed.body["projects"][0]["id"], demo.as_str());
        let bad = c
            .post(
                "/identity/v3/OS-EP-FILTER/endpoint_groups",
                &admin,
                json!({"endpoint_group": {"name": "g", "filters": {"color": "red"}}}),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let g = c.post("/identity/v3/OS-EP-FILTER/endpoint_groups", &admin,
        json!({"endpoint_group": {"name": "internal", "filters": {"interface": "internal"}}})).await;
        assert_eq!(g.status, StatusCode::CREATED);
        let gid = g.body["endpoint_group"]["id"].as_str().unwrap().to_string();
        let in_group = c
            .get(
                &format!("/identity/v3/OS-EP-FILTER/endpoint_groups/{gid}/endpoints"),
                &admin,
            )
            .await;
        assert!(in_group.body["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["interface"] == "internal"));
        assert_eq!(
            c.put(
                &format!("/identity/v3/OS-EP-FILTER/endpoint_groups/{gid}/projects/{demo}"),
                &admin
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
        let mine = c
            .get(
                &format!("/identity/v3/OS-EP-FILTER/projects/{demo}/endpoints"),
                &admin,
            )
            .await;
        // The directly associated endpoint plus the group's (the internal
        // endpoint of every service in the catalog).
        assert_eq!(
            mine.body["endpoints"].as_array().unwrap().len(),
            1 + in_group.body["endpoints"].as_array().unwrap().len(),
            "{:?}",
            mine.body
        );
        // Federation objects.
        let m = c
            .call(
                Method::PUT,
                "/identity/v3/OS-FEDERATION/mappings/m1",
                Some(&admin),
                Some(json!({"mapping": {"rules": [
        {"local": [{"user": {"name": "{0}"}}], "remote": [{"type": "REMOTE_USER"}]}]}})),
            )
            .await;
        assert_eq!(m.status, StatusCode::CREATED, "{:?}", m.body);
        let bad = c
            .call(
                Method::PUT,
                "/identity/v3/OS-FEDERATION/mappings/m2",
                Some(&admin),
                Some(json!({"mapping": {"rules": [{}]}})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let idp = c.call(Method::PUT, "/identity/v3/OS-FEDERATION/identity_providers/acme", Some(&admin),
        Some(json!({"identity_provider": {"remote_ids": ["https://idp.acme"], "enabled": true}}))).await;
        assert_eq!(idp.status, StatusCode::CREATED, "{:?}", idp.body);
        let domain = idp.body["identity_provider"]["domain_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            c.get(&format!("/identity/v3/domains/{domain}"), &admin)
                .await
                .body["domain"]["name"],
            "acme"
        );
        let dup = c
            .call(
                Method::PUT,
                "/identity/v3/OS-FEDERATION/identity_providers/other",
                Some(&admin),
                Some(json!({"identity_provider": {"remote_ids": ["https://idp.acme"]}})),
            )
            .await;
        assert_eq!(dup.status, StatusCode::CONFLICT);
        let proto = c
            .call(
                Method::PUT,
                "/identity/v3/OS-FEDERATION/identity_providers/acme/protocols/saml2",
                Some(&admin),
                Some(json!({"protocol": {"mapping_id": "m1"}})),
            )
            .await;
        assert_eq!(proto.status, StatusCode::CREATED);
        let sp = c.call(Method::PUT, "/identity/v3/OS-FEDERATION/service_providers/sp1", Some(&admin),
        Some(json!({"service_provider": {"auth_url": "https://sp/auth", "sp_url": "https://sp/ecp"}}))).await;
        assert_eq!(sp.status, StatusCode::CREATED);
        assert_eq!(sp.body["service_provider"]["relay_state_prefix"], "ss:mem:");
        assert_eq!(
            c.delete("/identity/v3/OS-FEDERATION/identity_providers/acme", &admin)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            c.get(
                "/identity/v3/OS-FEDERATION/identity_providers/acme/protocols",
                &admin
            )
            .await
            .status,
            StatusCode::NOT_FOUND
        );
    }
);
