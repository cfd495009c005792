//! OpenAI's vector stores: a store found by name or created, redacted text uploaded as files,
//! attached in file batches polled until done (never longer than a timeout, then cancelled), files
//! deleted, and the store's search endpoint, with Quarry's filters translated ([`filter`]).
//!
//! Every call goes through the one retry rule ([`crate::retry`]). Written over reqwest, as the
//! embedder is: async-openai's vector store types read numbers in attributes as integers only
//! and search queries as lists only, and its errors drop `Retry-After`.

use std::time::{Duration, Instant};

use quarry_core::config::Secret;
use quarry_core::{Classify, PortError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::{OpenAiError, retry};

pub mod filter;
mod hosted;

pub use hosted::OpenAiStore;

/// Most files one batch attaches (OpenAI's reference allows 2,000, its guide 500: the lower holds).
pub const MAX_BATCH_FILES: usize = 500;
/// Most results one search returns: the endpoint's own ceiling, so pages end at 50.
pub const MAX_RESULTS: usize = 50;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Another base URL (a proxy, or the tests' fake server); the API's own when `None`.
    pub api_base: Option<String>,
    /// Per request.
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    /// Between two looks at a file batch, unless the server says (`openai-poll-after-ms`).
    pub poll_every: Duration,
    /// Longest a file batch may stay in progress before it is cancelled and the attach fails
    /// (transiently: the job comes back and uploads again).
    pub attach_timeout: Duration,
    /// How OpenAI chunks the files of a store it creates, in its tokens: Quarry's OpenAI window.
    pub chunk_tokens: u32,
    pub overlap_tokens: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            api_base: None,
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(500),
            poll_every: Duration::from_secs(1),
            attach_timeout: Duration::from_secs(600),
            chunk_tokens: 512,
            overlap_tokens: 64,
        }
    }
}

/// A vector store's id (`vs_…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreId(pub String);

/// A file's id (`file-…`), the same in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub String);

/// What a file batch did: the files now searchable, and those that failed with OpenAI's reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    pub completed: Vec<FileId>,
    /// (file, code such as `unsupported_file`, message)
    pub failed: Vec<(FileId, String, String)>,
}

/// One search result: a chunk of a file, with the file's attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreHit {
    pub file: FileId,
    pub filename: String,
    /// OpenAI's relevance in [0, 1] (its ranker's, not a cosine).
    pub score: f32,
    pub attributes: Map<String, Value>,
    pub text: String,
}

