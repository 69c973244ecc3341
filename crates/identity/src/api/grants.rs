//! Role grants (`/projects/{p}/users/{u}/roles/{r}` and friends, including
//! system and OS-INHERIT grants) and the `/v3/role_assignments` listing.

use std::collections::HashMap;

use axum::extract::{MatchedPath, Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::assignments::{self as db, AssignmentRow, Kind, SYSTEM};
use crate::db::{domains, groups, projects, roles, users};
use crate::error::{Error, Result};
use crate::render;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    Project,
    Domain,
    System,
}

/// What the matched route says: target kind, actor kind, inheritance.
struct Route {
    target: TargetKind,
    group: bool,
    inherited: bool,
}

fn route(matched: &MatchedPath) -> Result<Route> {
    let path = matched.as_str();
    let rest = path.split_once("/v3/").map(|(_, r)| r).unwrap_or(path);
    let (inherited, rest) = match rest.strip_prefix("OS-INHERIT/") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (target, actor) = match segs.first() {
        Some(&"projects") => (TargetKind::Project, segs.get(2)),
        Some(&"domains") => (TargetKind::Domain, segs.get(2)),
        Some(&"system") => (TargetKind::System, segs.get(1)),
        _ => return Err(Error::Internal(format!("unexpected grant route {path}"))),
    };
    Ok(Route {
        target,
        group: actor == Some(&"groups"),
        inherited,
    })
}

fn kind_of(r: &Route) -> Kind {
    match (r.target, r.group) {
        (TargetKind::Project, false) => Kind::UserProject,
        (TargetKind::Project, true) => Kind::GroupProject,
        (TargetKind::Domain, false) => Kind::UserDomain,
        (TargetKind::Domain, true) => Kind::GroupDomain,
        (TargetKind::System, false) => Kind::UserSystem,
        (TargetKind::System, true) => Kind::GroupSystem,
    }
}

/// Checks that target, actor and (when given) role exist; returns the
/// target id, actor id, the policy target, and the role.
async fn resolve(
    state: &State,
    r: &Route,
    params: &HashMap<String, String>,
) -> Result<(String, String, api_common::Target, Option<roles::RoleRow>)> {
    let actor = params.get("actor").cloned().unwrap_or_default();
    let mut t = api_common::Target::new();
    let target = match r.target {
        TargetKind::Project => {
            let id = params.get("id").cloned().unwrap_or_default();
            let p = projects::project_get(&state.db, &id)
                .await?
                .ok_or_else(|| Error::not_found("project", id.clone()))?;
            t.insert("target.project.id", p.id.clone());
            t.insert("target.project.domain_id", p.domain_id.clone());
            t.insert("target.domain_id", p.domain_id.clone());
            id
        }
        TargetKind::Domain => {
            let id = params.get("id").cloned().unwrap_or_default();
            domains::domain_get(&state.db, &id)
                .await?
                .ok_or_else(|| Error::not_found("domain", id.clone()))?;
            t.insert("target.domain.id", id.clone());
            t.insert("target.domain_id", id.clone());
            id
        }
        TargetKind::System => SYSTEM.to_string(),
    };
    if r.group {
        let g = groups::group_get(&state.db, &actor)
            .await?
            .ok_or_else(|| Error::not_found("group", actor.clone()))?;
        t.insert("target.group.id", g.id);
        t.insert("target.group.domain_id", g.domain_id);
    } else {
        let u = users::user_get(&state.db, &actor)
            .await?
            .ok_or_else(|| Error::not_found("user", actor.clone()))?;
        t.insert("target.user.id", u.id);
        t.insert("target.user.domain_id", u.domain_id);
    }
    let role = match params.get("role") {
        Some(rid) => {
            let role = roles::role_get(&state.db, rid)
                .await?
                .ok_or_else(|| Error::not_found("role", rid.clone()))?;
            t.insert("target.role.id", role.id.clone());
            t.insert("target.role.domain_id", role.domain_id.clone());
            Some(role)
        }
        None => None,
    };
    Ok((target, actor, t, role))
}

