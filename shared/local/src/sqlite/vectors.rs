//! Chunks and their vectors: writes ([`VectorWriter`]) that keep the two in-memory indexes fed by
//! this table in step (the vector index always, the keyword index once built), and searches
//! ([`VectorSearcher`], [`KeywordSearcher`]) that rank in memory and read only the rows that make
//! the cut.

use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{
    FieldCatalog, FieldSummary, KeywordQuery, KeywordSearcher, VectorHit, VectorQuery, VectorRecord, VectorSearcher,
    VectorWriter,
};
use quarry_core::{CharSpan, ChunkId, DocumentId, Filter, PageRange, PortError, meta};
use rusqlite::{OptionalExtension, params};

use super::{Metadata, SqliteStore, db_error, to_blob};
use crate::keyword_index::{self, KeywordIndex};

impl SqliteStore {
    /// Builds the keyword index now, if it is not built yet: a server calls this at start so that
    /// its first keyword query is not the one that pays for it.
    pub fn warm_keywords(&self) -> Result<(), PortError> {
        drop(self.keyword_index()?);
        Ok(())
    }

    /// Scores keyword search with other BM25 parameters from now on (`quarry eval` measures them).
    pub fn tune_bm25(&self, bm25: crate::Bm25) -> Result<(), PortError> {
        self.warm_keywords()?;
        if let Some(index) = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            index.set_bm25(bm25);
        }
        Ok(())
    }

    /// The keyword index, built from the stored chunks the first time it is asked for.
    fn keyword_index(&self) -> Result<std::sync::RwLockReadGuard<'_, Option<KeywordIndex>>, PortError> {
        let read = || self.keywords.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let built = read();
            if built.is_some() {
                return Ok(built);
            }
        }
        {
            // Writers update the index only once it exists, after their commit; building under
            // the write lock from committed rows, and upserts being idempotent, means no write
            // is missed or applied twice to a different result.
            let mut slot = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(self.build_keywords()?);
            }
        }
        Ok(read())
    }

    /// A keyword index of every stored chunk.
    fn build_keywords(&self) -> Result<KeywordIndex, PortError> {
        let started = std::time::Instant::now();
        let mut index = KeywordIndex::new();
        // Titles are document metadata, already in memory: one definition, `meta::title`.
        let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT rowid, document_id, text FROM chunks").map_err(db_error("chunks.keyword_index"))?;
        let mut rows = stmt.query([]).map_err(db_error("chunks.keyword_index"))?;
        while let Some(r) = rows.next().map_err(db_error("chunks.keyword_index"))? {
            let doc: String = r.get(1).map_err(db_error("chunks.keyword_index"))?;
            let Some(document) = DocumentId::parse(&doc) else { continue };
            let text: String = r.get(2).map_err(db_error("chunks.keyword_index"))?;
            let title = metadata.get(&document).map_or("", |m| meta::title(m));
            index.upsert(r.get(0).map_err(db_error("chunks.keyword_index"))?, &document, title, &text);
        }
        tracing::info!(chunks = index.len(), ms = started.elapsed().as_millis() as u64, "keyword index built");
        Ok(index)
    }
}

impl VectorWriter for SqliteStore {
    async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
        let dim = self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner).dim();
        for r in records {
            if r.vector.len() != dim {
                return Err(PortError::InvalidInput {
                    operation: "chunks.upsert",
                    reason: format!("vector of {} dimensions for an index of {dim}", r.vector.len()),
                });
            }
        }
        let mut rowids = Vec::with_capacity(records.len());
        {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error("chunks.upsert"))?;
            {
                // In place (not INSERT OR REPLACE), so that the rowid the full-text row is keyed
                // by survives an update.
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO chunks
                             (id, document_id, ordinal, text, page_first, page_last, metadata, vector, char_start, char_end)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (id) DO UPDATE SET document_id = ?2, ordinal = ?3, text = ?4, page_first = ?5,
                             page_last = ?6, metadata = ?7, vector = ?8, char_start = ?9, char_end = ?10
                         RETURNING rowid",
                    )
                    .map_err(db_error("chunks.upsert"))?;
                for r in records {
                    let ordinal = r.id.parts().map_or(0, |(_, o)| o);
                    let metadata = serde_json::to_string(&r.meta)
                        .map_err(|e| PortError::Permanent { operation: "chunks.upsert", source: Box::new(e) })?;
                    let rowid: i64 = stmt
                        .query_row(
                            params![
                                r.id.as_str(),
                                r.document.as_str(),
                                ordinal,
                                r.text,
                                r.pages.map(|p| p.first),
                                r.pages.map(|p| p.last),
                                metadata,
                                to_blob(&r.vector),
                                r.span.start as i64,
                                r.span.end as i64,
                            ],
                            |row| row.get(0),
                        )
                        .map_err(db_error("chunks.upsert"))?;
                    rowids.push(rowid);
                }
            }
            tx.commit().map_err(db_error("chunks.upsert"))?;
        }
        // The database is the truth; the index follows once the write is durable.
        {
            let mut metadata = self.metadata.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in records {
                metadata.insert(r.document.clone(), r.meta.to_metadata());
            }
        }
        if let Some(keywords) = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            for (r, &rowid) in records.iter().zip(&rowids) {
                keywords.upsert(rowid, &r.document, r.meta.search_title(), &r.text);
            }
        }
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in records {
            index
                .upsert(r.id.clone(), r.document.clone(), &r.vector)
                .map_err(|e| PortError::Permanent { operation: "chunks.upsert", source: Box::new(e) })?;
        }
        Ok(())
    }

    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        let gone: Vec<i64> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached("DELETE FROM chunks WHERE document_id = ?1 AND ordinal >= ?2 RETURNING rowid")
                .map_err(db_error("chunks.delete"))?;
            stmt.query_map(params![document.as_str(), keep], |r| r.get(0))
                .map_err(db_error("chunks.delete"))?
                .collect::<Result<_, _>>()
                .map_err(db_error("chunks.delete"))?
        };
        let n = gone.len();
        if let Some(keywords) = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            for rowid in gone {
                keywords.remove(rowid);
            }
        }
        self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove_document_from(document, keep);
        if keep == 0 {
            self.metadata.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(document);
        }
        Ok(n as u64)
    }
}

