//! Nova's default policy rules (secure RBAC, project scope), as
//! `nova/policies/*.py` define them. Operators override them with a YAML or
//! JSON file (`[compute] policy_file`).

const ADMIN: &str = "rule:context_is_admin";
const MEMBER_OR_ADMIN: &str = "rule:project_member_or_admin";
const READER_OR_ADMIN: &str = "rule:project_reader_or_admin";
const ANY: &str = "@";
const OWNER_OR_ADMIN_USER: &str = "(rule:context_is_admin) or user_id:%(user_id)s";

/// Every rule the compute API enforces, with its default.
pub fn defaults() -> Vec<(&'static str, &'static str)> {
    let mut rules: Vec<(&'static str, &'static str)> = vec![
        ("context_is_admin", "role:admin"),
        ("admin_api", "role:admin"),
        (
            "project_member_api",
            "role:member and project_id:%(project_id)s",
        ),
        (
            "project_reader_api",
            "role:reader and project_id:%(project_id)s",
        ),
        (
            "project_member_or_admin",
            "rule:project_member_api or rule:context_is_admin",
        ),
        (
            "project_reader_or_admin",
            "rule:project_reader_api or rule:context_is_admin",
        ),
    ];
    let admin_only = [
        "os_compute_api:servers:index:get_all_tenants",
        "os_compute_api:servers:detail:get_all_tenants",
        "os_compute_api:servers:allow_all_filters",
        "os_compute_api:servers:create:forced_host",
        "os_compute_api:servers:create:requested_destination",
        "os_compute_api:servers:create:zero_disk_flavor",
        "os_compute_api:servers:show:host_status",
        "os_compute_api:servers:show:host_status:unknown-only",
        "os_compute_api:servers:migrations:index",
        "os_compute_api:os-extended-server-attributes",
        "os_compute_api:os-flavor-manage:create",
        "os_compute_api:os-flavor-manage:update",
        "os_compute_api:os-flavor-manage:delete",
        "os_compute_api:os-flavor-access",
        "os_compute_api:os-flavor-access:add_tenant_access",
        "os_compute_api:os-flavor-access:remove_tenant_access",
        "os_compute_api:os-flavor-extra-specs:create",
        "os_compute_api:os-flavor-extra-specs:update",
        "os_compute_api:os-flavor-extra-specs:delete",
        "os_compute_api:os-hypervisors:list",
        "os_compute_api:os-hypervisors:list-detail",
        "os_compute_api:os-hypervisors:show",
        "os_compute_api:os-hypervisors:statistics",
        "os_compute_api:os-hypervisors:uptime",
        "os_compute_api:os-hypervisors:search",
        "os_compute_api:os-hypervisors:servers",
        "os_compute_api:os-services:list",
        "os_compute_api:os-hosts:list",
        "os_compute_api:os-hosts:show",
        "os_compute_api:os-services:update",
        "os_compute_api:os-services:delete",
        "os_compute_api:os-aggregates:index",
        "os_compute_api:os-aggregates:create",
        "os_compute_api:os-aggregates:show",
        "os_compute_api:os-aggregates:update",
        "os_compute_api:os-aggregates:delete",
        "os_compute_api:os-aggregates:add_host",
        "os_compute_api:os-aggregates:remove_host",
        "os_compute_api:os-aggregates:set_metadata",
        "os_compute_api:os-availability-zone:detail",
        "os_compute_api:os-quota-sets:update",
        "os_compute_api:os-quota-sets:delete",
        "os_compute_api:os-quota-class-sets:show",
        "os_compute_api:os-quota-class-sets:update",
        "os_compute_api:os-simple-tenant-usage:list",
        "os_compute_api:os-migrations:index",
        "os_compute_api:os-migrations:index:all_projects",
        "os_compute_api:os-migrations:index:host",
        "os_compute_api:limits:other_project",
        "os_compute_api:os-instance-actions:events",
        "os_compute_api:os-instance-actions:events:details",
        "os_compute_api:os-lock-server:unlock:unlock_override",
        "os_compute_api:os-shelve:shelve_offload",
        "os_compute_api:os-admin-actions:reset_state",
        "os_compute_api:os-admin-actions:inject_network_info",
        "os_compute_api:os-server-diagnostics",
        "os_compute_api:os-server-groups:index:all_projects",
        "os_compute_api:os-server-external-events:create",
        "os_compute_api:os-keypairs:index:other-users",
    ];
    let readers = [
        "os_compute_api:servers:index",
        "os_compute_api:servers:detail",
        "os_compute_api:servers:show",
        "os_compute_api:servers:topology:index",
        "os_compute_api:os-flavor-extra-specs:index",
        "os_compute_api:os-flavor-extra-specs:show",
        "os_compute_api:os-availability-zone:list",
        "os_compute_api:os-quota-sets:show",
        "os_compute_api:os-quota-sets:detail",
        "os_compute_api:os-server-groups:index",
        "os_compute_api:os-server-groups:show",
        "os_compute_api:os-simple-tenant-usage:show",
        "os_compute_api:os-instance-actions:list",
        "os_compute_api:os-instance-actions:show",
        "os_compute_api:server-metadata:index",
        "os_compute_api:server-metadata:show",
        "os_compute_api:os-server-tags:index",
        "os_compute_api:os-server-tags:show",
        "os_compute_api:os-attach-interfaces:list",
        "os_compute_api:os-attach-interfaces:show",
    ];
    let members = [
        "os_compute_api:servers:create",
        "os_compute_api:servers:create:attach_network",
        "os_compute_api:servers:create:attach_volume",
        "os_compute_api:servers:create:trusted_certs",
        "os_compute_api:servers:update",
        "os_compute_api:servers:delete",
        "os_compute_api:servers:start",
        "os_compute_api:servers:stop",
        "os_compute_api:servers:reboot",
        "os_compute_api:servers:resize",
        "os_compute_api:servers:confirm_resize",
        "os_compute_api:servers:revert_resize",
        "os_compute_api:servers:rebuild",
        "os_compute_api:servers:rebuild:trusted_certs",
        "os_compute_api:servers:create_image",
        "os_compute_api:servers:create_image:allow_volume_backed",
        "os_compute_api:servers:trigger_crash_dump",
        "os_compute_api:os-console-output",
        "os_compute_api:os-remote-consoles",
        "os_compute_api:os-lock-server:lock",
        "os_compute_api:os-lock-server:unlock",
        "os_compute_api:os-pause-server:pause",
        "os_compute_api:os-pause-server:unpause",
        "os_compute_api:os-suspend-server:suspend",
        "os_compute_api:os-suspend-server:resume",
        "os_compute_api:os-shelve:shelve",
        "os_compute_api:os-shelve:unshelve",
        "os_compute_api:os-rescue",
        "os_compute_api:os-unrescue",
        "os_compute_api:os-deferred-delete:force",
        "os_compute_api:os-deferred-delete:restore",
        "os_compute_api:server-metadata:create",
        "os_compute_api:server-metadata:update",
        "os_compute_api:server-metadata:update_all",
        "os_compute_api:server-metadata:delete",
        "os_compute_api:os-server-tags:update",
        "os_compute_api:os-server-tags:update_all",
        "os_compute_api:os-server-tags:delete",
        "os_compute_api:os-server-tags:delete_all",
        "os_compute_api:os-server-groups:create",
        "os_compute_api:os-server-groups:delete",
    ];
    let anyone = [
        "os_compute_api:limits",
        "os_compute_api:os-quota-sets:defaults",
        "os_compute_api:os-flavor-manage:index",
        "os_compute_api:extensions",
    ];
    let users = [
        "os_compute_api:os-keypairs:index",
        "os_compute_api:os-keypairs:show",
        "os_compute_api:os-keypairs:create",
        "os_compute_api:os-keypairs:delete",
    ];
    rules.extend(admin_only.iter().map(|r| (*r, ADMIN)));
    rules.extend(readers.iter().map(|r| (*r, READER_OR_ADMIN)));
    rules.extend(members.iter().map(|r| (*r, MEMBER_OR_ADMIN)));
    rules.extend(anyone.iter().map(|r| (*r, ANY)));
    rules.extend(users.iter().map(|r| (*r, OWNER_OR_ADMIN_USER)));
    rules
}
