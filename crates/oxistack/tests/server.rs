//! The HTTP foundation: TLS, CORS, faults for unknown routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cloud, Engine};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_when_configured() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let c = Cloud::start_with(Engine::Sqlite, |cfg| {
        cfg.server.tls_cert = Some(cert_path.clone());
        cfg.server.tls_key = Some(key_path.clone());
    })
    .await
    .unwrap();
    assert!(c.url.starts_with("https://"), "{}", c.url);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/identity/v3", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    // Self links say https.
    assert!(body["version"]["links"][0]["href"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    // Plain HTTP to the TLS port does not get an API answer.
    let plain = reqwest::Client::new()
        .get(c.url.replacen("https://", "http://", 1) + "/identity/v3")
        .send()
        .await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_for_allowed_origins_only() {
    let c = Cloud::start_with(Engine::Sqlite, |cfg| {
        cfg.server.cors_allowed_origins = vec!["https://dashboard.example".into()];
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let pre = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/identity/v3/projects", c.url),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "x-auth-token")
            .send()
    };
    let ok = pre("https://dashboard.example").await.unwrap();
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "https://dashboard.example"
    );
    let allowed = ok
        .headers()
        .get("access-control-allow-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("x-auth-token"), "{allowed}");
    let other = pre("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    c.stop().await;
}
