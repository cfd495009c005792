//! Chunks and their vectors: writes ([`VectorWriter`]) that keep the indexes fed by this table in
//! step (the in-memory vector index always, the keyword index once live), and searches
//! ([`VectorSearcher`], [`KeywordSearcher`]) that rank in an index and read only the rows that
//! make the cut.

use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{
    FieldCatalog, FieldSummary, KeywordQuery, KeywordSearcher, VectorHit, VectorQuery, VectorRecord, VectorSearcher,
    VectorWriter,
};
use quarry_core::{CharSpan, ChunkId, DocumentId, Filter, PageRange, PortError, meta};
use rusqlite::{OptionalExtension, params};

use super::{Keywords, Metadata, SqliteStore, db_error, from_blob, to_blob};
use quarry_keyword::{KeywordError, KeywordIndex};

/// The count of changes to `chunks` so far (kept by triggers): what a keyword index that holds
/// every chunk carries as its stamp.
pub(super) fn chunk_stamp(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM counters WHERE name = 'chunks'", [], |r| r.get::<_, i64>(0)).map(|v| v as u64)
}

fn keyword_error(operation: &'static str) -> impl FnOnce(KeywordError) -> PortError {
    move |e| match e {
        // Only while another process rebuilds the index on disk: try again later.
        KeywordError::Busy(_) => PortError::Transient { operation, source: Box::new(e) },
        e => PortError::Permanent { operation, source: Box::new(e) },
    }
}

impl SqliteStore {
    /// Makes the keyword index current now (rebuilding it if it was found behind, committing what
    /// waits): a server calls this at start so that its first keyword query does not pay for it.
    pub fn warm_keywords(&self) -> Result<(), PortError> {
        self.with_keywords(|k| k.commit().map_err(keyword_error("keywords.commit")))
    }

    /// Whether the keyword index holds every stored chunk now (found current at open, or rebuilt
    /// since); otherwise the next keyword search rebuilds it.
    pub fn keywords_current(&self) -> bool {
        self.keywords.read().unwrap_or_else(std::sync::PoisonError::into_inner).live
    }

