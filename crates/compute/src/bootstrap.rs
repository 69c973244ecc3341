//! What a deployment creates at start: the default public flavors.

use crate::db::flavors::{self as db, NewFlavor};
use crate::error::Result;
use crate::Compute;

/// (id, name, vCPUs, RAM in MB, disk in GB), as DevStack's m1 flavors.
const DEFAULT_FLAVORS: [(&str, &str, i64, i64, i64); 3] = [
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
];

/// Creates the public flavors m1.tiny, m1.small and m1.medium unless a
/// flavor of that name (or id) exists. Safe to run at every start, also
/// by several processes at once.
pub async fn ensure_default_flavors(compute: &Compute) -> Result<()> {
    for (id, name, vcpus, memory_mb, root_gb) in DEFAULT_FLAVORS {
        let mut tx = compute.db.write().await?;
        if db::name_exists(&mut tx, name).await? || db::id_exists(&mut tx, id).await? {
            continue;
        }
        let new = NewFlavor {
            id: id.into(),
            name: name.into(),
            vcpus,
            memory_mb,
            root_gb,
            ephemeral_gb: 0,
            swap: 0,
            rxtx_factor: 1.0,
            is_public: true,
            description: None,
        };
        match db::flavor_create(&mut tx, &new).await {
            Ok(()) => {
                tx.commit().await?;
                tracing::info!(flavor = name, "created default flavor");
            }
            // Another process created it meanwhile.
            Err(e) if store::is_unique_violation(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