#[derive(Debug, Deserialize)]
struct Listed<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Store {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    created_at: i64,
    #[serde(default)]
    usage_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Object {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Batch {
    id: String,
    status: String,
}

#[derive(Debug, Deserialize)]
struct StoreFile {
    id: String,
    #[serde(default)]
    last_error: Option<LastError>,
}

#[derive(Debug, Deserialize)]
struct LastError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Hit {
    file_id: String,
    #[serde(default)]
    filename: String,
    score: f32,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    content: Vec<Content>,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    text: String,
}

/// The client for one account (one key).
#[derive(Debug, Clone)]
pub struct VectorStores {
    conn: crate::wire::Connection,
    options: StoreOptions,
}

impl VectorStores {
    pub fn new(api_key: &Secret, options: StoreOptions) -> Result<Self, OpenAiError> {
        let conn = crate::wire::Connection::new(api_key, options.timeout, options.api_base.as_deref())?;
        Ok(VectorStores { conn, options })
    }

    /// Sends one request built by `build` (again for each attempt), and reads its JSON answer and
    /// the server's polling hint.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(T, Option<Duration>), PortError> {
        retry::retrying(operation, self.options.retries, self.options.backoff, || async {
            let (headers, bytes) = self.conn.send(build(&self.conn.http)).await?;
            let poll = headers
                .get("openai-poll-after-ms")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(Duration::from_millis);
            let body = serde_json::from_slice(&bytes)
                .map_err(|source| OpenAiError::StoreBody { endpoint: operation, source })?;
            Ok((body, poll))
        })
        .await
    }

    fn url(&self, path: &str) -> String {
        self.conn.url(path)
    }

    /// The oldest store named `name`, if there is one (names are not unique at OpenAI; the oldest
    /// is the one every worker finds).
    async fn oldest_named(&self, name: &str) -> Result<Option<StoreId>, PortError> {
        let mut after: Option<String> = None;
        let mut found: Option<Store> = None;
        loop {
            let (page, _): (Listed<Store>, _) = self
                .call("openai.vector_stores.list", |h| {
                    let mut q = vec![("limit", "100".to_owned()), ("order", "asc".to_owned())];
                    q.extend(after.clone().map(|a| ("after", a)));
                    h.get(self.url("vector_stores")).query(&q)
                })
                .await?;
            for s in page.data {
                if s.name.as_deref() == Some(name) && found.as_ref().is_none_or(|f| s.created_at < f.created_at) {
                    found = Some(s);
                }
            }
            match page.last_id.filter(|_| page.has_more) {
                Some(last) => after = Some(last),
                None => return Ok(found.map(|s| StoreId(s.id))),
            }
        }
    }

    /// The store named `name`, created (with Quarry's chunk window) if there is none. Two
    /// workers that both found none both create one: each then looks again, and the one whose
    /// store is not the oldest deletes it (still empty) and uses the oldest.
    #[tracing::instrument(skip_all, err)]
    pub async fn find_or_create(&self, name: &str) -> Result<StoreId, PortError> {
        if let Some(id) = self.oldest_named(name).await? {
            return Ok(id);
        }
        let body = json!({
            "name": name,
            "chunking_strategy": {"type": "static", "static": {
                "max_chunk_size_tokens": self.options.chunk_tokens,
                "chunk_overlap_tokens": self.options.overlap_tokens,
            }},
        });
        let (s, _): (Store, _) =
            self.call("openai.vector_stores.create", |h| h.post(self.url("vector_stores")).json(&body)).await?;
        let mine = StoreId(s.id);
        let winner = self.oldest_named(name).await?.unwrap_or_else(|| mine.clone());
        if winner == mine {
            tracing::info!(store = mine.0, "vector store created");
        } else {
            let path = format!("vector_stores/{}", mine.0);
            let gone: Result<(Value, _), _> =
                self.call("openai.vector_stores.delete", |h| h.delete(self.url(&path))).await;
            if let Err(e) = gone {
                tracing::warn!(error = %quarry_core::error::chain(&e), "cannot delete a vector store made in a race");
            }
        }
        Ok(winner)
    }

    /// The store's size as OpenAI bills it (`usage_bytes`).
    pub async fn usage_bytes(&self, store: &StoreId) -> Result<u64, PortError> {
        let (s, _): (Store, _) =
            self.call("openai.vector_stores.get", |h| h.get(self.url(&format!("vector_stores/{}", store.0)))).await?;
        Ok(s.usage_bytes)
    }

    /// Uploads `text` as a Markdown file named `filename` (purpose `assistants`).
    #[tracing::instrument(skip_all, err, fields(bytes = text.len()))]
    pub async fn upload(&self, filename: &str, text: &str) -> Result<FileId, PortError> {
        let (f, _): (Object, _) = self
            .call("openai.files.upload", |h| {
                let part = reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
                    .file_name(filename.to_owned())
                    .mime_str("text/markdown")
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(text.as_bytes().to_vec()));
                let form = reqwest::multipart::Form::new().text("purpose", "assistants").part("file", part);
                h.post(self.url("files")).multipart(form)
            })
            .await?;
        Ok(FileId(f.id))
    }

