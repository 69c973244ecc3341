//! Nova's legacy (database) quotas: limits resolved from per-user,
//! per-project and default-class rows over the `quota_*` configuration,
//! usage counted from the tables, and the checks the server paths call.
//!
//! Resolution, as `nova.quota.DbQuotaDriver`: a project's limit is its own
//! row, else the `default` class row, else the configuration value; a
//! user's limit is its own row, else the project's limit. Only the
//! `default` class applies to projects (Nova never sets a request's quota
//! class); other classes are stored and shown, nothing more.

use std::collections::BTreeMap;

use crate::db::quotas as db;
use crate::error::{Error, Result};
use crate::{Compute, ComputeConfig};

/// Every quota resource Nova knows, sorted as `QuotaEngine.resources`.
pub const RESOURCES: [&str; 14] = [
    "cores",
    "fixed_ips",
    "floating_ips",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "injected_files",
    "instances",
    "key_pairs",
    "metadata_items",
    "ram",
    "security_group_rules",
    "security_groups",
    "server_group_members",
    "server_groups",
];

/// Resources hidden from 2.36 on (nova-network proxies).
pub const NETWORK_RESOURCES: [&str; 4] = [
    "fixed_ips",
    "floating_ips",
    "security_group_rules",
    "security_groups",
];

/// Resources hidden from 2.57 on (personality files).
pub const INJECTED_RESOURCES: [&str; 3] = [
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "injected_files",
];

/// The unit of Nova's 0x7FFFFFFF limit ceiling (`nova.db.constants.MAX_INT`).
pub const MAX_LIMIT: i64 = 0x7FFF_FFFF;

/// Resource name -> limit.
pub type Limits = BTreeMap<String, i64>;

/// The configured default of a resource (`resource.default`): the
/// deprecated network resources have no option and are unlimited.
pub fn config_default(cfg: &ComputeConfig, resource: &str) -> i64 {
    match resource {
        "instances" => cfg.quota_instances,
        "cores" => cfg.quota_cores,
        "ram" => cfg.quota_ram,
        "key_pairs" => cfg.quota_key_pairs,
        "metadata_items" => cfg.quota_metadata_items,
        "injected_files" => cfg.quota_injected_files,
        "injected_file_content_bytes" => cfg.quota_injected_file_content_bytes,
        "injected_file_path_bytes" => cfg.quota_injected_file_path_length,
        "server_groups" => cfg.quota_server_groups,
        "server_group_members" => cfg.quota_server_group_members,
        _ => -1,
    }
}

fn overlay(base: impl Fn(&str) -> i64, rows: &Limits) -> Limits {
    RESOURCES
        .iter()
        .map(|r| {
            (
                r.to_string(),
                rows.get(*r).copied().unwrap_or_else(|| base(r)),
            )
        })
        .collect()
}

/// The defaults: the `default` class over the configuration.
pub async fn defaults(compute: &Compute) -> Result<Limits> {
    let rows = db::class_limits(&compute.db, "default").await?;
    Ok(overlay(|r| config_default(&compute.cfg, r), &rows))
}

/// A class's limits: its rows over the configuration.
pub async fn class_limits(compute: &Compute, class: &str) -> Result<Limits> {
    let rows = db::class_limits(&compute.db, class).await?;
    Ok(overlay(|r| config_default(&compute.cfg, r), &rows))
}

/// A project's limits.
pub async fn project_limits(compute: &Compute, project: &str) -> Result<Limits> {
    let d = defaults(compute).await?;
    let rows = db::project_limits(&compute.db, project).await?;
    Ok(overlay(|r| d.get(r).copied().unwrap_or(-1), &rows))
}

/// A project user's limits (user rows, then the project's).
pub async fn user_limits(compute: &Compute, project: &str, user: &str) -> Result<Limits> {
    let p = project_limits(compute, project).await?;
    let rows = db::user_limits(&compute.db, project, user).await?;
    Ok(overlay(|r| p.get(r).copied().unwrap_or(-1), &rows))
}

/// Usage as the quota APIs show it (`_get_usages`): instances, cores, RAM
/// and server groups are counted (per user when `user` is given); key
/// pairs, server group members and plain limits show 0.
pub async fn usages(compute: &Compute, project: &str, user: Option<&str>) -> Result<Limits> {
    let (n, cores, ram) = db::instance_usage(&compute.db, project, user).await?;
    let groups = db::server_group_count(&compute.db, project, user).await?;
    let mut u: Limits = RESOURCES.iter().map(|r| (r.to_string(), 0)).collect();
    u.insert("instances".into(), n);
    u.insert("cores".into(), cores);
    u.insert("ram".into(), ram);
    u.insert("server_groups".into(), groups);
    Ok(u)
}

