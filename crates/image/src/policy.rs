//! Glance's default policy rules (the secure-RBAC defaults), checked by
//! api-common's engine. Targets carry the image's `project_id` (= owner),
//! `owner`, `visibility`, `id` and, when the caller's project is a member of
//! the image, `member_id`.

const ADMIN: &str = "rule:context_is_admin";
const PROJECT_MEMBER: &str = "role:member and project_id:%(project_id)s";
const PROJECT_READER: &str = "role:reader and project_id:%(project_id)s";
const VISIBLE: &str = "project_id:%(project_id)s or project_id:%(member_id)s \
     or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s";

/// The defaults as `(name, rule)` pairs.
pub fn defaults() -> Vec<(&'static str, String)> {
    let admin_or_member = format!("{ADMIN} or ({PROJECT_MEMBER})");
    let admin_or_reader = format!("{ADMIN} or ({PROJECT_READER})");
    let get_image = format!("{ADMIN} or (role:reader and ({VISIBLE}))");
    let download = format!("{ADMIN} or (role:member and ({VISIBLE}))");
    let create = format!("{ADMIN} or ({PROJECT_MEMBER} and project_id:%(owner)s)");
    let shared_member = format!("{ADMIN} or (role:member and project_id:%(member_id)s)");
    let reader_or_shared_member = format!(
        "{ADMIN} or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))"
    );
    let public_namespace = format!(
        "{ADMIN} or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))"
    );
    vec![
        ("default", String::new()),
        ("context_is_admin", "role:admin".into()),
        ("service_api", "role:service or role:admin".into()),
        ("add_image", create),
        ("delete_image", admin_or_member.clone()),
        ("get_image", get_image),
        ("get_images", admin_or_reader.clone()),
        ("modify_image", admin_or_member.clone()),
        ("publicize_image", ADMIN.into()),
        ("communitize_image", admin_or_member.clone()),
        ("download_image", download.clone()),
        ("upload_image", admin_or_member.clone()),
        ("add_member", admin_or_member.clone()),
        ("delete_member", admin_or_member.clone()),
        ("get_member", reader_or_shared_member.clone()),
        ("get_members", reader_or_shared_member),
        ("modify_member", shared_member),
        ("deactivate", admin_or_member.clone()),
        ("reactivate", admin_or_member.clone()),
        ("copy_image", ADMIN.into()),
        ("get_task", ADMIN.into()),
        ("get_tasks", ADMIN.into()),
        ("add_task", ADMIN.into()),
        ("modify_task", ADMIN.into()),
        ("tasks_api_access", ADMIN.into()),
        ("stores_info_detail", ADMIN.into()),
        ("manage_image_cache", ADMIN.into()),
        // Metadata definitions.
        ("get_metadef_namespace", public_namespace.clone()),
        ("get_metadef_namespaces", admin_or_reader.clone()),
        ("modify_metadef_namespace", ADMIN.into()),
        ("add_metadef_namespace", ADMIN.into()),
        ("delete_metadef_namespace", ADMIN.into()),
        ("get_metadef_object", public_namespace.clone()),
        ("get_metadef_objects", public_namespace.clone()),
        ("modify_metadef_object", ADMIN.into()),
        ("add_metadef_object", ADMIN.into()),
        ("delete_metadef_object", ADMIN.into()),
        ("list_metadef_resource_types", admin_or_reader),
        ("get_metadef_resource_type", public_namespace.clone()),
        ("add_metadef_resource_type_association", ADMIN.into()),
        ("remove_metadef_resource_type_association", ADMIN.into()),
        ("get_metadef_property", public_namespace.clone()),
        ("get_metadef_properties", public_namespace.clone()),
        ("modify_metadef_property", ADMIN.into()),
        ("add_metadef_property", ADMIN.into()),
        ("remove_metadef_property", ADMIN.into()),
        ("get_metadef_tag", public_namespace.clone()),
        ("get_metadef_tags", public_namespace),
        ("modify_metadef_tag", ADMIN.into()),
        ("add_metadef_tag", ADMIN.into()),
        ("add_metadef_tags", ADMIN.into()),
        ("delete_metadef_tag", ADMIN.into()),
        ("delete_metadef_tags", ADMIN.into()),
        ("download_from_store", download),
        (
            "get_image_location",
            format!("{ADMIN} or ({PROJECT_READER})"),
        ),
        ("set_image_location", admin_or_member),
        ("delete_image_location", ADMIN.into()),
    ]
}

#[cfg(test)]
mod tests {
    use api_common::{Creds, Policy, Target};

    fn policy() -> Policy {
        let d = super::defaults();
        let pairs: Vec<(&str, &str)> = d.iter().map(|(n, r)| (*n, r.as_str())).collect();
        Policy::from_defaults(&pairs).unwrap()
    }

    fn creds(project: &str, roles: &[&str]) -> Creds {
        Creds {
            user_id: "u".into(),
            project_id: Some(project.into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    fn image(owner: &str, visibility: &str) -> Target {
        Target::new()
            .with("project_id", owner)
            .with("owner", owner)
            .with("visibility", visibility)
    }

    #[test]
    fn owners_members_and_strangers() {
        let p = policy();
        let member = creds("p1", &["member", "reader"]);
        let reader = creds("p1", &["reader"]);
        let stranger = creds("p2", &["member", "reader"]);
        let admin = creds("p9", &["admin", "member", "reader"]);
        let private = image("p1", "private");
        assert!(p.enforce("get_image", &member, &private));
        assert!(p.enforce("modify_image", &member, &private));
        assert!(!p.enforce("modify_image", &reader, &private));
        assert!(!p.enforce("get_image", &stranger, &private));
        assert!(p.enforce("get_image", &stranger, &image("p1", "public")));
        assert!(!p.enforce("modify_image", &stranger, &image("p1", "public")));
        assert!(p.enforce("modify_image", &admin, &private));
        // Only admins publicize; members may make images community.
        assert!(!p.enforce("publicize_image", &member, &private));
        assert!(p.enforce("publicize_image", &admin, &private));
        assert!(p.enforce("communitize_image", &member, &private));
        // Creating for another project needs admin.
        assert!(p.enforce("add_image", &member, &image("p1", "private")));
        assert!(!p.enforce("add_image", &member, &image("p2", "private")));
        assert!(p.enforce("add_image", &admin, &image("p2", "private")));
        // A member project may change its own membership, the owner may not.
        let shared = image("p1", "shared").with("member_id", "p2");
        assert!(p.enforce("modify_member", &stranger, &shared));
        assert!(!p.enforce("modify_member", &member, &image("p1", "shared")));
    }
}
