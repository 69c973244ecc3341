//! Where image data lives: the [`ImageStore`] trait and the file store.
//!
//! Writing goes through a [`DataWriter`] that runs on a blocking thread:
//! data lands in a private temporary file that becomes visible at its final
//! place only on [`DataWriter::commit`] (fsync, rename, fsync of the
//! directory). A writer dropped without commit removes its file, so an
//! upload that fails or is abandoned leaves nothing behind.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image data not found")]
    NotFound,
    #[error("the store is full: {0}")]
    Full(String),
    #[error("the store cannot be written: {0}")]
    Denied(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("location {0:?} does not belong to this store")]
    ForeignLocation(String),
}

impl From<StoreError> for crate::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => crate::Error::NotFound("Image data not found".into()),
            StoreError::Full(m) => {
                crate::Error::TooLarge(format!("Image storage media is full: {m}"))
            }
            StoreError::Denied(m) => crate::Error::Unavailable(format!(
                "Insufficient permissions on image storage media: {m}"
            )),
            other => crate::Error::internal(format!("image store: {other}")),
        }
    }
}

/// Stored bytes being read, in chunks.
pub type DataStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// Bytes per read of stored data.
const READ_CHUNK: u64 = 1 << 20;

/// A store of image data. Locations are opaque strings the store hands out.
#[async_trait::async_trait]
pub trait ImageStore: Send + Sync + 'static {
    /// The store's identifier (shown in `/v2/info/stores` and as `stores`).
    fn id(&self) -> &str;
    fn description(&self) -> &str;
    /// Starts writing data for `image_id`.
    async fn create(&self, image_id: &str) -> Result<Box<dyn DataWriter>, StoreError>;
    /// Reads `len` bytes (all that follow when None) of stored data from
    /// `offset`; returns the chunks and the total size of the data.
    async fn open(
        &self,
        location: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<(DataStream, u64), StoreError>;
    /// Removes stored data (no error when it is already gone).
    async fn delete(&self, location: &str) -> Result<(), StoreError>;
    /// Removes the data of `image_id` written by [`DataWriter::commit`].
    async fn delete_image(&self, image_id: &str) -> Result<(), StoreError>;
    /// The location of committed data of `image_id` (for stores that place
    /// data by image id, as the staging area does).
    fn location_of(&self, image_id: &str) -> String;
    /// Removes partial files older than `age` (left by a process that died).
    async fn sweep(&self, age: Duration) -> Result<usize, StoreError>;
    /// The local file holding a location's data, for stores on this
    /// machine's file system (compute layers disks on a link to it).
    fn local_path(&self, _location: &str) -> Option<PathBuf> {
        None
    }
}

/// Data being written. Runs on a blocking thread.
pub trait DataWriter: Send {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError>;
    /// Makes the data durable and visible; returns its location.
    fn commit(self: Box<Self>) -> Result<String, StoreError>;
}

/// Image data as files in one directory: `ROOT/<image id>`, partial files in
/// `ROOT/.incoming/`.
pub struct FileStore {
    id: String,
    description: String,
    root: PathBuf,
    incoming: PathBuf,
}

const LOCATION_PREFIX: &str = "file://";

impl FileStore {
    /// Opens (creating when missing, mode 0700) a file store at `root`.
    pub fn open(id: &str, description: &str, root: &Path) -> std::io::Result<FileStore> {
        let incoming = root.join(".incoming");
        std::fs::create_dir_all(&incoming)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        }
        let root = root.canonicalize()?;
        Ok(FileStore {
            id: id.to_string(),
            description: description.to_string(),
            incoming: root.join(".incoming"),
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_for(&self, image_id: &str) -> Result<PathBuf, StoreError> {
        // Image ids are UUIDs; anything else cannot name a file here.
        if image_id.is_empty()
            || !image_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StoreError::ForeignLocation(image_id.to_string()));
        }
        Ok(self.root.join(image_id))
    }

    /// The file a location names, which must be directly in this store.
    fn path_of(&self, location: &str) -> Result<PathBuf, StoreError> {
        let p = location
            .strip_prefix(LOCATION_PREFIX)
            .map(PathBuf::from)
            .ok_or_else(|| StoreError::ForeignLocation(location.to_string()))?;
        if p.parent() != Some(self.root.as_path()) {
            return Err(StoreError::ForeignLocation(location.to_string()));
        }
        Ok(p)
    }
}

fn io_error(e: std::io::Error) -> StoreError {
    match e.raw_os_error() {
        Some(28) | Some(122) => StoreError::Full(e.to_string()),
        Some(1) | Some(13) | Some(30) => StoreError::Denied(e.to_string()),
        _ => StoreError::Io(e),
    }
}

