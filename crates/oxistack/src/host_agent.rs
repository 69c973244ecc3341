//! `oxistack agent`: this machine's hypervisor served to a control plane
//! on another machine over the internal API ([`agent::remote`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::hypervisor::{fake, qemu, Hypervisor};
use agent::remote::server::{router, AgentState};
use anyhow::Context;

use crate::cloud::{ensure_dir, write_private};

/// Which hypervisor the agent drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentDriver {
    Qemu,
    Fake,
}

pub struct AgentOptions {
    pub listen: SocketAddr,
    pub driver: AgentDriver,
    /// `instances/`, `images/`, `scratch/` and (by default) `agent-token`.
    pub data_dir: PathBuf,
    /// The host name reported to the control plane.
    pub host: Option<String>,
    /// The address reported for the host.
    pub my_ip: Option<std::net::IpAddr>,
    pub token_file: Option<PathBuf>,
    /// PEM certificate and key: serve HTTPS (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// The agent's token: read from the file, or made (32 random bytes, hex)
/// and written 0600 when the file does not exist yet.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => anyhow::bail!("the token file {} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::RngCore;
            let mut raw = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let token = hex::encode(raw);
            write_private(path, token.as_bytes())?;
            tracing::info!(file = %path.display(), "wrote a new agent token");
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Serves the hypervisor until SIGINT/SIGTERM. Servers keep running when
/// the agent stops; the next agent adopts them.
pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    ensure_dir(&opts.data_dir)?;
    let token_file = opts
        .token_file
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("agent-token"));
    let token = load_or_create_token(&token_file)?;
    let hv: Arc<dyn Hypervisor> = match opts.driver {
        AgentDriver::Qemu => {
            let mut cfg = qemu::QemuConfig::new(opts.data_dir.join("instances"));
            cfg.hostname = opts.host.clone();
            // The address the agent was told to listen on is where the
            // host is reached; on a wildcard, Nova's guess.
            cfg.my_ip = opts
                .my_ip
                .or_else(|| Some(opts.listen.ip()).filter(|ip| !ip.is_unspecified()));
            Arc::new(
                qemu::QemuHypervisor::new(cfg)
                    .await
                    .context("starting the QEMU hypervisor")?,
            )
        }
        AgentDriver::Fake => {
            let mut h = fake::FakeHost::numbered(1);
            if let Some(name) = &opts.host {
                h.hostname = name.clone();
            }
            Arc::new(fake::FakeHypervisor::new(h))
        }
    };
    // Re-attach to the servers an earlier agent left running, so that
    // they are known before the control plane asks (it adopts again when
    // it registers the host; adopting is idempotent).
    let adopted = hv.adopt().await.context("adopting running servers")?;
    if !adopted.is_empty() {
        tracing::info!(
            servers = adopted.len(),
            "adopted servers of an earlier agent"
        );
    }
    let state = AgentState::new(
        hv,
        token,
        opts.data_dir.join("images"),
        opts.data_dir.join("scratch"),
    )
    .await
    .context("preparing the agent's directories")?;
    // The API server's serving path (TLS when configured, request framing
    // checks, graceful shutdown), with the agent's routes.
    let mut serve_cfg = crate::config::Config::default();
    match (opts.tls_cert, opts.tls_key) {
        (Some(cert), Some(key)) => {
            serve_cfg.server.tls_cert = Some(cert);
            serve_cfg.server.tls_key = Some(key);
        }
        (None, None) => {}
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    }
    let listener = std::net::TcpListener::bind(opts.listen)
        .with_context(|| format!("listening on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if serve_cfg.server.tls() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%addr, driver = ?opts.driver, "host agent listening");
    // A line on stdout that scripts (and tests) can wait for.
    println!("oxistack agent listening on {scheme}://{addr}");
    crate::server::serve(
        &serve_cfg,
        router(state),
        listener,
        crate::server::shutdown_signal(),
    )
    .await
    .context("serving the agent API")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-token");
        let t1 = load_or_create_token(&path).unwrap();
        assert_eq!(t1.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_token(&path).unwrap(), t1);
        std::fs::write(&path, "  \n").unwrap();
        assert!(load_or_create_token(&path).is_err());
    }
}
