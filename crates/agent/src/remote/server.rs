//! The agent's side of the internal API: a [`Hypervisor`] served over HTTP.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::{valid_image_key, Action, ErrorBody, Frame, Health, ImageEntry, WireError, WireEvent};
use crate::hypervisor::{DiskFormat, Error, Hypervisor, ImageSource, ServerSpec};

/// How often the event stream sends a blank line when nothing happens, so
/// that the control plane notices a dead connection.
const EVENT_KEEPALIVE: Duration = Duration::from_secs(10);

/// What the agent's routes share.
pub struct AgentState {
    hv: Arc<dyn Hypervisor>,
    token: String,
    /// Base images uploaded by the control plane, by key.
    images_dir: PathBuf,
    /// Snapshots on their way out.
    scratch_dir: PathBuf,
    /// This run's id ([`Health::instance`]).
    instance: String,
}

impl AgentState {
    /// Prepares `images_dir` and `scratch_dir` (created 0700; unfinished
    /// uploads and snapshots of an earlier run are removed).
    pub async fn new(
        hv: Arc<dyn Hypervisor>,
        token: String,
        images_dir: PathBuf,
        scratch_dir: PathBuf,
    ) -> Result<Arc<Self>, Error> {
        for dir in [&images_dir, &scratch_dir] {
            make_private_dir(dir).await?;
        }
        let mut rd = tokio::fs::read_dir(&images_dir)
            .await
            .map_err(|e| Error::io("read the image directory", e))?;
        while let Ok(Some(entry)) = rd.next_entry().await {
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        let mut rd = tokio::fs::read_dir(&scratch_dir)
            .await
            .map_err(|e| Error::io("read the scratch directory", e))?;
        while let Ok(Some(entry)) = rd.next_entry().await {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
        Ok(Arc::new(AgentState {
            hv,
            token,
            images_dir,
            scratch_dir,
            instance: Uuid::new_v4().to_string(),
        }))
    }

    /// The local image a key names (the fake hypervisor reads no image:
    /// its paths pass through).
    async fn resolve(&self, image: ImageSource) -> Result<ImageSource, Error> {
        if self.hv.kind() == "fake" {
            return Ok(image);
        }
        let key = image.path.to_str().unwrap_or_default();
        if !valid_image_key(key) {
            return Err(Error::Invalid(format!(
                "image {:?} is not an image key",
                image.path
            )));
        }
        let path = self.images_dir.join(key);
        if tokio::fs::metadata(&path).await.is_err() {
            return Err(Error::Invalid(format!(
                "image {key} has not been uploaded to this host"
            )));
        }
        Ok(ImageSource {
            path,
            format: image.format,
        })
    }
}

async fn make_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))
}

/// The internal API's routes, every one behind the token check.
pub fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/host", get(host))
        .route("/v1/adopt", post(adopt))
        .route("/v1/servers", get(list).post(define))
        .route("/v1/servers/{id}", get(info).delete(delete))
        .route("/v1/servers/{id}/action", post(action))
        .route("/v1/servers/{id}/console", get(console))
        .route("/v1/servers/{id}/snapshot", post(snapshot))
        .route("/v1/servers/{id}/serial", get(serial))
        .route("/v1/images/{key}", get(image_get).put(image_put))
        .route("/v1/events", get(events))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// A hypervisor error as the wire's error body.
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = WireError::from_error(&self.0);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "agent request failed");
        }
        (status, Json(ErrorBody { error })).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Equal-time comparison of the presented token with ours.
fn token_matches(given: &[u8], ours: &[u8]) -> bool {
    given.len() == ours.len()
        && given
            .iter()
            .zip(ours)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn auth(State(st): State<Arc<AgentState>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token_matches(t.as_bytes(), st.token.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        let error = WireError {
            kind: "unauthorized".into(),
            message: "the agent token is missing or wrong".into(),
            id: None,
        };
        (StatusCode::UNAUTHORIZED, Json(ErrorBody { error })).into_response()
    }
}

async fn health(State(st): State<Arc<AgentState>>) -> Json<Health> {
    Json(Health {
        kind: st.hv.kind().into(),
        version: env!("CARGO_PKG_VERSION").into(),
        instance: st.instance.clone(),
    })
}

async fn host(State(st): State<Arc<AgentState>>) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.hv.host_resources().await?))
}

