//! Remote consoles: `POST /servers/{id}/remote-consoles` (2.6) and the
//! older `os-getSerialConsole` action hand out a URL with a short-lived
//! token; `GET /compute/serial?token=...` upgrades to a WebSocket joined to
//! the server's serial port (Nova's nova-serialproxy, in process). Only the
//! serial console exists here: there is no graphics device to serve VNC,
//! SPICE, RDP or MKS from.

use std::sync::Arc;

use agent::remote::server::pump_websocket;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::Row;

use super::flavors::check;
use super::{base_url, query_pairs, Auth, Body, Mv, State};
use crate::db::instances::Instance;
use crate::error::{Error, Result};
use crate::Compute;

/// How long a console URL stays valid (Nova's `[consoleauth] token_ttl`).
const TOKEN_TTL_SECONDS: i64 = 600;

const PROTOCOLS: &[&str] = &["vnc", "spice", "serial", "rdp", "mks"];
const TYPES: &[&str] = &[
    "novnc",
    "xvpvnc",
    "spice-html5",
    "serial",
    "rdp-html5",
    "webmks",
];

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Compute {
    /// A console URL for a running server.
    pub(crate) async fn serial_console_url(&self, inst: &Instance, base: &str) -> Result<String> {
        let running =
            inst.vm_state == "active" && inst.power_state == crate::servers::power::RUNNING;
        if !running {
            return Err(Error::conflict(format!(
                "Instance {} is not ready.",
                inst.id
            )));
        }
        let host = inst
            .host
            .clone()
            .ok_or_else(|| Error::conflict(format!("Instance {} is not ready.", inst.id)))?;
        let token = {
            use rand::RngCore;
            let mut b = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut b);
            hex::encode(b)
        };
        let now = store::now_micros();
        let mut tx = self.db.write().await?;
        store::sqlx::query("DELETE FROM console_auth_tokens WHERE expires < $1")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        store::sqlx::query(
            "INSERT INTO console_auth_tokens (token_hash, instance_id, console_type, host, \
             expires, created_at) VALUES ($1, $2, 'serial', $3, $4, $5)",
        )
        .bind(token_hash(&token))
        .bind(&inst.id)
        .bind(&host)
        .bind(now + TOKEN_TTL_SECONDS * 1_000_000)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        let ws_base = match base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}"),
            Some((_, rest)) => format!("ws://{rest}"),
            None => format!("ws://{base}"),
        };
        Ok(format!("{ws_base}/serial?token={token}"))
    }
}

/// The `protocol`/`type` of a console request, checked as Nova's schema
/// does; anything but serial is a console this cloud does not have.
fn serial_only(protocol: &str, kind: &str) -> Result<()> {
    if protocol != "serial" || kind != "serial" {
        return Err(Error::bad(format!("Unavailable console type {kind}.")));
    }
    Ok(())
}

/// jsonschema's `enum` message over string options.
fn not_one_of(v: &Value, allowed: &[&str]) -> String {
    let options: Vec<Value> = allowed.iter().map(|a| json!(a)).collect();
    check::not_one_of(v, &options)
}

/// POST /servers/{id}/remote-consoles (2.6).
pub async fn create(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    if !mv.at_least(6) {
        return Err(Error::not_found("The resource could not be found."));
    }
    let rc = match body.get("remote_console") {
        Some(Value::Object(rc)) => rc,
        Some(other) => {
            return Err(check::field(
                "remote_console",
                other,
                check::not_type(other, &["object"]),
            ))
        }
        None => {
            return Err(check::field(
                "remote_console",
                &Value::Null,
                check::required("remote_console"),
            ))
        }
    };
    let field = |k: &str, allowed: &[&str]| -> Result<String> {
        match rc.get(k) {
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s.clone()),
            Some(other) => Err(check::field(k, other, not_one_of(other, allowed))),
            None => Err(check::field(
                "remote_console",
                &Value::Object(rc.clone()),
                check::required(k),
            )),
        }
    };
    let protocol = field("protocol", PROTOCOLS)?;
    let kind = field("type", TYPES)?;
    let extra: Vec<&String> = rc
        .keys()
        .filter(|k| !matches!(k.as_str(), "protocol" | "type"))
        .collect();
    if !extra.is_empty() {
        return Err(check::field(
            "remote_console",
            &Value::Object(rc.clone()),
            check::additional(&extra),
        ));
    }
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-remote-consoles")
        .await?;
    serial_only(&protocol, &kind)?;
    let url = state
        .serial_console_url(&inst, &base_url(&state, &headers))
        .await?;
    Ok(Json(json!({
        "remote_console": {"protocol": protocol, "type": kind, "url": url}
    })))
}

/// The `os-getSerialConsole` action (2.1-2.5): `{"console": {type, url}}`.
pub(crate) async fn legacy_serial(
    state: &Compute,
    inst: &Instance,
    args: &Value,
    base: &str,
) -> Result<Response> {
    let kind = args.get("type").cloned().unwrap_or(Value::Null);
    if kind.as_str() != Some("serial") {
        return Err(match &kind {
            Value::Null => check::field("os-getSerialConsole", args, check::required("type")),
            other => check::field("type", other, not_one_of(other, &["serial"])),
        });
    }
    let url = state.serial_console_url(inst, base).await?;
    Ok(Json(json!({"console": {"type": "serial", "url": url}})).into_response())
}

/// GET /compute/serial?token=...: the WebSocket to a serial port. The token
/// is the credential; bytes go both ways as binary messages.
pub async fn proxy(
    state: axum::extract::State<Arc<Compute>>,
    RawQuery(q): RawQuery,
    ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    let token = pairs
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Unauthorized("The token is missing.".into()))?;
    let row = store::sqlx::query(
        "SELECT instance_id, host FROM console_auth_tokens WHERE token_hash = $1 AND expires >= $2",
    )
    .bind(token_hash(token))
    .bind(store::now_micros())
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(|| Error::Unauthorized("The token is invalid or has expired.".into()))?;
    let ws = ws.map_err(|e| Error::bad(format!("This is a WebSocket endpoint: {e}")))?;
    let id: String = row.try_get(0)?;
    let host_name: String = row.try_get(1)?;
    let host = state
        .hosts
        .get(&host_name)
        .ok_or_else(|| Error::conflict(format!("Instance {id} is not ready.")))?;
    let uuid = uuid::Uuid::parse_str(&id).map_err(|_| Error::server_not_found(&id))?;
    let sock = host
        .hv
        .serial_console(uuid)
        .await
        .map_err(|e| Error::conflict(format!("Instance {id} is not ready: {e}")))?;
    let stream = tokio::net::UnixStream::connect(&sock)
        .await
        .map_err(|e| Error::conflict(format!("Instance {id} is not ready: {e}")))?;
    Ok(ws
        .protocols(["binary"])
        .on_upgrade(move |socket| pump_websocket(socket, stream)))
}
