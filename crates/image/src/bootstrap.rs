//! Images a deployment registers itself (the guest image `oxistack up`
//! builds), through the same inspected, hashed upload path as the API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::db::images::{self as db, DataDone, Image, ImageRow};
use crate::inspect::{Inspector, Rules};
use crate::upload::{self, LimitKind, Limits, Pump};
use crate::{Error, ImageService, Result};

/// The property that marks images a deployment manages, with the name of
/// what it registered.
pub const MANAGED_PROPERTY: &str = "oxistack_managed";

/// A file to publish as an image.
#[derive(Clone, Debug)]
pub struct FileImage {
    pub name: String,
    pub path: PathBuf,
    pub owner: String,
    pub visibility: String,
    pub container_format: String,
    /// Detected from the data when None.
    pub disk_format: Option<String>,
    pub min_ram: i64,
    pub min_disk: i64,
    pub properties: BTreeMap<String, String>,
}

/// What [`ImageService::ensure_file_image`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensured {
    pub id: String,
    /// False when an identical image was already there.
    pub created: bool,
    /// Older managed images of the same name that were removed.
    pub replaced: Vec<String>,
}

impl ImageService {
    /// Makes sure an active image named `f.name` with the content of `f.path`
    /// exists: does nothing when one with the same hash does; otherwise
    /// uploads it and removes the older images of that name that this
    /// deployment registered (never images users made).
    pub async fn ensure_file_image(&self, f: &FileImage) -> Result<Ensured> {
        let path = f.path.clone();
        let algo = upload::HashAlgo::from_name(&self.cfg.hashing_algorithm)
            .unwrap_or(upload::HashAlgo::Sha512);
        // First pass: hash and detect the format (cheap next to an upload,
        // and it keeps restarts from re-uploading an unchanged file).
        let (hash, format) = {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
            let mut detect = Inspector::new(Rules {
                declared: String::new(),
                require_match: true,
                vmdk_allowed: self.cfg.vmdk_allowed_types.clone(),
            });
            let mut hasher = upload::Hasher::new(algo);
            let mut stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            use futures_util::StreamExt;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                detect.feed(&chunk).map_err(upload::inspect_error)?;
                hasher.update(&chunk);
            }
            let outcome = detect.finish().map_err(upload::inspect_error)?;
            (hasher.hex(), outcome.format.name().to_string())
        };
        let existing = db::image_by_name_owner(&self.db, &f.name, &f.owner).await?;
        let mut ours = Vec::new();
        for r in &existing {
            let props = db::image_get(&self.db, &r.id).await?;
            if props
                .as_ref()
                .and_then(|i| i.properties.get(MANAGED_PROPERTY).cloned().flatten())
                .as_deref()
                == Some(f.name.as_str())
            {
                if r.status == "active" && r.os_hash_value.as_deref() == Some(hash.as_str()) {
                    return Ok(Ensured {
                        id: r.id.clone(),
                        created: false,
                        replaced: Vec::new(),
                    });
                }
                ours.push(r.id.clone());
            }
        }

