//! The OpenAI embedder: the Embedder port over the embeddings endpoint, for
//! `text-embedding-3-small` (or another `text-embedding-3` model) shortened to the index's dimension.
//!
//! Inputs are counted in the model's own tokens and packed into requests within the endpoint's
//! limits ([`pack`]); an input over the model's window is refused, not silently cut. A request
//! answered 429 (throttled, but not out of quota) or 5xx, or lost to a timeout or a dropped
//! connection, is sent again after the wait the server asked for (`Retry-After`) or else an
//! exponential back-off with jitter, up to `retries` more times. Then the port sees `Throttled` or
//! `Transient`, which the SQS helper hands back to the queue (the message returns after its
//! visibility timeout). Anything else (a bad key, a bad request, no quota left) is permanent at
//! once. The key is never logged: it lives in the request's header only.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use quarry_core::PortError;
use quarry_core::config::Secret;
use quarry_core::ports::{Embedder, ModelInfo};

mod limit;
pub mod pack;
mod retry;
pub mod stores;
mod wire;
mod words;

pub use pack::{MAX_INPUT_TOKENS, MAX_INPUTS, MAX_REQUEST_TOKENS};
pub use wire::{ApiError, MAX_RETRY_AFTER};
pub use words::Cl100k;

/// The model's window, in its own tokens. Quarry's chunks (512 cl100k tokens by default) are far below it.
pub const MAX_TOKENS: usize = MAX_INPUT_TOKENS;

/// How the embedder talks to the API.
#[derive(Debug, Clone)]
pub struct Options {
    pub model: String,
    /// Output dimension (`text-embedding-3` models shorten their vectors on request); must match
    /// the vector index.
    pub dimensions: u32,
    /// Another base URL (a proxy, or the tests' fake server); the API's own when `None`.
    pub api_base: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    /// The first back-off; each retry doubles it.
    pub backoff: Duration,
    pub max_inputs: usize,
    /// Tokens per request, summed over its inputs.
    pub max_request_tokens: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Kept to before sending, where the account's limits are known: fewer 429s to wait out.
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// What a token costs, in billionths of a dollar: the configured price, else the list price.
    pub nanodollars_per_token: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model: "text-embedding-3-small".into(),
            dimensions: 384,
            api_base: None,
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_inputs: MAX_INPUTS,
            max_request_tokens: MAX_REQUEST_TOKENS,
            concurrency: 4,
            requests_per_minute: None,
            tokens_per_minute: None,
            nanodollars_per_token: nanodollars_per_token("text-embedding-3-small"),
        }
    }
}

/// The OpenAI embedder the configuration asks for, or `None` when it asks for the local model.
pub fn from_settings(settings: &quarry_core::config::EmbedderSettings) -> Result<Option<OpenAiEmbedder>, OpenAiError> {
    if settings.kind != quarry_core::config::EmbedderKind::Openai {
        return Ok(None);
    }
    // Config::validate refuses `openai` without a key; this is for settings built by hand.
    let key = settings.openai_api_key.as_ref().ok_or(OpenAiError::NoKey)?;
    let options = Options {
        model: settings.openai_model.clone(),
        dimensions: settings.openai_dimensions,
        api_base: settings.openai_base_url.clone(),
        concurrency: settings.openai_concurrency as usize,
        requests_per_minute: settings.openai_requests_per_minute,
        tokens_per_minute: settings.openai_tokens_per_minute,
        retries: settings.openai_max_retries,
        // A price per million tokens, in nanodollars, is the per-token price in femtodollars.
        nanodollars_per_token: settings.openai_usd_per_million_tokens.map_or_else(
            || nanodollars_per_token(&settings.openai_model),
            |usd| (usd.nanodollars() as f64 / 1e6).round() as u64,
        ),
        ..Options::default()
    };
    OpenAiEmbedder::new(key, options).map(Some)
}