fn unlimited(v: i64) -> bool {
    v <= -1
}

/// The range a limit may be set to without `force`
/// (`DbQuotaDriver.get_settable_quotas`): resource -> (minimum, maximum).
pub async fn settable(
    compute: &Compute,
    project: &str,
    user: Option<&str>,
) -> Result<BTreeMap<String, (i64, i64)>> {
    let limits = project_limits(compute, project).await?;
    let sums = db::user_limit_sums(&compute.db, project).await?;
    let remains = |r: &str| {
        let l = limits.get(r).copied().unwrap_or(-1);
        l - sums.get(r).copied().unwrap_or(0)
    };
    let mut out = BTreeMap::new();
    match user {
        Some(user) => {
            let set = db::user_limits(&compute.db, project, user).await?;
            let used = usages(compute, project, Some(user)).await?;
            for r in RESOURCES {
                let rem = remains(r);
                let mine = set.get(r).copied().unwrap_or(0);
                let maximum = if unlimited(rem) || unlimited(mine) {
                    -1
                } else {
                    rem + mine
                };
                out.insert(r.to_string(), (used.get(r).copied().unwrap_or(0), maximum));
            }
        }
        None => {
            let used = usages(compute, project, None).await?;
            for r in RESOURCES {
                let l = limits.get(r).copied().unwrap_or(-1);
                let rem = remains(r);
                let given = if unlimited(l) || unlimited(rem) {
                    -1
                } else {
                    l - rem
                };
                let minimum = given.max(used.get(r).copied().unwrap_or(0));
                out.insert(r.to_string(), (minimum, -1));
            }
        }
    }
    Ok(out)
}

/// An exceeded check of counted resources, as `OverQuota` carries it.
struct Over {
    overs: Vec<&'static str>,
    quotas: BTreeMap<&'static str, i64>,
    usages: BTreeMap<&'static str, i64>,
}

/// `Quotas.check_deltas` for instances, cores and RAM: counts (per user
/// only when the user has a limit of their own on one of them) and checks
/// usage + delta against the project and user limits.
async fn check_deltas(
    compute: &Compute,
    project: &str,
    user: &str,
    deltas: &[(&'static str, i64)],
) -> Result<Option<Over>> {
    let user_rows = db::user_limits(&compute.db, project, user).await?;
    let per_user = ["instances", "cores", "ram"]
        .iter()
        .any(|r| user_rows.contains_key(*r));
    let plimits = project_limits(compute, project).await?;
    let ulimits = user_limits(compute, project, user).await?;
    let count = |(n, c, r): (i64, i64, i64)| -> BTreeMap<&'static str, i64> {
        [("instances", n), ("cores", c), ("ram", r)]
            .into_iter()
            .collect()
    };
    let get = |m: &Limits, k: &str| m.get(k).copied().unwrap_or(-1);
    // Nothing limited: no need to count.
    if deltas
        .iter()
        .all(|(k, _)| get(&plimits, k) < 0 && get(&ulimits, k) < 0)
    {
        return Ok(None);
    }
    let pcount = count(db::instance_usage(&compute.db, project, None).await?);
    if !per_user {
        // Checked once against the smaller of the two limits.
        let mut overs = Vec::new();
        let mut quotas = BTreeMap::new();
        for (k, d) in deltas {
            let q = get(&plimits, k).min(get(&ulimits, k));
            quotas.insert(*k, q);
            let v = pcount.get(k).copied().unwrap_or(0) + d;
            if q >= 0 && q < v {
                overs.push(*k);
            }
        }
        if overs.is_empty() {
            return Ok(None);
        }
        overs.sort_unstable();
        return Ok(Some(Over {
            overs,
            quotas,
            usages: pcount,
        }));
    }
    let ucount = count(db::instance_usage(&compute.db, project, Some(user)).await?);
    let mut overs = Vec::new();
    let mut over_user = false;
    for (k, d) in deltas {
        let pv = pcount.get(k).copied().unwrap_or(0) + d;
        let uv = ucount.get(k).copied().unwrap_or(0) + d;
        let (pq, uq) = (get(&plimits, k), get(&ulimits, k));
        if pq >= 0 && pq < pv {
            overs.push(*k);
        } else if uq >= 0 && uq < uv {
            overs.push(*k);
            over_user = true;
        }
    }
    if overs.is_empty() {
        return Ok(None);
    }
    overs.sort_unstable();
    let src = if over_user { &ulimits } else { &plimits };
    let quotas = deltas.iter().map(|(k, _)| (*k, get(src, k))).collect();
    Ok(Some(Over {
        overs,
        quotas,
        usages: if over_user { ucount } else { pcount },
    }))
}

/// `compute_utils.get_headroom`.
fn headroom(over: &Over, deltas: &BTreeMap<&str, i64>) -> BTreeMap<&'static str, f64> {
    let mut h: BTreeMap<&'static str, f64> = over
        .quotas
        .iter()
        .map(|(k, q)| (*k, (q - over.usages.get(k).copied().unwrap_or(0)) as f64))
        .collect();
    let inst = h.get("instances").copied().unwrap_or(1.0);
    for res in ["cores", "ram"] {
        if over.quotas.get(res) == Some(&-1) {
            let v = match deltas.get(res) {
                Some(d) if *d != 0 => {
                    inst * *d as f64 / deltas.get("instances").copied().unwrap_or(1).max(1) as f64
                }
                _ => inst,
            };
            h.insert(res, v);
        }
    }
    h
}

