//! `oxistack`: an OpenStack-compatible cloud in one binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oxistack::config::Config;
use oxistack::{cloud, host_agent, server};

#[derive(Parser)]
#[command(
    name = "oxistack",
    version,
    about = "An OpenStack-compatible cloud in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the all-in-one cloud: create the data directory, database, admin
    /// user and clouds.yaml on first start, then serve until Ctrl-C.
    Up {
        /// Where everything is kept [default: $XDG_DATA_HOME/oxistack or ~/.local/share/oxistack].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8770].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Use this database instead of DIR/oxistack.db (e.g. postgres://...).
        #[arg(long, env = "OXISTACK_DATABASE_URL")]
        database_url: Option<String>,
        /// Register this disk image file (e.g. the one guest/build.sh makes)
        /// as the public image `oxistack-guest`; a restart with the same file
        /// changes nothing, a new file replaces the old image.
        #[arg(long, env = "OXISTACK_GUEST_IMAGE")]
        guest_image: Option<PathBuf>,
    },
    /// Serve the APIs with a configuration file (production; run `db migrate`
    /// and `bootstrap` first).
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Database administration.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Create the default domain, admin project and user, roles and catalog
    /// (idempotent: existing entries are kept).
    Bootstrap {
        #[arg(long)]
        config: PathBuf,
        /// The admin password for a new admin user (or set OXISTACK_BOOTSTRAP_PASSWORD).
        #[arg(long, env = "OXISTACK_BOOTSTRAP_PASSWORD", hide_env_values = true)]
        admin_password: String,
    },
    /// Identity administration.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Run a host agent: serve this machine's hypervisor to a control plane
    /// on another machine (its `[compute] remote_agents`).
    Agent {
        /// Address of the internal API.
        #[arg(long, default_value = "127.0.0.1:8779")]
        listen: SocketAddr,
        #[arg(long, value_enum, default_value = "qemu")]
        driver: AgentDriverArg,
        /// Instances, cached images and the token [default: $XDG_DATA_HOME/oxistack-agent or ~/.local/share/oxistack-agent].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The host name reported to the control plane [default: the system's].
        #[arg(long)]
        host: Option<String>,
        /// The address reported for this host [default: the --listen address, or on a wildcard the source address of the default route].
        #[arg(long)]
        my_ip: Option<std::net::IpAddr>,
        /// The shared secret; written (0600, random) when missing [default: DIR/agent-token].
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Serve HTTPS with this PEM certificate (with --tls-key).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long)]
        tls_key: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AgentDriverArg {
    Qemu,
    Fake,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply every pending migration.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides the configured database URL.
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Rotate the fernet token keys (the staged key becomes primary).
    RotateKeys {
        #[arg(long)]
        config: PathBuf,
    },
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OXISTACK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// mimalloc instead of glibc's malloc: request handling allocates many
/// small, short-lived objects (JSON values, rows), where glibc's allocator
/// spent about half of a large listing's time and fragmented the heap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxistack: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxistack: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up {
            data_dir,
            listen,
            database_url,
            guest_image,
        } => {
            up(
                data_dir.unwrap_or_else(cloud::default_data_dir),
                listen,
                database_url,
                guest_image,
            )
            .await
        }
        Command::Agent {
            listen,
            driver,
            data_dir,
            host,
            my_ip,
            token_file,
            tls_cert,
            tls_key,
        } => {
            init_logging(&Config::default());
            let data_dir = data_dir.unwrap_or_else(|| {
                let mut d = cloud::default_data_dir();
                d.set_file_name("oxistack-agent");
                d
            });
            host_agent::run(host_agent::AgentOptions {
                listen,
                driver: match driver {
                    AgentDriverArg::Qemu => host_agent::AgentDriver::Qemu,
                    AgentDriverArg::Fake => host_agent::AgentDriver::Fake,
                },
                data_dir,
                host,
                my_ip,
                token_file,
                tls_cert,
                tls_key,
            })
            .await
        }
        Command::Serve { config } => {
            let cfg = Config::load(Some(&config))?;
            init_logging(&cfg);
            let (db, services) = server::start_services(&cfg, false).await?;
            let app = server::app(&cfg, &services);
            let listener = std::net::TcpListener::bind(cfg.server.listen)
                .with_context(|| format!("binding {}", cfg.server.listen))?;
            tracing::info!(listen = %cfg.server.listen, "serving");
            server::serve(&cfg, app, listener, server::shutdown_signal()).await?;
            db.close().await;
            Ok(())
        }
        Command::Db {
            command:
                DbCommand::Migrate {
                    config,
                    database_url,
                },
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(u) = database_url {
                cfg.database.url = u;
            }
            init_logging(&cfg);
            let db = store::Db::connect(&cfg.database.url, 2).await?;
            db.migrate().await?;
            db.close().await;
            println!("database is at the latest schema");
            Ok(())
        }
        Command::Bootstrap {
            config,
            admin_password,
        } => {
            let cfg = Config::load(Some(&config))?;
            init_logging(&cfg);
            let (db, services) = server::start_services(&cfg, false).await?;
            let out = services
                .identity
                .bootstrap(&bootstrap_spec(&cfg, admin_password, false))
                .await
                .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
            db.close().await;
            println!(
                "bootstrap complete{}",
                if out.created_admin {
                    " (admin user created)"
                } else {
                    " (nothing new)"
                }
            );
            Ok(())
        }
        Command::Identity {
            command: IdentityCommand::RotateKeys { config },
        } => {
            let cfg = Config::load(Some(&config))?;
            init_logging(&cfg);
            let db = store::Db::connect(&cfg.database.url, 2).await?;
            let idx = identity::fernet::rotate(&db, cfg.identity.max_active_keys)
                .await
                .map_err(|e| anyhow::anyhow!("rotate-keys: {e}"))?;
            db.close().await;
            println!("fernet keys rotated; primary key is now {idx}");
            Ok(())
        }
    }
}