/// What chunks are measured in: the tokens of the embedder the configuration picks (cl100k when
/// OpenAI embeds, else the local model's own `wordpiece`).
/// The local tokenizer is loaded only when it is the one.
pub fn chunk_counter<T: quarry_tokenizer::TokenCounter + 'static, E>(
    settings: &quarry_core::config::EmbedderSettings,
    wordpiece: impl FnOnce() -> Result<T, E>,
) -> Result<Box<dyn quarry_tokenizer::TokenCounter>, E> {
    Ok(match settings.kind {
        quarry_core::config::EmbedderKind::Openai => Box::new(Cl100k),
        quarry_core::config::EmbedderKind::Local => Box::new(wordpiece()?),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error("OpenAI (the embedder or the vector store) needs QUARRY_OPENAI_API_KEY")]
    NoKey,
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the API key cannot be sent as an HTTP header")]
    BadKey,
    #[error("the request to OpenAI failed in transit")]
    Http(#[source] reqwest::Error),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the embeddings endpoint answered with a body that is not an embeddings response")]
    Body(#[source] serde_json::Error),
    #[error("the embeddings endpoint returned {got} vectors of {dimension} for {asked} inputs of dimension {want}")]
    Shape { asked: usize, got: usize, dimension: usize, want: usize },
    #[error("input {index} has {tokens} tokens; the model takes at most {MAX_INPUT_TOKENS}")]
    TooLong { index: usize, tokens: usize },
    #[error("{endpoint} answered with a body that is not its response")]
    StoreBody {
        endpoint: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("file batch {batch} was still in progress after {waited:?}; cancelled")]
    AttachTimedOut { batch: String, waited: Duration },
    #[error("the vector store did not take the file ({code}): {message}")]
    Refused { code: String, message: String },
}

#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    conn: wire::Connection,
    url: String,
    info: ModelInfo,
    options: Options,
    limits: std::sync::Arc<limit::Limits>,
}

const OP: &str = "openai.embeddings";

impl OpenAiEmbedder {
    pub fn new(api_key: &Secret, options: Options) -> Result<Self, OpenAiError> {
        let conn = wire::Connection::new(api_key, options.timeout, options.api_base.as_deref())?;
        // The id names the dimension too: vectors shortened differently never share a cache entry.
        let info = ModelInfo {
            id: format!("openai/{}", options.model),
            dimension: options.dimensions as usize,
            max_tokens: MAX_TOKENS,
        };
        let limits = std::sync::Arc::new(limit::Limits::new(&options));
        Ok(OpenAiEmbedder { url: conn.url("embeddings"), conn, info, options, limits })
    }

    async fn request(&self, texts: &[String], tokens: usize) -> Result<Vec<Vec<f32>>, PortError> {
        let body = wire::Request {
            model: &self.options.model,
            input: texts,
            dimensions: self.options.dimensions,
            encoding_format: "float",
        };
        let body = serde_json::to_vec(&body).map_err(|e| permanent(OpenAiError::Body(e)))?;
        let response = retry::retrying(OP, self.options.retries, self.options.backoff, || async {
            // Each attempt waits its turn; a back-off holds no slot.
            let slot = self.limits.admit(tokens).await;
            let sent = self.send(body.clone()).await;
            drop(slot);
            sent
        })
        .await?;
        self.vectors(response, texts.len())
    }

    async fn send(&self, body: Vec<u8>) -> Result<wire::Response, OpenAiError> {
        let request =
            self.conn.http.post(&self.url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        let (_, bytes) = self.conn.send(request).await?;
        serde_json::from_slice(&bytes).map_err(OpenAiError::Body)
    }

    fn vectors(&self, response: wire::Response, asked: usize) -> Result<Vec<Vec<f32>>, PortError> {
        let cost = response.usage.prompt_tokens * self.options.nanodollars_per_token;
        metrics::counter!(quarry_core::metric::COST, "operation" => "embed").increment(cost);
        let mut data = response.data;
        data.sort_by_key(|e| e.index);
        let want = self.info.dimension;
        let dimension = data.first().map_or(want, |e| e.embedding.len());
        if data.len() != asked || data.iter().any(|e| e.embedding.len() != want) {
            return Err(permanent(OpenAiError::Shape { asked, got: data.len(), dimension, want }));
        }
        Ok(data.into_iter().map(|e| unit(e.embedding)).collect())
    }
}

fn permanent(e: OpenAiError) -> PortError {
    PortError::Permanent { operation: OP, source: Box::new(e) }
}

/// OpenAI's list price of an embedding model's input, in billionths of a dollar per token
/// ($0.02, $0.13 and $0.10 per million tokens). An unknown model is priced as the dearest, so
/// that a budget errs on the safe side.
pub fn nanodollars_per_token(model: &str) -> u64 {
    match model {
        "text-embedding-3-small" => 20,
        "text-embedding-ada-002" => 100,
        _ => 130,
    }
}

/// OpenAI's vectors are unit length already; shortened ones are renormalised by the API too, but
/// the index's similarity assumes it, so make sure.
fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &ModelInfo {
        &self.info
    }

    /// The embeddings endpoint bills the inputs' cl100k tokens, at the model's list price.
    fn usage(&self, texts: &[String]) -> quarry_core::ports::Usage {
        let tokens: u64 = texts.iter().map(|t| pack::tokens(t) as u64).sum();
        quarry_core::ports::Usage { tokens, nanodollars: tokens * self.options.nanodollars_per_token }
    }

    #[tracing::instrument(skip_all, err, fields(texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let counts: Vec<usize> = texts.iter().map(|t| pack::tokens(t)).collect();
        // One input over the window would fail the whole request, and every retry of it.
        if let Some((index, &tokens)) = counts.iter().enumerate().find(|(_, n)| **n > MAX_INPUT_TOKENS) {
            return Err(PortError::InvalidInput {
                operation: OP,
                reason: OpenAiError::TooLong { index, tokens }.to_string(),
            });
        }
        let max_tokens = self.limits.request_tokens(self.options.max_request_tokens);
        let requests = pack::pack(&counts, self.options.max_inputs, max_tokens).into_iter().map(|range| {
            let tokens = counts[range.clone()].iter().sum();
            self.request(&texts[range], tokens)
        });
        // In order, up to `concurrency` at once (the limits also hold across calls).
        let parts: Vec<Vec<Vec<f32>>> =
            futures::stream::iter(requests).buffered(self.options.concurrency.max(1)).try_collect().await?;
        Ok(parts.into_iter().flatten().collect())
    }
}