/// Nova's `TooManyInstances` message (`get_over_quota_detail`).
fn too_many(over: &Over, requested: &BTreeMap<&str, String>) -> Error {
    let mut reqs = Vec::new();
    let mut used = Vec::new();
    let mut allowed = Vec::new();
    for r in &over.overs {
        reqs.push(requested.get(r).cloned().unwrap_or_default());
        used.push(over.usages.get(r).copied().unwrap_or(0).to_string());
        allowed.push(over.quotas.get(r).copied().unwrap_or(-1).to_string());
    }
    let overs = over.overs.join(", ");
    Error::forbidden(format!(
        "Quota exceeded for {overs}: Requested {}, but already used {} of {} {overs}",
        reqs.join(", "),
        used.join(", "),
        allowed.join(", ")
    ))
}

/// Checks that `min_count`..=`max_count` more servers of a flavor with
/// `vcpus` and `memory_mb` fit the quotas of `project` and `user`, as
/// `compute_utils.check_num_instances_quota` does. Returns how many may be
/// created (at most `max_count`, at least `min_count`), or 403 with Nova's
/// message, e.g. "Quota exceeded for cores: Requested 4, but already used
/// 20 of 20 cores".
pub async fn check_num_instances(
    compute: &Compute,
    project: &str,
    user: &str,
    vcpus: i64,
    memory_mb: i64,
    min_count: i64,
    max_count: i64,
) -> Result<i64> {
    let mut max_count = max_count;
    loop {
        let req_cores = max_count * vcpus;
        let req_ram = max_count * memory_mb;
        let deltas = [
            ("instances", max_count),
            ("cores", req_cores),
            ("ram", req_ram),
        ];
        let Some(over) = check_deltas(compute, project, user, &deltas).await? else {
            return Ok(max_count);
        };
        let dmap: BTreeMap<&str, i64> = deltas.iter().copied().collect();
        let h = headroom(&over, &dmap);
        let mut allowed = h.get("instances").copied().unwrap_or(1.0);
        if vcpus != 0 {
            allowed = allowed.min((h.get("cores").copied().unwrap_or(0.0) / vcpus as f64).floor());
        }
        if memory_mb != 0 {
            allowed =
                allowed.min((h.get("ram").copied().unwrap_or(0.0) / memory_mb as f64).floor());
        }
        let allowed = allowed as i64;
        if allowed > 0 && min_count <= allowed && allowed <= max_count && allowed != max_count {
            max_count = allowed;
            continue;
        }
        let instances = if min_count == max_count {
            min_count.to_string()
        } else {
            format!("{min_count}-{max_count}")
        };
        let requested: BTreeMap<&str, String> = [
            ("instances", instances),
            ("cores", req_cores.to_string()),
            ("ram", req_ram.to_string()),
        ]
        .into_iter()
        .collect();
        return Err(too_many(&over, &requested));
    }
}

