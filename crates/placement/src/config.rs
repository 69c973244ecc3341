//! The `[placement]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Keystone tokens (`X-Auth-Token`), validated by the identity service.
    #[default]
    Keystone,
    /// Upstream's `noauth2` for test runs: the token is `user[:project]`,
    /// roles come from `X-Roles` (token `admin` has the admin role).
    Noauth,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementConfig {
    pub auth: AuthMode,
    /// oslo.policy's `enforce_new_defaults`: false also accepts each rule's
    /// deprecated form (`role:admin`).
    pub enforce_new_defaults: bool,
    /// Policy overrides (YAML or JSON: rule name -> check string).
    pub policy_file: Option<PathBuf>,
    /// Where the API is mounted; empty serves it at the root of the server
    /// (as a stand-alone placement service, e.g. for conformance runs).
    pub path_prefix: String,
    /// Upstream's option of the same name: return allocation candidates in
    /// random order (so that concurrent schedulers spread their claims).
    pub randomize_allocation_candidates: bool,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            auth: AuthMode::Keystone,
            enforce_new_defaults: true,
            policy_file: None,
            path_prefix: "/placement".into(),
            randomize_allocation_candidates: false,
        }
    }
}
