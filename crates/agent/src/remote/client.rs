//! The control plane's side of the internal API: a [`Hypervisor`] whose
//! host is another machine's agent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, Mutex};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::{Action, ErrorBody, Frame, Health, ImageEntry, WireEvent, SNAPSHOT_INFO_HEADER};
use crate::hypervisor::{
    DiskFormat, Error, HostResources, Hypervisor, ImageSource, LifecycleEvent, PowerOff,
    RebootKind, RebootOutcome, RebuildSpec, ResizeSpec, Result, ServerInfo, ServerSpec,
    SnapshotInfo, StopOutcome,
};

/// Quick requests (state, lists, console log) give up after this long;
/// operations (power, define, snapshot...) take as long as they take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// A silent event stream is reopened after this long (the agent sends a
/// blank line every 10 s).
const EVENT_SILENCE: Duration = Duration::from_secs(30);
/// A local caller has this long to connect to a serial console's socket.
const SERIAL_ACCEPT: Duration = Duration::from_secs(30);

/// Where an agent is and how to talk to it.
#[derive(Clone)]
pub struct RemoteConfig {
    /// `http://host:port` of `oxistack agent`.
    pub url: String,
    /// The shared secret (never logged).
    pub token: String,
    /// A private local directory for the serial consoles' sockets.
    pub scratch_dir: PathBuf,
    /// For an `https://` agent: the PEM certificate(s) to trust for it
    /// (its own, or the CA that signed it). Nothing else is trusted.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("scratch_dir", &self.scratch_dir)
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .finish()
    }
}

struct Inner {
    base: String,
    /// The TLS settings of the serial console's WebSocket (`https` agents).
    tls: Option<Arc<rustls::ClientConfig>>,
    token: String,
    http: reqwest::Client,
    kind: &'static str,
    scratch_dir: PathBuf,
    events: broadcast::Sender<LifecycleEvent>,
    /// One image upload at a time, so that servers booting from the same
    /// image send it once.
    uploads: Mutex<()>,
}

/// A host driven through its agent's internal API.
#[derive(Clone)]
pub struct RemoteHypervisor {
    inner: Arc<Inner>,
}

impl RemoteHypervisor {
    /// Checks that the agent answers (and the token is right), learns its
    /// hypervisor kind and starts following its events.
    pub async fn connect(cfg: RemoteConfig) -> Result<Self> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Duration::from_secs(30));
        let tls = if cfg.url.starts_with("https://") {
            let pem = cfg.ca_pem.as_deref().ok_or_else(|| {
                Error::Invalid(format!(
                    "agent {}: an https agent needs the certificate to trust (ca_file)",
                    cfg.url
                ))
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Invalid(format!("agent CA certificate: {e}")))?
            {
                http = http.add_root_certificate(cert);
            }
            Some(tls_config(pem)?)
        } else {
            None
        };
        let http = http
            .build()
            .map_err(|e| Error::Remote(format!("HTTP client: {e}")))?;
        {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::create_dir_all(&cfg.scratch_dir)
                .await
                .map_err(|e| Error::io("create the remote scratch directory", e))?;
            tokio::fs::set_permissions(&cfg.scratch_dir, std::fs::Permissions::from_mode(0o700))
                .await
                .map_err(|e| Error::io("chmod the remote scratch directory", e))?;
        }
        let mut inner = Inner {
            base: cfg.url.trim_end_matches('/').to_string(),
            tls,
            token: cfg.token,
            http,
            kind: "remote",
            scratch_dir: cfg.scratch_dir,
            events: broadcast::channel(1024).0,
            uploads: Mutex::new(()),
        };
        let health: Health = inner
            .json(
                inner
                    .request(Method::GET, "/v1/health")
                    .timeout(QUICK_TIMEOUT),
            )
            .await?;
        inner.kind = match health.kind.as_str() {
            "qemu" => "qemu",
            "fake" => "fake",
            _ => "remote",
        };
        let inner = Arc::new(inner);
        tokio::spawn(follow_events(Arc::downgrade(&inner)));
        Ok(RemoteHypervisor { inner })
    }

    /// The agent's URL.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// Makes sure the agent has the image and names it by its key.
    async fn ship_image(&self, image: ImageSource) -> Result<ImageSource> {
        if self.inner.kind == "fake" {
            return Ok(image);
        }
        let key = image
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|k| super::valid_image_key(k))
            .ok_or_else(|| Error::Invalid(format!("image {:?} has no usable key", image.path)))?
            .to_string();
        let i = &self.inner;
        let _one = i.uploads.lock().await;
        let have = i
            .request(Method::GET, &format!("/v1/images/{key}"))
            .timeout(QUICK_TIMEOUT)
            .send()
            .await
            .map_err(|e| i.unreachable(e))?;
        if have.status() == StatusCode::NOT_FOUND {
            let file = tokio::fs::File::open(&image.path)
                .await
                .map_err(|e| Error::io(format!("open image {}", image.path.display()), e))?;
            let size = file
                .metadata()
                .await
                .map_err(|e| Error::io("image size", e))?
                .len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                file,
                1 << 20,
            ));
            let entry: ImageEntry = i
                .json(
                    i.request(Method::PUT, &format!("/v1/images/{key}"))
                        .header(reqwest::header::CONTENT_LENGTH, size)
                        .body(body),
                )
                .await?;
            if entry.size != size {
                return Err(Error::Remote(format!(
                    "image {key}: the agent stored {} of {size} bytes",
                    entry.size
                )));
            }
            tracing::info!(agent = %i.base, image = %key, size, "image sent to the host agent");
        } else {
            i.check(have).await?;
        }
        Ok(ImageSource {
            path: PathBuf::from(key),
            format: image.format,
        })
    }

    async fn action<T: DeserializeOwned>(&self, id: Uuid, action: &Action) -> Result<T> {
        let i = &self.inner;
        i.json(
            i.request(Method::POST, &format!("/v1/servers/{id}/action"))
                .json(action),
        )
        .await
    }

    async fn act(&self, id: Uuid, action: Action) -> Result<()> {
        self.action::<Value>(id, &action).await.map(|_| ())
    }
}

