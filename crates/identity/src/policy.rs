//! Default policy rules of the identity service.
//!
//! They follow upstream Keystone's secure-RBAC defaults: `admin` may do
//! anything, `reader` with system scope may read anything, domain-scoped
//! readers and admins act inside their domain, and users may read and manage
//! what is their own. An operator overrides any rule with a policy file.

pub const DEFAULTS: &[(&str, &str)] = &[
    // Building blocks.
    ("admin_required", "role:admin"),
    ("service_role", "role:service"),
    (
        "service_or_admin",
        "rule:admin_required or rule:service_role",
    ),
    ("system_reader", "role:reader and system_scope:all"),
    (
        "admin_or_system_reader",
        "rule:admin_required or rule:system_reader",
    ),
    ("owner", "user_id:%(target.user.id)s"),
    ("admin_or_owner", "rule:admin_required or rule:owner"),
    ("token_subject", "user_id:%(target.token.user_id)s"),
    (
        "service_admin_or_token_subject",
        "rule:service_or_admin or rule:system_reader or rule:token_subject",
    ),
    // Tokens and the auth API.
    (
        "identity:check_token",
        "rule:service_admin_or_token_subject",
    ),
    (
        "identity:validate_token",
        "rule:service_admin_or_token_subject",
    ),
    (
        "identity:revoke_token",
        "rule:service_or_admin or rule:token_subject",
    ),
    ("identity:get_auth_catalog", ""),
    ("identity:get_auth_projects", ""),
    ("identity:get_auth_domains", ""),
    ("identity:get_auth_system", ""),
    // Domains.
    (
        "identity:get_domain",
        "rule:admin_or_system_reader or project_domain_id:%(target.domain.id)s \
         or domain_id:%(target.domain.id)s",
    ),
    ("identity:list_domains", "rule:admin_or_system_reader"),
    ("identity:create_domain", "rule:admin_required"),
    ("identity:update_domain", "rule:admin_required"),
    ("identity:delete_domain", "rule:admin_required"),
    // Projects.
    (
        "identity:get_project",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.project.domain_id)s) \
         or project_id:%(target.project.id)s",
    ),
    (
        "identity:list_projects",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:list_user_projects",
        "rule:admin_or_system_reader or rule:owner \
         or (role:reader and domain_id:%(target.user.domain_id)s)",
    ),
    (
        "identity:create_project",
        "rule:admin_required or (role:admin and domain_id:%(target.project.domain_id)s)",
    ),
    (
        "identity:update_project",
        "rule:admin_required or (role:admin and domain_id:%(target.project.domain_id)s)",
    ),
    (
        "identity:delete_project",
        "rule:admin_required or (role:admin and domain_id:%(target.project.domain_id)s)",
    ),
    (
        "identity:list_project_tags",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.project.domain_id)s) \
         or project_id:%(target.project.id)s",
    ),
    (
        "identity:get_project_tag",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.project.domain_id)s) \
         or project_id:%(target.project.id)s",
    ),
    (
        "identity:update_project_tags",
        "rule:admin_required or (role:admin and domain_id:%(target.project.domain_id)s) \
         or (role:member and project_id:%(target.project.id)s)",
    ),
    (
        "identity:create_project_tag",
        "rule:identity:update_project_tags",
    ),
    (
        "identity:delete_project_tags",
        "rule:identity:update_project_tags",
    ),
    (
        "identity:delete_project_tag",
        "rule:identity:update_project_tags",
    ),
    // Users.
    (
        "identity:get_user",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.user.domain_id)s) \
         or rule:owner",
    ),
    (
        "identity:list_users",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:create_user",
        "rule:admin_required or (role:admin and domain_id:%(target.user.domain_id)s)",
    ),
    (
        "identity:update_user",
        "rule:admin_required or (role:admin and domain_id:%(target.user.domain_id)s)",
    ),
    (
        "identity:delete_user",
        "rule:admin_required or (role:admin and domain_id:%(target.user.domain_id)s)",
    ),
    // Groups.
    (
        "identity:get_group",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.group.domain_id)s)",
    ),
    (
        "identity:list_groups",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:list_groups_for_user",
        "rule:admin_or_system_reader or rule:owner \
         or (role:reader and domain_id:%(target.user.domain_id)s)",
    ),
    (
        "identity:create_group",
        "rule:admin_required or (role:admin and domain_id:%(target.group.domain_id)s)",
    ),
    (
        "identity:update_group",
        "rule:admin_required or (role:admin and domain_id:%(target.group.domain_id)s)",
    ),
    (
        "identity:delete_group",
        "rule:admin_required or (role:admin and domain_id:%(target.group.domain_id)s)",
    ),
    (
        "identity:list_users_in_group",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.group.domain_id)s)",
    ),
    (
        "identity:check_user_in_group",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.group.domain_id)s)",
    ),
    (
        "identity:add_user_to_group",
        "rule:admin_required or (role:admin and domain_id:%(target.group.domain_id)s)",
    ),
    (
        "identity:remove_user_from_group",
        "rule:admin_required or (role:admin and domain_id:%(target.group.domain_id)s)",
    ),
    // Roles and implied roles.
    (
        "identity:get_role",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:list_roles",
        "rule:admin_or_system_reader or role:reader",
    ),
    ("identity:create_role", "rule:admin_required"),
    ("identity:update_role", "rule:admin_required"),
    ("identity:delete_role", "rule:admin_required"),
    ("identity:list_implied_roles", "rule:admin_or_system_reader"),
    ("identity:get_implied_role", "rule:admin_or_system_reader"),
    ("identity:check_implied_role", "rule:admin_or_system_reader"),
    (
        "identity:list_role_inference_rules",
        "rule:admin_or_system_reader",
    ),
    ("identity:create_implied_role", "rule:admin_required"),
    ("identity:delete_implied_role", "rule:admin_required"),
    // Grants and assignments.
    (
        "identity:check_grant",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:list_grants",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:create_grant",
        "rule:admin_required or (role:admin and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:revoke_grant",
        "rule:admin_required or (role:admin and domain_id:%(target.domain_id)s)",
    ),
    ("identity:check_system_grant", "rule:admin_or_system_reader"),
    ("identity:list_system_grants", "rule:admin_or_system_reader"),
    ("identity:create_system_grant", "rule:admin_required"),
    ("identity:revoke_system_grant", "rule:admin_required"),
    (
        "identity:list_role_assignments",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.domain_id)s)",
    ),
    (
        "identity:list_role_assignments_for_tree",
        "rule:admin_or_system_reader or (role:reader and domain_id:%(target.project.domain_id)s) \
         or (role:admin and project_id:%(target.project.id)s)",
    ),
    // Catalog.
    ("identity:get_region", ""),
    ("identity:list_regions", ""),
    ("identity:create_region", "rule:admin_required"),
    ("identity:update_region", "rule:admin_required"),
    ("identity:delete_region", "rule:admin_required"),
    ("identity:get_service", "rule:admin_or_system_reader"),
    ("identity:list_services", "rule:admin_or_system_reader"),
    ("identity:create_service", "rule:admin_required"),
    ("identity:update_service", "rule:admin_required"),
    ("identity:delete_service", "rule:admin_required"),
    ("identity:get_endpoint", "rule:admin_or_system_reader"),
    ("identity:list_endpoints", "rule:admin_or_system_reader"),
    ("identity:create_endpoint", "rule:admin_required"),
    ("identity:update_endpoint", "rule:admin_required"),
    ("identity:delete_endpoint", "rule:admin_required"),
    // Application credentials and access rules.
    (
        "identity:get_application_credential",
        "rule:admin_or_system_reader or rule:owner",
    ),
    (
        "identity:list_application_credentials",
        "rule:admin_or_system_reader or rule:owner",
    ),
    ("identity:create_application_credential", "rule:owner"),
    (
        "identity:delete_application_credential",
        "rule:admin_required or rule:owner",
    ),
    (
        "identity:get_access_rule",
        "rule:admin_or_system_reader or rule:owner",
    ),
    (
        "identity:list_access_rules",
        "rule:admin_or_system_reader or rule:owner",
    ),
    (
        "identity:delete_access_rule",
        "rule:admin_required or rule:owner",
    ),
    // EC2-style and other credentials.
    (
        "identity:get_credential",
        "rule:admin_or_system_reader or user_id:%(target.credential.user_id)s",
    ),
    (
        "identity:list_credentials",
        "rule:admin_or_system_reader or user_id:%(target.credential.user_id)s",
    ),
    (
        "identity:create_credential",
        "rule:admin_required or user_id:%(target.credential.user_id)s",
    ),
    (
        "identity:update_credential",
        "rule:admin_required or user_id:%(target.credential.user_id)s",
    ),
    (
        "identity:delete_credential",
        "rule:admin_required or user_id:%(target.credential.user_id)s",
    ),
    // Policy blobs, endpoint filtering, federation objects.
    ("identity:get_policy", "rule:admin_or_system_reader"),
    (
        "identity:get_identity_provider",
        "rule:admin_or_system_reader",
    ),
    ("identity:get_protocol", "rule:admin_or_system_reader"),
    ("identity:get_mapping", "rule:admin_or_system_reader"),
    (
        "identity:get_service_provider",
        "rule:admin_or_system_reader",
    ),
    ("identity:get_endpoint_group", "rule:admin_or_system_reader"),
    ("identity:list_policies", "rule:admin_or_system_reader"),
    (
        "identity:list_identity_providers",
        "rule:admin_or_system_reader",
    ),
    ("identity:list_protocols", "rule:admin_or_system_reader"),
    ("identity:list_mappings", "rule:admin_or_system_reader"),
    (
        "identity:list_service_providers",
        "rule:admin_or_system_reader",
    ),
    (
        "identity:list_endpoint_groups",
        "rule:admin_or_system_reader",
    ),
    ("identity:create_policy", "rule:admin_required"),
    ("identity:create_identity_provider", "rule:admin_required"),
    ("identity:create_protocol", "rule:admin_required"),
    ("identity:create_mapping", "rule:admin_required"),
    ("identity:create_service_provider", "rule:admin_required"),
    ("identity:create_endpoint_group", "rule:admin_required"),
    ("identity:update_policy", "rule:admin_required"),
    ("identity:update_identity_provider", "rule:admin_required"),
    ("identity:update_protocol", "rule:admin_required"),
    ("identity:update_mapping", "rule:admin_required"),
    ("identity:update_service_provider", "rule:admin_required"),
    ("identity:update_endpoint_group", "rule:admin_required"),
    ("identity:delete_policy", "rule:admin_required"),
    ("identity:delete_identity_provider", "rule:admin_required"),
    ("identity:delete_protocol", "rule:admin_required"),
    ("identity:delete_mapping", "rule:admin_required"),
    ("identity:delete_service_provider", "rule:admin_required"),
    ("identity:delete_endpoint_group", "rule:admin_required"),
    ("identity:add_endpoint_to_project", "rule:admin_required"),
    (
        "identity:check_endpoint_in_project",
        "rule:admin_or_system_reader",
    ),
    (
        "identity:remove_endpoint_from_project",
        "rule:admin_required",
    ),
    (
        "identity:list_endpoints_for_project",
        "rule:admin_or_system_reader",
    ),
    (
        "identity:list_projects_for_endpoint",
        "rule:admin_or_system_reader",
    ),
    (
        "identity:list_endpoints_associated_with_endpoint_group",
        "rule:admin_or_system_reader",
    ),
    (
        "identity:list_projects_associated_with_endpoint_group",
        "rule:admin_or_system_reader",
    ),
    (
        "identity:add_endpoint_group_to_project",
        "rule:admin_required",
    ),
    (
        "identity:get_endpoint_group_in_project",
        "rule:admin_or_system_reader",
    ),
    (
        "identity:remove_endpoint_group_from_project",
        "rule:admin_required",
    ),
    (
        "identity:list_endpoint_groups_for_project",
        "rule:admin_or_system_reader",
    ),
    // Limits.
    ("identity:get_registered_limit", ""),
    ("identity:list_registered_limits", ""),
    ("identity:create_registered_limits", "rule:admin_required"),
    ("identity:update_registered_limit", "rule:admin_required"),
    ("identity:delete_registered_limit", "rule:admin_required"),
    (
        "identity:get_limit",
        "rule:admin_or_system_reader or project_id:%(target.limit.project_id)s \
         or domain_id:%(target.limit.domain_id)s",
    ),
    ("identity:list_limits", ""),
    ("identity:create_limits", "rule:admin_required"),
    ("identity:update_limit", "rule:admin_required"),
    ("identity:delete_limit", "rule:admin_required"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use api_common::{Creds, Policy, Target};

    fn creds(roles: &[&str], project: Option<&str>, system: bool) -> Creds {
        Creds {
            user_id: "u".into(),
            user_domain_id: "default".into(),
            project_id: project.map(str::to_string),
            project_domain_id: project.map(|_| "default".to_string()),
            system_scope: system.then(|| "all".to_string()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_parse_and_reference_only_known_rules() {
        let p = Policy::from_defaults(DEFAULTS).unwrap();
        // Every `rule:` reference resolves (a dangling one would silently deny).
        for (name, rule) in DEFAULTS {
            for part in rule.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
                if let Some(r) = part.strip_prefix("rule:") {
                    assert!(
                        DEFAULTS.iter().any(|(n, _)| *n == r),
                        "{name} refers to {r}"
                    );
                }
            }
        }
        let t = Target::new();
        assert!(p.enforce(
            "identity:create_project",
            &creds(&["admin"], Some("p"), false),
            &t
        ));
        assert!(!p.enforce(
            "identity:create_project",
            &creds(&["member"], Some("p"), false),
            &t
        ));
        assert!(p.enforce("identity:list_domains", &creds(&["reader"], None, true), &t));
        assert!(!p.enforce(
            "identity:list_domains",
            &creds(&["reader"], Some("p"), false),
            &t
        ));
        let own = Target::new().with("target.user.id", "u");
        assert!(p.enforce(
            "identity:create_application_credential",
            &creds(&["member"], Some("p"), false),
            &own
        ));
        let other = Target::new().with("target.user.id", "x");
        assert!(!p.enforce(
            "identity:create_application_credential",
            &creds(&["admin"], Some("p"), false),
            &other
        ));
    }
}
