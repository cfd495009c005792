//! Files of the published index that no manifest names and none will: uploads of a writer killed
//! between its uploads and its manifest (or one that lost a race and died before deleting them).
//! Searchers never read them; they cost storage until deleted. Found by `quarry verify --aws`.

use quarry_core::PortError;
use quarry_core::keywords::{IndexFiles, ManifestRead};

use crate::published::{Manifest, PublishError, RETIRE_AFTER, now_ms};

/// The files older than [`RETIRE_AFTER`] that the current manifest neither names nor retires.
/// Younger ones are left: a writer may be between its uploads and its manifest now.
pub async fn stray_files<F: IndexFiles>(files: &F) -> Result<Vec<String>, PortError> {
    let manifest = match files.manifest(None).await? {
        ManifestRead::Found { bytes, .. } => {
            serde_json::from_slice::<Manifest>(&bytes).map_err(|e| PortError::from(PublishError::Manifest(e)))?
        }
        ManifestRead::Missing | ManifestRead::Unchanged => Manifest::default(),
    };
    let cutoff = now_ms() - i64::try_from(RETIRE_AFTER.as_millis()).unwrap_or(i64::MAX);
    let mut stray: Vec<String> = files
        .list()
        .await?
        .into_iter()
        .filter(|(name, written)| {
            *written < cutoff
                && !manifest.files.values().any(|s| &s.object == name)
                && !manifest.retired.iter().any(|r| &r.object == name)
        })
        .map(|(name, _)| name)
        .collect();
    stray.sort();
    Ok(stray)
}
