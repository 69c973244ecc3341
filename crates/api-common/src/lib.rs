//! HTTP plumbing shared by every oxistack service.

pub mod context;
pub mod http;
pub mod policy;

pub use context::{AuthContext, RoleRef, Scope, TokenError, TokenValidator};
pub use policy::{Creds, Policy, PolicyError, Target};
