//! The data path of an upload: a byte stream in, a stored, hashed and
//! inspected image out.
//!
//! The request task reads the stream, counts bytes against the limit (size
//! cap and quota, enforced as the bytes arrive), runs the [`Inspector`] and
//! hands the chunks, in batches, to three blocking threads: one computes the
//! MD5 `checksum`, one the `os_hash_value`, one writes to the store. The
//! channels between them are bounded, so memory stays flat whatever the
//! image size. When anything fails the store writer is dropped, which
//! removes the partial file.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::Digest;
use tokio::sync::mpsc;

use crate::inspect::{InspectError, Inspector, Outcome};
use crate::store::{DataWriter, StoreError};
use crate::Error;

/// Batches in flight per worker thread.
const QUEUE: usize = 8;
/// Chunks are handed to the workers in batches of about this many bytes
/// (fewer thread wake-ups than one per network read).
const BATCH: usize = 512 * 1024;

type Batch = std::sync::Arc<Vec<Bytes>>;

/// Why an upload may not grow beyond [`Limits::max`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// The deployment's `image_size_cap`.
    SizeCap,
    /// A quota, with its resource name.
    Quota(&'static str),
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max: u64,
    pub kind: LimitKind,
}

impl Limits {
    pub fn error(&self, attempted: u64) -> Error {
        match &self.kind {
            LimitKind::SizeCap => Error::TooLarge(format!(
                "The incoming image is too large: the limit is {} bytes",
                self.max
            )),
            LimitKind::Quota(name) => Error::TooLarge(format!(
                "Image exceeds the storage quota: {name} would be exceeded \
                 ({attempted} bytes attempted, {} bytes remain)",
                self.max
            )),
        }
    }
}

/// The hash recorded as `os_hash_value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgo {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgo {
    pub fn from_name(s: &str) -> Option<HashAlgo> {
        Some(match s {
            "sha256" => HashAlgo::Sha256,
            "sha384" => HashAlgo::Sha384,
            "sha512" => HashAlgo::Sha512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
        }
    }
}

pub(crate) enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub(crate) fn new(a: HashAlgo) -> Hasher {
        match a {
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub(crate) fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha384(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    pub(crate) fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// What to do with the stream.
pub struct Pump {
    pub limits: Vec<Limits>,
    /// The size the client announced, if any: more or fewer bytes fail.
    pub expected_size: Option<u64>,
    pub inspector: Option<Inspector>,
    pub hash: HashAlgo,
    /// Called every few seconds while data flows (the upload's heartbeat).
    pub heartbeat: Option<Box<dyn FnMut() -> futures_util::future::BoxFuture<'static, ()> + Send>>,
}

/// A stored stream.
#[derive(Clone, Debug)]
pub struct Received {
    pub size: u64,
    pub checksum: String,
    pub hash_algo: HashAlgo,
    pub hash_value: String,
    pub outcome: Option<Outcome>,
    pub location: String,
}

/// Maps an inspection failure to Glance's answer (415 for data that is not
/// what it claims to be, as upstream's InvalidImageData).
pub fn inspect_error(e: InspectError) -> Error {
    Error::UnsupportedMediaType(e.to_string())
}

/// Streams `body` into `writer`; see the module documentation.
pub async fn pump<S, E>(
    mut body: S,
    mut p: Pump,
    writer: Box<dyn DataWriter>,
) -> Result<Received, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some(n) = p.expected_size {
        for l in &p.limits {
            if n > l.max {
                return Err(l.error(n));
            }
        }
    }
    // Three workers, so that the two hashes and the write spread over the
    // cores: each gets every batch (shared, not copied).
    let (md5_tx, mut md5_rx) = mpsc::channel::<Batch>(QUEUE);
    let (hash_tx, mut hash_rx) = mpsc::channel::<Batch>(QUEUE);
    let (data_tx, mut data_rx) = mpsc::channel::<Batch>(QUEUE);
    let md5_worker = tokio::task::spawn_blocking(move || {
        let mut h = md5::Md5::new();
        while let Some(batch) = md5_rx.blocking_recv() {
            for b in batch.iter() {
                h.update(b);
            }
        }
        hex::encode(h.finalize())
    });
    let algo = p.hash;
    let hash_worker = tokio::task::spawn_blocking(move || {
        let mut h = Hasher::new(algo);
        while let Some(batch) = hash_rx.blocking_recv() {
            for b in batch.iter() {
                h.update(b);
            }
        }
        h.hex()
    });
    let data_worker = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        let mut failed: Option<StoreError> = None;
        while let Some(batch) = data_rx.blocking_recv() {
            if failed.is_some() {
                continue;
            }
            for b in batch.iter() {
                if let Err(e) = writer.write(b) {
                    failed = Some(e);
                    // Stop the sender: a closed channel makes its next send fail.
                    data_rx.close();
                    break;
                }
            }
        }
        (writer, failed)
    });

    let mut total: u64 = 0;
    let mut beat = tokio::time::Instant::now();
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let outcome: Result<(), Error> = async {
        loop {
            let item = body.next().await;
            if (item.is_none() || batched >= BATCH) && !batch.is_empty() {
                let b: Batch = std::sync::Arc::new(std::mem::take(&mut batch));
                batched = 0;
                if md5_tx.send(b.clone()).await.is_err()
                    || hash_tx.send(b.clone()).await.is_err()
                    || data_tx.send(b).await.is_err()
                {
                    // A worker stopped: the store failed; its error is reported below.
                    break;
                }
            }
            let Some(item) = item else {
                break;
            };
            let chunk =
                item.map_err(|e| Error::bad(format!("Error reading the image data: {e}")))?;
            if chunk.is_empty() {
                continue;
            }
            total += chunk.len() as u64;
            for l in &p.limits {
                if total > l.max {
                    return Err(l.error(total));
                }
            }
            if let Some(n) = p.expected_size {
                if total > n {
                    return Err(size_mismatch(n, total));
                }
            }
            if let Some(i) = &mut p.inspector {
                i.feed(&chunk).map_err(inspect_error)?;
            }
            batched += chunk.len();
            batch.push(chunk);
            if beat.elapsed() > std::time::Duration::from_secs(5) {
                beat = tokio::time::Instant::now();
                if let Some(h) = &mut p.heartbeat {
                    h().await;
                }
            }
        }
        Ok(())
    }
    .await;
    drop(md5_tx);
    drop(hash_tx);
    drop(data_tx);
    let checksum = md5_worker
        .await
        .map_err(|e| Error::internal(format!("checksum worker: {e}")))?;
    let hash_value = hash_worker
        .await
        .map_err(|e| Error::internal(format!("hash worker: {e}")))?;
    let (writer, failed) = data_worker
        .await
        .map_err(|e| Error::internal(format!("store worker: {e}")))?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    // Every early return above drops `writer` with it, removing the file.
    outcome?;
    if let Some(n) = p.expected_size {
        if total != n {
            return Err(size_mismatch(n, total));
        }
    }
    let outcome = match p.inspector {
        Some(i) => Some(i.finish().map_err(inspect_error)?),
        None => None,
    };
    let location = tokio::task::spawn_blocking(move || writer.commit())
        .await
        .map_err(|e| Error::internal(format!("store commit: {e}")))??;
    Ok(Received {
        size: total,
        checksum,
        hash_algo: algo,
        hash_value,
        outcome,
        location,
    })
}

