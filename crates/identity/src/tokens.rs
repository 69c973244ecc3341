//! Issuing, validating and revoking tokens.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use api_common::{AuthContext, RoleRef, Scope};
use serde_json::Value;

use crate::db::assignments::{self, AssignmentRow, Kind};
use crate::db::revocations::{revocation_add, RevocationRow};
use crate::db::{app_creds, domains, groups, projects, users};
use crate::error::{Error, Result};
use crate::fernet::{Payload, ScopeKind};
use crate::{password, Identity, Snapshot};

/// The outcome of a successful authentication.
pub struct Issued {
    pub token: String,
    pub ctx: Arc<AuthContext>,
    /// The snapshot the token was issued against (its catalog goes in the body).
    pub snap: Arc<Snapshot>,
}

/// Who authenticated, before the scope is decided.
struct Authenticated {
    user: users::UserRow,
    methods: Vec<String>,
    /// Set when the token method was used: (audit ids, expiry) of the parent.
    parent: Option<(Vec<String>, i64)>,
    app_cred: Option<app_creds::AppCredRow>,
}

fn str_field<'a>(v: &'a Value, key: &str, path: &str) -> Result<Option<&'a str>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field '{path}.{key}': {other} is not of type 'string'"
        ))),
    }
}

fn obj_field<'a>(v: &'a Value, key: &str, path: &str) -> Result<Option<&'a Value>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(o @ Value::Object(_)) => Ok(Some(o)),
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field '{path}.{key}': {other} is not of type 'object'"
        ))),
    }
}

