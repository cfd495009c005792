//! A flat vector index for unit-length embeddings.
//!
//! Measured on one core at 100,000 x 384 (see `benches/vector_index.rs`): an exact f32 scan costs
//! ~7.5 ms a query, bound by memory bandwidth (154 MB read per query; AVX2 does not help), which
//! leaves little margin under the 10 ms p95 target. Scanning int8 codes (a quarter of the bytes)
//! and re-ranking the best 100 with the f32 vectors costs ~3.4 ms with recall@10 of 1.000 against
//! the exact scan; split over two threads, p50 3.36 -> 2.05 ms (p95 3.65 -> 3.42) in one run.
//! So: exact f32 below [`EXACT_BELOW`] vectors with the vectors in memory, int8 + f32 re-rank
//! above (and always when they are in a file, where the re-rank of up to 100 keeps a small corpus
//! exactly right). Filters are checked before any scoring, so a selective filter
//! makes a query cheaper, and top-k stays full: nothing is post-filtered.
//!
//! From [`BINARY_FROM`] candidates a one-bit pass (signs, 48 bytes a vector) comes before the int8
//! one, which then scores only its shortlist: at a million chunks the int8 scan alone read 384 MB a
//! query (`--bench scale` in the CLI crate has the figures).
//!
//! The store's index keeps its f32 vectors in a file (`exact.rs`) and what the scans read in
//! memory, saved as a snapshot for the next open (`snapshot.rs`); the scans' loops use AVX2 and
//! POPCNT where the CPU has them (`kernels.rs`). At a million chunks over HTTP: semantic p95
//! 38.0 -> 8.8 ms, the server's memory 3.8 -> 1.8 GB (`--bench scale`, docs/PERFORMANCE.md).
//!
//! HNSW was not chosen: the issue's own measurement put usearch at 0.35 ms unfiltered but 16-60 ms
//! under a 1% filter, and filtered search is the common case here.

use quarry_core::{ChunkId, DocumentId};
use rustc_hash::FxHashMap;

mod exact;
mod kernels;
mod snapshot;

use exact::Exact;
use kernels::Slots;
pub use snapshot::Opened;

/// Below this many candidates every query is an exact f32 scan.
pub const EXACT_BELOW: usize = 4096;
/// How many int8 candidates beyond the `k` asked for are re-scored exactly: at a first page's depth
/// (101) recall@101 stayed 1.000 against 4k (404) while p50 went 3.66 -> 3.33 ms
/// (`--bench vector_index`, 100,000 vectors in a file, one session).
pub const RERANK: usize = 100;
/// From this many candidates the int8 scan is preceded by a one-bit one (see [`FlatIndex::score`]).
pub const BINARY_FROM: usize = 200_000;
/// How many candidates the one-bit scan passes to the int8 one, at least, and as a share of the
/// candidates (1/32: 31,250 of a million, whose int8 scores cost ~1 ms). Signs alone rank
/// near-ties poorly: a 2,048 shortlist of 12,000 clustered vectors kept recall@10 at only 0.945
/// for queries far from every cluster, and 1/64 of a million synthetic clustered vectors 0.973
/// (`--bench vector_index`); int8 scores then sort the shortlist out.
pub const SHORTLIST: usize = 2_048;
pub const SHORTLIST_SHARE: usize = 32;
/// From this many candidates an int8 scan runs on two threads (when there are two cores): below
/// it, starting a thread costs more than half a scan saves.
pub const PARALLEL_FROM: usize = 32_768;

static PARALLEL: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1));

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector has {got} dimensions, the index holds {want}")]
    Dimension { got: usize, want: usize },
    #[error("vector has a non-finite component")]
    NotFinite,
    #[error("vector has zero length")]
    Zero,
    /// The vectors' file beside the database could not be read or written.
    #[error("the vectors' file")]
    File(#[from] std::io::Error),
}

impl quarry_core::Classify for IndexError {
    fn class(&self) -> quarry_core::ErrorClass {
        match self {
            IndexError::File(_) => quarry_core::ErrorClass::Permanent,
            _ => quarry_core::ErrorClass::BadInput,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            IndexError::Dimension { .. } => "dimension_mismatch",
            IndexError::NotFinite | IndexError::Zero => "invalid_vector",
            IndexError::File(_) => "vector_file",
        }
    }
}