fn size_mismatch(expected: u64, got: u64) -> Error {
    Error::bad(format!(
        "The image data ({got} bytes so far) does not match the announced size of {expected} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Rules;
    use crate::store::{FileStore, ImageStore};

    fn stream(parts: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p))))
    }

    fn pump_opts(max: u64, declared: Option<&str>) -> Pump {
        Pump {
            limits: vec![Limits {
                max,
                kind: LimitKind::SizeCap,
            }],
            expected_size: None,
            inspector: declared.map(|d| {
                Inspector::new(Rules {
                    declared: d.into(),
                    require_match: true,
                    vmdk_allowed: vec![],
                })
            }),
            hash: HashAlgo::Sha512,
            heartbeat: None,
        }
    }

    #[tokio::test]
    async fn hashes_stores_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open("file", "t", dir.path()).unwrap();
        let id = "1b6f4a5e-1d2c-4c0e-9d55-2a1f3e0b9c11";
        let parts = vec![b"abc".to_vec(), vec![0u8; 100_000]];
        let r = pump(
            stream(parts),
            pump_opts(1 << 20, Some("raw")),
            s.create(id).await.unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(r.size, 100_003);
        let mut all = b"abc".to_vec();
        all.extend(vec![0u8; 100_000]);
        assert_eq!(r.checksum, hex::encode(md5::Md5::digest(&all)));
        assert_eq!(r.hash_value, hex::encode(sha2::Sha512::digest(&all)));
        assert_eq!(r.outcome.unwrap().virtual_size, Some(100_003));
        assert_eq!(std::fs::read(dir.path().join(id)).unwrap(), all);

        let incoming = || {
            std::fs::read_dir(dir.path().join(".incoming"))
                .unwrap()
                .count()
        };
        // Too large: refused while streaming, nothing left behind.
        let id2 = "2b6f4a5e-1d2c-4c0e-9d55-2a1f3e0b9c11";
        let e = pump(
            stream(vec![vec![1u8; 600], vec![1u8; 600]]),
            pump_opts(1000, None),
            s.create(id2).await.unwrap(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert_eq!(incoming(), 0);
        assert!(!dir.path().join(id2).exists());
        // Wrong format: refused, nothing left behind.
        let e = pump(
            stream(vec![vec![1u8; 70_000]]),
            pump_opts(1 << 20, Some("qcow2")),
            s.create(id2).await.unwrap(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::UnsupportedMediaType(_)), "{e}");
        assert_eq!(incoming(), 0);
        // A broken stream: nothing left behind.
        let broken = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"xx")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let e = pump(
            broken,
            pump_opts(1 << 20, None),
            s.create(id2).await.unwrap(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::BadRequest(_)), "{e}");
        assert_eq!(incoming(), 0);
        // Fewer bytes than announced.
        let mut o = pump_opts(1 << 20, None);
        o.expected_size = Some(10);
        let e = pump(stream(vec![vec![1u8; 5]]), o, s.create(id2).await.unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BadRequest(_)), "{e}");
        assert_eq!(incoming(), 0);
        assert!(!dir.path().join(id2).exists());
    }
}
