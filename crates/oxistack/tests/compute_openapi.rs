//! Compute response bodies checked against the compute OpenAPI description
//! shipped in the `openstack_types` crate (`data/compute`), at every
//! microversion the service honours (2.1 to the maximum).
//!
//! The description gives, per operation, one schema per microversion range
//! (`x-openstack: {min-ver, max-ver}`), most with `additionalProperties:
//! false`: a missing required field, a field that belongs to another
//! microversion or a wrong type fails the check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::fixtures::image;
use common::{Cloud, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

/// Lowest and highest microversion minor numbers served (2.1 to 2.MAX).
const MIN_MINOR: u16 = 1;
const MAX_MINOR: u16 = 79;

struct Spec {
    doc: Value,
}

/// "2.55" -> 55.
fn minor(v: &str) -> Option<u16> {
    v.strip_prefix("2.")?.parse().ok()
}

impl Spec {
    fn load() -> Spec {
        let doc: Value =
            serde_yaml_ng::from_str(openstack_types::compute::get_openapi_spec()).unwrap();
        Spec { doc }
    }

    fn component(&self, name: &str) -> &Value {
        &self.doc["components"]["schemas"][name]
    }

    /// The microversion range a named response schema covers: its
    /// `x-openstack` range, else the `_2NN` suffix of its name, else all.
    fn range(&self, name: &str) -> (u16, u16) {
        let x = &self.component(name)["x-openstack"];
        let from_suffix = || {
            let tail = name.rsplit('_').next()?;
            tail.strip_prefix('2')
                .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))?
                .parse()
                .ok()
        };
        let lo = x["min-ver"]
            .as_str()
            .and_then(minor)
            .or_else(from_suffix)
            .unwrap_or(0);
        let hi = x["max-ver"].as_str().and_then(minor).unwrap_or(u16::MAX);
        (lo, hi)
    }

    /// The name of the success-response schema of `method path` at microversion 2.`mv`
    /// (`pick` narrows a oneOf keyed by action).
    fn schema_name(&self, method: &str, path: &str, mv: u16, pick: Option<&str>) -> String {
        let op = &self.doc["paths"][format!("/v2.1{path}")][method];
        assert!(op.is_object(), "the description has no {method} {path}");
        let responses = op["responses"].as_object().unwrap();
        let schema = responses
            .iter()
            .filter(|(code, _)| code.starts_with('2'))
            .find_map(|(_, r)| r["content"]["application/json"]["schema"].as_object())
            .unwrap_or_else(|| panic!("{method} {path}: no JSON success response described"));
        let refs: Vec<String> = match schema.get("oneOf") {
            Some(Value::Array(alts)) => alts
                .iter()
                .filter_map(|a| a["$ref"].as_str())
                .map(|r| r.rsplit('/').next().unwrap_or(r).to_string())
                .collect(),
            _ => vec![schema["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()],
        };
        let name = refs
            .iter()
            .filter(|n| pick.is_none_or(|p| n.contains(p)))
            .filter(|n| self.range(n).0 <= mv)
            // A few `max-ver`s in the description are wrong (2.9 for a
            // schema that starts at 2.35, say), so a schema whose range
            // covers the version wins, else the newest that began before it.
            .max_by_key(|n| {
                let (lo, hi) = self.range(n);
                (mv <= hi, lo)
            })
            .unwrap_or_else(|| panic!("{method} {path} at 2.{mv}: no schema among {refs:?}"))
            .clone();
        name
    }

    fn inline(&self, v: &Value, depth: usize) -> Value {
        assert!(depth < 64, "reference cycle in the description");
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let name = r.rsplit('/').next().unwrap();
                    let mut target = self.inline(self.component(name), depth + 1);
                    if let Value::Object(t) = &mut target {
                        for (k, v) in m {
                            if k != "$ref" {
                                t.insert(k.clone(), self.inline(v, depth + 1));
                            }
                        }
                    }
                    return target;
                }
                Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), self.inline(v, depth + 1)))
                        .collect::<Map<_, _>>(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| self.inline(v, depth + 1)).collect()),
            other => other.clone(),
        }
    }
}