    /// Deletes a file, from every store it is in. A file already gone is not an error.
    #[tracing::instrument(skip_all, err)]
    pub async fn delete_file(&self, file: &FileId) -> Result<(), PortError> {
        let r: Result<(Value, _), _> =
            self.call("openai.files.delete", |h| h.delete(self.url(&format!("files/{}", file.0)))).await;
        match r {
            Ok(_) => Ok(()),
            Err(PortError::Permanent { source, .. })
                if source
                    .downcast_ref::<OpenAiError>()
                    .is_some_and(|e| matches!(e, OpenAiError::Api(a) if a.status == 404)) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Attaches `files` with their attributes, [`MAX_BATCH_FILES`] to a batch, and waits for each
    /// batch to end: polled every `poll_every` (or as the server asks, never past the deadline),
    /// cancelled past `attach_timeout`. A timeout is a transient failure, and every file given is
    /// then deleted (OpenAI's cancel stops what it can; files it had finished stay searchable):
    /// the job is tried again with new uploads, and nothing is left half-attached or doubled.
    /// Returns which files completed and why the others did not.
    #[tracing::instrument(skip_all, err, fields(files = files.len()))]
    pub async fn attach(&self, store: &StoreId, files: &[(FileId, Map<String, Value>)]) -> Result<Attached, PortError> {
        let started = Instant::now();
        let mut out = Attached::default();
        for group in files.chunks(MAX_BATCH_FILES) {
            match self.attach_group(store, group, started).await {
                Ok(done) => {
                    out.completed.extend(done.completed);
                    out.failed.extend(done.failed);
                }
                Err(e) => {
                    if e.class() == quarry_core::ErrorClass::Retryable {
                        for (f, _) in files {
                            if let Err(d) = self.delete_file(f).await {
                                tracing::warn!(error = %quarry_core::error::chain(&d), "cannot delete a file of an abandoned attach");
                            }
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn attach_group(
        &self,
        store: &StoreId,
        group: &[(FileId, Map<String, Value>)],
        started: Instant,
    ) -> Result<Attached, PortError> {
        let body = json!({
            "files": group.iter().map(|(f, a)| json!({"file_id": f.0, "attributes": a})).collect::<Vec<_>>(),
        });
        let path = format!("vector_stores/{}/file_batches", store.0);
        let (batch, mut poll): (Batch, _) =
            self.call("openai.file_batches.create", |h| h.post(self.url(&path)).json(&body)).await?;
        let mut status = batch.status;
        while status == "in_progress" {
            let left = self.options.attach_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                let cancel = format!("{path}/{}/cancel", batch.id);
                let _: Result<(Value, _), _> =
                    self.call("openai.file_batches.cancel", |h| h.post(self.url(&cancel))).await;
                let e = OpenAiError::AttachTimedOut { batch: batch.id.clone(), waited: started.elapsed() };
                return Err(PortError::Transient { operation: "openai.file_batches.poll", source: Box::new(e) });
            }
            tokio::time::sleep(poll.unwrap_or(self.options.poll_every).min(left)).await;
            let get = format!("{path}/{}", batch.id);
            let (b, p): (Batch, _) = self.call("openai.file_batches.get", |h| h.get(self.url(&get))).await?;
            (status, poll) = (b.status, p);
        }
        let listed = format!("{path}/{}/files", batch.id);
        let completed = self.batch_files(&listed, "completed").await?.into_iter().map(|(f, _, _)| f).collect();
        let mut failed = self.batch_files(&listed, "failed").await?;
        failed.extend(self.batch_files(&listed, "cancelled").await?);
        Ok(Attached { completed, failed })
    }

    /// The files of a batch in one state (`completed`, `failed`, `cancelled`), with OpenAI's
    /// reason where it gives one.
    async fn batch_files(&self, path: &str, state: &str) -> Result<Vec<(FileId, String, String)>, PortError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, _): (Listed<StoreFile>, _) = self
                .call("openai.file_batches.files", |h| {
                    let mut q = vec![("limit", "100".to_owned()), ("filter", state.to_owned())];
                    q.extend(after.clone().map(|a| ("after", a)));
                    h.get(self.url(path)).query(&q)
                })
                .await?;
            for f in page.data {
                let (code, message) = f
                    .last_error
                    .map_or_else(|| (state.to_owned(), format!("the file was {state}")), |e| (e.code, e.message));
                out.push((FileId(f.id), code, message));
            }
            match page.last_id.filter(|_| page.has_more) {
                Some(last) => after = Some(last),
                None => return Ok(out),
            }
        }
    }

    /// The store's best chunks for `query` (at most [`MAX_RESULTS`]), under an OpenAI filter
    /// ([`filter::translate`]), best first.
    #[tracing::instrument(skip_all, err)]
    pub async fn search(
        &self,
        store: &StoreId,
        query: &str,
        filters: Option<&Value>,
        max_results: usize,
    ) -> Result<Vec<StoreHit>, PortError> {
        let mut body = json!({"query": query, "max_num_results": max_results.clamp(1, MAX_RESULTS)});
        if let Some(f) = filters {
            body["filters"] = f.clone();
        }
        let path = format!("vector_stores/{}/search", store.0);
        let (page, _): (Listed<Hit>, _) =
            self.call("openai.vector_stores.search", |h| h.post(self.url(&path)).json(&body)).await?;
        let mut hits: Vec<StoreHit> = page
            .data
            .into_iter()
            .map(|h| StoreHit {
                file: FileId(h.file_id),
                filename: h.filename,
                score: h.score.clamp(0.0, 1.0),
                attributes: h.attributes.unwrap_or_default(),
                text: h.content.into_iter().map(|c| c.text).collect::<Vec<_>>().join("\n"),
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }
}
