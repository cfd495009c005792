//! Chunks in a tantivy index: one document per chunk, keyed by its id, its words analysed by
//! [`Analyzer`] into one field that holds the title twice and the body once.
//!
//! Writes go to a lazily opened writer (a process that only searches never takes tantivy's
//! writer lock, so `quarry search` runs beside `quarry serve`) and become visible at the next
//! commit, which a search makes when something is waiting: a caller reads its own writes. A
//! commit carries the caller's stamp (the state database's count of chunk changes) so that an
//! index left behind by a crash is known to be stale at the next open.

use crate::analysis::{Analyzer, TITLE_WEIGHT};
use crate::filter::{FilterMemo, allowed_documents};
use quarry_core::{ChunkId, DocumentId};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::query::{Bm25StatisticsProvider, Bm25Weight, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument,
};

/// The indexing arena: a segment is flushed when it fills. 15 MB is tantivy's floor per thread;
/// 64 MB holds about 30,000 chunks of 256 tokens, so that ingesting 100,000 makes a handful of
/// segments for the merge policy rather than dozens.
const WRITER_MEMORY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KeywordError {
    #[error("cannot open the keyword index at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: tantivy::TantivyError,
    },
    /// Another process holds tantivy's writer lock on this index.
    #[error("another process is writing the keyword index")]
    Busy(#[source] tantivy::TantivyError),
    #[error("keyword index: {operation} failed")]
    Index {
        operation: &'static str,
        #[source]
        source: tantivy::TantivyError,
    },
}

impl quarry_core::Classify for KeywordError {
    fn class(&self) -> quarry_core::ErrorClass {
        match self {
            KeywordError::Busy(_) => quarry_core::ErrorClass::Retryable,
            KeywordError::Open { .. } | KeywordError::Index { .. } => quarry_core::ErrorClass::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        "keyword_index"
    }
}

fn failed(operation: &'static str) -> impl FnOnce(tantivy::TantivyError) -> KeywordError {
    move |source| KeywordError::Index { operation, source }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    /// The chunk's analysed words: frequencies, no positions (keyword search matches words).
    text: Field,
    /// The chunk id: indexed to delete by, a fast field to answer with.
    chunk: Field,
    /// The document id: a fast field, for filters and answers.
    doc: Field,
    /// What search shows of the chunk (stored, not indexed): only in a published index, whose
    /// searchers have no database to read it from.
    pub(crate) payload: Option<Field>,
}

/// The name the index knows [`Analyzer`] by (tokenizers are registered at each open, not stored).
const ANALYZER: &str = "quarry";

fn schema(payload: bool) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    let chunk = b.add_text_field("chunk", STRING.set_fast("raw"));
    let doc = b.add_text_field("doc", STRING.set_fast("raw"));
    let payload = payload.then(|| b.add_text_field("payload", STORED));
    (b.build(), Fields { text, chunk, doc, payload })
}

/// One hit: BM25 as tantivy scores it (higher is better; no fixed scale).
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordHit {
    pub chunk: ChunkId,
    pub document: DocumentId,
    pub score: f32,
}

/// What a search found, and the most its words could score ([`KeywordIndex::search`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ranked {
    pub hits: Vec<KeywordHit>,
    /// Each matching word's BM25 weight as its frequency grows without bound (`idf × (k1 + 1)`),
    /// summed: a score over it reads the same across queries.
    pub ceiling: f32,
}

#[derive(Default)]
struct Writer {
    inner: Option<IndexWriter>,
    /// Changes added since the last commit.
    dirty: bool,
    /// What the caller says the index holds once they are committed.
    stamp: Option<u64>,
}

/// A keyword index on disk (or in memory). Every method takes `&self`: writes are serialised
/// inside, searches run beside them.
pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for KeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordIndex").field("chunks", &self.len()).finish_non_exhaustive()
    }
}

