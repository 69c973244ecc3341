//! Upstream placement's default policy rules, in both of its modes.
//!
//! Every `placement:*` rule is scoped to projects (`scope_types =
//! ['project']`): a system-scoped caller is refused whatever the rule says,
//! as oslo.policy does when scope types are enforced. With
//! `enforce_new_defaults = false` each base rule also accepts its deprecated
//! form, `role:admin`.

use api_common::policy::Policy;

/// Base rules: (name, new default). All of them but `admin_api` and
/// `project_reader_api`'s own scope carry the deprecated `role:admin`.
const BASE: &[(&str, &str, bool)] = &[
    ("admin_api", "role:admin", false),
    ("service_api", "role:service", true),
    ("admin_or_service_api", "role:admin or role:service", true),
    (
        "project_reader_api",
        "role:reader and project_id:%(project_id)s",
        true,
    ),
    (
        "admin_or_project_reader_or_service_api",
        "role:admin or rule:project_reader_api or role:service",
        true,
    ),
];

/// Every API rule and the base rule it defaults to.
pub const RULES: &[(&str, &str)] = &[
    (
        "placement:resource_providers:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:create",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:show",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:delete",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:create",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:show",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:delete",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:create",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:show",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:delete",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:aggregates:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:aggregates:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:usages",
        "rule:admin_or_service_api",
    ),
    (
        "placement:usages",
        "rule:admin_or_project_reader_or_service_api",
    ),
    ("placement:traits:list", "rule:admin_or_service_api"),
    ("placement:traits:show", "rule:admin_or_service_api"),
    ("placement:traits:update", "rule:admin_or_service_api"),
    ("placement:traits:delete", "rule:admin_or_service_api"),
    (
        "placement:resource_providers:traits:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:traits:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:traits:delete",
        "rule:admin_or_service_api",
    ),
    ("placement:allocations:manage", "rule:admin_or_service_api"),
    ("placement:allocations:list", "rule:admin_or_service_api"),
    ("placement:allocations:update", "rule:admin_or_service_api"),
    ("placement:allocations:delete", "rule:admin_or_service_api"),
    (
        "placement:resource_providers:allocations:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:allocation_candidates:list",
        "rule:admin_or_service_api",
    ),
    ("placement:reshaper:reshape", "rule:service_api"),
];

/// The default rule set for the given mode.
pub fn defaults(enforce_new_defaults: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, check, deprecated) in BASE {
        let rule = if *deprecated && !enforce_new_defaults {
            format!("({check}) or (role:admin)")
        } else {
            check.to_string()
        };
        out.push((name.to_string(), rule));
    }
    for (name, check) in RULES {
        out.push((name.to_string(), check.to_string()));
    }
    out
}

/// Builds the policy, applying an operator's override file when given.
pub fn build(
    enforce_new_defaults: bool,
    file: Option<&std::path::Path>,
) -> Result<Policy, api_common::policy::PolicyError> {
    let rules = defaults(enforce_new_defaults);
    let refs: Vec<(&str, &str)> = rules
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut policy = Policy::from_defaults(&refs)?;
    if let Some(path) = file {
        if path.exists() {
            policy.apply_file(path)?;
        }
    }
    Ok(policy)
}
