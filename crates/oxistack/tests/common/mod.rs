//! Test harness: the real control plane in process, on a random loopback
//! port, over a temporary SQLite file or a fresh PostgreSQL database.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;

use std::sync::Arc;

use oxistack::config::Config;
use oxistack::server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct Cloud {
    pub url: String,
    pub admin_password: String,
    pub identity: Arc<identity::Identity>,
    pub db_url: String,
    pub cfg: Config,
    http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Cloud {
    /// Starts a cloud, or returns None when the PostgreSQL variant cannot run
    /// (no server configured; see `store::testing::postgres_url`).
    pub async fn start(engine: Engine) -> Option<Cloud> {
        Self::start_with(engine, |_| {}).await
    }

    pub async fn start_with(engine: Engine, tweak: impl FnOnce(&mut Config)) -> Option<Cloud> {
        let dir = tempfile::tempdir().unwrap();
        let db_url = match engine {
            Engine::Sqlite => format!("sqlite:{}", dir.path().join("test.db").display()),
            Engine::Postgres => {
                let admin = store::testing::postgres_url()?;
                store::testing::fresh_postgres(&admin).await.unwrap()
            }
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = Config::default();
        cfg.server.listen = listener.local_addr().unwrap();
        cfg.database.url = db_url.clone();
        cfg.database.max_connections = 8;
        cfg.identity.password_hash_rounds = 4;
        cfg.image.store_dir = Some(dir.path().join("images"));
        cfg.compute.driver = compute::Driver::Fake;
        cfg.compute.instances_dir = Some(dir.path().join("instances"));
        tweak(&mut cfg);
        let (_db, services) = server::start_services(&cfg, true).await.unwrap();
        let admin_password = "admin-secret".to_string();
        services
            .identity
            .bootstrap(&identity::bootstrap::Bootstrap {
                admin_user: "admin".into(),
                admin_password: admin_password.clone(),
                reset_admin_password: false,
                admin_project: "admin".into(),
                region: "RegionOne".into(),
                services: server::catalog(&cfg.server.public_url()),
            })
            .await
            .unwrap();
        let app = server::app(&cfg, &services);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve_cfg = cfg.clone();
        let task = tokio::spawn(async move {
            server::serve(&serve_cfg, app, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Some(Cloud {
            url: cfg.server.public_url(),
            admin_password,
            identity: services.identity.clone(),
            db_url,
            cfg,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.raw(
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()),
            &[],
        )
        .await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut rb = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("Content-Type", "application/json").body(b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str) -> Reply {
        self.call(Method::PUT, path, Some(token), None).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Password authentication; returns the reply (token in X-Subject-Token).
    pub async fn password_auth(&self, user: &str, password: &str, scope: Value) -> Reply {
        let mut auth = json!({
            "identity": {
                "methods": ["password"],
                "password": { "user": { "name": user, "domain": { "id": "default" }, "password": password } }
            }
        });
        if !scope.is_null() {
            auth["scope"] = scope;
        }
        self.call(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            Some(json!({ "auth": auth })),
        )
        .await
    }

    pub async fn token(&self, user: &str, password: &str, scope: Value) -> String {
        let r = self.password_auth(user, password, scope).await;
        assert_eq!(r.status, StatusCode::CREATED, "auth failed: {:?}", r.body);
        r.header("x-subject-token").unwrap()
    }

    pub async fn admin_token(&self) -> String {
        self.token(
            "admin",
            &self.admin_password.clone(),
            project_scope("admin"),
        )
        .await
    }

    /// Creates an entity and returns its id.
    pub async fn create(&self, token: &str, collection: &str, key: &str, body: Value) -> String {
        let r = self
            .post(
                &format!("/identity/v3/{collection}"),
                token,
                json!({ key: body }),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create {collection}: {:?}",
            r.body
        );
        r.body[key]["id"].as_str().unwrap().to_string()
    }
}

pub fn project_scope(name: &str) -> Value {
    json!({ "project": { "name": name, "domain": { "id": "default" } } })
}

/// Runs an async test body against both engines.
#[macro_export]
macro_rules! both_engines {
    // With a configuration tweak (e.g. no compute hosts for tests that need
    // an empty placement).
    ($name:ident, tweak = $tweak:expr, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let cloud = Cloud::start_with(Engine::Sqlite, $tweak).await.unwrap();
                ($body)(&cloud).await;
                cloud.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(cloud) = Cloud::start_with(Engine::Postgres, $tweak).await else {
                    return;
                };
                ($body)(&cloud).await;
                cloud.stop().await;
            }
        }
    };
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let cloud = Cloud::start(Engine::Sqlite).await.unwrap();
                ($body)(&cloud).await;
                cloud.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(cloud) = Cloud::start(Engine::Postgres).await else {
                    return;
                };
                ($body)(&cloud).await;
                cloud.stop().await;
            }
        }
    };
}