fn rule(r: &Route, action: &str) -> String {
    if r.target == TargetKind::System {
        format!(
            "identity:{action}_system_grant{}",
            if action == "list" { "s" } else { "" }
        )
    } else {
        format!(
            "identity:{action}_grant{}",
            if action == "list" { "s" } else { "" }
        )
    }
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    matched: MatchedPath,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let r = route(&matched)?;
    let (target, actor, t, _) = resolve(&state, &r, &params).await?;
    state.authorize(&caller.0, &rule(&r, "list"), &t)?;
    let ids = db::grant_list(&state.db, kind_of(&r), &actor, &target, r.inherited).await?;
    let mut items = Vec::new();
    for id in ids {
        if let Some(role) = roles::role_get(&state.db, &id).await? {
            items.push(render::role(&base, &role));
        }
    }
    Ok(Json(input::list(
        "roles",
        items,
        format!("{base}{}", matched.as_str()),
        None,
    )))
}

pub async fn add(
    state: State,
    caller: Caller,
    matched: MatchedPath,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode> {
    let r = route(&matched)?;
    let (target, actor, t, role) = resolve(&state, &r, &params).await?;
    let role = role.ok_or_else(|| Error::invalid("a role is required"))?;
    state.authorize(&caller.0, &rule(&r, "create"), &t)?;
    if !role.domain_id.is_empty() {
        let target_domain = match r.target {
            TargetKind::Project => projects::project_get(&state.db, &target)
                .await?
                .map(|p| p.domain_id),
            TargetKind::Domain => Some(target.clone()),
            TargetKind::System => None,
        };
        if target_domain.as_deref() != Some(role.domain_id.as_str()) {
            return Err(Error::Forbidden(
                "A domain-specific role may only be granted within its domain.".into(),
            ));
        }
    }
    let mut tx = state.db.write().await?;
    db::grant_add(&mut tx, kind_of(&r), &actor, &target, &role.id, r.inherited).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn check(
    state: State,
    caller: Caller,
    matched: MatchedPath,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode> {
    let r = route(&matched)?;
    let (target, actor, t, role) = resolve(&state, &r, &params).await?;
    let role = role.ok_or_else(|| Error::invalid("a role is required"))?;
    state.authorize(&caller.0, &rule(&r, "check"), &t)?;
    let ids = db::grant_list(&state.db, kind_of(&r), &actor, &target, r.inherited).await?;
    if ids.contains(&role.id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(
            "role assignment",
            format!("role {} for {actor} on {target}", role.id),
        ))
    }
}

pub async fn remove(
    state: State,
    caller: Caller,
    matched: MatchedPath,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode> {
    let r = route(&matched)?;
    let (target, actor, t, role) = resolve(&state, &r, &params).await?;
    let role = role.ok_or_else(|| Error::invalid("a role is required"))?;
    state.authorize(&caller.0, &rule(&r, "revoke"), &t)?;
    let mut tx = state.db.write().await?;
    if !db::grant_remove(&mut tx, kind_of(&r), &actor, &target, &role.id, r.inherited).await? {
        return Err(Error::not_found(
            "role assignment",
            format!("role {} for {actor} on {target}", role.id),
        ));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One row of the listing, before rendering.
#[derive(Clone, Debug)]
struct Entry {
    role_id: String,
    user_id: Option<String>,
    group_id: Option<String>,
    project_id: Option<String>,
    domain_id: Option<String>,
    system: bool,
    inherited: bool,
    /// The assignment the row comes from (for links).
    source: AssignmentRow,
    /// Set when the row comes from a group the user belongs to.
    via_group: Option<String>,
    /// Set when the role is implied by this prior role.
    prior_role: Option<String>,
}

fn entry_from(a: &AssignmentRow) -> Option<Entry> {
    let kind = Kind::parse(&a.kind)?;
    let (user_id, group_id) = if kind.is_group() {
        (None, Some(a.actor_id.clone()))
    } else {
        (Some(a.actor_id.clone()), None)
    };
    let (project_id, domain_id, system) = match kind {
        Kind::UserProject | Kind::GroupProject => (Some(a.target_id.clone()), None, false),
        Kind::UserDomain | Kind::GroupDomain => (None, Some(a.target_id.clone()), false),
        Kind::UserSystem | Kind::GroupSystem => (None, None, true),
    };
    Some(Entry {
        role_id: a.role_id.clone(),
        user_id,
        group_id,
        project_id,
        domain_id,
        system,
        inherited: store::flag(a.inherited),
        source: a.clone(),
        via_group: None,
        prior_role: None,
    })
}

fn assignment_link(base: &str, a: &AssignmentRow) -> String {
    let kind = Kind::parse(&a.kind).unwrap_or(Kind::UserProject);
    let actor = if kind.is_group() { "groups" } else { "users" };
    let inherited = store::flag(a.inherited);
    match kind {
        Kind::UserSystem | Kind::GroupSystem => {
            format!(
                "{base}/v3/system/{actor}/{}/roles/{}",
                a.actor_id, a.role_id
            )
        }
        _ => {
            let target = if matches!(kind, Kind::UserProject | Kind::GroupProject) {
                "projects"
            } else {
                "domains"
            };
            if inherited {
                format!(
                    "{base}/v3/OS-INHERIT/{target}/{}/{actor}/{}/roles/{}/inherited_to_projects",
                    a.target_id, a.actor_id, a.role_id
                )
            } else {
                format!(
                    "{base}/v3/{target}/{}/{actor}/{}/roles/{}",
                    a.target_id, a.actor_id, a.role_id
                )
            }
        }
    }
}

/// GET /v3/role_assignments.
pub async fn assignments(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let effective = input::query_bool(&q, "effective").unwrap_or(false);
    let include_names = input::query_bool(&q, "include_names").unwrap_or(false);
    let include_subtree = input::query_bool(&q, "include_subtree").unwrap_or(false);
    let f_user = q.get("user.id");
    let f_group = q.get("group.id");
    let f_role = q.get("role.id");
    let f_project = q.get("scope.project.id");
    let f_domain = q.get("scope.domain.id");
    let f_system = q.get("scope.system");
    let f_inherited = q.get("scope.OS-INHERIT:inherited_to");
    if effective && f_group.is_some() {
        return Err(Error::invalid(
            "Combining effective and group filter will always result in an empty list.",
        ));
    }
    if f_project.is_some() && f_domain.is_some() {
        return Err(Error::invalid("Specify a domain or project, not both"));
    }
    if include_subtree && f_project.is_none() {
        return Err(Error::invalid(
            "scope.project.id needs to be specified if include_subtree is also specified",
        ));
    }
    if include_subtree {
        let pid = f_project.cloned().unwrap_or_default();
        let p = projects::project_get(&state.db, &pid)
            .await?
            .ok_or_else(|| Error::not_found("project", pid.clone()))?;
        state.authorize(
            &caller.0,
            "identity:list_role_assignments_for_tree",
            &super::projects::target(&p),
        )?;
    } else {
        let t = api_common::Target::new().with_opt("target.domain_id", f_domain.cloned());
        state.authorize(&caller.0, "identity:list_role_assignments", &t)?;
    }

    let all = db::assignments_all(&state.db).await?;
    let mut entries: Vec<Entry> = all.iter().filter_map(entry_from).collect();

    if effective {
        let mut expanded = Vec::new();
        for e in entries {
            // Groups become their members.
            let members: Vec<(Option<String>, Option<String>)> = match &e.group_id {
                Some(g) => groups::group_member_ids(&state.db, g)
                    .await?
                    .into_iter()
                    .map(|u| (Some(u), Some(g.clone())))
                    .collect(),
                None => vec![(e.user_id.clone(), None)],
            };
            // Inherited assignments become the projects they reach.
            let targets: Vec<(Option<String>, Option<String>)> = if e.inherited {
                let list = if let Some(d) = &e.domain_id {
                    let f = projects::ProjectFilter {
                        domain_id: Some(d.clone()),
                        ..Default::default()
                    };
                    projects::project_list(&state.db, &f).await?
                } else if let Some(p) = &e.project_id {
                    projects::project_subtree(&state.db, p).await?
                } else {
                    Vec::new()
                };
                list.into_iter().map(|p| (Some(p.id), None)).collect()
            } else {
                vec![(e.project_id.clone(), e.domain_id.clone())]
            };
            for (user, via) in &members {
                for (project, domain) in &targets {
                    expanded.push(Entry {
                        user_id: user.clone(),
                        group_id: None,
                        project_id: project.clone(),
                        domain_id: domain.clone(),
                        inherited: false,
                        via_group: via.clone(),
                        ..e.clone()
                    });
                }
            }
        }
        // Implied roles.
        let snap = state.snapshot().await?;
        let mut with_implied = Vec::new();
        for e in expanded {
            let implied = crate::tokens::expand_implied(&snap, std::slice::from_ref(&e.role_id));
            for r in implied {
                if r == e.role_id {
                    continue;
                }
                with_implied.push(Entry {
                    role_id: r,
                    prior_role: Some(e.role_id.clone()),
                    ..e.clone()
                });
            }
            with_implied.push(e);
        }
        entries = with_implied;
    }

    // Filters.
    let subtree: Option<Vec<String>> = match (include_subtree, f_project) {
        (true, Some(p)) => {
            let mut ids = vec![p.clone()];
            ids.extend(
                projects::project_subtree(&state.db, p)
                    .await?
                    .into_iter()
                    .map(|x| x.id),
            );
            Some(ids)
        }
        _ => None,
    };
    entries.retain(|e| {
        f_user.is_none_or(|u| e.user_id.as_ref() == Some(u))
            && f_group.is_none_or(|g| e.group_id.as_ref() == Some(g))
            && f_role.is_none_or(|r| e.role_id == *r)
            && match (&subtree, f_project) {
                (Some(ids), _) => e.project_id.as_ref().is_some_and(|p| ids.contains(p)),
                (None, Some(p)) => e.project_id.as_ref() == Some(p),
                _ => true,
            }
            && f_domain.is_none_or(|d| e.domain_id.as_ref() == Some(d))
            && f_system.is_none_or(|_| e.system)
            && f_inherited.is_none_or(|_| e.inherited)
    });

    // Keystone lists each effective assignment once.
    let mut seen = std::collections::HashSet::new();
    entries.retain(|e| {
        seen.insert((
            e.role_id.clone(),
            e.user_id.clone(),
            e.group_id.clone(),
            e.project_id.clone(),
            e.domain_id.clone(),
            e.system,
            e.inherited,
        ))
    });

    let names = if include_names {
        Some(Names::default())
    } else {
        None
    };
    let mut names = names;
    let mut items = Vec::new();
    for e in &entries {
        items.push(render_entry(&state, &base, e, names.as_mut()).await?);
    }
    Ok(Json(input::list(
        "role_assignments",
        items,
        format!("{base}/v3/role_assignments"),
        None,
    )))
}

/// Looked-up names, so that a long listing reads each row once.
#[derive(Default)]
struct Names {
    roles: HashMap<String, Value>,
    users: HashMap<String, Value>,
    groups: HashMap<String, Value>,
    projects: HashMap<String, Value>,
    domains: HashMap<String, Value>,
}

async fn domain_ref(state: &State, names: &mut Names, id: &str) -> Result<Value> {
    if let Some(v) = names.domains.get(id) {
        return Ok(v.clone());
    }
    let v = match domains::domain_get(&state.db, id).await? {
        Some(d) => json!({ "id": d.id, "name": d.name }),
        None => json!({ "id": id }),
    };
    names.domains.insert(id.to_string(), v.clone());
    Ok(v)
}

async fn render_entry(
    state: &State,
    base: &str,
    e: &Entry,
    names: Option<&mut Names>,
) -> Result<Value> {
    let mut out = Map::new();
    let mut links = Map::new();
    links.insert("assignment".into(), json!(assignment_link(base, &e.source)));
    if let (Some(g), Some(u)) = (&e.via_group, &e.user_id) {
        links.insert(
            "membership".into(),
            json!(format!("{base}/v3/groups/{g}/users/{u}")),
        );
    }
    if let Some(prior) = &e.prior_role {
        links.insert(
            "prior_role".into(),
            json!(format!("{base}/v3/roles/{prior}/implies/{}", e.role_id)),
        );
    }
    let mut scope = Map::new();
    match names {
        None => {
            out.insert("role".into(), json!({ "id": e.role_id }));
            if let Some(u) = &e.user_id {
                out.insert("user".into(), json!({ "id": u }));
            }
            if let Some(g) = &e.group_id {
                out.insert("group".into(), json!({ "id": g }));
            }
            if let Some(p) = &e.project_id {
                scope.insert("project".into(), json!({ "id": p }));
            }
            if let Some(d) = &e.domain_id {
                scope.insert("domain".into(), json!({ "id": d }));
            }
        }
        Some(n) => {
            let role = match n.roles.get(&e.role_id) {
                Some(v) => v.clone(),
                None => {
                    let v = match roles::role_get(&state.db, &e.role_id).await? {
                        Some(r) if !r.domain_id.is_empty() => {
                            let d = domain_ref(state, n, &r.domain_id).await?;
                            json!({ "id": r.id, "name": r.name, "domain": d })
                        }
                        Some(r) => json!({ "id": r.id, "name": r.name }),
                        None => json!({ "id": e.role_id }),
                    };
                    n.roles.insert(e.role_id.clone(), v.clone());
                    v
                }
            };
            out.insert("role".into(), role);
            if let Some(u) = &e.user_id {
                let v = match n.users.get(u) {
                    Some(v) => v.clone(),
                    None => {
                        let v = match users::user_get(&state.db, u).await? {
                            Some(x) => {
                                let d = domain_ref(state, n, &x.domain_id).await?;
                                json!({ "id": x.id, "name": x.name, "domain": d })
                            }
                            None => json!({ "id": u }),
                        };
                        n.users.insert(u.clone(), v.clone());
                        v
                    }
                };
                out.insert("user".into(), v);
            }
            if let Some(g) = &e.group_id {
                let v = match n.groups.get(g) {
                    Some(v) => v.clone(),
                    None => {
                        let v = match groups::group_get(&state.db, g).await? {
                            Some(x) => {
                                let d = domain_ref(state, n, &x.domain_id).await?;
                                json!({ "id": x.id, "name": x.name, "domain": d })
                            }
                            None => json!({ "id": g }),
                        };
                        n.groups.insert(g.clone(), v.clone());
                        v
                    }
                };
                out.insert("group".into(), v);
            }
            if let Some(p) = &e.project_id {
                let v = match n.projects.get(p) {
                    Some(v) => v.clone(),
                    None => {
                        let v = match projects::project_get(&state.db, p).await? {
                            Some(x) => {
                                let d = domain_ref(state, n, &x.domain_id).await?;
                                json!({ "id": x.id, "name": x.name, "domain": d })
                            }
                            None => json!({ "id": p }),
                        };
                        n.projects.insert(p.clone(), v.clone());
                        v
                    }
                };
                scope.insert("project".into(), v);
            }
            if let Some(d) = &e.domain_id {
                scope.insert("domain".into(), domain_ref(state, n, d).await?);
            }
        }
    }
    if e.system {
        scope.insert("system".into(), json!({ "all": true }));
    }
    if e.inherited {
        scope.insert("OS-INHERIT:inherited_to".into(), json!("projects"));
    }
    out.insert("scope".into(), Value::Object(scope));
    out.insert("links".into(), Value::Object(links));
    Ok(Value::Object(out))
}