        let id = uuid::Uuid::new_v4().to_string();
        let writer_id = uuid::Uuid::new_v4().to_string();
        let now = store::now_micros();
        let mut properties: BTreeMap<String, Option<String>> = f
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        properties.insert(MANAGED_PROPERTY.into(), Some(f.name.clone()));
        let disk_format = f.disk_format.clone().unwrap_or(format);
        let img = Image {
            row: ImageRow {
                id: id.clone(),
                name: Some(f.name.clone()),
                status: "saving".into(),
                visibility: f.visibility.clone(),
                owner: Some(f.owner.clone()),
                disk_format: Some(disk_format.clone()),
                container_format: Some(f.container_format.clone()),
                min_disk: f.min_disk,
                min_ram: f.min_ram,
                writer: Some(writer_id.clone()),
                created_at: now,
                updated_at: now,
                ..Default::default()
            },
            properties,
            tags: Vec::new(),
        };
        let mut tx = self.db.write().await?;
        db::image_create(&mut tx, &img).await?;
        tx.commit().await?;
        let result = async {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
            let writer = self.store.create(&id).await?;
            let pump = Pump {
                limits: vec![Limits {
                    max: self.cfg.image_size_cap,
                    kind: LimitKind::SizeCap,
                }],
                expected_size: None,
                inspector: Some(Inspector::new(Rules {
                    declared: disk_format.clone(),
                    require_match: self.cfg.require_image_format_match,
                    vmdk_allowed: self.cfg.vmdk_allowed_types.clone(),
                })),
                hash: algo,
                heartbeat: None,
            };
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            let got = upload::pump(stream, pump, writer).await?;
            let done = DataDone {
                size: got.size as i64,
                virtual_size: got.outcome.and_then(|o| o.virtual_size).map(|v| v as i64),
                checksum: got.checksum,
                os_hash_algo: got.hash_algo.name().into(),
                os_hash_value: got.hash_value,
                location: got.location.clone(),
                store: self.store.id().into(),
            };
            let mut tx = self.db.write().await?;
            if !db::writer_finish(&mut tx, &id, &writer_id, &done).await? {
                let _ = self.store.delete(&got.location).await;
                return Err(Error::internal("image changed during registration"));
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let mut tx = self.db.write().await?;
            db::image_delete(&mut tx, &id).await?;
            tx.commit().await?;
            return Err(e);
        }
        // Older versions this deployment registered go away (unless a user
        // protected them).
        let mut replaced = Vec::new();
        for old in ours {
            let Some(img) = db::image_get(&self.db, &old).await? else {
                continue;
            };
            if store::flag(img.row.protected) {
                continue;
            }
            let mut tx = self.db.write().await?;
            let gone = db::image_delete(&mut tx, &old).await?;
            tx.commit().await?;
            if let Some(loc) = gone.and_then(|r| r.location) {
                let _ = self.store.delete(&loc).await;
            }
            replaced.push(old);
        }
        Ok(Ensured {
            id,
            created: true,
            replaced,
        })
    }
}

/// An image another service creates (a server snapshot).
#[derive(Clone, Debug)]
pub struct NewImage {
    pub name: String,
    pub owner: String,
    pub visibility: String,
    pub disk_format: String,
    pub container_format: String,
    pub min_disk: i64,
    pub min_ram: i64,
    pub properties: BTreeMap<String, String>,
}

