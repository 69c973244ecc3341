//! The internal API over real HTTP on loopback: an agent serving the fake
//! hypervisor, driven through `RemoteHypervisor` as the control plane
//! drives it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use agent::hypervisor::fake::{FakeHost, FakeHypervisor};
use agent::hypervisor::{
    ConfigDrive, DiskFormat, Error, Hypervisor, ImageSource, InstanceMetadata, PowerOff,
    PowerState, RebootKind, RebootOutcome, ResizeSpec, ServerSpec, StopOutcome,
};
use agent::remote::client::{RemoteConfig, RemoteHypervisor};
use agent::remote::server::{router, AgentState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const TOKEN: &str = "0123456789abcdef-test-token";

struct Agent {
    url: String,
    fake: Arc<FakeHypervisor>,
    dir: tempfile::TempDir,
}

/// A fake host and the agent state serving it from `dir`.
async fn fake_agent_state(dir: &std::path::Path) -> (Arc<FakeHypervisor>, Arc<AgentState>) {
    let mut host = FakeHost::numbered(1);
    host.hostname = "remote-host-1".into();
    let fake = Arc::new(FakeHypervisor::new(host));
    let state = AgentState::new(
        fake.clone(),
        TOKEN.into(),
        dir.join("images"),
        dir.join("scratch"),
    )
    .await
    .unwrap();
    (fake, state)
}

/// Reads from the connection until `needle` was seen (10 s per read).
async fn read_until(conn: &mut tokio::net::UnixStream, needle: &str) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{needle:?} within 10 s"))
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

async fn agent() -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let (fake, state) = fake_agent_state(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });
    Agent { url, fake, dir }
}

async fn client(a: &Agent, token: &str) -> agent::hypervisor::Result<RemoteHypervisor> {
    RemoteHypervisor::connect(RemoteConfig {
        url: a.url.clone(),
        token: token.into(),
        scratch_dir: a.dir.path().join("control"),
        ca_pem: None,
    })
    .await
}

fn spec(name: &str) -> ServerSpec {
    ServerSpec {
        id: Uuid::new_v4(),
        name: name.into(),
        hostname: name.into(),
        vcpus: 1,
        memory_mb: 256,
        root_gb: 1,
        image: ImageSource {
            path: "/fake/images/some-image".into(),
            format: DiskFormat::Qcow2,
        },
        nics: vec![],
        config_drive: Some(ConfigDrive::new(
            &InstanceMetadata {
                uuid: Uuid::nil(),
                name: name.into(),
                hostname: name.into(),
                ..Default::default()
            },
            None,
        )),
        console_log: None,
    }
}

#[tokio::test]
async fn a_wrong_token_is_refused() {
    let a = agent().await;
    let err = client(&a, "not-the-token").await.err().unwrap();
    assert!(
        matches!(&err, Error::Remote(m) if m.contains("token")),
        "{err}"
    );
    let err = client(&a, "").await.err().unwrap();
    assert!(matches!(err, Error::Remote(_)));
    // Nothing was asked of the hypervisor.
    assert!(a.fake.actions().is_empty());
}

#[tokio::test]
async fn an_unreachable_agent_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = RemoteHypervisor::connect(RemoteConfig {
        url: format!("http://127.0.0.1:{port}"),
        token: TOKEN.into(),
        scratch_dir: dir.path().join("s"),
        ca_pem: None,
    })
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&err, Error::Unreachable(m) if m.contains("127.0.0.1")),
        "{err}"
    );
}

