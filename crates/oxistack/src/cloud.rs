//! `oxistack up`: the all-in-one cloud in a data directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// `$XDG_DATA_HOME/oxistack`, else `~/.local/share/oxistack`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("oxistack");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/share/oxistack")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CloudsYaml {
    pub clouds: std::collections::BTreeMap<String, CloudEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CloudEntry {
    pub auth: CloudAuth,
    pub region_name: String,
    pub interface: String,
    pub identity_api_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CloudAuth {
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub user_domain_name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub project_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub project_domain_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub system_scope: Option<String>,
}

/// The admin password recorded in an existing clouds.yaml.
pub fn existing_password(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let c: CloudsYaml = serde_yaml_ng::from_str(&text).ok()?;
    c.clouds.get("oxistack").map(|e| e.auth.password.clone())
}

pub fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// Writes `clouds.yaml` with mode 0600 (created with that mode, then renamed
/// into place, so the password is never readable by others).
pub fn write_clouds_yaml(path: &Path, cfg: &Config, password: &str) -> anyhow::Result<()> {
    let auth_url = format!("{}/identity", cfg.server.public_url());
    let entry = |project: bool| CloudEntry {
        auth: CloudAuth {
            auth_url: auth_url.clone(),
            username: cfg.bootstrap.admin_user.clone(),
            password: password.to_string(),
            user_domain_name: "Default".into(),
            project_name: project.then(|| cfg.bootstrap.admin_project.clone()),
            project_domain_name: project.then(|| "Default".to_string()),
            system_scope: (!project).then(|| "all".to_string()),
        },
        region_name: cfg.bootstrap.region.clone(),
        interface: "public".into(),
        identity_api_version: 3,
    };
    let mut clouds = std::collections::BTreeMap::new();
    clouds.insert("oxistack".to_string(), entry(true));
    clouds.insert("oxistack-system".to_string(), entry(false));
    let text = serde_yaml_ng::to_string(&CloudsYaml { clouds })?;
    write_private(path, text.as_bytes())
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The config `up` runs with: `DIR/oxistack.toml` (written on first start)
/// plus the command-line choices.
pub fn up_config(
    dir: &Path,
    listen: Option<std::net::SocketAddr>,
    database_url: Option<String>,
) -> anyhow::Result<Config> {
    let file = dir.join("oxistack.toml");
    if !file.exists() {
        let db = format!("sqlite:{}", dir.join("oxistack.db").display());
        let text = format!(
            "# oxistack all-in-one configuration (written by `oxistack up`).\n\
             # Every key may also be set as OXISTACK_<SECTION>__<KEY> in the environment.\n\n\
             [server]\nlisten = \"{}\"\n\n[database]\nurl = \"{}\"\n",
            listen
                .map(|l| l.to_string())
                .unwrap_or_else(|| crate::config::DEFAULT_LISTEN.to_string()),
            database_url.clone().unwrap_or(db),
        );
        write_private(&file, text.as_bytes())?;
    }
    let mut cfg = Config::load(Some(&file))?;
    if cfg.image.store_dir.is_none() {
        cfg.image.store_dir = Some(dir.join("images"));
    }
    if cfg.compute.instances_dir.is_none() {
        cfg.compute.instances_dir = Some(dir.join("instances"));
    }
    if let Some(l) = listen {
        cfg.server.listen = l;
    }
    if let Some(u) = database_url {
        cfg.database.url = u;
    }
    Ok(cfg)
}

/// The name `up` registers the guest image under.
pub const GUEST_IMAGE_NAME: &str = "oxistack-guest";

/// Registers (or keeps) the guest image as a public image of the admin
/// project.
pub async fn register_guest_image(
    cfg: &Config,
    db: &store::Db,
    services: &crate::server::Services,
    path: &Path,
) -> anyhow::Result<()> {
    let project = identity::db::projects::project_get_by_name(
        db,
        identity::DEFAULT_DOMAIN_ID,
        &cfg.bootstrap.admin_project,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("the admin project does not exist"))?;
    let spec = image::bootstrap::FileImage {
        name: GUEST_IMAGE_NAME.into(),
        path: path.to_path_buf(),
        owner: project.id,
        visibility: "public".into(),
        container_format: "bare".into(),
        disk_format: None,
        min_ram: 128,
        min_disk: 1,
        properties: [
            ("os_distro", "debian"),
            (
                "description",
                "oxistack test guest: busybox initramfs, dropbear, config drive or metadata service",
            ),
            ("hw_rng_model", "virtio"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let out = services
        .image
        .ensure_file_image(&spec)
        .await
        .map_err(|e| anyhow::anyhow!("registering {}: {e}", path.display()))?;
    if out.created {
        tracing::info!(image = %out.id, replaced = ?out.replaced, file = %path.display(), "registered the guest image");
    } else {
        tracing::info!(image = %out.id, "guest image is up to date");
    }
    Ok(())
}