#[async_trait::async_trait]
impl ImageStore for FileStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn description(&self) -> &str {
        &self.description
    }

    async fn create(&self, image_id: &str) -> Result<Box<dyn DataWriter>, StoreError> {
        let target = self.path_for(image_id)?;
        let tmp = self
            .incoming
            .join(format!("{image_id}.{}.part", uuid::Uuid::new_v4().simple()));
        let tmp2 = tmp.clone();
        let file = tokio::task::spawn_blocking(move || {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            o.open(&tmp2)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .map_err(io_error)?;
        Ok(Box::new(FileWriter {
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            tmp,
            target,
            dir: self.root.clone(),
            committed: false,
        }))
    }

    async fn open(
        &self,
        location: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<(DataStream, u64), StoreError> {
        let path = self.path_of(location)?;
        let opened =
            tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, u64)> {
                let mut f = std::fs::File::open(&path)?;
                let size = f.metadata()?.len();
                if offset > 0 {
                    f.seek(std::io::SeekFrom::Start(offset))?;
                }
                Ok((f, size))
            })
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let (mut file, size) = match opened {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(io_error(e)),
        };
        let mut remaining = len.unwrap_or(size.saturating_sub(offset));
        // One blocking thread reads ahead a few chunks; it stops when the
        // reader goes away (the channel closes).
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            while remaining > 0 {
                let mut buf = vec![0u8; remaining.min(READ_CHUNK) as usize];
                let item = match file.read_exact(&mut buf) {
                    Ok(()) => {
                        remaining -= buf.len() as u64;
                        Ok(bytes::Bytes::from(buf))
                    }
                    Err(e) => {
                        remaining = 0;
                        Err(e)
                    }
                };
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok((Box::pin(stream), size))
    }

    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        let path = self.path_of(location)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn delete_image(&self, image_id: &str) -> Result<(), StoreError> {
        let loc = self.location_of(image_id);
        self.delete(&loc).await
    }

    fn location_of(&self, image_id: &str) -> String {
        format!("{LOCATION_PREFIX}{}", self.root.join(image_id).display())
    }

    fn local_path(&self, location: &str) -> Option<PathBuf> {
        self.path_of(location).ok()
    }

    async fn sweep(&self, age: Duration) -> Result<usize, StoreError> {
        let dir = self.incoming.clone();
        let n = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
            let mut n = 0;
            let now = std::time::SystemTime::now();
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let old = e
                    .metadata()?
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|d| d > age);
                if old && std::fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        if n > 0 {
            tracing::info!(store = %self.id, files = n, "removed abandoned partial image files");
        }
        Ok(n)
    }
}

struct FileWriter {
    file: Option<std::io::BufWriter<std::fs::File>>,
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl DataWriter for FileWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        match &mut self.file {
            Some(f) => f.write_all(chunk).map_err(io_error),
            None => Err(StoreError::Io(std::io::Error::other("writer is closed"))),
        }
    }

    fn commit(mut self: Box<Self>) -> Result<String, StoreError> {
        let Some(buf) = self.file.take() else {
            return Err(StoreError::Io(std::io::Error::other("writer is closed")));
        };
        let file = buf.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(io_error)?;
        self.committed = true;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(format!("{LOCATION_PREFIX}{}", self.target.display()))
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.file.take());
            if let Err(e) = std::fs::remove_file(&self.tmp) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %self.tmp.display(), error = %e, "cannot remove partial image file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn commit_publishes_and_drop_discards() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open("file", "test", dir.path()).unwrap();
        let id = "0b6f4a5e-1d2c-4c0e-9d55-2a1f3e0b9c11";
        let mut w = s.create(id).await.unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        let loc = w.commit().unwrap();
        assert_eq!(loc, s.location_of(id));
        let (r, size) = s.open(&loc, 6, None).await.unwrap();
        assert_eq!(size, 11);
        let chunks: Vec<bytes::Bytes> = r.map(|c| c.unwrap()).collect().await;
        assert_eq!(chunks.concat(), b"world");
        let (r, _) = s.open(&loc, 1, Some(3)).await.unwrap();
        let chunks: Vec<bytes::Bytes> = r.map(|c| c.unwrap()).collect().await;
        assert_eq!(chunks.concat(), b"ell");
        // A writer dropped without commit leaves nothing.
        let mut w = s.create(id).await.unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path().join(".incoming"))
                .unwrap()
                .count(),
            0
        );
        // The committed data is untouched by the abandoned writer.
        assert_eq!(std::fs::read(dir.path().join(id)).unwrap(), b"hello world");
        s.delete(&loc).await.unwrap();
        s.delete(&loc).await.unwrap();
        assert!(matches!(
            s.open(&loc, 0, None).await,
            Err(StoreError::NotFound)
        ));
        // Locations outside the store and odd ids are refused.
        assert!(s.open("file:///etc/passwd", 0, None).await.is_err());
        assert!(s.create("../x").await.is_err());
    }
}
