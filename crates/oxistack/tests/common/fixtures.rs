//! Compute fixtures shared by the compute tests.

use reqwest::StatusCode;
use serde_json::json;

use super::Cloud;

/// Inserts a flavor row (the flavor API has its own tests).
pub async fn flavor(c: &Cloud, id: &str, vcpus: i64, ram: i64, disk: i64) {
    let db = store::Db::connect(&c.db_url, 2).await.unwrap();
    store::sqlx::query(
        "INSERT INTO flavors (id, name, vcpus, memory_mb, root_gb, created_at) \
         VALUES ($1, $2, $3, $4, $5, 0)",
    )
    .bind(id)
    .bind(format!("f-{id}"))
    .bind(vcpus)
    .bind(ram)
    .bind(disk)
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
}

/// Registers an active public image with a few bytes of data.
pub async fn image(c: &Cloud, token: &str) -> String {
    let r = c
        .post(
            "/image/v2/images",
            token,
            json!({"name": "img", "disk_format": "raw", "container_format": "bare", "visibility": "public"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let res = reqwest::Client::new()
        .put(format!("{}/image/v2/images/{id}/file", c.url))
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    id
}