    /// Runs `f` on the keyword index, rebuilt first if it is behind the chunks.
    fn with_keywords<T>(&self, f: impl FnOnce(&KeywordIndex) -> Result<T, PortError>) -> Result<T, PortError> {
        {
            let keywords = self.keywords.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if keywords.live {
                return f(&keywords.index);
            }
        }
        {
            let mut keywords = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !keywords.live {
                self.rebuild_keywords(&mut keywords)?;
            }
        }
        let keywords = self.keywords.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&keywords.index)
    }

    /// Refills the keyword index from every stored chunk. Writers update it only once it is live,
    /// under this lock and the connection's; holding both here means that no write is missed or
    /// applied twice. When another process holds the index on disk (it is rebuilding it too), this
    /// one builds its own in memory.
    fn rebuild_keywords(&self, keywords: &mut Keywords) -> Result<(), PortError> {
        let started = std::time::Instant::now();
        let fallback = match keywords.index.clear() {
            Ok(()) => None,
            Err(KeywordError::Busy(_)) => {
                tracing::warn!("another process holds the keyword index; this one builds its own in memory");
                Some(KeywordIndex::in_memory())
            }
            Err(e) => return Err(keyword_error("keywords.rebuild")(e)),
        };
        let target = fallback.as_ref().unwrap_or(&keywords.index);
        // Titles are document metadata, already in memory: one definition, `meta::title`.
        let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let conn = self.conn();
        // One read transaction: the stamp and the rows agree.
        let tx = conn.unchecked_transaction().map_err(db_error("keywords.rebuild"))?;
        let stamp = chunk_stamp(&tx).map_err(db_error("keywords.rebuild"))?;
        let mut stmt = tx.prepare("SELECT id, document_id, text FROM chunks").map_err(db_error("keywords.rebuild"))?;
        let mut rows = stmt.query([]).map_err(db_error("keywords.rebuild"))?;
        let mut n = 0u64;
        while let Some(r) = rows.next().map_err(db_error("keywords.rebuild"))? {
            let doc: String = r.get(1).map_err(db_error("keywords.rebuild"))?;
            let Some(document) = DocumentId::parse(&doc) else { continue };
            let id = ChunkId::from_stored(r.get::<_, String>(0).map_err(db_error("keywords.rebuild"))?);
            let text: String = r.get(2).map_err(db_error("keywords.rebuild"))?;
            let title = metadata.get(&document).map_or("", |m| meta::title(m));
            target.insert(&id, &document, title, &text).map_err(keyword_error("keywords.rebuild"))?;
            n += 1;
        }
        drop(rows);
        drop(stmt);
        tx.finish().map_err(db_error("keywords.rebuild"))?;
        target.set_stamp(stamp);
        target.commit().map_err(keyword_error("keywords.rebuild"))?;
        if let Some(index) = fallback {
            keywords.index = index;
        }
        keywords.live = true;
        tracing::info!(chunks = n, ms = started.elapsed().as_millis() as u64, "keyword index rebuilt");
        Ok(())
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
        // Lock order: keywords, then the connection (a rebuild takes them in that order). Both
        // are held until the keyword index has the changes and their stamp, so that a commit of
        // the index never carries a stamp for changes it does not hold.
        let keywords = self.keywords.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut conn = self.conn();
        let (before, stamp) = {
            let tx = conn.transaction().map_err(db_error("chunks.upsert"))?;
            let before = chunk_stamp(&tx).map_err(db_error("chunks.upsert"))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO chunks
                             (id, document_id, ordinal, text, page_first, page_last, metadata, vector, char_start, char_end)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (id) DO UPDATE SET document_id = ?2, ordinal = ?3, text = ?4, page_first = ?5,
                             page_last = ?6, metadata = ?7, vector = ?8, char_start = ?9, char_end = ?10",
                    )
                    .map_err(db_error("chunks.upsert"))?;
                let mut document_metadata = tx
                    .prepare_cached(
                        "INSERT INTO document_metadata (document_id, metadata) VALUES (?1, ?2)
                         ON CONFLICT (document_id) DO UPDATE SET metadata = ?2",
                    )
                    .map_err(db_error("chunks.upsert"))?;
                for r in records {
                    let ordinal = r.id.parts().map_or(0, |(_, o)| o);
                    let metadata = serde_json::to_string(&r.meta)
                        .map_err(|e| PortError::Permanent { operation: "chunks.upsert", source: Box::new(e) })?;
                    if ordinal == 0 {
                        document_metadata
                            .execute(params![r.document.as_str(), metadata])
                            .map_err(db_error("chunks.upsert"))?;
                    }
                    stmt.execute(params![
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
                    ])
                    .map_err(db_error("chunks.upsert"))?;
                }
            }
            let stamp = chunk_stamp(&tx).map_err(db_error("chunks.upsert"))?;
            tx.commit().map_err(db_error("chunks.upsert"))?;
            (before, stamp)
        };
        // The database is the truth; the indexes follow once the write is durable. A keyword
        // write that fails leaves the index's stamp behind: the document is retried, and at worst
        // the next open rebuilds. Kept filter answers are dropped once all of it is visible, even
        // when part of it fails.
        let _changed = self.filters.change();
        {
            let mut metadata = self.metadata.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in records {
                metadata.insert(r.document.clone(), r.meta.to_metadata());
            }
        }
        if keywords.live {
            for r in records {
                keywords
                    .index
                    .upsert(&r.id, &r.document, r.meta.search_title(), &r.text)
                    .map_err(keyword_error("keywords.upsert"))?;
            }
            keywords.index.set_stamp(stamp);
        }
        // Taken before the connection is let go: the vector index applies writes in commit order,
        // which its stamp (and so its snapshot) relies on.
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(conn);
        drop(keywords);
        let applied = records.iter().try_for_each(|r| index.upsert(r.id.clone(), r.document.clone(), &r.vector));
        index.follow(before, applied.is_ok().then_some(stamp));
        applied.map_err(|e| PortError::Permanent { operation: "chunks.upsert", source: Box::new(e) })
    }

    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        // Locks and stamp as in `upsert`.
        let keywords = self.keywords.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut conn = self.conn();
        let (before, gone, stamp) = {
            let tx = conn.transaction().map_err(db_error("chunks.delete"))?;
            let before = chunk_stamp(&tx).map_err(db_error("chunks.delete"))?;
            let gone: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM chunks WHERE document_id = ?1 AND ordinal >= ?2 RETURNING id")
                    .map_err(db_error("chunks.delete"))?;
                stmt.query_map(params![document.as_str(), keep], |r| r.get(0))
                    .map_err(db_error("chunks.delete"))?
                    .collect::<Result<_, _>>()
                    .map_err(db_error("chunks.delete"))?
            };
            if keep == 0 {
                tx.prepare_cached("DELETE FROM document_metadata WHERE document_id = ?1")
                    .and_then(|mut stmt| stmt.execute([document.as_str()]))
                    .map_err(db_error("chunks.delete"))?;
            }
            let stamp = chunk_stamp(&tx).map_err(db_error("chunks.delete"))?;
            tx.commit().map_err(db_error("chunks.delete"))?;
            (before, gone, stamp)
        };
        let n = gone.len();
        let _changed = self.filters.change();
        if keywords.live && n > 0 {
            for id in gone {
                keywords.index.remove(&ChunkId::from_stored(id)).map_err(keyword_error("keywords.remove"))?;
            }
            keywords.index.set_stamp(stamp);
        }
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(conn);
        drop(keywords);
        let removed = index.remove_document_from(document, keep);
        index.follow(before, removed.is_ok().then_some(stamp));
        drop(index);
        removed.map_err(|e| PortError::Permanent { operation: "chunks.delete", source: Box::new(e) })?;
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
            let allowed = query.filter.as_ref().map(|f| {
                self.filters.vectors(f, || {
                    let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                    index.accepted(&|d| metadata.get(d).is_some_and(|m| f.matches(m)))
                })
            });
            index
                .search_among(&query.vector, query.top_k, allowed.as_ref().map(|a| a.as_slice()))
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
    async fn fields(&self, values: usize, within: Option<&Filter>) -> Result<Vec<FieldSummary>, PortError> {
        let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(meta::summarise(metadata.values().filter(|m| within.is_none_or(|f| f.matches(m))), values))
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

impl SqliteStore {
    /// Every stored chunk with its vector, by document and ordinal: what another vector store needs
    /// to hold the same index (the AWS keyword benchmark copies an embedded index to S3 Vectors).
    pub fn records(&self) -> Result<Vec<VectorRecord>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT id, document_id, vector, {PAYLOAD} FROM chunks ORDER BY document_id, ordinal"))
            .map_err(db_error("chunks.records"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    from_blob(&r.get::<_, Vec<u8>>(2)?),
                    payload(r, 3)?,
                ))
            })
            .map_err(db_error("chunks.records"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, document, vector, p) = row.map_err(db_error("chunks.records"))?;
            let Some(document) = DocumentId::parse(&document) else { continue };
            if let Some(h) = p.into_hit(ChunkId::from_stored(id), document, 0.0) {
                out.push(VectorRecord {
                    id: h.id,
                    document: h.document,
                    vector,
                    text: h.text,
                    pages: h.pages,
                    span: h.span,
                    meta: h.meta,
                });
            }
        }
        Ok(out)
    }
}

