//! The configuration file (TOML) with environment overrides.
//!
//! Every key can be overridden by an environment variable named
//! `OXISTACK_<SECTION>__<KEY>`, e.g. `OXISTACK_DATABASE__URL` or
//! `OXISTACK_IDENTITY__TOKEN_EXPIRATION`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8770";
/// Where `serve` keeps image data unless `image.store_dir` says otherwise.
pub const DEFAULT_IMAGE_DIR: &str = "/var/lib/oxistack/images";
/// Where `serve` keeps instance disks unless `compute.instances_dir` says
/// otherwise.
pub const DEFAULT_INSTANCES_DIR: &str = "/var/lib/oxistack/instances";

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub identity: identity::IdentityConfig,
    pub placement: placement::PlacementConfig,
    pub image: image::ImageConfig,
    pub compute: compute::ComputeConfig,
    pub bootstrap: BootstrapConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL clients use to reach this server (catalog endpoints are built
    /// from it). Defaults to `http(s)://<listen>`.
    pub public_url: Option<String>,
    /// Largest accepted request body for API calls, in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS (`*` for any); empty disables CORS.
    pub cors_allowed_origins: Vec<String>,
    /// Request headers a CORS preflight may ask for (empty: the API's own
    /// headers, `x-auth-token`, `openstack-api-version`, ...).
    pub cors_allow_headers: Vec<String>,
    /// PEM certificate chain and key: serve HTTPS when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8770))),
            public_url: None,
            max_body_bytes: 1 << 20,
            cors_allowed_origins: Vec::new(),
            cors_allow_headers: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ServerConfig {
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.tls() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:/path/to/file.db` or `postgres://user:pass@host/db`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite:oxistack.db".into(),
            max_connections: 16,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `oxistack=debug,sqlx=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    pub region: String,
    pub admin_user: String,
    pub admin_project: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            region: "RegionOne".into(),
            admin_user: "admin".into(),
            admin_project: "admin".into(),
        }
    }
}

impl Config {
    /// Defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("configuration file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only `OXISTACK_SECTION__KEY` variables: others (OXISTACK_BIN, ...) are not config.
        fig = fig.merge(
            Env::prefixed("OXISTACK_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        Ok(fig.extract()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[server]\nlisten = \"127.0.0.1:9999\"\n[identity]\ntoken_expiration = 60\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.identity.token_expiration, 60);
        assert_eq!(c.server.public_url(), "http://127.0.0.1:9999");
        std::fs::write(&f, "[server]\nlisten = 5\n").unwrap();
        assert!(Config::load(Some(&f)).is_err());
        std::fs::write(&f, "[nonsense]\nx = 1\n").unwrap();
        assert!(Config::load(Some(&f)).is_err());
        assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