/// A time as upstream writes it: RFC 3339, or ISO 8601 without a zone.
fn upstream_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

struct Checker<'a> {
    cloud: &'a Cloud,
    spec: &'a Spec,
    token: String,
    checked: usize,
    /// Compiled schemas, by component name (each is used at many versions).
    validators: BTreeMap<String, jsonschema::Validator>,
    /// Each distinct failure, with the microversions it showed at.
    failures: BTreeMap<String, BTreeSet<u16>>,
}

impl Checker<'_> {
    /// Sends `method url` at microversion 2.`mv`, expects a 2xx status and
    /// checks the body against the schema of `spec_path`.
    async fn check(
        &mut self,
        method: Method,
        url: &str,
        spec_path: &str,
        mv: u16,
        body: Option<Value>,
        pick: Option<&str>,
    ) -> Value {
        let mut rb = reqwest::Client::new()
            .request(
                method.clone(),
                format!("{}/compute/v2.1{url}", self.cloud.url),
            )
            .header("X-Auth-Token", &self.token)
            .header("OpenStack-API-Version", format!("compute 2.{mv}"));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status();
        let bytes = res.bytes().await.unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "{method} {url} at 2.{mv}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        let name = self
            .spec
            .schema_name(&method.as_str().to_lowercase(), spec_path, mv, pick);
        let spec = self.spec;
        let validator = self.validators.entry(name.clone()).or_insert_with(|| {
            let schema = spec.inline(spec.component(&name), 0);
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                // Nova itself sends naive ISO 8601 times in many bodies
                // (aggregates, migrations, usage) where the description says
                // date-time: accept those, and RFC 3339.
                .with_format("date-time", upstream_time)
                .build(&schema)
                .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"))
        });
        for e in validator.iter_errors(&got) {
            // The message quotes the offending value, which may be a whole
            // server: keep its head.
            let full = e.to_string();
            let msg = if full.chars().count() > 300 {
                let head: String = full.chars().take(60).collect();
                let tail: String = full
                    .chars()
                    .rev()
                    .take(200)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("{head} ... {tail}")
            } else {
                full
            };
            // Items of a list fail alike: one entry for all of them.
            let at: String = e
                .instance_path()
                .to_string()
                .split('/')
                .map(|p| {
                    if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) {
                        "*"
                    } else {
                        p
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let key = format!("{method} {spec_path} ({name}): {msg} at {at}");
            self.failures.entry(key).or_default().insert(mv);
        }
        self.checked += 1;
        got
    }

    async fn get(&mut self, url: &str, spec_path: &str, mv: u16) -> Value {
        self.check(Method::GET, url, spec_path, mv, None, None)
            .await
    }
}

async fn wait_active(c: &Cloud, token: &str, id: &str) {
    for _ in 0..400 {
        let r = c.get(&format!("/compute/v2.1/servers/{id}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let s = &r.body["server"];
        if s["status"] == "ACTIVE" && s["OS-EXT-STS:task_state"].is_null() {
            return;
        }
        assert_ne!(s["status"], "ERROR", "{s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server {id} never became ACTIVE");
}

async fn wait_status(c: &Cloud, token: &str, id: &str, want: &str) {
    for _ in 0..400 {
        let r = c.get(&format!("/compute/v2.1/servers/{id}"), token).await;
        let s = &r.body["server"];
        if s["status"] == want && s["OS-EXT-STS:task_state"].is_null() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server {id} never reached {want}");
}

const PUBLIC_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDx8nkQv/zgGgB4rMYmIf+6A4l6Rr+o/6lHmjiDTk5mDgcd8uRUwFLPE3Vr63qO6DwN7+qu+C7Nb4TdL0fsZhMEhgDyfBSiDQVxbK6xz5b6v+jwU9H8KWdcLeNJCXOMn6ltGjCOnXkU8/I8+vFzCjJ2qD/D1TjBbUg+r4RbA/VrHQ== openapi@test";

async fn run(engine: Engine) {
    let Some(c) = Cloud::start_with(engine, |cfg| {
        cfg.compute.fake_hosts = 2;
    })
    .await
    else {
        return;
    };
    let spec = Spec::load();
    let admin = c.admin_token().await;
    let auth = c
        .password_auth("admin", &c.admin_password, common::project_scope("admin"))
        .await;
    let project = auth.body["token"]["project"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut k = Checker {
        cloud: &c,
        spec: &spec,
        token: admin.clone(),
        checked: 0,
        validators: BTreeMap::new(),
        failures: BTreeMap::new(),
    };

    // Fixtures, each created through the API and checked on the way.
    let img = image(&c, &admin).await;
    let small = k
        .check(
            Method::POST,
            "/flavors",
            "/flavors",
            1,
            Some(json!({"flavor": {"name": "small", "id": "small", "vcpus": 1, "ram": 256, "disk": 1}})),
            None,
        )
        .await;
    assert_eq!(small["flavor"]["id"], "small");
    k.check(
        Method::POST,
        "/flavors",
        "/flavors",
        55,
        Some(json!({"flavor": {"name": "big", "id": "big", "vcpus": 2, "ram": 512, "disk": 2, "description": "bigger"}})),
        None,
    )
    .await;
    k.check(
        Method::POST,
        "/flavors",
        "/flavors",
        79,
        Some(json!({"flavor": {"name": "private", "id": "private", "vcpus": 1, "ram": 128, "disk": 1, "os-flavor-access:is_public": false}})),
        None,
    )
    .await;
    k.check(
        Method::POST,
        "/flavors/small/os-extra_specs",
        "/flavors/{flavor_id}/os-extra_specs",
        79,
        Some(json!({"extra_specs": {"hw:cpu_policy": "shared"}})),
        None,
    )
    .await;
    k.check(
        Method::POST,
        "/flavors/private/action",
        "/flavors/{id}/action",
        79,
        Some(json!({"addTenantAccess": {"tenant": project}})),
        Some("Add_Tenant"),
    )
    .await;

    let mut servers = Vec::new();
    for mv in [1, 37, 52, 57, 67, 74, 79] {
        let mut server = json!({"name": format!("vm-{mv}"), "imageRef": img, "flavorRef": "small"});
        if mv >= 37 {
            server["networks"] = json!("none");
        }
        if mv >= 52 {
            server["tags"] = json!(["t1"]);
        }
        let r = k
            .check(
                Method::POST,
                "/servers",
                "/servers",
                mv,
                Some(json!({"server": server})),
                None,
            )
            .await;
        servers.push(r["server"]["id"].as_str().unwrap().to_string());
    }
    for id in &servers {
        wait_active(&c, &admin, id).await;
    }
    let vm = servers[0].clone();
    let vm2 = servers[1].clone();

    // A resize confirmed, for migration records.
    let r = c
        .post(
            &format!("/compute/v2.1/servers/{vm2}/action"),
            &admin,
            json!({"resize": {"flavorRef": "big"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_status(&c, &admin, &vm2, "VERIFY_RESIZE").await;
    let r = c
        .post(
            &format!("/compute/v2.1/servers/{vm2}/action"),
            &admin,
            json!({"confirmResize": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    wait_active(&c, &admin, &vm2).await;

    // Rescue answers with the password.
    for mv in [1, 79] {
        k.check(
            Method::POST,
            &format!("/servers/{vm2}/action"),
            "/servers/{id}/action",
            mv,
            Some(json!({"rescue": null})),
            Some("_Rescue"),
        )
        .await;
        wait_status(&c, &admin, &vm2, "RESCUE").await;
        let r = c
            .post(
                &format!("/compute/v2.1/servers/{vm2}/action"),
                &admin,
                json!({"unrescue": null}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        wait_active(&c, &admin, &vm2).await;
    }

    let group = k
        .check(
            Method::POST,
            "/os-server-groups",
            "/os-server-groups",
            64,
            Some(json!({"server_group": {"name": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": 3}}})),
            None,
        )
        .await["server_group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let agg = k
        .check(
            Method::POST,
            "/os-aggregates",
            "/os-aggregates",
            41,
            Some(json!({"aggregate": {"name": "agg", "availability_zone": "zone-a"}})),
            None,
        )
        .await["aggregate"]["id"]
        .as_i64()
        .unwrap();
    let hv = c.get("/compute/v2.1/os-hypervisors", &admin).await;
    let host = hv.body["hypervisors"][0]["hypervisor_hostname"]
        .as_str()
        .unwrap()
        .to_string();
    let action = c
        .get(
            &format!("/compute/v2.1/servers/{vm}/os-instance-actions"),
            &admin,
        )
        .await;
    let request_id = action.body["instanceActions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .call(
            Method::GET,
            "/compute/v2.1/os-services?binary=nova-compute",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let keypair_body = |name: &str, mv: u16| {
        let mut kp = json!({"name": name, "public_key": PUBLIC_KEY});
        if mv >= 2 {
            kp["type"] = json!("ssh");
        }
        json!({"keypair": kp})
    };

    for mv in MIN_MINOR..=MAX_MINOR {
        // Reads.
        k.get("/", "/", mv).await;
        k.get("/flavors", "/flavors", mv).await;
        k.get("/flavors/detail", "/flavors/detail", mv).await;
        k.get("/flavors/small", "/flavors/{id}", mv).await;
        k.get(
            "/flavors/small/os-extra_specs",
            "/flavors/{flavor_id}/os-extra_specs",
            mv,
        )
        .await;
        k.get(
            "/flavors/small/os-extra_specs/hw:cpu_policy",
            "/flavors/{flavor_id}/os-extra_specs/{id}",
            mv,
        )
        .await;
        k.get(
            "/flavors/private/os-flavor-access",
            "/flavors/{flavor_id}/os-flavor-access",
            mv,
        )
        .await;
        k.get("/servers", "/servers", mv).await;
        k.get("/servers/detail", "/servers/detail", mv).await;
        k.get(&format!("/servers/{vm}"), "/servers/{id}", mv).await;
        k.get(&format!("/servers/{vm2}"), "/servers/{id}", mv).await;
        k.get(
            &format!("/servers/{vm}/metadata"),
            "/servers/{server_id}/metadata",
            mv,
        )
        .await;
        k.get(
            &format!("/servers/{vm}/os-instance-actions"),
            "/servers/{server_id}/os-instance-actions",
            mv,
        )
        .await;
        k.get(
            &format!("/servers/{vm}/os-instance-actions/{request_id}"),
            "/servers/{server_id}/os-instance-actions/{id}",
            mv,
        )
        .await;
        k.get(
            &format!("/servers/{vm}/diagnostics"),
            "/servers/{server_id}/diagnostics",
            mv,
        )
        .await;
        if mv >= 26 {
            k.get(
                &format!("/servers/{vm}/tags"),
                "/servers/{server_id}/tags",
                mv,
            )
            .await;
        }
        if mv >= 78 {
            k.get(
                &format!("/servers/{vm}/topology"),
                "/servers/{server_id}/topology",
                mv,
            )
            .await;
        }
        k.get("/os-services", "/os-services", mv).await;
        let hvs = k.get("/os-hypervisors", "/os-hypervisors", mv).await;
        let hv_id = match &hvs["hypervisors"][0]["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        k.get("/os-hypervisors/detail", "/os-hypervisors/detail", mv)
            .await;
        k.get(
            &format!("/os-hypervisors/{hv_id}"),
            "/os-hypervisors/{id}",
            mv,
        )
        .await;
        k.get(
            &format!("/os-hypervisors/{hv_id}/uptime"),
            "/os-hypervisors/{id}/uptime",
            mv,
        )
        .await;
        k.get(
            "/os-hypervisors/statistics",
            "/os-hypervisors/statistics",
            mv,
        )
        .await;
        if mv < 43 {
            k.get("/os-hosts", "/os-hosts", mv).await;
            k.get(&format!("/os-hosts/{host}"), "/os-hosts/{id}", mv)
                .await;
        }
        k.get("/os-keypairs", "/os-keypairs", mv).await;
        k.get(
            &format!("/os-quota-sets/{project}"),
            "/os-quota-sets/{id}",
            mv,
        )
        .await;
        k.get(
            &format!("/os-quota-sets/{project}/defaults"),
            "/os-quota-sets/{id}/defaults",
            mv,
        )
        .await;
        k.get(
            &format!("/os-quota-sets/{project}/detail"),
            "/os-quota-sets/{id}/detail",
            mv,
        )
        .await;
        k.get(
            "/os-quota-class-sets/default",
            "/os-quota-class-sets/{id}",
            mv,
        )
        .await;
        k.get("/limits", "/limits", mv).await;
        k.get("/os-availability-zone", "/os-availability-zone", mv)
            .await;
        k.get(
            "/os-availability-zone/detail",
            "/os-availability-zone/detail",
            mv,
        )
        .await;
        k.get("/os-aggregates", "/os-aggregates", mv).await;
        k.get(&format!("/os-aggregates/{agg}"), "/os-aggregates/{id}", mv)
            .await;
        k.get("/os-server-groups", "/os-server-groups", mv).await;
        k.get(
            &format!("/os-server-groups/{group}"),
            "/os-server-groups/{id}",
            mv,
        )
        .await;
        k.get(
            "/os-simple-tenant-usage?detailed=1",
            "/os-simple-tenant-usage",
            mv,
        )
        .await;
        k.get(
            &format!("/os-simple-tenant-usage/{project}"),
            "/os-simple-tenant-usage/{id}",
            mv,
        )
        .await;
        k.get("/os-migrations", "/os-migrations", mv).await;

        // Writes.
        k.check(
            Method::POST,
            "/os-keypairs",
            "/os-keypairs",
            mv,
            Some(keypair_body(&format!("kp-{mv}"), mv)),
            None,
        )
        .await;
        k.get(&format!("/os-keypairs/kp-{mv}"), "/os-keypairs/{id}", mv)
            .await;
        let mut flavor = json!({"name": format!("f-{mv}"), "vcpus": 1, "ram": 64, "disk": 1});
        if mv >= 55 {
            flavor["description"] = json!("d");
        }
        let f = k
            .check(
                Method::POST,
                "/flavors",
                "/flavors",
                mv,
                Some(json!({ "flavor": flavor })),
                None,
            )
            .await;
        let fid = f["flavor"]["id"].as_str().unwrap().to_string();
        if mv >= 55 {
            k.check(
                Method::PUT,
                &format!("/flavors/{fid}"),
                "/flavors/{id}",
                mv,
                Some(json!({"flavor": {"description": "changed"}})),
                None,
            )
            .await;
        }
        let mut sg = json!({"name": format!("g-{mv}")});
        if mv >= 64 {
            sg["policy"] = json!("soft-affinity");
        } else {
            sg["policies"] = json!(["affinity"]);
        }
        let g = k
            .check(
                Method::POST,
                "/os-server-groups",
                "/os-server-groups",
                mv,
                Some(json!({ "server_group": sg })),
                None,
            )
            .await;
        // Under the server-group quota of ten.
        let r = c
            .delete(
                &format!(
                    "/compute/v2.1/os-server-groups/{}",
                    g["server_group"]["id"].as_str().unwrap()
                ),
                &admin,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let a = k
            .check(
                Method::POST,
                "/os-aggregates",
                "/os-aggregates",
                mv,
                Some(json!({"aggregate": {"name": format!("a-{mv}")}})),
                None,
            )
            .await["aggregate"]["id"]
            .as_i64()
            .unwrap();
        k.check(
            Method::PUT,
            &format!("/os-aggregates/{a}"),
            "/os-aggregates/{id}",
            mv,
            Some(json!({"aggregate": {"name": format!("a-{mv}-renamed")}})),
            None,
        )
        .await;
        k.check(
            Method::POST,
            &format!("/os-aggregates/{a}/action"),
            "/os-aggregates/{id}/action",
            mv,
            Some(json!({"set_metadata": {"metadata": {"k": "v"}}})),
            Some("Set_Metadata"),
        )
        .await;
        k.check(
            Method::POST,
            &format!("/os-aggregates/{a}/action"),
            "/os-aggregates/{id}/action",
            mv,
            Some(json!({"add_host": {"host": host}})),
            Some("Add_Host"),
        )
        .await;
        k.check(
            Method::POST,
            &format!("/os-aggregates/{a}/action"),
            "/os-aggregates/{id}/action",
            mv,
            Some(json!({"remove_host": {"host": host}})),
            Some("Remove_Host"),
        )
        .await;
        k.check(
            Method::PUT,
            &format!("/servers/{vm}"),
            "/servers/{id}",
            mv,
            Some(json!({"server": {"name": format!("vm-renamed-{mv}")}})),
            None,
        )
        .await;
        k.check(
            Method::POST,
            &format!("/servers/{vm}/metadata"),
            "/servers/{server_id}/metadata",
            mv,
            Some(json!({"metadata": {"a": "1"}})),
            None,
        )
        .await;
        k.check(
            Method::PUT,
            &format!("/servers/{vm}/metadata/a"),
            "/servers/{server_id}/metadata/{id}",
            mv,
            Some(json!({"meta": {"a": "2"}})),
            None,
        )
        .await;
        k.get(
            &format!("/servers/{vm}/metadata/a"),
            "/servers/{server_id}/metadata/{id}",
            mv,
        )
        .await;
        k.check(
            Method::PUT,
            &format!("/servers/{vm}/metadata"),
            "/servers/{server_id}/metadata",
            mv,
            Some(json!({"metadata": {"a": "3", "b": "4"}})),
            None,
        )
        .await;
        if mv >= 26 {
            k.check(
                Method::PUT,
                &format!("/servers/{vm}/tags"),
                "/servers/{server_id}/tags",
                mv,
                Some(json!({"tags": ["x", format!("v{mv}")]})),
                None,
            )
            .await;
        }
        k.check(
            Method::PUT,
            &format!("/os-quota-sets/{project}"),
            "/os-quota-sets/{id}",
            mv,
            Some(json!({"quota_set": {"instances": 100}})),
            None,
        )
        .await;
        if mv >= 53 {
            let svc = k
                .get("/os-services?binary=nova-compute", "/os-services", mv)
                .await;
            let svc_id = svc["services"][0]["id"].as_str().unwrap().to_string();
            k.check(
                Method::PUT,
                &format!("/os-services/{svc_id}"),
                "/os-services/{id}",
                mv,
                Some(json!({"status": "enabled"})),
                None,
            )
            .await;
        }
        if mv >= 45 {
            let r = k
                .check(
                    Method::POST,
                    &format!("/servers/{vm}/action"),
                    "/servers/{id}/action",
                    mv,
                    Some(json!({"createImage": {"name": format!("snap-{mv}")}})),
                    Some("Create_Image"),
                )
                .await;
            assert!(r["image_id"].is_string(), "{r}");
            wait_active(&c, &admin, &vm).await;
        }
        let r = k
            .check(
                Method::POST,
                &format!("/servers/{vm}/action"),
                "/servers/{id}/action",
                mv,
                Some(json!({"rebuild": {"imageRef": img, "name": format!("rebuilt-{mv}")}})),
                Some("_Rebuild"),
            )
            .await;
        assert!(r["server"]["adminPass"].is_string(), "{r}");
        wait_active(&c, &admin, &vm).await;
        let r = k
            .check(
                Method::POST,
                &format!("/servers/{vm}/action"),
                "/servers/{id}/action",
                mv,
                Some(json!({"os-getConsoleOutput": {"length": 5}})),
                Some("Get_Console_Output"),
            )
            .await;
        assert!(r["output"].is_string(), "{r}");
    }

    assert!(k.checked > 79 * 40, "only {} responses checked", k.checked);
    let failures = std::mem::take(&mut k.failures);
    let checked = k.checked;
    c.stop().await;
    let report: Vec<String> = failures
        .iter()
        .map(|(k, v)| {
            let (lo, hi) = (v.first().unwrap_or(&0), v.last().unwrap_or(&0));
            format!("2.{lo}..2.{hi} ({} versions): {k}", v.len())
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} kinds of mismatch among {checked} responses checked against the compute OpenAPI description:\n{}",
        failures.len(),
        report.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_openapi_sqlite() {
    run(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_openapi_postgres() {
    run(Engine::Postgres).await;
}