impl ImageService {
    /// Records a queued image (data follows with [`ImageService::upload_file`]).
    pub async fn create_queued(&self, n: &NewImage) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = store::now_micros();
        let img = Image {
            row: ImageRow {
                id: id.clone(),
                name: Some(n.name.clone()),
                status: "queued".into(),
                visibility: n.visibility.clone(),
                owner: Some(n.owner.clone()),
                disk_format: Some(n.disk_format.clone()),
                container_format: Some(n.container_format.clone()),
                min_disk: n.min_disk,
                min_ram: n.min_ram,
                created_at: now,
                updated_at: now,
                ..Default::default()
            },
            properties: n
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            tags: Vec::new(),
        };
        let mut tx = self.db.write().await?;
        db::image_create(&mut tx, &img).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Uploads a local file into a queued image through the inspected,
    /// hashed data path (queued -> saving -> active). On failure the image
    /// goes back to queued and the partial data is removed.
    pub async fn upload_file(&self, id: &str, path: &std::path::Path) -> Result<()> {
        let img = db::image_get(&self.db, id)
            .await?
            .ok_or_else(|| Error::image_not_found(id))?;
        let disk_format = img.row.disk_format.clone().unwrap_or_default();
        let writer_id = uuid::Uuid::new_v4().to_string();
        if !db::writer_claim(&self.db, id, "queued", "saving", &writer_id).await? {
            return Err(Error::conflict(format!("Image {id} is not queued")));
        }
        let algo = upload::HashAlgo::from_name(&self.cfg.hashing_algorithm)
            .unwrap_or(upload::HashAlgo::Sha512);
        let result = async {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
            let writer = self.store.create(id).await?;
            let pump = Pump {
                limits: vec![Limits {
                    max: self.cfg.image_size_cap,
                    kind: LimitKind::SizeCap,
                }],
                expected_size: None,
                inspector: Some(Inspector::new(Rules {
                    declared: disk_format.clone(),
                    require_match: self.cfg.require_image_format_match,
                    vmdk_allowed: self.cfg.vmdk_allowed_types.clone(),
                })),
                hash: algo,
                heartbeat: None,
            };
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            let got = upload::pump(stream, pump, writer).await?;
            let done = DataDone {
                size: got.size as i64,
                virtual_size: got.outcome.and_then(|o| o.virtual_size).map(|v| v as i64),
                checksum: got.checksum,
                os_hash_algo: got.hash_algo.name().into(),
                os_hash_value: got.hash_value,
                location: got.location.clone(),
                store: self.store.id().into(),
            };
            let mut tx = self.db.write().await?;
            if !db::writer_finish(&mut tx, id, &writer_id, &done).await? {
                let _ = self.store.delete(&got.location).await;
                return Err(Error::Gone(format!(
                    "Image {id} was deleted during the upload"
                )));
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = db::writer_release(&self.db, id, &writer_id, "queued").await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct NoTokens;

    #[async_trait::async_trait]
    impl api_common::TokenValidator for NoTokens {
        async fn validate(
            &self,
            _: &str,
        ) -> std::result::Result<Arc<api_common::AuthContext>, api_common::TokenError> {
            Err(api_common::TokenError::Invalid)
        }
    }

    #[tokio::test]
    async fn registration_is_idempotent_and_replaces_old_versions() {
        let dir = tempfile::tempdir().unwrap();
        let db = store::Db::connect(&format!("sqlite:{}", dir.path().join("t.db").display()), 2)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let cfg = crate::ImageConfig {
            store_dir: Some(dir.path().join("images")),
            ..Default::default()
        };
        let svc = ImageService::new(db.clone(), cfg, Arc::new(NoTokens), None)
            .await
            .unwrap();
        let file = dir.path().join("guest.raw");
        std::fs::write(&file, vec![1u8; 100_000]).unwrap();
        let spec = FileImage {
            name: "guest".into(),
            path: file.clone(),
            owner: "p1".into(),
            visibility: "public".into(),
            container_format: "bare".into(),
            disk_format: None,
            min_ram: 128,
            min_disk: 1,
            properties: [("os_distro".to_string(), "debian".to_string())].into(),
        };
        let first = svc.ensure_file_image(&spec).await.unwrap();
        assert!(first.created);
        let img = db::image_get(&db, &first.id).await.unwrap().unwrap();
        assert_eq!(img.row.status, "active");
        assert_eq!(img.row.disk_format.as_deref(), Some("raw"));
        assert_eq!(img.row.size, Some(100_000));
        assert_eq!(
            img.properties.get("os_distro"),
            Some(&Some("debian".into()))
        );
        // Same file: nothing happens.
        let again = svc.ensure_file_image(&spec).await.unwrap();
        assert_eq!(
            (again.id.as_str(), again.created),
            (first.id.as_str(), false)
        );
        // A user's image of the same name is left alone; a new file replaces
        // the registered one.
        let mine = Image {
            row: ImageRow {
                id: uuid::Uuid::new_v4().to_string(),
                name: Some("guest".into()),
                status: "queued".into(),
                visibility: "private".into(),
                owner: Some("p1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut tx = db.write().await.unwrap();
        db::image_create(&mut tx, &mine).await.unwrap();
        tx.commit().await.unwrap();
        std::fs::write(&file, vec![2u8; 50_000]).unwrap();
        let third = svc.ensure_file_image(&spec).await.unwrap();
        assert!(third.created);
        assert_eq!(third.replaced, vec![first.id.clone()]);
        assert!(db::image_get(&db, &first.id).await.unwrap().is_none());
        assert!(db::image_get(&db, &mine.row.id).await.unwrap().is_some());
        assert!(!dir.path().join("images").join(&first.id).exists());
        // A file that is not a safe image is refused and leaves nothing.
        let mut bad = vec![0u8; 70_000];
        bad[0..4].copy_from_slice(b"QFI\xfb");
        bad[4..8].copy_from_slice(&2u32.to_be_bytes());
        bad[8..16].copy_from_slice(&512u64.to_be_bytes());
        bad[20..24].copy_from_slice(&16u32.to_be_bytes());
        std::fs::write(&file, bad).unwrap();
        assert!(svc.ensure_file_image(&spec).await.is_err());
        let left = db::image_by_name_owner(&db, "guest", "p1").await.unwrap();
        assert_eq!(left.len(), 2);
        svc.stop();
    }
}