#[derive(Deserialize)]
struct Outcome<T> {
    outcome: T,
}

#[derive(Deserialize)]
struct Console {
    output: String,
}

#[derive(Serialize)]
struct SnapshotRequest {
    format: DiskFormat,
}

impl Inner {
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// A transport failure: no connection (or it broke before an answer).
    fn unreachable(&self, e: reqwest::Error) -> Error {
        if e.is_connect() || e.is_timeout() {
            Error::Unreachable(format!("{}: {e}", self.base))
        } else {
            Error::Remote(format!("agent {}: {e}", self.base))
        }
    }

    /// The response when it succeeded, else its error.
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => body.error.into_error(),
            Err(_) => Error::Remote(format!(
                "agent {} answered {status}: {}",
                self.base,
                text.chars().take(300).collect::<String>()
            )),
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        self.check(resp)
            .await?
            .json()
            .await
            .map_err(|e| Error::Remote(format!("agent {}: bad answer: {e}", self.base)))
    }
}

/// Follows the agent's event stream into the local channel, reopening it
/// when it breaks or falls silent, until the hypervisor is dropped.
async fn follow_events(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let req = inner.request(Method::GET, "/v1/events");
        let base = inner.base.clone();
        drop(inner);
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let mut body = resp.bytes_stream();
                let mut line = Vec::new();
                while let Ok(Some(Ok(chunk))) =
                    tokio::time::timeout(EVENT_SILENCE, body.next()).await
                {
                    for &b in chunk.iter() {
                        if b != b'\n' {
                            line.push(b);
                            continue;
                        }
                        if !line.is_empty() {
                            if let Ok(ev) = serde_json::from_slice::<WireEvent>(&line) {
                                let Some(inner) = weak.upgrade() else { return };
                                let _ = inner.events.send(ev.into());
                            }
                            line.clear();
                        }
                    }
                }
                tracing::debug!(agent = %base, "event stream ended; reopening");
            }
            Ok(resp) => {
                tracing::warn!(agent = %base, status = %resp.status(), "event stream refused")
            }
            Err(e) => tracing::debug!(agent = %base, error = %e, "event stream unavailable"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[async_trait]
impl Hypervisor for RemoteHypervisor {
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    fn events(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.inner.events.subscribe()
    }

    async fn ping(&self) -> Result<String> {
        let i = &self.inner;
        i.json::<Health>(
            i.request(Method::GET, "/v1/health")
                .timeout(Duration::from_secs(5)),
        )
        .await
        .map(|h| h.instance)
    }

    async fn host_resources(&self) -> Result<HostResources> {
        let i = &self.inner;
        i.json(i.request(Method::GET, "/v1/host").timeout(QUICK_TIMEOUT))
            .await
    }

    async fn adopt(&self) -> Result<Vec<ServerInfo>> {
        let i = &self.inner;
        i.json(i.request(Method::POST, "/v1/adopt")).await
    }

    async fn list(&self) -> Result<Vec<ServerInfo>> {
        let i = &self.inner;
        i.json(i.request(Method::GET, "/v1/servers").timeout(QUICK_TIMEOUT))
            .await
    }

    async fn info(&self, id: Uuid) -> Result<ServerInfo> {
        let i = &self.inner;
        i.json(
            i.request(Method::GET, &format!("/v1/servers/{id}"))
                .timeout(QUICK_TIMEOUT),
        )
        .await
    }

    async fn define(&self, mut spec: ServerSpec) -> Result<ServerInfo> {
        spec.validate()?;
        if spec.console_log.is_some() {
            return Err(Error::Unsupported(
                "a console log path on a remote host".into(),
            ));
        }
        spec.image = self.ship_image(spec.image).await?;
        let i = &self.inner;
        i.json(i.request(Method::POST, "/v1/servers").json(&spec))
            .await
    }

    async fn power_on(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::PowerOn).await
    }

    async fn power_off(&self, id: Uuid, how: PowerOff) -> Result<StopOutcome> {
        let o: Outcome<StopOutcome> = self
            .action(id, &Action::PowerOff { how: how.into() })
            .await?;
        Ok(o.outcome)
    }

    async fn reboot(&self, id: Uuid, kind: RebootKind) -> Result<RebootOutcome> {
        let o: Outcome<RebootOutcome> = self
            .action(id, &Action::Reboot { kind: kind.into() })
            .await?;
        Ok(o.outcome)
    }

    async fn pause(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::Pause).await
    }

    async fn unpause(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::Unpause).await
    }

    async fn suspend(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::Suspend).await
    }

    async fn resume(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::Resume).await
    }

    async fn resize(&self, id: Uuid, to: ResizeSpec) -> Result<()> {
        self.act(id, Action::Resize { to }).await
    }

    async fn resize_confirm(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::ResizeConfirm).await
    }

    async fn resize_revert(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::ResizeRevert).await
    }

    async fn rebuild(&self, id: Uuid, mut spec: RebuildSpec) -> Result<()> {
        spec.image = self.ship_image(spec.image).await?;
        self.act(id, Action::Rebuild { spec }).await
    }

    async fn rescue(&self, id: Uuid, image: ImageSource) -> Result<()> {
        let image = self.ship_image(image).await?;
        self.act(id, Action::Rescue { image }).await
    }

    async fn unrescue(&self, id: Uuid) -> Result<()> {
        self.act(id, Action::Unrescue).await
    }

    /// The agent streams the snapshot; it is written to `dest` here (an
    /// interrupted transfer leaves no file).
    async fn snapshot(&self, id: Uuid, dest: &Path, format: DiskFormat) -> Result<SnapshotInfo> {
        let i = &self.inner;
        let resp = i
            .request(Method::POST, &format!("/v1/servers/{id}/snapshot"))
            .json(&SnapshotRequest { format })
            .send()
            .await
            .map_err(|e| i.unreachable(e))?;
        let resp = i.check(resp).await?;
        let info: SnapshotInfo = resp
            .headers()
            .get(SNAPSHOT_INFO_HEADER)
            .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
            .ok_or_else(|| Error::Remote(format!("agent {}: snapshot without its info", i.base)))?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|e| Error::io(format!("create {}", dest.display()), e))?;
        let copied = async {
            let size = super::write_stream(&mut file, resp.bytes_stream(), "snapshot", |e| {
                i.unreachable(e)
            })
            .await?;
            if size != info.size {
                return Err(Error::Remote(format!(
                    "snapshot transfer ended after {size} of {} bytes",
                    info.size
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(e);
        }
        Ok(SnapshotInfo {
            path: dest.to_path_buf(),
            ..info
        })
    }

    /// Opens the agent's serial WebSocket and offers it as a local Unix
    /// socket that accepts one connection.
    async fn serial_console(&self, id: Uuid) -> Result<PathBuf> {
        let i = &self.inner;
        let url = format!("{}/v1/servers/{id}/serial", i.base)
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1);
        let mut req = url
            .into_client_request()
            .map_err(|e| Error::Remote(format!("serial console URL: {e}")))?;
        let auth = format!("Bearer {}", i.token)
            .parse()
            .map_err(|_| Error::Invalid("the agent token is not a valid header value".into()))?;
        req.headers_mut()
            .insert(reqwest::header::AUTHORIZATION, auth);
        let uri = req.uri().clone();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if i.tls.is_some() { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| Error::Unreachable(format!("{}: {e}", i.base)))?;
        let path = i
            .scratch_dir
            .join(format!("serial-{}.sock", Uuid::new_v4().simple()));
        match &i.tls {
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| Error::Invalid(format!("agent host name {host:?}: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::Remote(format!("serial console: TLS: {e}")))?;
                let ws = handshake(req, stream).await?;
                offer(ws, path).await
            }
            None => {
                let ws = handshake(req, tcp).await?;
                offer(ws, path).await
            }
        }
    }

    async fn console_log(&self, id: Uuid, tail_lines: Option<usize>) -> Result<String> {
        let i = &self.inner;
        let mut req = i
            .request(Method::GET, &format!("/v1/servers/{id}/console"))
            .timeout(QUICK_TIMEOUT);
        if let Some(n) = tail_lines {
            req = req.query(&[("tail_lines", n)]);
        }
        let c: Console = i.json(req).await?;
        Ok(c.output)
    }

    async fn delete(&self, id: Uuid) -> Result<()> {
        let i = &self.inner;
        let resp = i
            .request(Method::DELETE, &format!("/v1/servers/{id}"))
            .send()
            .await
            .map_err(|e| i.unreachable(e))?;
        i.check(resp).await.map(|_| ())
    }
}

/// Copies between the agent's WebSocket and a local caller's connection.
async fn pump<S>(ws: tokio_tungstenite::WebSocketStream<S>, stream: tokio::net::UnixStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    super::pump_serial(
        ws,
        stream,
        Message::Binary,
        |m| match m {
            Message::Binary(b) => Frame::Data(b),
            Message::Text(t) => Frame::Data(bytes::Bytes::from(t.as_str().to_owned())),
            Message::Close(_) => Frame::Close,
            _ => Frame::Other,
        },
        Message::Close(None),
    )
    .await;
}

/// The rustls settings that trust only the given PEM certificates.
fn tls_config(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::Invalid(format!("agent CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Invalid(format!("agent CA certificate: {e}")))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Invalid(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The WebSocket handshake on an open connection; the agent's refusal
/// (server not running, unknown server) comes back as its error.
async fn handshake<S>(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
    stream: S,
) -> Result<tokio_tungstenite::WebSocketStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => b.error.into_error(),
                Err(_) => {
                    Error::Remote(format!("serial console: agent answered {}", resp.status()))
                }
            })
        }
        Err(e) => Err(Error::Remote(format!("serial console: {e}"))),
    }
}

/// A one-connection local Unix socket at `path` joined to the WebSocket.
async fn offer<S>(ws: tokio_tungstenite::WebSocketStream<S>, path: PathBuf) -> Result<PathBuf>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| Error::io("bind the serial console socket", e))?;
    let sock = path.clone();
    tokio::spawn(async move {
        let accepted = tokio::time::timeout(SERIAL_ACCEPT, listener.accept()).await;
        let _ = tokio::fs::remove_file(&sock).await;
        if let Ok(Ok((stream, _))) = accepted {
            pump(ws, stream).await;
        }
    });
    Ok(path)
}
