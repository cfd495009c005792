//! The embedding cache: vectors by (model, dimension, text hash) ([`EmbeddingCache`]).

use quarry_core::ports::{EmbeddingCache, ModelInfo};
use quarry_core::{ContentHash, PortError};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error, from_blob, to_blob};

impl EmbeddingCache for SqliteStore {
    async fn get(&self, model: &ModelInfo, texts: &[ContentHash]) -> Result<Vec<Option<Vec<f32>>>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT vector FROM embedding_cache WHERE model = ?1 AND dimension = ?2 AND content_hash = ?3",
            )
            .map_err(db_error("cache.get"))?;
        texts
            .iter()
            .map(|h| {
                stmt.query_row(params![model.id, model.dimension as i64, h.as_str()], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
                    .map(|b| b.map(|b| from_blob(&b)).filter(|v| v.len() == model.dimension))
                    .map_err(db_error("cache.get"))
            })
            .collect()
    }

    async fn put(&self, model: &ModelInfo, entries: &[(ContentHash, Vec<f32>)]) -> Result<(), PortError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("cache.put"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO embedding_cache (model, dimension, content_hash, vector) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_error("cache.put"))?;
            for (h, v) in entries {
                stmt.execute(params![model.id, model.dimension as i64, h.as_str(), to_blob(v)])
                    .map_err(db_error("cache.put"))?;
            }
        }
        tx.commit().map_err(db_error("cache.put"))
    }
}
