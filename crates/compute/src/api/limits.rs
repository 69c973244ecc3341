//! `GET /limits`: the project's absolute limits with usage; no rate limits.

use axum::extract::RawQuery;
use axum::Json;
use serde_json::{json, Map, Value};

use super::quotas::{first, strict_query};
use super::{query_pairs, Auth, Mv, State};
use crate::error::Result;
use crate::quota;

/// Quota resource -> the absolute limit names it is shown as.
const NAMES: [(&str, &[&str]); 12] = [
    ("ram", &["maxTotalRAMSize"]),
    ("instances", &["maxTotalInstances"]),
    ("cores", &["maxTotalCores"]),
    ("key_pairs", &["maxTotalKeypairs"]),
    ("floating_ips", &["maxTotalFloatingIps"]),
    ("metadata_items", &["maxServerMeta", "maxImageMeta"]),
    ("injected_files", &["maxPersonality"]),
    ("injected_file_content_bytes", &["maxPersonalitySize"]),
    ("security_groups", &["maxSecurityGroups"]),
    ("security_group_rules", &["maxSecurityGroupRules"]),
    ("server_groups", &["maxServerGroups"]),
    ("server_group_members", &["maxServerGroupMembers"]),
];

/// Usage name -> quota resource.
const USED: [(&str, &str); 6] = [
    ("totalRAMUsed", "ram"),
    ("totalCoresUsed", "cores"),
    ("totalInstancesUsed", "instances"),
    ("totalFloatingIpsUsed", "floating_ips"),
    ("totalSecurityGroupsUsed", "security_groups"),
    ("totalServerGroupsUsed", "server_groups"),
];

pub async fn index(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &["tenant_id"])?;
    state.authorize(&caller, "os_compute_api:limits", &api_common::Target::new())?;
    let mut project = caller.project().to_string();
    if let Some(t) = first(&pairs, "tenant_id") {
        project = t.to_string();
        state.authorize(
            &caller,
            "os_compute_api:limits:other_project",
            &api_common::Target::new(),
        )?;
    }
    let mut filtered: Vec<&str> = Vec::new();
    if mv.at_least(36) {
        filtered.extend(["floating_ips", "security_groups", "security_group_rules"]);
    }
    if mv.at_least(57) {
        filtered.extend(["injected_files", "injected_file_content_bytes"]);
    }
    let limits = quota::project_limits(&state, &project).await?;
    let used = quota::usages(&state, &project, None).await?;
    let mut absolute = Map::new();
    for (resource, names) in NAMES {
        if filtered.contains(&resource) {
            continue;
        }
        let Some(v) = limits.get(resource) else {
            continue;
        };
        for name in names {
            if *name == "maxImageMeta" && mv.at_least(39) {
                continue;
            }
            absolute.insert((*name).into(), json!(v));
        }
    }
    for (name, resource) in USED {
        if !filtered.contains(&resource) {
            absolute.insert(name.into(), json!(used.get(resource).copied().unwrap_or(0)));
        }
    }
    Ok(Json(
        json!({ "limits": { "rate": [], "absolute": absolute } }),
    ))
}