impl VectorSearcher for SqliteStore {
    async fn search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>, PortError> {
        let hits = {
            let index = self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let accept = accepts(&metadata, query.filter.as_ref());
            let filter = accept.as_ref().map(|f| f as &dyn Fn(&DocumentId) -> bool);
            index
                .search(&query.vector, query.top_k, filter)
                .map_err(|e| PortError::Permanent { operation: "chunks.search", source: Box::new(e) })?
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {PAYLOAD} FROM chunks WHERE id = ?1"))
            .map_err(db_error("chunks.search"))?;
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            // A chunk deleted between the index read and this one is simply not a result.
            let row =
                stmt.query_row([h.id.as_str()], |r| payload(r, 0)).optional().map_err(db_error("chunks.search"))?;
            let Some(p) = row else { continue };
            out.extend(p.into_hit(h.id, h.document, h.score));
        }
        Ok(out)
    }
}

impl FieldCatalog for SqliteStore {
    /// From the metadata kept in memory for filters (one map per indexed document): no query.
    async fn fields(&self, values: usize) -> Result<Vec<FieldSummary>, PortError> {
        let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(meta::summarise(metadata.values(), values))
    }
}

/// The documents `filter` accepts, judged by their metadata; `None` when there is no filter.
fn accepts<'a>(
    metadata: &'a rustc_hash::FxHashMap<DocumentId, Metadata>,
    filter: Option<&'a Filter>,
) -> Option<impl Fn(&DocumentId) -> bool + 'a> {
    filter.map(|f| move |d: &DocumentId| metadata.get(d).is_some_and(|m| f.matches(m)))
}

/// The columns a hit carries, in the order [`payload`] reads them.
const PAYLOAD: &str = "text, page_first, page_last, char_start, char_end, metadata";

struct Payload {
    text: String,
    pages: Option<PageRange>,
    span: CharSpan,
    metadata: String,
}

fn payload(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Payload> {
    let (first, last): (Option<u32>, Option<u32>) = (r.get(at + 1)?, r.get(at + 2)?);
    Ok(Payload {
        text: r.get(at)?,
        pages: first.zip(last).map(|(first, last)| PageRange { first, last }),
        span: CharSpan { start: r.get::<_, i64>(at + 3)? as usize, end: r.get::<_, i64>(at + 4)? as usize },
        metadata: r.get(at + 5)?,
    })
}

impl Payload {
    /// The hit; `None`, with a warning, for a row whose metadata lacks its key or format (only
    /// Quarry writes them, so this is damage): one bad row does not fail every search that meets
    /// it. The S3 Vectors adapter does the same.
    fn into_hit(self, id: ChunkId, document: DocumentId, score: f32) -> Option<VectorHit> {
        let meta = match serde_json::from_str::<ChunkMeta>(&self.metadata) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(chunk = %id, error = %e, "a stored chunk's metadata is incomplete; left out");
                return None;
            }
        };
        Some(VectorHit { id, document, score, text: self.text, pages: self.pages, span: self.span, meta })
    }
}

impl KeywordSearcher for SqliteStore {
    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<VectorHit>, PortError> {
        let terms = keyword_index::query_terms(&query.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let (ranked, ceiling) = {
            let keywords = self.keyword_index()?;
            let Some(keywords) = keywords.as_ref() else { return Ok(Vec::new()) };
            let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let accept = accepts(&metadata, query.filter.as_ref());
            let filter = accept.as_ref().map(|f| f as &dyn Fn(&DocumentId) -> bool);
            (keywords.search(&terms, query.top_k, filter), keywords.ceiling(&terms))
        };
        let conn = self.conn();
        let mut row_of = conn
            .prepare_cached(&format!("SELECT id, {PAYLOAD} FROM chunks WHERE rowid = ?1"))
            .map_err(db_error("chunks.keyword"))?;
        let mut out: Vec<VectorHit> = Vec::with_capacity(ranked.len());
        for h in ranked {
            // A chunk deleted between the index read and this one is simply not a result.
            let row = row_of
                .query_row([h.rowid], |r| Ok((r.get::<_, String>(0)?, payload(r, 1)?)))
                .optional()
                .map_err(db_error("chunks.keyword"))?;
            let Some((id, p)) = row else { continue };
            out.extend(p.into_hit(ChunkId::from_stored(id), h.document, h.score));
        }
        // BM25 has no absolute scale: over the most the query's words could score, in [0, 1], the
        // same for a weak match whatever else the index holds.
        let ceiling = ceiling.max(f32::MIN_POSITIVE);
        for h in &mut out {
            h.score = (h.score / ceiling).clamp(0.0, 1.0);
        }
        Ok(out)
    }
}