/// One search result; `score` is a similarity in [0, 1]: (1 + cosine) / 2.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHit {
    pub id: ChunkId,
    pub document: DocumentId,
    pub score: f32,
}

/// Vectors by chunk id, stored contiguously (slot-major) in f32 (in memory, or in a file: see
/// `exact.rs`) and in memory as int8 codes.
#[derive(Debug)]
pub struct FlatIndex {
    dim: usize,
    vectors: Exact,
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// The sign of each component, `words` u64s a vector: a 32x smaller first pass for large scans.
    bits: Vec<u64>,
    words: usize,
    binary_from: usize,
    ids: Vec<ChunkId>,
    /// Each slot's document number: filters run once per document, and slots are then checked
    /// against a bitmap.
    slot_doc: Vec<u32>,
    documents: Documents,
    slots: FxHashMap<ChunkId, usize>,
    /// The database's chunk stamp this file-backed index is known to hold (`snapshot.rs`).
    stamp: Option<u64>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Independent accumulators let the compiler keep several vector lanes busy.
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Symmetric int8 codes with one scale per vector.
fn quantize(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    out.extend(v.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8));
    scale
}

/// One bit a component, set where it is positive.
fn signs(v: &[f32], out: &mut Vec<u64>) {
    for block in v.chunks(64) {
        out.push(block.iter().enumerate().fold(0u64, |w, (i, x)| if *x > 0.0 { w | 1 << i } else { w }));
    }
}

/// The k best of `scored`, best first; ties broken by slot for a stable order.
fn top_k(scored: &mut Vec<(f32, usize)>, k: usize) {
    let by_score = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, by_score);
    }
    scored.truncate(k);
    scored.sort_unstable_by(by_score);
}

/// `scan` over 0..count, split in two halves on two threads when the scan is large and there are
/// two cores; the halves' results, concatenated.
fn split<T: Send>(count: usize, scan: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync) -> Vec<T> {
    if count < PARALLEL_FROM || !*PARALLEL {
        return scan(0..count);
    }
    let mid = count / 2;
    let (mut mine, other) = std::thread::scope(|scope| {
        let other = scope.spawn(|| scan(mid..count));
        (scan(0..mid), other.join())
    });
    match other {
        Ok(other) => mine.extend(other),
        // A panic in the scan is a bug; rethrow it here rather than answer half a scan.
        Err(panic) => std::panic::resume_unwind(panic),
    }
    mine
}

/// Each distinct document once, numbered: an index keeps a `u32` per slot rather than an id, and
/// a filter (which tests document metadata) is decided once per document, not per chunk.
#[derive(Debug, Clone, Default)]
pub(crate) struct Documents {
    ids: Vec<DocumentId>,
    numbers: FxHashMap<DocumentId, u32>,
}

impl Documents {
    /// The document's number, assigned on first sight.
    pub(crate) fn intern(&mut self, document: &DocumentId) -> u32 {
        if let Some(&n) = self.numbers.get(document) {
            return n;
        }
        let n = self.ids.len() as u32;
        self.ids.push(document.clone());
        self.numbers.insert(document.clone(), n);
        n
    }

    pub(crate) fn number(&self, document: &DocumentId) -> Option<u32> {
        self.numbers.get(document).copied()
    }

    pub(crate) fn id(&self, number: u32) -> &DocumentId {
        &self.ids[number as usize]
    }

    /// Whether `accept` takes each document, by number.
    pub(crate) fn accepted(&self, accept: &dyn Fn(&DocumentId) -> bool) -> Vec<bool> {
        self.ids.iter().map(accept).collect()
    }
}

impl FlatIndex {
    pub fn new(dim: usize) -> Self {
        FlatIndex {
            dim,
            vectors: Exact::Memory(Vec::new()),
            codes: Vec::new(),
            scales: Vec::new(),
            bits: Vec::new(),
            words: dim.div_ceil(64),
            binary_from: BINARY_FROM,
            ids: Vec::new(),
            slot_doc: Vec::new(),
            documents: Documents::default(),
            slots: FxHashMap::default(),
            stamp: None,
        }
    }

    /// Uses the one-bit first pass from `n` candidates rather than [`BINARY_FROM`]: tests and
    /// benchmarks exercise it without building a large index.
    #[must_use]
    pub fn with_binary_from(mut self, n: usize) -> Self {
        self.binary_from = n;
        self
    }

