//! Image service configuration (the `[image]` section of the config file).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Where image data is kept (the file store). `oxistack up` uses
    /// `DATA_DIR/images`; `serve` requires it or uses `/var/lib/oxistack/images`.
    pub store_dir: Option<PathBuf>,
    /// Where staged data (interoperable import) is kept; defaults to
    /// `STORE_DIR/.staging`.
    pub staging_dir: Option<PathBuf>,
    /// The largest image accepted, in bytes (Glance's `image_size_cap`).
    pub image_size_cap: u64,
    /// `os_hash_algo` of new images: sha512 (Glance's default), sha384 or sha256.
    pub hashing_algorithm: String,
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    /// Refuse uploads whose content does not match the declared disk_format
    /// (always on for container formats; see the README of the crate).
    pub require_image_format_match: bool,
    /// VMDK `createType`s accepted (single-file sparse variants only by default).
    pub vmdk_allowed_types: Vec<String>,
    /// Interoperable import methods offered: `glance-direct`, and
    /// `web-download` when an operator adds it.
    pub enabled_import_methods: Vec<String>,
    pub web_download: WebDownload,
    /// Default and largest page size of image lists.
    pub limit_param_default: usize,
    pub api_limit_max: usize,
    /// Per-image limits (Glance's `image_member_quota` and friends; -1 = none).
    pub image_member_quota: i64,
    pub image_property_quota: i64,
    pub image_tag_quota: i64,
    /// Per-project quotas from Keystone unified limits (service type `image`,
    /// resources image_count_total, image_size_total (MiB), image_stage_total
    /// (MiB), image_count_uploading), as Glance's `use_keystone_limits`.
    /// A resource without a project or registered limit is unlimited.
    pub use_keystone_limits: bool,
    /// An oslo.policy-style YAML file overriding default rules.
    pub policy_file: Option<PathBuf>,
    /// Show `direct_url` (the store location) in image bodies.
    pub show_image_direct_url: bool,
    /// An upload (or import) that has not progressed for this many seconds is
    /// taken as abandoned (its process died): the image goes back to queued.
    pub stale_upload_seconds: u64,
}

impl Default for ImageConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        ImageConfig {
            store_dir: None,
            staging_dir: None,
            image_size_cap: 1 << 40,
            hashing_algorithm: "sha512".into(),
            disk_formats: s(&[
                "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
            ]),
            container_formats: s(&[
                "ami",
                "ari",
                "aki",
                "bare",
                "ovf",
                "ova",
                "docker",
                "compressed",
            ]),
            require_image_format_match: true,
            vmdk_allowed_types: s(&["streamOptimized", "monolithicSparse"]),
            enabled_import_methods: s(&["glance-direct"]),
            web_download: WebDownload::default(),
            limit_param_default: 25,
            api_limit_max: 1000,
            image_member_quota: 128,
            image_property_quota: 128,
            image_tag_quota: 128,
            use_keystone_limits: true,
            policy_file: None,
            show_image_direct_url: false,
            stale_upload_seconds: 600,
        }
    }
}

/// Which URIs the `web-download` import method may fetch (Glance's
/// `[import_filtering_opts]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebDownload {
    pub allowed_schemes: Vec<String>,
    /// When not empty, only these hosts.
    pub allowed_hosts: Vec<String>,
    pub disallowed_hosts: Vec<String>,
    pub allowed_ports: Vec<u16>,
    /// Seconds allowed for the whole download.
    pub timeout: u64,
}

impl Default for WebDownload {
    fn default() -> Self {
        WebDownload {
            allowed_schemes: vec!["http".into(), "https".into()],
            allowed_hosts: Vec::new(),
            disallowed_hosts: Vec::new(),
            allowed_ports: vec![80, 443],
            timeout: 3600,
        }
    }
}
