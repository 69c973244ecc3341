//! Per-project quotas from Keystone unified limits (service type `image`),
//! as Glance does with `use_keystone_limits`: image_count_total,
//! image_count_uploading, image_size_total and image_stage_total (the sizes
//! in MiB). A resource with neither a project limit nor a registered limit,
//! or a negative limit, is unlimited.

use serde_json::{json, Value};

use crate::db::usage;
use crate::upload::{LimitKind, Limits};
use crate::{Error, ImageService, Result};

pub const IMAGE_COUNT_TOTAL: &str = "image_count_total";
pub const IMAGE_COUNT_UPLOADING: &str = "image_count_uploading";
pub const IMAGE_SIZE_TOTAL: &str = "image_size_total";
pub const IMAGE_STAGE_TOTAL: &str = "image_stage_total";

const MIB: i64 = 1 << 20;

fn over(project: &str, resource: &str, limit: i64, usage: i64, delta: i64) -> Error {
    Error::TooLarge(format!(
        "Project {project} is over a limit for [Resource: {resource}, Limit: {limit}, \
         Current usage: {usage} and Delta: {delta}]"
    ))
}

impl ImageService {
    async fn limit(&self, project: &str, resource: &str) -> Result<Option<i64>> {
        if !self.cfg.use_keystone_limits {
            return Ok(None);
        }
        Ok(
            usage::keystone_limit(&self.db, project, resource, self.region.as_deref())
                .await?
                .filter(|l| *l >= 0),
        )
    }

    /// Refuses a new image when the project has image_count_total images.
    pub async fn check_image_count(&self, project: &str) -> Result<()> {
        if let Some(limit) = self.limit(project, IMAGE_COUNT_TOTAL).await? {
            let n = usage::image_count(&self.db, project).await?;
            if n + 1 > limit {
                return Err(over(project, IMAGE_COUNT_TOTAL, limit, n, 1));
            }
        }
        Ok(())
    }

    /// Refuses an upload when the project has more than
    /// image_count_uploading images in flight (this one included).
    pub async fn check_uploading(&self, project: &str) -> Result<()> {
        if let Some(limit) = self.limit(project, IMAGE_COUNT_UPLOADING).await? {
            let n = usage::uploading_count(&self.db, project).await?;
            if n > limit {
                return Err(over(project, IMAGE_COUNT_UPLOADING, limit, n - 1, 1));
            }
        }
        Ok(())
    }

    /// The byte limits an upload of `image_id` (owned by `owner`) streams
    /// under: the size cap, and what is left of image_size_total (or
    /// image_stage_total when staging).
    pub async fn upload_limits(
        &self,
        owner: Option<&str>,
        image_id: &str,
        staging: bool,
    ) -> Result<Vec<Limits>> {
        let mut out = vec![Limits {
            max: self.cfg.image_size_cap,
            kind: LimitKind::SizeCap,
        }];
        let Some(owner) = owner else {
            return Ok(out);
        };
        let resource = if staging {
            IMAGE_STAGE_TOTAL
        } else {
            IMAGE_SIZE_TOTAL
        };
        if let Some(limit) = self.limit(owner, resource).await? {
            let used = if staging {
                usage::staging_bytes(&self.db, owner, image_id).await?
            } else {
                usage::storage_bytes(&self.db, owner, image_id).await?
            };
            let left = limit.saturating_mul(MIB).saturating_sub(used).max(0);
            if left == 0 {
                return Err(over(owner, resource, limit, used / MIB, 0));
            }
            out.push(Limits {
                max: left as u64,
                kind: LimitKind::Quota(resource),
            });
        }
        Ok(out)
    }

    /// `/v2/info/usage`: limits and usage of `project`.
    pub async fn usage_report(&self, project: &str) -> Result<Value> {
        let mut out = serde_json::Map::new();
        if !self.cfg.use_keystone_limits {
            return Ok(Value::Object(out));
        }
        for (resource, used) in [
            (
                IMAGE_SIZE_TOTAL,
                usage::storage_bytes(&self.db, project, "").await? / MIB,
            ),
            (
                IMAGE_STAGE_TOTAL,
                usage::staging_bytes(&self.db, project, "").await? / MIB,
            ),
            (
                IMAGE_COUNT_TOTAL,
                usage::image_count(&self.db, project).await?,
            ),
            (
                IMAGE_COUNT_UPLOADING,
                usage::uploading_count(&self.db, project).await?,
            ),
        ] {
            let limit = self.limit(project, resource).await?.unwrap_or(-1);
            out.insert(resource.into(), json!({ "limit": limit, "usage": used }));
        }
        Ok(Value::Object(out))
    }
}