impl Identity {
    /// POST /v3/auth/tokens.
    pub async fn authenticate(&self, body: &Value) -> Result<Issued> {
        let auth = obj_field(body, "auth", "")?
            .ok_or_else(|| Error::invalid("'auth' is a required property"))?;
        let ident = obj_field(auth, "identity", "auth")?
            .ok_or_else(|| Error::invalid("'identity' is a required property"))?;
        let methods: Vec<String> = match ident.get("methods") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|m| {
                    m.as_str().map(str::to_string).ok_or_else(|| {
                        Error::invalid(
                            "Invalid input for field 'identity.methods': not a list of strings",
                        )
                    })
                })
                .collect::<Result<_>>()?,
            Some(Value::Array(_)) => {
                return Err(Error::invalid(
                    "Invalid input for field 'identity.methods': [] is too short",
                ))
            }
            _ => return Err(Error::invalid("'methods' is a required property")),
        };
        let snap = self.snapshot().await?;
        let mut who: Option<Authenticated> = None;
        for method in &methods {
            let data = obj_field(ident, method, "identity")?.ok_or_else(|| {
                Error::invalid(format!("'{method}' is a required property of 'identity'"))
            })?;
            let result = match method.as_str() {
                "password" => self.auth_password(data).await?,
                "token" => self.auth_token(&snap, data).await?,
                "application_credential" => self.auth_app_cred(data).await?,
                _ => return Err(Error::unauthorized()),
            };
            match &who {
                Some(prev) if prev.user.id != result.user.id => {
                    return Err(Error::Unauthorized(
                        "Authentication methods identified different users.".into(),
                    ))
                }
                Some(_) => {
                    let prev = who.take();
                    who = prev.map(|mut p| {
                        p.parent = p.parent.or(result.parent);
                        p.app_cred = p.app_cred.or(result.app_cred);
                        p
                    });
                }
                None => who = Some(result),
            }
        }
        let who = who.ok_or_else(Error::unauthorized)?;

        let now = store::now_micros();
        let mut expires_at = now + (self.cfg.token_expiration as i64) * 1_000_000;
        let mut all_methods: BTreeSet<String> = methods.iter().cloned().collect();
        let mut audit_ids = vec![crate::fernet::random_audit_id()];
        if let Some((parent_audit, parent_expiry)) = &who.parent {
            expires_at = expires_at.min(*parent_expiry);
            if let Some(first) = parent_audit.first() {
                audit_ids.push(parent_audit.last().unwrap_or(first).clone());
            }
        }
        if let Some(ac) = &who.app_cred {
            if let Some(exp) = ac.expires_at {
                expires_at = expires_at.min(exp);
            }
        }
        // The token method keeps the methods of the token it was given.
        all_methods.extend(who.methods.iter().cloned());

        let mut payload = Payload::new(
            &who.user.id,
            &all_methods.into_iter().collect::<Vec<_>>(),
            expires_at,
            now,
        );
        payload.audit_ids = audit_ids;

        // Decide the scope.
        let scope = auth.get("scope");
        if let Some(ac) = &who.app_cred {
            if scope.is_some_and(|s| !s.is_null()) {
                return Err(Error::Unauthorized(
                    "Application credentials cannot request a scope.".into(),
                ));
            }
            payload.application_credential_id = Some(ac.id.clone());
            match &ac.project_id {
                Some(p) => {
                    payload.scope = ScopeKind::Project;
                    payload.scope_id = Some(p.clone());
                }
                None => payload.scope = ScopeKind::System,
            }
        } else {
            match scope {
                None | Some(Value::Null) => {
                    if let Some(p) = &who.user.default_project_id {
                        // Scope to the default project only when it is usable.
                        let mut trial = payload.clone();
                        trial.scope = ScopeKind::Project;
                        trial.scope_id = Some(p.clone());
                        if self.resolve(&snap, &trial).await.is_ok() {
                            payload = trial;
                        }
                    }
                }
                Some(Value::String(s)) if s == "unscoped" => {}
                Some(s @ Value::Object(_)) => self.parse_scope(s, &mut payload).await?,
                Some(other) => {
                    return Err(Error::invalid(format!(
                        "Invalid input for field 'auth.scope': {other} is not valid"
                    )))
                }
            }
        }

        let mut ctx = self.resolve(&snap, &payload).await.map_err(|e| match e {
            Error::Internal(_) => e,
            Error::Unauthorized(m) => Error::Unauthorized(m),
            _ => Error::unauthorized(),
        })?;
        ctx.methods = payload.method_names();
        let token = snap.keys.encrypt(&payload)?;
        let ctx = Arc::new(ctx);
        self.cache_token(&token, snap.revision, ctx.clone());
        Ok(Issued { token, ctx, snap })
    }

    async fn parse_scope(&self, scope: &Value, payload: &mut Payload) -> Result<()> {
        if let Some(p) = obj_field(scope, "project", "scope")? {
            let id = if let Some(id) = str_field(p, "id", "scope.project")? {
                id.to_string()
            } else {
                let name = str_field(p, "name", "scope.project")?.ok_or_else(|| {
                    Error::invalid(
                        "Invalid input for field 'scope.project': an id or a name is required",
                    )
                })?;
                let domain = obj_field(p, "domain", "scope.project")?.ok_or_else(|| {
                    Error::invalid("Invalid input for field 'scope.project': a name needs a domain")
                })?;
                let domain_id = self.domain_ref(domain, "scope.project.domain").await?;
                projects::project_get_by_name(&self.db, &domain_id, name)
                    .await?
                    .ok_or_else(Error::unauthorized)?
                    .id
            };
            payload.scope = ScopeKind::Project;
            payload.scope_id = Some(id);
        } else if let Some(d) = obj_field(scope, "domain", "scope")? {
            let id = self.domain_ref(d, "scope.domain").await?;
            payload.scope = ScopeKind::Domain;
            payload.scope_id = Some(id);
        } else if let Some(s) = obj_field(scope, "system", "scope")? {
            if s.get("all") != Some(&Value::Bool(true)) {
                return Err(Error::invalid(
                    "Invalid input for field 'scope.system': only {\"all\": true} is supported",
                ));
            }
            payload.scope = ScopeKind::System;
            payload.scope_id = None;
        } else if scope.get("OS-TRUST:trust").is_some() {
            return Err(Error::NotImplemented("Trusts are not supported.".into()));
        } else {
            return Err(Error::invalid(
                "Invalid input for field 'auth.scope': expected project, domain or system",
            ));
        }
        Ok(())
    }

    /// Resolves `{"id": ...}` or `{"name": ...}` to a domain id (401 when unknown).
    async fn domain_ref(&self, d: &Value, path: &str) -> Result<String> {
        if let Some(id) = str_field(d, "id", path)? {
            return Ok(id.to_string());
        }
        let name = str_field(d, "name", path)?.ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for field '{path}': an id or a name is required"
            ))
        })?;
        Ok(domains::domain_get_by_name(&self.db, name)
            .await?
            .ok_or_else(Error::unauthorized)?
            .id)
    }

    async fn find_user(&self, u: &Value, path: &str) -> Result<Option<users::UserRow>> {
        if let Some(id) = str_field(u, "id", path)? {
            return Ok(users::user_get(&self.db, id).await?);
        }
        let name = str_field(u, "name", path)?.ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for field '{path}': an id or a name is required"
            ))
        })?;
        let domain = obj_field(u, "domain", path)?.ok_or_else(|| {
            Error::invalid(format!(
                "Invalid input for field '{path}': a user name needs a domain"
            ))
        })?;
        let domain_id = match str_field(domain, "id", path)? {
            Some(id) => id.to_string(),
            None => match str_field(domain, "name", path)? {
                Some(n) => match domains::domain_get_by_name(&self.db, n).await? {
                    Some(d) => d.id,
                    None => return Ok(None),
                },
                None => {
                    return Err(Error::invalid(format!(
                        "Invalid input for field '{path}.domain': an id or a name is required"
                    )))
                }
            },
        };
        Ok(users::user_get_by_name(&self.db, &domain_id, name).await?)
    }

    async fn user_usable(&self, user: &users::UserRow) -> Result<()> {
        if !store::flag(user.enabled) {
            return Err(Error::unauthorized());
        }
        match domains::domain_get(&self.db, &user.domain_id).await? {
            Some(d) if store::flag(d.enabled) => Ok(()),
            _ => Err(Error::unauthorized()),
        }
    }

    async fn auth_password(&self, data: &Value) -> Result<Authenticated> {
        let u = obj_field(data, "user", "identity.password")?
            .ok_or_else(|| Error::invalid("'user' is a required property of 'password'"))?;
        let secret = str_field(u, "password", "identity.password.user")?
            .ok_or_else(|| Error::invalid("'password' is a required property of 'user'"))?;
        let Some(user) = self.find_user(u, "identity.password.user").await? else {
            // Spend the same time as a real check.
            let dummy = self.dummy_hash().await.to_string();
            let _ = password::verify(secret, &dummy).await;
            return Err(Error::unauthorized());
        };
        let sc = &self.cfg.security_compliance;
        let now = store::now_micros();
        if let (Some(max), Some(at)) = (sc.lockout_failure_attempts, user.failed_auth_at) {
            if user.failed_auth_count >= i64::from(max)
                && at + (sc.lockout_duration as i64) * 1_000_000 > now
            {
                return Err(Error::Unauthorized(format!(
                    "The account is locked for user: {}.",
                    user.id
                )));
            }
        }
        let current = users::password_current(&self.db, &user.id).await?;
        let ok = match &current {
            Some(p) => password::verify(secret, &p.hash).await,
            None => {
                let dummy = self.dummy_hash().await.to_string();
                let _ = password::verify(secret, &dummy).await;
                false
            }
        };
        if !ok {
            if sc.lockout_failure_attempts.is_some() {
                users::user_auth_result(&self.db, &user.id, false).await?;
            }
            return Err(Error::unauthorized());
        }
        if user.failed_auth_count > 0 {
            users::user_auth_result(&self.db, &user.id, true).await?;
        }
        self.user_usable(&user).await?;
        let expires = current.as_ref().and_then(|p| p.expires_at);
        if let Some(exp) = expires {
            if exp <= now && !crate::render::ignore_password_expiry(&user) {
                return Err(Error::Unauthorized(format!(
                    "The password is expired and needs to be changed for user: {}.",
                    user.id
                )));
            }
        }
        if sc.change_password_upon_first_use
            && current
                .as_ref()
                .is_some_and(|p| !store::flag(p.self_service))
            && !crate::render::ignore_change_password(&user)
        {
            return Err(Error::Unauthorized(format!(
                "You are required to change your password upon first use, for user: {}.",
                user.id
            )));
        }
        Ok(Authenticated {
            user,
            methods: vec!["password".into()],
            parent: None,
            app_cred: None,
        })
    }

    async fn auth_token(&self, snap: &Snapshot, data: &Value) -> Result<Authenticated> {
        let id = str_field(data, "id", "identity.token")?
            .ok_or_else(|| Error::invalid("'id' is a required property of 'token'"))?;
        let payload = snap.keys.decrypt(id).ok_or_else(Error::unauthorized)?;
        if payload.expires_at <= store::now_micros() || self.is_revoked(snap, &payload) {
            return Err(Error::unauthorized());
        }
        if payload.application_credential_id.is_some() {
            return Err(Error::Forbidden(
                "A token created from an application credential cannot be rescoped.".into(),
            ));
        }
        let user = users::user_get(&self.db, &payload.user_id)
            .await?
            .ok_or_else(Error::unauthorized)?;
        self.user_usable(&user).await?;
        Ok(Authenticated {
            user,
            methods: payload.method_names(),
            parent: Some((payload.audit_ids.clone(), payload.expires_at)),
            app_cred: None,
        })
    }

    async fn auth_app_cred(&self, data: &Value) -> Result<Authenticated> {
        let secret =
            str_field(data, "secret", "identity.application_credential")?.ok_or_else(|| {
                Error::invalid("'secret' is a required property of 'application_credential'")
            })?;
        let ac = if let Some(id) = str_field(data, "id", "identity.application_credential")? {
            app_creds::app_cred_get(&self.db, id).await?
        } else {
            let name = str_field(data, "name", "identity.application_credential")?.ok_or_else(|| {
                Error::invalid("Invalid input for field 'application_credential': an id or a name is required")
            })?;
            let u =
                obj_field(data, "user", "identity.application_credential")?.ok_or_else(|| {
                    Error::invalid(
                        "Invalid input for field 'application_credential': a name needs a user",
                    )
                })?;
            match self
                .find_user(u, "identity.application_credential.user")
                .await?
            {
                Some(user) => app_creds::app_cred_get_by_name(&self.db, &user.id, name).await?,
                None => None,
            }
        };
        let Some(ac) = ac else {
            let dummy = self.dummy_hash().await.to_string();
            let _ = password::verify(secret, &dummy).await;
            return Err(Error::unauthorized());
        };
        if !password::verify(secret, &ac.secret_hash).await {
            return Err(Error::unauthorized());
        }
        if ac.expires_at.is_some_and(|e| e <= store::now_micros()) {
            return Err(Error::unauthorized());
        }
        let user = users::user_get(&self.db, &ac.user_id)
            .await?
            .ok_or_else(Error::unauthorized)?;
        self.user_usable(&user).await?;
        Ok(Authenticated {
            user,
            methods: vec!["application_credential".into()],
            parent: None,
            app_cred: Some(ac),
        })
    }

    /// Validates a token and returns its context (cached per snapshot revision).
    pub async fn validate_token(
        &self,
        token: &str,
        allow_expired: bool,
    ) -> Result<Arc<AuthContext>> {
        let snap = self.snapshot().await?;
        self.validate_in(&snap, token, allow_expired).await
    }

    /// Validates against a snapshot the caller already holds (one revision
    /// read per HTTP request, however many tokens it carries).
    pub async fn validate_in(
        &self,
        snap: &Snapshot,
        token: &str,
        allow_expired: bool,
    ) -> Result<Arc<AuthContext>> {
        let payload = snap.keys.decrypt(token).ok_or_else(Error::unauthorized)?;
        let now = store::now_micros();
        if payload.expires_at <= now {
            let window = (self.cfg.allow_expired_window as i64) * 1_000_000;
            if !allow_expired || payload.expires_at + window <= now {
                return Err(Error::unauthorized());
            }
        }
        if self.is_revoked(snap, &payload) {
            return Err(Error::unauthorized());
        }
        if let Some(ctx) = self.cached_token(token, snap.revision) {
            return Ok(ctx);
        }
        let mut ctx = self.resolve(snap, &payload).await.map_err(|e| match e {
            Error::Internal(_) => e,
            _ => Error::unauthorized(),
        })?;
        ctx.methods = payload.method_names();
        let ctx = Arc::new(ctx);
        if payload.expires_at > now {
            self.cache_token(token, snap.revision, ctx.clone());
        }
        Ok(ctx)
    }

    fn is_revoked(&self, snap: &Snapshot, p: &Payload) -> bool {
        let (project, domain) = match p.scope {
            ScopeKind::Project => (p.scope_id.as_deref(), None),
            ScopeKind::Domain => (None, p.scope_id.as_deref()),
            _ => (None, None),
        };
        snap.revocations.iter().any(|e| {
            p.issued_at <= e.issued_before
                && e.user_id.as_deref().is_none_or(|u| u == p.user_id)
                && e.project_id.as_deref().is_none_or(|x| Some(x) == project)
                && e.domain_id.as_deref().is_none_or(|x| Some(x) == domain)
                && e.audit_id
                    .as_deref()
                    .is_none_or(|a| p.audit_ids.first().map(String::as_str) == Some(a))
                && e.audit_chain_id
                    .as_deref()
                    .is_none_or(|a| p.audit_ids.last().map(String::as_str) == Some(a))
        })
    }

    /// Revokes one token (DELETE /v3/auth/tokens).
    pub async fn revoke_token(&self, ctx: &AuthContext) -> Result<()> {
        let event = RevocationRow {
            audit_id: ctx.audit_ids.first().cloned(),
            issued_before: store::now_micros(),
            ..Default::default()
        };
        self.record_revocation(&event).await
    }

    /// Revokes every token of a user issued until now (password change).
    pub async fn revoke_user_tokens(&self, tx: &mut store::Tx<'_>, user_id: &str) -> Result<()> {
        let event = RevocationRow {
            user_id: Some(user_id.to_string()),
            issued_before: store::now_micros(),
            ..Default::default()
        };
        revocation_add(tx, &event, self.revocation_expiry()).await?;
        Ok(())
    }

    fn revocation_expiry(&self) -> i64 {
        store::now_micros()
            + ((self.cfg.token_expiration + self.cfg.allow_expired_window) as i64) * 1_000_000
    }

    async fn record_revocation(&self, event: &RevocationRow) -> Result<()> {
        let mut tx = self.db.write().await?;
        crate::db::revocations::revocation_prune(&mut tx, store::now_micros()).await?;
        revocation_add(&mut tx, event, self.revocation_expiry()).await?;
        store::bump_revision(&mut tx, "identity").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Builds the context a payload stands for, checking that its user,
    /// scope and roles still hold.
    async fn resolve(&self, snap: &Snapshot, p: &Payload) -> Result<AuthContext> {
        let user = users::user_get(&self.db, &p.user_id)
            .await?
            .ok_or_else(Error::unauthorized)?;
        if !store::flag(user.enabled) {
            return Err(Error::unauthorized());
        }
        let user_domain = domains::domain_get(&self.db, &user.domain_id)
            .await?
            .filter(|d| store::flag(d.enabled))
            .ok_or_else(Error::unauthorized)?;
        let group_ids: Vec<String> = groups::groups_of_user(&self.db, &user.id)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect();
        let mut actors = vec![user.id.clone()];
        actors.extend(group_ids);

        let (scope, role_ids) = match p.scope {
            ScopeKind::Unscoped => (Scope::Unscoped, Vec::new()),
            ScopeKind::Project => {
                let pid = p.scope_id.clone().unwrap_or_default();
                let project = projects::project_get(&self.db, &pid)
                    .await?
                    .ok_or_else(Error::unauthorized)?;
                let domain = domains::domain_get(&self.db, &project.domain_id)
                    .await?
                    .ok_or_else(Error::unauthorized)?;
                if !store::flag(project.enabled) || !store::flag(domain.enabled) {
                    return Err(Error::unauthorized());
                }
                let ancestors = projects::project_ancestors(&self.db, &project).await?;
                let roles = project_role_ids(&self.db, &actors, &project, &ancestors).await?;
                if roles.is_empty() {
                    return Err(Error::Unauthorized(format!(
                        "User {} has no access to project {}",
                        user.id, project.id
                    )));
                }
                (
                    Scope::Project {
                        id: project.id,
                        name: project.name,
                        domain_id: domain.id,
                        domain_name: domain.name,
                    },
                    roles,
                )
            }
            ScopeKind::Domain => {
                let did = p.scope_id.clone().unwrap_or_default();
                let domain = domains::domain_get(&self.db, &did)
                    .await?
                    .filter(|d| store::flag(d.enabled))
                    .ok_or_else(Error::unauthorized)?;
                let rows = assignments::assignments_for(
                    &self.db,
                    &actors,
                    std::slice::from_ref(&domain.id),
                )
                .await?;
                let roles = direct_roles(&rows, &[Kind::UserDomain, Kind::GroupDomain]);
                if roles.is_empty() {
                    return Err(Error::Unauthorized(format!(
                        "User {} has no access to domain {}",
                        user.id, domain.id
                    )));
                }
                (
                    Scope::Domain {
                        id: domain.id,
                        name: domain.name,
                    },
                    roles,
                )
            }
            ScopeKind::System => {
                let rows = assignments::assignments_for(
                    &self.db,
                    &actors,
                    &[assignments::SYSTEM.to_string()],
                )
                .await?;
                let roles = direct_roles(&rows, &[Kind::UserSystem, Kind::GroupSystem]);
                if roles.is_empty() {
                    return Err(Error::Unauthorized(format!(
                        "User {} has no access to the system",
                        user.id
                    )));
                }
                (Scope::System, roles)
            }
        };
        let mut roles = expand_implied(snap, &role_ids);

        if let Some(ac_id) = &p.application_credential_id {
            let ac = app_creds::app_cred_get(&self.db, ac_id)
                .await?
                .ok_or_else(Error::unauthorized)?;
            if ac.expires_at.is_some_and(|e| e <= store::now_micros()) {
                return Err(Error::unauthorized());
            }
            let granted = app_creds::app_cred_role_ids(&self.db, ac_id).await?;
            // Every role the credential was given must still be held.
            if granted.iter().any(|r| !roles.contains(r)) {
                return Err(Error::unauthorized());
            }
            let granted_set: HashSet<String> = granted.into_iter().collect();
            let granted_expanded =
                expand_implied(snap, &granted_set.into_iter().collect::<Vec<_>>());
            roles.retain(|r| granted_expanded.contains(r));
        }

        let mut role_refs: Vec<RoleRef> = roles
            .iter()
            .filter_map(|id| snap.roles.get(id))
            .map(|r| RoleRef {
                id: r.id.clone(),
                name: r.name.clone(),
            })
            .collect();
        role_refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(AuthContext {
            user_id: user.id,
            user_name: user.name,
            user_domain_id: user_domain.id,
            user_domain_name: user_domain.name,
            scope,
            roles: role_refs,
            methods: p.method_names(),
            audit_ids: p.audit_ids.clone(),
            issued_at: p.issued_at,
            expires_at: p.expires_at,
            application_credential_id: p.application_credential_id.clone(),
            is_admin_project: true,
        })
    }

    /// Role ids `actors` hold on `project` (direct, and inherited from its
    /// domain and ancestors), implied roles not yet expanded.
    pub async fn project_roles_of(
        &self,
        user_id: &str,
        project: &projects::ProjectRow,
    ) -> Result<Vec<String>> {
        let mut actors = vec![user_id.to_string()];
        actors.extend(
            groups::groups_of_user(&self.db, user_id)
                .await?
                .into_iter()
                .map(|g| g.id),
        );
        let ancestors = projects::project_ancestors(&self.db, project).await?;
        project_role_ids(&self.db, &actors, project, &ancestors).await
    }
}

