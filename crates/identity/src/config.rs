//! Identity configuration (the `[identity]` section of the config file).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Token lifetime in seconds.
    pub token_expiration: u64,
    /// How long after expiry a service may still validate a token with
    /// `allow_expired=1`, in seconds.
    pub allow_expired_window: u64,
    /// bcrypt cost (Keystone's default is 12).
    pub password_hash_rounds: u32,
    /// Fernet keys kept by `rotate-keys` (staged + primary + secondaries).
    pub max_active_keys: usize,
    /// An oslo.policy-style YAML file overriding default rules.
    pub policy_file: Option<PathBuf>,
    /// Truncate list responses to this many entries (`"truncated": true`).
    pub list_limit: Option<usize>,
    /// Role names that may not be implied by another role.
    pub prohibited_implied_roles: Vec<String>,
    pub security_compliance: SecurityCompliance,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            token_expiration: 3600,
            allow_expired_window: 172_800,
            password_hash_rounds: 12,
            max_active_keys: 3,
            policy_file: None,
            list_limit: None,
            prohibited_implied_roles: vec!["admin".into()],
            security_compliance: SecurityCompliance::default(),
        }
    }
}

/// Keystone's `[security_compliance]` options.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityCompliance {
    /// Lock a user out after this many consecutive failed password checks.
    pub lockout_failure_attempts: Option<u32>,
    /// Seconds a lockout lasts.
    pub lockout_duration: u64,
    /// Passwords expire this many days after they are set.
    pub password_expires_days: Option<u32>,
    /// A new password may not equal any of the last N.
    pub unique_last_password_count: u32,
    /// Days before a user may change their password again.
    pub minimum_password_age: u32,
    pub password_regex: Option<String>,
    pub password_regex_description: Option<String>,
    /// Users created or reset by an admin must change their password first.
    pub change_password_upon_first_use: bool,
}

impl Default for SecurityCompliance {
    fn default() -> Self {
        SecurityCompliance {
            lockout_failure_attempts: None,
            lockout_duration: 1800,
            password_expires_days: None,
            unique_last_password_count: 0,
            minimum_password_age: 0,
            password_regex: None,
            password_regex_description: None,
            change_password_upon_first_use: false,
        }
    }
}