#[tokio::test]
async fn the_lifecycle_over_the_wire() {
    let a = agent().await;
    let hv = client(&a, TOKEN).await.unwrap();
    assert_eq!(hv.kind(), "fake");
    // Each run of an agent names itself; the same run answers the same.
    let run = hv.ping().await.unwrap();
    assert_eq!(run.len(), 36, "{run}");
    assert_eq!(hv.ping().await.unwrap(), run);
    let res = hv.host_resources().await.unwrap();
    assert_eq!(res.hostname, "remote-host-1");
    assert_eq!(res.vcpus, a.fake.host().vcpus);
    assert_eq!(res.host_ip.to_string(), "127.0.0.1");

    let mut events = hv.events();
    let s = spec("vm1");
    let id = s.id;
    let info = hv.define(s.clone()).await.unwrap();
    assert_eq!(info.state, PowerState::Shutoff);
    assert_eq!(a.fake.info(id).await.unwrap().name, "vm1");
    assert!(matches!(hv.define(s).await, Err(Error::AlreadyExists(x)) if x == id));

    hv.power_on(id).await.unwrap();
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Running);
    // The event the fake emitted reached the client through the stream.
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .unwrap();
    assert_eq!((ev.id, ev.state), (id, PowerState::Running));

    // An operation the state forbids: the agent's message comes back.
    let err = hv.power_on(id).await;
    assert!(err.is_ok(), "start when running is a no-op: {err:?}");
    let grow = ResizeSpec {
        vcpus: 2,
        memory_mb: 512,
        root_gb: 2,
    };
    let err = hv.resize(id, grow).await.err().unwrap();
    assert!(
        matches!(&err, Error::Remote(m) if m.contains("running")),
        "{err}"
    );

    hv.pause(id).await.unwrap();
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Paused);
    hv.unpause(id).await.unwrap();
    assert_eq!(
        hv.reboot(id, RebootKind::Hard).await.unwrap(),
        RebootOutcome::Hard
    );
    let out = hv
        .power_off(id, PowerOff::graceful(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(out, StopOutcome::Clean);
    assert_eq!(
        hv.power_off(id, PowerOff::Hard).await.unwrap(),
        StopOutcome::AlreadyOff
    );

    hv.resize(id, grow).await.unwrap();
    assert!(hv.info(id).await.unwrap().resize_pending);
    hv.resize_revert(id).await.unwrap();
    let info = hv.info(id).await.unwrap();
    assert!(!info.resize_pending);
    assert_eq!(info.vcpus, 1);

    // The snapshot is streamed back and written where the caller asked.
    let dest = a.dir.path().join("snap.qcow2");
    let snap = hv.snapshot(id, &dest, DiskFormat::Qcow2).await.unwrap();
    assert_eq!(snap.path, dest);
    let data = std::fs::read(&dest).unwrap();
    assert_eq!(data.len() as u64, snap.size);
    assert!(String::from_utf8_lossy(&data).contains(&id.to_string()));
    // The agent kept no copy.
    assert_eq!(
        std::fs::read_dir(a.dir.path().join("scratch"))
            .unwrap()
            .count(),
        0
    );
    // An existing destination is refused here, before anything is written.
    assert!(hv.snapshot(id, &dest, DiskFormat::Qcow2).await.is_err());

    assert_eq!(hv.list().await.unwrap().len(), 1);
    assert!(hv.console_log(id, Some(5)).await.is_ok());
    hv.delete(id).await.unwrap();
    assert!(matches!(hv.info(id).await, Err(Error::NotFound(x)) if x == id));
    assert!(matches!(hv.delete(id).await, Err(Error::NotFound(_))));
    assert!(matches!(
        hv.console_log(id, None).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn the_serial_console_is_carried() {
    let a = agent().await;
    let hv = client(&a, TOKEN).await.unwrap();
    let s = spec("vm-serial");
    let id = s.id;
    hv.define(s).await.unwrap();
    // Not running: the agent's refusal comes back before any socket exists.
    let err = hv.serial_console(id).await.err().unwrap();
    assert!(
        matches!(&err, Error::Remote(m) if m.contains("serial")),
        "{err}"
    );
    hv.power_on(id).await.unwrap();

    let path = hv.serial_console(id).await.unwrap();
    assert!(path.starts_with(a.dir.path().join("control")));
    let mut conn = tokio::net::UnixStream::connect(&path).await.unwrap();
    read_until(&mut conn, "fake serial console\r\n").await;
    // The fake echoes what it is sent: both directions work.
    conn.write_all(b"hello over the wire\n").await.unwrap();
    read_until(&mut conn, "hello over the wire").await;
    // The local socket accepted its one connection and is gone.
    assert!(!path.exists());
    drop(conn);
    hv.delete(id).await.unwrap();
}

#[tokio::test]
async fn image_keys_are_checked_by_the_agent() {
    let a = agent().await;
    let http = reqwest::Client::new();
    for (key, want) in [("..", 404u16), (".hidden", 400), ("a%20b", 400)] {
        let resp = http
            .get(format!("{}/v1/images/{key}", a.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        // ".." is resolved away by the URL and matches no route.
        assert_eq!(resp.status().as_u16(), want, "{key}");
    }
    let resp = http
        .put(format!("{}/v1/images/good-key", a.url))
        .bearer_auth(TOKEN)
        .body("image bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let stored = std::fs::read(a.dir.path().join("images/good-key")).unwrap();
    assert_eq!(stored, b"image bytes");
    let resp = http
        .get(format!("{}/v1/images/missing", a.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // Without the token, nothing.
    let resp = http
        .put(format!("{}/v1/images/other", a.url))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(!a.dir.path().join("images/other").exists());
}

/// An agent behind TLS: the client trusts only the certificate it was
/// given; the JSON calls, the event stream and the serial console's
/// WebSocket all go over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_pinned_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (fake, state) = fake_agent_state(dir.path()).await;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert.pem().into_bytes(),
        cert.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    tokio::spawn(async move {
        let _ = axum_server::from_tcp_rustls(listener, tls)
            .serve(router(state).into_make_service())
            .await;
    });
    let connect = |ca: Option<Vec<u8>>| {
        let scratch = dir.path().join("control");
        async move {
            RemoteHypervisor::connect(RemoteConfig {
                url: format!("https://localhost:{port}"),
                token: TOKEN.into(),
                scratch_dir: scratch,
                ca_pem: ca,
            })
            .await
        }
    };
    // No certificate to trust, or the wrong one: no connection.
    assert!(matches!(connect(None).await, Err(Error::Invalid(_))));
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    assert!(connect(Some(other.cert.pem().into_bytes())).await.is_err());

    let hv = connect(Some(cert.cert.pem().into_bytes())).await.unwrap();
    let mut events = hv.events();
    let s = spec("vm-tls");
    let id = s.id;
    hv.define(s).await.unwrap();
    hv.power_on(id).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .unwrap();
    assert_eq!((ev.id, ev.state), (id, PowerState::Running));
    let path = hv.serial_console(id).await.unwrap();
    let mut conn = tokio::net::UnixStream::connect(&path).await.unwrap();
    read_until(&mut conn, "fake serial console").await;
    drop(conn);
    hv.delete(id).await.unwrap();
    assert!(fake.list().await.unwrap().is_empty());
}