async fn project_role_ids(
    db: &store::Db,
    actors: &[String],
    project: &projects::ProjectRow,
    ancestors: &[projects::ProjectRow],
) -> Result<Vec<String>> {
    let mut targets = vec![project.id.clone(), project.domain_id.clone()];
    targets.extend(ancestors.iter().map(|a| a.id.clone()));
    let rows = assignments::assignments_for(db, actors, &targets).await?;
    Ok(effective_on_project(&rows, project))
}

/// Which assignment rows grant roles on `project`.
pub fn effective_on_project(rows: &[AssignmentRow], project: &projects::ProjectRow) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in rows {
        let kind = Kind::parse(&r.kind);
        let on_project = matches!(kind, Some(Kind::UserProject | Kind::GroupProject));
        let on_domain = matches!(kind, Some(Kind::UserDomain | Kind::GroupDomain));
        let inherited = store::flag(r.inherited);
        let applies = if r.target_id == project.id {
            on_project && !inherited
        } else if r.target_id == project.domain_id {
            on_domain && inherited
        } else {
            // An ancestor project.
            on_project && inherited
        };
        if applies {
            out.insert(r.role_id.clone());
        }
    }
    out.into_iter().collect()
}

fn direct_roles(rows: &[AssignmentRow], kinds: &[Kind]) -> Vec<String> {
    let set: BTreeSet<String> = rows
        .iter()
        .filter(|r| !store::flag(r.inherited))
        .filter(|r| Kind::parse(&r.kind).is_some_and(|k| kinds.contains(&k)))
        .map(|r| r.role_id.clone())
        .collect();
    set.into_iter().collect()
}

/// Adds every role implied (transitively) by `roles`.
pub fn expand_implied(snap: &Snapshot, roles: &[String]) -> Vec<String> {
    let mut seen: BTreeSet<String> = roles.iter().cloned().collect();
    let mut stack: Vec<String> = roles.to_vec();
    while let Some(r) = stack.pop() {
        if let Some(imps) = snap.implied.get(&r) {
            for i in imps {
                if seen.insert(i.clone()) {
                    stack.push(i.clone());
                }
            }
        }
    }
    seen.into_iter().collect()
}