impl KeywordIndex {
    /// Opens the index in `dir`, creating it if there is none. An index this build cannot read
    /// (another schema, damage) is replaced by an empty one: it is derived data, and an empty
    /// index has no stamp, so its owner rebuilds it.
    pub fn open(dir: &Path) -> Result<Self, KeywordError> {
        let open = |source| KeywordError::Open { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(|e| open(e.into()))?;
        let (schema, fields) = schema(false);
        let directory = || tantivy::directory::MmapDirectory::open(dir).map_err(|e| open(e.into()));
        let index = match Index::open_or_create(directory()?, schema.clone()) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, "the keyword index cannot be read; it is rebuilt");
                std::fs::remove_dir_all(dir).map_err(|e| open(e.into()))?;
                std::fs::create_dir_all(dir).map_err(|e| open(e.into()))?;
                Index::open_or_create(directory()?, schema).map_err(open)?
            }
        };
        Self::with_index(index, fields).map_err(open)
    }

    /// An index in memory, for a process that may not write the one on disk.
    pub fn in_memory() -> Self {
        let (schema, fields) = schema(false);
        #[allow(clippy::expect_used)]
        // A reader over an empty in-memory index touches no file: nothing can fail.
        Self::with_index(Index::create_in_ram(schema), fields).expect("an in-memory index opens")
    }

    /// A published index in `directory` (with stored payloads): created empty, or opened from
    /// the `meta.json` and segment files already written into it.
    pub(crate) fn published(directory: tantivy::directory::RamDirectory, create: bool) -> tantivy::Result<Self> {
        let (schema, fields) = schema(true);
        let index = if create {
            Index::create(directory, schema, tantivy::IndexSettings::default())?
        } else {
            let index = Index::open(directory)?;
            let fields = |name| index.schema().get_field(name);
            let read = Fields {
                text: fields("text")?,
                chunk: fields("chunk")?,
                doc: fields("doc")?,
                payload: fields("payload").ok(),
            };
            return Self::with_index(index, read);
        };
        Self::with_index(index, fields)
    }

    fn with_index(index: Index, fields: Fields) -> tantivy::Result<Self> {
        index.tokenizers().register(ANALYZER, Analyzer::default());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(KeywordIndex { index, reader, fields, writer: Mutex::new(Writer::default()) })
    }

    /// The stamp of the last commit, if it carried one.
    pub fn stamp(&self) -> Result<Option<u64>, KeywordError> {
        let metas = self.index.load_metas().map_err(failed("read meta"))?;
        Ok(metas.payload.and_then(|p| p.parse().ok()))
    }

    /// Chunks searchable now.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A write either reached tantivy's writer or did not; nothing half-done is left behind.
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` with the writer, opening it first if needed.
    fn write<T>(&self, f: impl FnOnce(&IndexWriter) -> Result<T, KeywordError>) -> Result<T, KeywordError> {
        let mut w = self.writer();
        if w.inner.is_none() {
            let writer = self.index.writer_with_num_threads(1, WRITER_MEMORY).map_err(|e| match e {
                tantivy::TantivyError::LockFailure(tantivy::directory::error::LockError::LockBusy, _) => {
                    KeywordError::Busy(e)
                }
                e => KeywordError::Index { operation: "open writer", source: e },
            })?;
            w.inner = Some(writer);
        }
        let Some(writer) = w.inner.as_ref() else { unreachable!("opened above") };
        let out = f(writer)?;
        w.dirty = true;
        Ok(out)
    }

    /// Indexes a chunk, replacing what the index held under its id.
    pub fn upsert(&self, chunk: &ChunkId, document: &DocumentId, title: &str, body: &str) -> Result<(), KeywordError> {
        let doc = self.document(chunk, document, title, body);
        let term = tantivy::Term::from_field_text(self.fields.chunk, chunk.as_str());
        self.write(|w| {
            w.delete_term(term);
            w.add_document(doc).map_err(failed("add"))?;
            Ok(())
        })
    }

    /// Indexes a chunk the index does not hold (after [`KeywordIndex::clear`]): no delete to
    /// apply at commit.
    pub fn insert(&self, chunk: &ChunkId, document: &DocumentId, title: &str, body: &str) -> Result<(), KeywordError> {
        let doc = self.document(chunk, document, title, body);
        self.write(|w| w.add_document(doc).map(drop).map_err(failed("add")))
    }

    /// Adds a chunk with what search shows of it, to a published index ([`KeywordIndex::published`]).
    pub(crate) fn add(
        &self,
        chunk: &ChunkId,
        document: &DocumentId,
        title: &str,
        body: &str,
        payload: &str,
    ) -> Result<(), KeywordError> {
        let mut doc = self.document(chunk, document, title, body);
        if let Some(field) = self.fields.payload {
            doc.add_text(field, payload);
        }
        self.write(|w| w.add_document(doc).map(drop).map_err(failed("add")))
    }

    /// Removes every chunk of `document`.
    pub(crate) fn remove_document(&self, document: &DocumentId) -> Result<(), KeywordError> {
        let term = tantivy::Term::from_field_text(self.fields.doc, document.as_str());
        self.write(|w| {
            w.delete_term(term);
            Ok(())
        })
    }

    /// Commits, lets the merges the commit started finish (tantivy's log merge policy: the
    /// segment count stays logarithmic in the chunks), and closes the writer.
    pub(crate) fn finish(&self) -> Result<(), KeywordError> {
        self.commit()?;
        if let Some(writer) = self.writer().inner.take() {
            writer.wait_merging_threads().map_err(failed("merge"))?;
        }
        self.reload()
    }

    /// Sees what was committed to the directory since (a newer manifest's `meta.json`).
    pub(crate) fn reload(&self) -> Result<(), KeywordError> {
        self.reader.reload().map_err(failed("reload"))
    }

    pub(crate) fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    pub(crate) fn fields(&self) -> Fields {
        self.fields
    }

    pub(crate) fn tantivy(&self) -> &Index {
        &self.index
    }

    fn document(&self, chunk: &ChunkId, document: &DocumentId, title: &str, body: &str) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        if !title.is_empty() {
            for _ in 0..TITLE_WEIGHT {
                doc.add_text(self.fields.text, title);
            }
        }
        doc.add_text(self.fields.text, body);
        doc.add_text(self.fields.chunk, chunk.as_str());
        doc.add_text(self.fields.doc, document.as_str());
        doc
    }

    /// Removes a chunk (nothing if the index does not hold it).
    pub fn remove(&self, chunk: &ChunkId) -> Result<(), KeywordError> {
        let term = tantivy::Term::from_field_text(self.fields.chunk, chunk.as_str());
        self.write(|w| {
            w.delete_term(term);
            Ok(())
        })
    }

    /// Removes every chunk, and the stamp until [`KeywordIndex::set_stamp`] gives another.
    pub fn clear(&self) -> Result<(), KeywordError> {
        // tantivy drops committed segments only: what waits is committed first, stampless.
        self.write(|_| Ok(()))?;
        self.writer().stamp = None;
        self.commit()?;
        self.write(|w| w.delete_all_documents().map(drop).map_err(failed("clear")))
    }

    /// What the index will hold once the changes so far are committed, by the caller's count.
    pub fn set_stamp(&self, stamp: u64) {
        self.writer().stamp = Some(stamp);
    }

    /// Commits waiting changes, if any, and makes them searchable.
    pub fn commit(&self) -> Result<(), KeywordError> {
        let mut w = self.writer();
        if !w.dirty {
            return Ok(());
        }
        let stamp = w.stamp;
        let Some(writer) = w.inner.as_mut() else { return Ok(()) };
        let mut prepared = writer.prepare_commit().map_err(failed("commit"))?;
        if let Some(stamp) = stamp {
            prepared.set_payload(&stamp.to_string());
        }
        prepared.commit().map_err(failed("commit"))?;
        w.dirty = false;
        self.reader.reload().map_err(failed("reload"))
    }

    /// The `k` best chunks for `terms` (from [`crate::query_terms`]) among the documents `accept`
    /// takes (all when `None`), best first, with the query's ceiling. Unfiltered, tantivy's
    /// block-max WAND skips the blocks that cannot enter the top `k`; a filter is decided once per
    /// document and segment, inside the scan, so that `k` stays full when it is selective. With
    /// `memo`, the filter's answer for each segment is kept there and reused by the next search
    /// with the same filter over the same documents (the caller keys it; see [`FilterMemo`]).
    pub fn search(
        &self,
        terms: &[Box<str>],
        k: usize,
        accept: Option<&dyn Fn(&DocumentId) -> bool>,
        memo: Option<&FilterMemo>,
    ) -> Result<Ranked, KeywordError> {
        let (hits, ceiling) = self.search_at(terms, k, accept, memo)?;
        Ok(Ranked { hits: hits.into_iter().map(|(hit, _)| hit).collect(), ceiling })
    }

    /// [`KeywordIndex::search`], each hit with its address (to read its stored payload).
    pub(crate) fn search_at(
        &self,
        terms: &[Box<str>],
        k: usize,
        accept: Option<&dyn Fn(&DocumentId) -> bool>,
        memo: Option<&FilterMemo>,
    ) -> Result<(Vec<(KeywordHit, DocAddress)>, f32), KeywordError> {
        self.commit()?;
        let searcher = self.reader.searcher();
        let k = k.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
        // As tantivy counts documents for idf: deleted ones until their segment is merged.
        let total = Bm25StatisticsProvider::total_num_docs(&searcher).map_err(failed("doc count"))?;
        let tokens = Bm25StatisticsProvider::total_num_tokens(&searcher, self.fields.text).map_err(failed("tokens"))?;
        let mut stats = Statistics { total, tokens, freqs: Vec::with_capacity(terms.len()) };
        let mut ceiling = 0.0;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len());
        for t in terms {
            let term = tantivy::Term::from_field_text(self.fields.text, t);
            // `idf × (k1 + 1)`: the weight at fieldnorm 0 (no length penalty) as the count grows.
            // (`Bm25Weight::max_score` is the bound at the longest fieldnorm, for pruning.)
            let df = searcher.doc_freq(&term).map_err(failed("doc freq"))?;
            if df == 0 {
                continue;
            }
            ceiling += Bm25Weight::for_one_term(df, total, 1.0).score(0, u32::MAX);
            stats.freqs.push((term.clone(), df));
            clauses.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))));
        }
        if clauses.is_empty() || k == 0 {
            return Ok((Vec::new(), ceiling));
        }
        let query = BooleanQuery::new(clauses);
        let top = match accept {
            None => searcher.search_with_statistics_provider(&query, &TopDocs::with_limit(k).order_by_score(), &stats),
            Some(accept) => {
                if let Some(memo) = memo {
                    let live: Vec<_> = searcher.segment_readers().iter().map(SegmentReader::segment_id).collect();
                    memo.keep_only(&live);
                }
                let allowed = searcher
                    .segment_readers()
                    .iter()
                    .map(|s| match memo {
                        Some(memo) => memo.allowed(s, accept),
                        None => allowed_documents(s, accept).map(Arc::new),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed("filter"))?;
                searcher.search_with_statistics_provider(&query, &Filtered { k, allowed }, &stats)
            }
        }
        .map_err(failed("search"))?;
        // Ids from the fast fields, segment by segment, each column read in ordinal order.
        let mut ids: Vec<Option<(String, String)>> = vec![None; top.len()];
        for (segment, reader) in searcher.segment_readers().iter().enumerate() {
            let at: Vec<usize> = (0..top.len()).filter(|&i| top[i].1.segment_ord as usize == segment).collect();
            if at.is_empty() {
                continue;
            }
            let fast = reader.fast_fields();
            let (Some(chunks), Some(docs)) =
                (fast.str("chunk").map_err(failed("read ids"))?, fast.str("doc").map_err(failed("read ids"))?)
            else {
                continue;
            };
            let rows: Vec<DocId> = at.iter().map(|&i| top[i].1.doc_id).collect();
            let read = |e: std::io::Error| KeywordError::Index { operation: "read ids", source: e.into() };
            let chunk_ids = strings_of(&chunks, &rows).map_err(read)?;
            let doc_ids = strings_of(&docs, &rows).map_err(read)?;
            for ((i, c), d) in at.into_iter().zip(chunk_ids).zip(doc_ids) {
                ids[i] = c.zip(d);
            }
        }
        let hits = top
            .into_iter()
            .zip(ids)
            .filter_map(|((score, address), id)| {
                let (chunk, doc) = id?;
                let hit = KeywordHit { chunk: ChunkId::from_stored(chunk), document: DocumentId::parse(&doc)?, score };
                Some((hit, address))
            })
            .collect();
        Ok((hits, ceiling))
    }
}

impl Drop for KeywordIndex {
    /// Commits what is waiting (a clean exit leaves an index that the next open trusts), then
    /// lets running merges finish.
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::warn!(error = %e, "the keyword index could not be committed; the next open rebuilds it");
        }
        if let Some(writer) = self.writer().inner.take()
            && let Err(e) = writer.wait_merging_threads()
        {
            tracing::warn!(error = %e, "a keyword index merge did not finish");
        }
    }
}

/// One search's BM25 statistics, gathered once: weighing each term query would otherwise look its
/// word up in every segment again, and sum the field's tokens over them again per word.
struct Statistics {
    total: u64,
    tokens: u64,
    freqs: Vec<(tantivy::Term, u64)>,
}

impl Bm25StatisticsProvider for Statistics {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        // Only the `text` field is ever scored.
        Ok(self.tokens)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.total)
    }

    fn doc_freq(&self, term: &tantivy::Term) -> tantivy::Result<u64> {
        Ok(self.freqs.iter().find(|(t, _)| t == term).map_or(0, |(_, df)| *df))
    }
}

/// The value of a single-valued string column at each of `rows`, looked up in ordinal order: one
/// pass over the dictionary's blocks, not a search per row (a 1,000-deep list reads 2,000 ids).
pub(crate) fn strings_of(
    column: &tantivy::columnar::StrColumn,
    rows: &[DocId],
) -> std::io::Result<Vec<Option<String>>> {
    let mut by_ord: Vec<(u64, usize)> =
        rows.iter().enumerate().filter_map(|(i, &row)| column.term_ords(row).next().map(|ord| (ord, i))).collect();
    by_ord.sort_unstable();
    let ords: Vec<u64> = by_ord.iter().map(|p| p.0).collect();
    let mut out = vec![None; rows.len()];
    let mut next = by_ord.iter();
    column.dictionary().sorted_ords_to_term_cb(&ords, |bytes| {
        if let Some(&(_, i)) = next.next() {
            out[i] = std::str::from_utf8(bytes).ok().map(str::to_owned);
        }
    })?;
    Ok(out)
}

/// The best `k` (score descending, then address), in order.
fn best(mut hits: Vec<(Score, DocAddress)>, k: usize) -> Vec<(Score, DocAddress)> {
    let order = |a: &(Score, DocAddress), b: &(Score, DocAddress)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, order);
        hits.truncate(k);
    }
    hits.sort_unstable_by(order);
    hits
}

/// Top `k` among the chunks of allowed documents (per segment, by the `doc` column's ordinals).
struct Filtered {
    k: usize,
    allowed: Vec<Arc<Vec<bool>>>,
}

struct FilteredSegment {
    segment: u32,
    k: usize,
    column: Option<tantivy::columnar::StrColumn>,
    allowed: Arc<Vec<bool>>,
    hits: Vec<(Score, DocAddress)>,
}

impl Collector for Filtered {
    type Fruit = Vec<(Score, DocAddress)>;
    type Child = FilteredSegment;

    fn for_segment(&self, segment: u32, reader: &SegmentReader) -> tantivy::Result<FilteredSegment> {
        Ok(FilteredSegment {
            segment,
            k: self.k,
            column: reader.fast_fields().str("doc")?,
            allowed: self.allowed.get(segment as usize).cloned().unwrap_or_default(),
            hits: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        Ok(best(fruits.into_iter().flatten().collect(), self.k))
    }
}

impl SegmentCollector for FilteredSegment {
    type Fruit = Vec<(Score, DocAddress)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        let Some(column) = &self.column else { return };
        let Some(ord) = column.term_ords(doc).next() else { return };
        if self.allowed.get(ord as usize).copied().unwrap_or(false) {
            self.hits.push((score, DocAddress::new(self.segment, doc)));
            // Bounded memory whatever the number of matches.
            if self.hits.len() >= 2 * self.k.max(1024) {
                self.hits = best(std::mem::take(&mut self.hits), self.k);
            }
        }
    }

    fn harvest(self) -> Self::Fruit {
        best(self.hits, self.k)
    }
}