impl KeywordSearcher for SqliteStore {
    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<VectorHit>, PortError> {
        let terms = quarry_keyword::query_terms(&query.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let memo = query.filter.as_ref().map(|f| self.filters.keywords(f));
        let ranked = self.with_keywords(|keywords| {
            let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let accept = accepts(&metadata, query.filter.as_ref());
            let filter = accept.as_ref().map(|f| f as &dyn Fn(&DocumentId) -> bool);
            keywords.search(&terms, query.top_k, filter, memo.as_deref()).map_err(keyword_error("keywords.search"))
        })?;
        let conn = self.conn();
        let mut row_of = conn
            .prepare_cached(&format!("SELECT {PAYLOAD} FROM chunks WHERE id = ?1"))
            .map_err(db_error("chunks.keyword"))?;
        // BM25 has no absolute scale: over the most the query's words could score, in [0, 1], the
        // same for a weak match whatever else the index holds.
        let ceiling = ranked.ceiling.max(f32::MIN_POSITIVE);
        let mut out: Vec<VectorHit> = Vec::with_capacity(ranked.hits.len());
        for h in ranked.hits {
            // A chunk deleted between the index read and this one is simply not a result.
            let row = row_of
                .query_row([h.chunk.as_str()], |r| payload(r, 0))
                .optional()
                .map_err(db_error("chunks.keyword"))?;
            let Some(p) = row else { continue };
            out.extend(p.into_hit(h.chunk, h.document, (h.score / ceiling).clamp(0.0, 1.0)));
        }
        Ok(out)
    }
}