async fn adopt(State(st): State<Arc<AgentState>>) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.hv.adopt().await?))
}

async fn list(State(st): State<Arc<AgentState>>) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.hv.list().await?))
}

async fn info(
    State(st): State<Arc<AgentState>>,
    UrlPath(id): UrlPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.hv.info(id).await?))
}

async fn define(
    State(st): State<Arc<AgentState>>,
    Json(mut spec): Json<ServerSpec>,
) -> ApiResult<impl IntoResponse> {
    if spec.console_log.is_some() {
        return Err(
            Error::Invalid("a remote server logs its console in its own directory".into()).into(),
        );
    }
    spec.image = st.resolve(spec.image).await?;
    Ok(Json(st.hv.define(spec).await?))
}

async fn delete(
    State(st): State<Arc<AgentState>>,
    UrlPath(id): UrlPath<Uuid>,
) -> ApiResult<StatusCode> {
    st.hv.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn action(
    State(st): State<Arc<AgentState>>,
    UrlPath(id): UrlPath<Uuid>,
    Json(action): Json<Action>,
) -> ApiResult<Json<Value>> {
    let hv = &st.hv;
    let out = match action {
        Action::PowerOn => hv.power_on(id).await.map(|()| json!({}))?,
        Action::PowerOff { how } => {
            let outcome = hv.power_off(id, how.into()).await?;
            json!({ "outcome": outcome })
        }
        Action::Reboot { kind } => {
            let outcome = hv.reboot(id, kind.into()).await?;
            json!({ "outcome": outcome })
        }
        Action::Pause => hv.pause(id).await.map(|()| json!({}))?,
        Action::Unpause => hv.unpause(id).await.map(|()| json!({}))?,
        Action::Suspend => hv.suspend(id).await.map(|()| json!({}))?,
        Action::Resume => hv.resume(id).await.map(|()| json!({}))?,
        Action::Resize { to } => hv.resize(id, to).await.map(|()| json!({}))?,
        Action::ResizeConfirm => hv.resize_confirm(id).await.map(|()| json!({}))?,
        Action::ResizeRevert => hv.resize_revert(id).await.map(|()| json!({}))?,
        Action::Rebuild { mut spec } => {
            spec.image = st.resolve(spec.image).await?;
            hv.rebuild(id, spec).await.map(|()| json!({}))?
        }
        Action::Rescue { image } => {
            let image = st.resolve(image).await?;
            hv.rescue(id, image).await.map(|()| json!({}))?
        }
        Action::Unrescue => hv.unrescue(id).await.map(|()| json!({}))?,
    };
    Ok(Json(out))
}

#[derive(Deserialize)]
struct ConsoleQuery {
    tail_lines: Option<usize>,
}

async fn console(
    State(st): State<Arc<AgentState>>,
    UrlPath(id): UrlPath<Uuid>,
    Query(q): Query<ConsoleQuery>,
) -> ApiResult<impl IntoResponse> {
    let output = st.hv.console_log(id, q.tail_lines).await?;
    Ok(Json(json!({ "output": output })))
}

#[derive(Deserialize)]
struct SnapshotRequest {
    format: DiskFormat,
}

/// Writes the snapshot to a scratch file, unlinks it (the open file keeps
/// the data until the response is sent) and streams it.
async fn snapshot(
    State(st): State<Arc<AgentState>>,
    UrlPath(id): UrlPath<Uuid>,
    Json(req): Json<SnapshotRequest>,
) -> ApiResult<Response> {
    let path = st
        .scratch_dir
        .join(format!("{id}.{}", Uuid::new_v4().simple()));
    let info = st.hv.snapshot(id, &path, req.format).await?;
    let file = tokio::fs::File::open(&info.path).await;
    let _ = tokio::fs::remove_file(&info.path).await;
    let file = file.map_err(|e| Error::io("open the snapshot", e))?;
    let meta = serde_json::to_string(&info).map_err(|e| Error::Invalid(e.to_string()))?;
    let meta = HeaderValue::from_str(&meta).map_err(|e| Error::Invalid(e.to_string()))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(super::SNAPSHOT_INFO_HEADER, meta);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

async fn serial(
    State(st): State<Arc<AgentState>>,
    UrlPath(id): UrlPath<Uuid>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let sock = st.hv.serial_console(id).await?;
    let stream = tokio::net::UnixStream::connect(&sock)
        .await
        .map_err(|e| Error::io("connect to the serial port", e))?;
    Ok(ws.on_upgrade(move |socket| pump_websocket(socket, stream)))
}

/// Copies between a WebSocket and a serial port's socket until either
/// ends. Binary and text frames both go to the port.
pub async fn pump_websocket(ws: WebSocket, stream: tokio::net::UnixStream) {
    super::pump_serial(
        ws,
        stream,
        Message::Binary,
        |m| match m {
            Message::Binary(b) => Frame::Data(b),
            Message::Text(t) => Frame::Data(Bytes::from(t.as_str().to_owned())),
            Message::Close(_) => Frame::Close,
            _ => Frame::Other,
        },
        Message::Close(None),
    )
    .await;
}

async fn image_get(
    State(st): State<Arc<AgentState>>,
    UrlPath(key): UrlPath<String>,
) -> ApiResult<Response> {
    if !valid_image_key(&key) {
        return Err(Error::Invalid(format!("{key:?} is not an image key")).into());
    }
    match tokio::fs::metadata(st.images_dir.join(&key)).await {
        Ok(meta) => Ok(Json(ImageEntry {
            key,
            size: meta.len(),
        })
        .into_response()),
        Err(_) => {
            let error = WireError {
                kind: "no_image".into(),
                message: format!("image {key} is not on this host"),
                id: None,
            };
            Ok((StatusCode::NOT_FOUND, Json(ErrorBody { error })).into_response())
        }
    }
}

/// Streams an image into a hidden file and renames it into place when
/// complete; an interrupted upload leaves nothing.
async fn image_put(
    State(st): State<Arc<AgentState>>,
    UrlPath(key): UrlPath<String>,
    body: Body,
) -> ApiResult<Json<ImageEntry>> {
    if !valid_image_key(&key) {
        return Err(Error::Invalid(format!("{key:?} is not an image key")).into());
    }
    let tmp = st
        .images_dir
        .join(format!(".{key}.{}", Uuid::new_v4().simple()));
    match receive(&tmp, body).await {
        Ok(size) => {
            tokio::fs::rename(&tmp, st.images_dir.join(&key))
                .await
                .map_err(|e| Error::io("store the image", e))?;
            Ok(Json(ImageEntry { key, size }))
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e.into())
        }
    }
}

async fn receive(path: &Path, body: Body) -> Result<u64, Error> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io("create the image file", e))?;
    super::write_stream(&mut file, body.into_data_stream(), "image file", |e| {
        Error::Remote(format!("image upload broke off: {e}"))
    })
    .await
}

/// Lifecycle events as they happen, one JSON object per line.
async fn events(State(st): State<Arc<AgentState>>) -> Response {
    let rx = st.hv.events();
    let mut tick = tokio::time::interval(EVENT_KEEPALIVE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((rx, tick), |(mut rx, mut tick)| async move {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        let mut line = serde_json::to_vec(&WireEvent::from(ev)).unwrap_or_default();
                        line.push(b'\n');
                        return Some((Ok::<_, Infallible>(Bytes::from(line)), (rx, tick)));
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event stream lagged");
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = tick.tick() => return Some((Ok(Bytes::from_static(b"\n")), (rx, tick))),
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"secret-token", b"secret-token"));
        assert!(!token_matches(b"secret-tokeN", b"secret-token"));
        assert!(!token_matches(b"secret", b"secret-token"));
        assert!(!token_matches(b"", b"secret-token"));
    }
}
