//! The authenticated caller, as every service sees it.

use std::sync::Arc;

use crate::policy::Creds;

/// A role as it appears in a token: id and name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

/// Where the token is scoped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Unscoped,
    Project {
        id: String,
        name: String,
        domain_id: String,
        domain_name: String,
    },
    Domain {
        id: String,
        name: String,
    },
    System,
}

/// A validated token: who is calling, in what scope, with which roles.
#[derive(Clone, Debug)]
pub struct AuthContext {
    pub user_id: String,
    pub user_name: String,
    pub user_domain_id: String,
    pub user_domain_name: String,
    pub scope: Scope,
    /// Effective roles on the scope (implied roles included).
    pub roles: Vec<RoleRef>,
    pub methods: Vec<String>,
    pub audit_ids: Vec<String>,
    /// Microseconds since the Unix epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    pub application_credential_id: Option<String>,
    pub is_admin_project: bool,
}

impl AuthContext {
    pub fn project_id(&self) -> Option<&str> {
        match &self.scope {
            Scope::Project { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn domain_id(&self) -> Option<&str> {
        match &self.scope {
            Scope::Domain { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn is_system(&self) -> bool {
        matches!(self.scope, Scope::System)
    }

    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// The credentials policy rules are checked against.
    pub fn creds(&self) -> Creds {
        let (project_id, project_domain_id) = match &self.scope {
            Scope::Project { id, domain_id, .. } => (Some(id.clone()), Some(domain_id.clone())),
            _ => (None, None),
        };
        Creds {
            user_id: self.user_id.clone(),
            user_domain_id: self.user_domain_id.clone(),
            project_id,
            project_domain_id,
            domain_id: self.domain_id().map(str::to_string),
            system_scope: self.is_system().then(|| "all".to_string()),
            roles: self.roles.iter().map(|r| r.name.to_lowercase()).collect(),
            is_admin_project: self.is_admin_project,
        }
    }
}

/// Why a token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("The request you have made requires authentication.")]
    Missing,
    #[error("The token is invalid or has expired.")]
    Invalid,
    #[error("{0}")]
    Backend(String),
}

/// Validates tokens in process. The identity service implements it; every
/// other service receives it at start-up (no HTTP round trip).
#[async_trait::async_trait]
pub trait TokenValidator: Send + Sync {
    async fn validate(&self, token: &str) -> Result<Arc<AuthContext>, TokenError>;
}
