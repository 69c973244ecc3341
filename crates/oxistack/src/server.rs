//! The HTTP server: one listener, every service under its path prefix.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;

/// The services this binary serves, with their catalog entries.
pub struct Services {
    pub identity: Arc<identity::Identity>,
    pub placement: Arc<placement::Placement>,
    pub image: Arc<image::ImageService>,
    /// None when `[compute] enabled = false`.
    pub compute: Option<Arc<compute::Compute>>,
}

/// Catalog entries for every service served at `public_url`.
pub fn catalog(public_url: &str) -> Vec<identity::bootstrap::CatalogEntry> {
    vec![
        identity::bootstrap::CatalogEntry {
            kind: "identity".into(),
            name: "keystone".into(),
            url: format!("{public_url}/identity"),
        },
        identity::bootstrap::CatalogEntry {
            kind: "placement".into(),
            name: "placement".into(),
            url: format!("{public_url}/placement"),
        },
        identity::bootstrap::CatalogEntry {
            kind: "image".into(),
            name: "glance".into(),
            url: format!("{public_url}/image"),
        },
        identity::bootstrap::CatalogEntry {
            kind: "compute".into(),
            name: "nova".into(),
            url: format!("{public_url}/compute/v2.1"),
        },
    ]
}

/// The whole application router.
pub fn app(cfg: &Config, services: &Services) -> Router {
    let placement_prefix = cfg.placement.path_prefix.trim_end_matches('/');
    let placement = placement::api::router(services.placement.clone());
    let mut app = Router::new()
        .nest(
            "/identity",
            identity::api::router(services.identity.clone()),
        )
        .nest("/image", image::api::router(services.image.clone()));
    if let Some(compute) = &services.compute {
        app = app.nest("/compute", compute::api::router(compute.clone()));
    }
    app = if placement_prefix.is_empty() {
        // Stand-alone placement: its version document is the root.
        app.merge(placement)
    } else {
        app.route("/", get(root))
            .nest(placement_prefix, placement)
            .fallback(not_found)
    };
    let mut app = app
        .layer(DefaultBodyLimit::max(cfg.server.max_body_bytes))
        .layer(axum::middleware::map_response(json_rejections))
        .layer(axum::middleware::from_fn(api_common::http::request_id));
    if cfg.server.tls() {
        app = app.layer(axum::middleware::from_fn(mark_tls));
    }
    if let Some(cors) = cors(
        &cfg.server.cors_allowed_origins,
        &cfg.server.cors_allow_headers,
    ) {
        app = app.layer(cors);
    }
    app
}

/// Tells handlers that build self links that the client used HTTPS.
async fn mark_tls(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    req.headers_mut()
        .insert("x-oxistack-tls", HeaderValue::from_static("1"));
    next.run(req).await
}

fn cors(origins: &[String], allow_headers: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let configured: Vec<axum::http::HeaderName> = allow_headers
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            "x-auth-token"
                .parse()
                .unwrap_or(axum::http::header::AUTHORIZATION),
            "x-subject-token"
                .parse()
                .unwrap_or(axum::http::header::AUTHORIZATION),
            "openstack-api-version"
                .parse()
                .unwrap_or(axum::http::header::AUTHORIZATION),
            axum::http::header::CONTENT_TYPE,
        ])
        .expose_headers([
            "x-subject-token"
                .parse()
                .unwrap_or(axum::http::header::ETAG),
            "x-openstack-request-id"
                .parse()
                .unwrap_or(axum::http::header::ETAG),
            "openstack-api-version"
                .parse()
                .unwrap_or(axum::http::header::ETAG),
        ])
        .max_age(Duration::from_secs(3600));
    Some(if configured.is_empty() {
        layer
    } else {
        layer.allow_headers(configured)
    })
}

async fn root() -> Json<serde_json::Value> {
    Json(json!({
        "name": "oxistack",
        "version": env!("CARGO_PKG_VERSION"),
        "services": { "identity": "/identity", "placement": "/placement", "image": "/image", "compute": "/compute" }
    }))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": { "code": 404, "title": "Not Found", "message": "The resource could not be found." } })),
    )
        .into_response()
}

/// axum answers some malformed requests (an oversized body, say) with a
/// plain-text body; give them a JSON fault body instead.
async fn json_rejections(res: Response) -> Response {
    let status = res.status();
    let is_text = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    let rendered = res
        .extensions()
        .get::<api_common::http::Rendered>()
        .is_some();
    if rendered || !(status.is_client_error() && is_text) {
        return res;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.".to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "The request body must be JSON.".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "The method is not allowed for this resource.".to_string()
        }
        s => s.canonical_reason().unwrap_or("Bad Request").to_string(),
    };
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({ "error": {
        "code": status.as_u16(),
        "title": api_common::http::status_title(status.as_u16()),
        "message": message,
    }});
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// Connects, migrates when asked, and builds every service.
pub async fn start_services(cfg: &Config, migrate: bool) -> anyhow::Result<(store::Db, Services)> {
    let db = store::Db::connect(&cfg.database.url, cfg.database.max_connections).await?;
    if migrate {
        db.migrate().await?;
    }
    let identity = identity::Identity::new(db.clone(), cfg.identity.clone())
        .await
        .map_err(|e| anyhow::anyhow!("identity: {e}"))?;
    let mut image_cfg = cfg.image.clone();
    if image_cfg.store_dir.is_none() {
        image_cfg.store_dir = Some(std::path::PathBuf::from(crate::config::DEFAULT_IMAGE_DIR));
    }
    let image = image::ImageService::new(
        db.clone(),
        image_cfg,
        identity.clone(),
        Some(cfg.bootstrap.region.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("image: {e}"))?;
    let tokens: Arc<dyn api_common::TokenValidator> = identity.clone();
    let placement = placement::Placement::new(db.clone(), cfg.placement.clone(), Some(tokens))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let compute = if cfg.compute.enabled {
        let mut compute_cfg = cfg.compute.clone();
        if compute_cfg.instances_dir.is_none() {
            compute_cfg.instances_dir = Some(std::path::PathBuf::from(
                crate::config::DEFAULT_INSTANCES_DIR,
            ));
        }
        Some(
            compute::Compute::new(
                db.clone(),
                compute_cfg,
                identity.clone(),
                placement.clone(),
                image.clone(),
                format!("{}/compute", cfg.server.public_url()),
            )
            .await
            .map_err(|e| anyhow::anyhow!("compute: {e}"))?,
        )
    } else {
        None
    };
    if let Some(c) = &compute {
        c.start()
            .await
            .map_err(|e| anyhow::anyhow!("compute: {e}"))?;
    }
    Ok((
        db,
        Services {
            identity,
            placement,
            image,
            compute,
        },
    ))
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    cfg: &Config,
    app: Router,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    // `/placement/` and `/placement` are the same resource, as upstream's
    // routes treat them; the trailing slash goes before routing.
    let app = tower::Layer::layer(
        &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
        app,
    );
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    if let (Some(cert), Some(key)) = (&cfg.server.tls_cert, &cfg.server.tls_key) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            h.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        axum_server::from_tcp_rustls(listener, tls)
            .handle(handle)
            .serve(app)
            .await?;
    } else {
        let listener =
            crate::framing::GuardedListener(tokio::net::TcpListener::from_std(listener)?);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