/// Checks that `count` more servers using `cores` vCPUs and `ram` MiB in
/// total (the sums over the `count` servers, as Nova's quota deltas) fit
/// the quotas of `project` and `user` (per-user limits included). 403 with
/// Nova's message, e.g. "Quota exceeded for instances: Requested 1, but
/// already used 10 of 10 instances".
pub async fn check_instances(
    compute: &Compute,
    project: &str,
    user: &str,
    count: i64,
    cores: i64,
    ram: i64,
) -> Result<()> {
    if count <= 0 {
        return check_usage_delta(compute, project, user, &[("cores", cores), ("ram", ram)]).await;
    }
    check_num_instances(
        compute,
        project,
        user,
        cores / count,
        ram / count,
        count,
        count,
    )
    .await
    .map(|_| ())
}

/// The quota check of a resize (`_check_quota_for_upsize`): only growth
/// counts; `cores_delta` and `ram_delta` are new minus old flavor sizes.
pub async fn check_resize(
    compute: &Compute,
    project: &str,
    user: &str,
    cores_delta: i64,
    ram_delta: i64,
) -> Result<()> {
    let mut deltas = Vec::new();
    if cores_delta > 0 {
        deltas.push(("cores", cores_delta));
    }
    if ram_delta > 0 {
        deltas.push(("ram", ram_delta));
    }
    if deltas.is_empty() {
        return Ok(());
    }
    check_usage_delta(compute, project, user, &deltas).await
}

async fn check_usage_delta(
    compute: &Compute,
    project: &str,
    user: &str,
    deltas: &[(&'static str, i64)],
) -> Result<()> {
    let Some(over) = check_deltas(compute, project, user, deltas).await? else {
        return Ok(());
    };
    let requested = deltas.iter().map(|(k, v)| (*k, v.to_string())).collect();
    Err(too_many(&over, &requested))
}

/// The limit of a plain (not counted) resource for a project user: the
/// smaller of the project's and the user's (`limit_check`).
async fn plain_limit(compute: &Compute, project: &str, user: &str, resource: &str) -> Result<i64> {
    let p = project_limits(compute, project).await?;
    let u = user_limits(compute, project, user).await?;
    let (p, u) = (
        p.get(resource).copied().unwrap_or(-1),
        u.get(resource).copied().unwrap_or(-1),
    );
    Ok(match (p, u) {
        (p, u) if p < 0 => u,
        (p, u) if u < 0 => p,
        (p, u) => p.min(u),
    })
}

/// The server metadata check (`_check_metadata_properties_quota`): 403
/// "Maximum number of metadata items exceeds N".
pub async fn check_metadata_items(
    compute: &Compute,
    project: &str,
    user: &str,
    count: i64,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let limit = plain_limit(compute, project, user, "metadata_items").await?;
    if limit >= 0 && count > limit {
        return Err(Error::forbidden(format!(
            "Maximum number of metadata items exceeds {limit}"
        )));
    }
    Ok(())
}

/// The server group members check of a server create: `count` more servers
/// of `user` in `group_id`. 403 "Quota exceeded, too many servers in group".
pub async fn check_server_group_members(
    compute: &Compute,
    project: &str,
    user: &str,
    group_id: &str,
    count: i64,
) -> Result<()> {
    let used = db::group_member_count(&compute.db, group_id, user).await?;
    let limit = plain_limit(compute, project, user, "server_group_members").await?;
    if limit >= 0 && used + count > limit {
        return Err(Error::forbidden(
            "Quota exceeded, too many servers in group",
        ));
    }
    Ok(())
}

/// The server group check of a group create: 403 "Quota exceeded, too
/// many server groups." when the project or the user is at its limit.
pub async fn check_server_groups(compute: &Compute, project: &str, user: &str) -> Result<()> {
    let p = project_limits(compute, project).await?;
    let u = user_limits(compute, project, user).await?;
    let (pl, ul) = (
        p.get("server_groups").copied().unwrap_or(-1),
        u.get("server_groups").copied().unwrap_or(-1),
    );
    // Counted across the project and across the user, as Nova does.
    let pn = db::server_group_count(&compute.db, project, None).await? + 1;
    let un = db::server_group_count(&compute.db, project, Some(user)).await? + 1;
    let over = (pl >= 0 && pl < pn) || (ul >= 0 && ul < un);
    if over {
        return Err(Error::forbidden("Quota exceeded, too many server groups."));
    }
    Ok(())
}

/// The key pair limit of `user` acting in `project`: the project's limit
/// (a per-project override, else the default) and the user's override,
/// the lower of the two; -1 is unlimited. Counted per user, as Nova does.
pub async fn key_pair_limit(compute: &Compute, project: &str, user: &str) -> Result<i64> {
    plain_limit(compute, project, user, "key_pairs").await
}