fn bootstrap_spec(cfg: &Config, password: String, reset: bool) -> identity::bootstrap::Bootstrap {
    identity::bootstrap::Bootstrap {
        admin_user: cfg.bootstrap.admin_user.clone(),
        admin_password: password,
        reset_admin_password: reset,
        admin_project: cfg.bootstrap.admin_project.clone(),
        region: cfg.bootstrap.region.clone(),
        services: server::catalog(&cfg.server.public_url()),
    }
}

async fn up(
    dir: PathBuf,
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    guest_image: Option<PathBuf>,
) -> anyhow::Result<()> {
    cloud::ensure_dir(&dir)?;
    let cfg = cloud::up_config(&dir, listen, database_url)?;
    init_logging(&cfg);
    // Bind first: a port already in use fails before anything is written.
    let listener = std::net::TcpListener::bind(cfg.server.listen)
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let clouds = dir.join("clouds.yaml");
    let (password, reset) = match cloud::existing_password(&clouds) {
        Some(p) => (p, false),
        None => (cloud::generate_password(), true),
    };
    let (db, services) = server::start_services(&cfg, true).await?;
    services
        .identity
        .bootstrap(&bootstrap_spec(&cfg, password.clone(), reset))
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    cloud::write_clouds_yaml(&clouds, &cfg, &password)?;
    if let Some(compute) = &services.compute {
        compute::bootstrap::ensure_default_flavors(compute)
            .await
            .map_err(|e| anyhow::anyhow!("default flavors: {e}"))?;
    }
    if let Some(path) = guest_image {
        cloud::register_guest_image(&cfg, &db, &services, &path).await?;
    }
    println!(
        "oxistack is up at {url}\n\n\
         Admin credentials are in {clouds} (cloud \"oxistack\", and \"oxistack-system\" for system scope).\n\
         Next:\n  export OS_CLIENT_CONFIG_FILE={clouds} OS_CLOUD=oxistack\n  openstack token issue\n\n\
         Press Ctrl-C to stop; `oxistack up --data-dir {dir}` starts it again with everything kept.",
        url = cfg.server.public_url(),
        clouds = clouds.display(),
        dir = dir.display(),
    );
    let app = server::app(&cfg, &services);
    server::serve(&cfg, app, listener, server::shutdown_signal()).await?;
    db.close().await;
    println!("oxistack stopped");
    Ok(())
}
