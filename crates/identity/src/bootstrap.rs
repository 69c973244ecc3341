//! Idempotent creation of what a new cloud needs: the `Default` domain, an
//! admin project and user, the `admin`/`member`/`reader` roles (admin implies
//! member, member implies reader), admin role assignments on the project and
//! the system, a region, and the service catalog.

use crate::db::assignments::{self, Kind};
use crate::db::{catalog, domains, projects, roles, users};
use crate::error::{Error, Result};
use crate::{password, Identity, DEFAULT_DOMAIN_ID};

/// A service to list in the catalog.
#[derive(Clone, Debug)]
pub struct CatalogEntry {
    pub kind: String,
    pub name: String,
    /// The endpoint URL for every interface (public, internal, admin).
    pub url: String,
}

#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub admin_user: String,
    pub admin_password: String,
    /// Set the admin password even when the admin user exists (used by `up`
    /// when its clouds.yaml was lost).
    pub reset_admin_password: bool,
    pub admin_project: String,
    pub region: String,
    pub services: Vec<CatalogEntry>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// True when the admin user was created now (so the password is new).
    pub created_admin: bool,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Identity {
    pub async fn bootstrap(&self, b: &Bootstrap) -> Result<Outcome> {
        let mut out = Outcome::default();
        crate::fernet::setup(&self.db).await?;
        let db = &self.db;
        // Hash before taking the writer lock: bcrypt is slow.
        let existing_admin = users::user_get_by_name(db, DEFAULT_DOMAIN_ID, &b.admin_user).await?;
        let hash = if existing_admin.is_none() || b.reset_admin_password {
            Some(password::hash(&b.admin_password, self.cfg.password_hash_rounds).await?)
        } else {
            None
        };
        let mut tx = db.write().await?;
        if domains::domain_get(db, DEFAULT_DOMAIN_ID).await?.is_none() {
            domains::domain_create(
                &mut tx,
                &domains::DomainRow {
                    id: DEFAULT_DOMAIN_ID.into(),
                    name: "Default".into(),
                    description: "The default domain".into(),
                    enabled: 1,
                    extra: "{}".into(),
                },
            )
            .await?;
        }
        // Roles.
        let mut role_ids = Vec::new();
        for name in ["admin", "member", "reader"] {
            let id = match roles::role_get_by_name(db, name, "").await? {
                Some(r) => r.id,
                None => {
                    let id = new_id();
                    roles::role_create(
                        &mut tx,
                        &roles::RoleRow {
                            id: id.clone(),
                            name: name.into(),
                            domain_id: String::new(),
                            description: None,
                            options: "{}".into(),
                            extra: "{}".into(),
                        },
                    )
                    .await?;
                    id
                }
            };
            role_ids.push(id);
        }
        roles::implied_add(&mut tx, &role_ids[0], &role_ids[1]).await?;
        roles::implied_add(&mut tx, &role_ids[1], &role_ids[2]).await?;
        // Admin project and user.
        let project_id =
            match projects::project_get_by_name(db, DEFAULT_DOMAIN_ID, &b.admin_project).await? {
                Some(p) => p.id,
                None => {
                    let id = new_id();
                    projects::project_create(
                        &mut tx,
                        &projects::ProjectRow {
                            id: id.clone(),
                            name: b.admin_project.clone(),
                            domain_id: DEFAULT_DOMAIN_ID.into(),
                            parent_id: None,
                            description: "Bootstrap project for initializing the cloud.".into(),
                            enabled: 1,
                            extra: "{}".into(),
                        },
                    )
                    .await?;
                    id
                }
            };
        let user_id = match (existing_admin, hash) {
            (Some(u), Some(hash)) => {
                users::password_set(&mut tx, &u.id, &hash, None, true).await?;
                self.revoke_user_tokens(&mut tx, &u.id).await?;
                u.id
            }
            (Some(u), None) => u.id,
            (None, Some(hash)) => {
                let id = new_id();
                users::user_create(
                    &mut tx,
                    &users::UserRow {
                        id: id.clone(),
                        name: b.admin_user.clone(),
                        domain_id: DEFAULT_DOMAIN_ID.into(),
                        enabled: 1,
                        default_project_id: Some(project_id.clone()),
                        description: None,
                        extra: "{}".into(),
                        options: "{}".into(),
                        failed_auth_count: 0,
                        failed_auth_at: None,
                    },
                )
                .await?;
                users::password_set(&mut tx, &id, &hash, None, true).await?;
                out.created_admin = true;
                id
            }
            (None, None) => return Err(Error::Internal("bootstrap: no password hash".into())),
        };
        assignments::grant_add(
            &mut tx,
            Kind::UserProject,
            &user_id,
            &project_id,
            &role_ids[0],
            false,
        )
        .await?;
        assignments::grant_add(
            &mut tx,
            Kind::UserSystem,
            &user_id,
            assignments::SYSTEM,
            &role_ids[0],
            false,
        )
        .await?;
        // Region and catalog: entries are matched by service type and
        // interface; URLs are brought up to date.
        if catalog::region_get(db, &b.region).await?.is_none() {
            catalog::region_create(
                &mut tx,
                &catalog::RegionRow {
                    id: b.region.clone(),
                    description: String::new(),
                    parent_region_id: None,
                    extra: "{}".into(),
                },
            )
            .await?;
        }
        let services = catalog::service_list(db).await?;
        let endpoints = catalog::endpoint_list(db).await?;
        for entry in &b.services {
            let service_id = match services.iter().find(|s| s.kind == entry.kind) {
                Some(s) => s.id.clone(),
                None => {
                    let id = new_id();
                    catalog::service_create(
                        &mut tx,
                        &catalog::ServiceRow {
                            id: id.clone(),
                            kind: entry.kind.clone(),
                            name: Some(entry.name.clone()),
                            description: None,
                            enabled: 1,
                            extra: "{}".into(),
                        },
                    )
                    .await?;
                    id
                }
            };
            for interface in ["public", "internal", "admin"] {
                let existing = endpoints
                    .iter()
                    .find(|e| e.service_id == service_id && e.interface == interface);
                match existing {
                    Some(e) if e.url == entry.url && e.region_id.as_deref() == Some(&b.region) => {}
                    Some(e) => {
                        let mut e = e.clone();
                        e.url = entry.url.clone();
                        e.region_id = Some(b.region.clone());
                        catalog::endpoint_update(&mut tx, &e).await?;
                    }
                    None => {
                        catalog::endpoint_create(
                            &mut tx,
                            &catalog::EndpointRow {
                                id: new_id(),
                                service_id: service_id.clone(),
                                interface: interface.into(),
                                url: entry.url.clone(),
                                region_id: Some(b.region.clone()),
                                enabled: 1,
                                extra: "{}".into(),
                            },
                        )
                        .await?;
                    }
                }
            }
        }
        store::bump_revision(&mut tx, "identity").await?;
        tx.commit().await?;
        Ok(out)
    }
}