    /// Whether the f32 vectors are in a file (`open_files`) rather than in memory.
    pub fn on_disk(&self) -> bool {
        !self.vectors.in_memory()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.slots.contains_key(id)
    }

    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        if v.len() != self.dim {
            return Err(IndexError::Dimension { got: v.len(), want: self.dim });
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NotFinite);
        }
        if v.iter().all(|x| *x == 0.0) {
            return Err(IndexError::Zero);
        }
        Ok(())
    }

    /// Inserts or replaces a chunk's vector (normalised here, so callers need not).
    pub fn upsert(&mut self, id: ChunkId, document: DocumentId, vector: &[f32]) -> Result<(), IndexError> {
        self.check(vector)?;
        let norm = dot(vector, vector).sqrt();
        let unit: Vec<f32> = vector.iter().map(|x| x / norm).collect();
        let mut code = Vec::with_capacity(self.dim);
        let scale = quantize(&unit, &mut code);
        let mut bits = Vec::with_capacity(self.words);
        signs(&unit, &mut bits);
        let (d, w) = (self.dim, self.words);
        let doc = self.documents.intern(&document);
        if let Some(&slot) = self.slots.get(&id) {
            self.vectors.set(slot, &unit)?;
            self.codes[slot * d..(slot + 1) * d].copy_from_slice(&code);
            self.bits[slot * w..(slot + 1) * w].copy_from_slice(&bits);
            self.scales[slot] = scale;
            self.slot_doc[slot] = doc;
        } else {
            self.vectors.push(self.ids.len(), &unit)?;
            self.slots.insert(id.clone(), self.ids.len());
            self.codes.extend_from_slice(&code);
            self.bits.extend_from_slice(&bits);
            self.scales.push(scale);
            self.ids.push(id);
            self.slot_doc.push(doc);
        }
        Ok(())
    }

    /// Removes a chunk; the last slot moves into its place.
    pub fn remove(&mut self, id: &ChunkId) -> Result<bool, IndexError> {
        let Some(&slot) = self.slots.get(id) else { return Ok(false) };
        let last = self.ids.len() - 1;
        let (d, w) = (self.dim, self.words);
        // The file first: when it fails, the index is as it was.
        self.vectors.swap_remove(d, last, slot)?;
        self.slots.remove(id);
        if slot != last {
            self.codes.copy_within(last * d..(last + 1) * d, slot * d);
            self.bits.copy_within(last * w..(last + 1) * w, slot * w);
            self.scales[slot] = self.scales[last];
            self.ids.swap(slot, last);
            self.slot_doc.swap(slot, last);
            self.slots.insert(self.ids[slot].clone(), slot);
        }
        self.codes.truncate(last * d);
        self.bits.truncate(last * w);
        self.scales.truncate(last);
        self.ids.truncate(last);
        self.slot_doc.truncate(last);
        Ok(true)
    }

    /// Removes a document's chunks with ordinal `keep` and above: what a shorter new version of
    /// the document leaves stale (`VectorWriter::delete_from`). Returns how many were removed.
    pub fn remove_document_from(&mut self, document: &DocumentId, keep: u32) -> Result<usize, IndexError> {
        let Some(doc) = self.documents.number(document) else { return Ok(0) };
        let stale: Vec<ChunkId> = self
            .ids
            .iter()
            .zip(&self.slot_doc)
            .filter(|(id, d)| **d == doc && id.parts().is_none_or(|(_, ord)| ord >= keep))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.remove(id)?;
        }
        Ok(stale.len())
    }

    /// Scores the candidate slots (`slot_at(i)` for i in 0..count): exactly when they are few,
    /// else int8 first and the best `k +` [`RERANK`] exactly. A large scan is split over two
    /// threads: it is bound by memory reads, and one core does not use all of the bandwidth.
    ///
    /// From [`BINARY_FROM`] candidates the int8 scan (a quarter of the f32 bytes) is itself too
    /// slow: 384 MB a query at a million chunks, 52 ms semantic p50 over HTTP (`--bench scale`).
    /// A one-bit pass first (48 bytes a vector) keeps the nearest by Hamming distance (1 in
    /// [`SHORTLIST_SHARE`], at least [`SHORTLIST`] or 5x the int8 keep), which the int8 and exact
    /// passes then rank as before.
    ///
    /// A file-backed index has no exact scan: reading every candidate's vector from the file would
    /// cost a read each. Its int8 pass keeps the best `k +` [`RERANK`], which are all the
    /// candidates when they are that few.
    fn score(&self, q: &[f32], slots: Slots<'_>, k: usize) -> Result<Vec<(f32, usize)>, IndexError> {
        let d = self.dim;
        let count = slots.len();
        let mut scratch = (Vec::new(), Vec::new());
        let mut exact = |slot: usize| self.vectors.dot(q, slot, &mut scratch);
        if count < EXACT_BELOW && self.vectors.in_memory() {
            return (0..count).map(|i| Ok((exact(slots.get(i))?, slots.get(i)))).collect();
        }
        let mut qc = Vec::with_capacity(d);
        let qs = quantize(q, &mut qc);
        let int8 = |slots: Slots<'_>| {
            let mut dots = Vec::with_capacity(slots.len());
            kernels::int8_dots(&qc, &self.codes, slots, &mut dots);
            dots.into_iter().map(|(dot, s)| (dot as f32 * self.scales[s] * qs, s)).collect::<Vec<_>>()
        };
        let keep = k + RERANK;
        let mut best: Vec<(f32, usize)> = if count >= self.binary_from {
            let mut qb = Vec::with_capacity(self.words);
            signs(q, &mut qb);
            let want = SHORTLIST.max(keep * 5).max(count / SHORTLIST_SHARE);
            let shortlist = split(count, |range| self.shortlist(&qb, slots.sub(range), want));
            split(shortlist.len(), |range| int8(Slots::Some(&shortlist[range])))
        } else {
            split(count, |range| {
                let mut v = int8(slots.sub(range));
                top_k(&mut v, keep);
                v
            })
        };
        top_k(&mut best, keep);
        for (score, s) in &mut best {
            *score = exact(*s)?;
        }
        Ok(best)
    }

    /// The slots among `slots` whose signs differ least from the query's: at least `want` of them
    /// (every one at the cut-off distance), found with a histogram of distances, not a sort.
    fn shortlist(&self, qb: &[u64], slots: Slots<'_>, want: usize) -> Vec<usize> {
        let mut histogram = vec![0usize; self.words * 64 + 1];
        let mut distances: Vec<u16> = Vec::with_capacity(slots.len());
        kernels::distances(qb, &self.bits, slots.clone(), |_, d| {
            histogram[d as usize] += 1;
            distances.push(d as u16);
        });
        let mut seen = 0;
        let cut = histogram
            .iter()
            .position(|n| {
                seen += n;
                seen >= want
            })
            .unwrap_or(histogram.len());
        distances.iter().enumerate().filter(|&(_, &d)| usize::from(d) <= cut).map(|(i, _)| slots.get(i)).collect()
    }

    /// The `k` nearest chunks to `query` among the documents `filter` accepts (all when `None`).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(&DocumentId) -> bool>,
    ) -> Result<Vec<IndexHit>, IndexError> {
        let allowed = filter.map(|f| self.accepted(f));
        self.search_among(query, k, allowed.as_deref())
    }

    /// Whether `accept` takes each document, by the index's document number: what
    /// [`FlatIndex::search_among`] takes, for a caller that keeps it across searches.
    pub fn accepted(&self, accept: &dyn Fn(&DocumentId) -> bool) -> Vec<bool> {
        self.documents.accepted(accept)
    }

    /// [`FlatIndex::search`] among the documents `allowed` marks (by number, from
    /// [`FlatIndex::accepted`]); documents numbered past its end, added since, are left out.
    pub fn search_among(&self, query: &[f32], k: usize, allowed: Option<&[bool]>) -> Result<Vec<IndexHit>, IndexError> {
        self.check(query)?;
        let norm = dot(query, query).sqrt();
        let q: Vec<f32> = query.iter().map(|x| x / norm).collect();
        let mut scored = match allowed {
            Some(allowed) => {
                let accepted: Vec<usize> = (0..self.len())
                    .filter(|&s| allowed.get(self.slot_doc[s] as usize).copied().unwrap_or(false))
                    .collect();
                self.score(&q, Slots::Some(&accepted), k)?
            }
            None => self.score(&q, Slots::All(0..self.len()), k)?,
        };
        top_k(&mut scored, k);
        Ok(scored
            .into_iter()
            .map(|(cos, s)| IndexHit {
                id: self.ids[s].clone(),
                document: self.documents.id(self.slot_doc[s]).clone(),
                score: ((1.0 + cos) / 2.0).clamp(0.0, 1.0),
            })
            .collect())
    }
}
