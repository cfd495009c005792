//! What `ingest` and `retry` share: the local model, the preparer and the folder, loaded once, and
//! the indexer over them.

use std::path::Path;
use std::time::Duration;

use quarry_core::Config;
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_embedded::{FolderSource, SqliteStore};
use quarry_pipeline::Indexer;
use quarry_text::{Preparer, WordPiece};

/// How long one run may hold a document before another may take it over.
const LEASE: Duration = Duration::from_secs(300);

pub struct Local {
    pub embedder: LocalEmbedder,
    pub preparer: Preparer<WordPiece>,
    pub source: FolderSource,
    pub store: SqliteStore,
}

impl Local {
    pub fn load(config: &Config, dir: &Path, store: SqliteStore) -> Result<Self, crate::SetupError> {
        let model_dir = config.model.resolved_dir();
        let embedder = LocalEmbedder::load(&model_dir, EmbedOptions::default()).map_err(crate::SetupError::Model)?;
        let tokenizer =
            WordPiece::from_file(&model_dir.join("tokenizer.json")).map_err(crate::SetupError::Tokenizer)?;
        Ok(Local { embedder, preparer: Preparer::new(config, tokenizer), source: FolderSource::new(dir), store })
    }

    pub fn indexer(
        &self,
    ) -> Indexer<'_, FolderSource, SqliteStore, LocalEmbedder, SqliteStore, SqliteStore, WordPiece> {
        Indexer {
            source: &self.source,
            state: &self.store,
            embedder: &self.embedder,
            cache: &self.store,
            writer: &self.store,
            preparer: &self.preparer,
            lease: LEASE,
        }
    }
}
