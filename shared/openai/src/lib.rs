//! The OpenAI embedder: the Embedder port over `async-openai`'s embeddings endpoint, for
//! `text-embedding-3-small` (or another `text-embedding-3` model) shortened to the index's dimension.
//!
//! Inputs go in requests of at most 2,048 texts (the endpoint's limit). async-openai itself retries
//! a throttled request a few times; a request still answered 429 or 5xx, or lost to a timeout or a
//! dropped connection, is sent again here after an exponential back-off with jitter, up to
//! `retries` more rounds, for outages longer than the client's own patience. Then the port sees
//! `Throttled` or `Transient`, which the SQS helper hands back to the queue (the message returns
//! after its visibility timeout). Anything else (a bad key, a bad request) is permanent at once.
//! The key is never logged: it lives in the client's configuration only.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
use quarry_core::PortError;
use quarry_core::config::Secret;
use quarry_core::ports::{Embedder, ModelInfo};

/// Texts per request: the embeddings endpoint takes at most 2,048 inputs.
pub const MAX_INPUTS: usize = 2_048;
/// The model's window, in its own tokens. Quarry's chunks (256 WordPiece tokens) are far below it.
pub const MAX_TOKENS: usize = 8_191;

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
        ..Options::default()
    };
    OpenAiEmbedder::new(key, options).map(Some)
}

#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error("the openai embedder needs QUARRY_OPENAI_API_KEY")]
    NoKey,
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the embeddings endpoint returned {got} vectors of {dimension} for {asked} inputs of dimension {want}")]
    Shape { asked: usize, got: usize, dimension: usize, want: usize },
}

#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    info: ModelInfo,
    options: Options,
}

impl OpenAiEmbedder {
    pub fn new(api_key: &Secret, options: Options) -> Result<Self, OpenAiError> {
        let mut config = OpenAIConfig::new().with_api_key(api_key.expose());
        if let Some(base) = &options.api_base {
            config = config.with_api_base(base);
        }
        let http = reqwest::Client::builder().timeout(options.timeout).build().map_err(OpenAiError::Client)?;
        let client = Client::with_config(config).with_http_client(http);
        // The id names the dimension too: vectors shortened differently never share a cache entry.
        let info = ModelInfo {
            id: format!("openai/{}", options.model),
            dimension: options.dimensions as usize,
            max_tokens: MAX_TOKENS,
        };
        Ok(OpenAiEmbedder { client, info, options })
    }

    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let request = CreateEmbeddingRequest {
            model: self.options.model.clone(),
            input: EmbeddingInput::StringArray(texts.to_vec()),
            encoding_format: None,
            user: None,
            dimensions: Some(self.options.dimensions),
        };
        let mut attempt = 0;
        loop {
            match self.client.embeddings().create(request.clone()).await {
                Ok(response) => {
                    let tokens = u64::from(response.usage.prompt_tokens);
                    let cost = tokens * nanodollars_per_token(&self.options.model);
                    metrics::counter!(quarry_core::metric::COST, "operation" => "embed").increment(cost);
                    let mut data = response.data;
                    data.sort_by_key(|e| e.index);
                    let want = self.info.dimension;
                    let dimension = data.first().map_or(want, |e| e.embedding.len());
                    if data.len() != texts.len() || data.iter().any(|e| e.embedding.len() != want) {
                        return Err(PortError::Permanent {
                            operation: "openai.embeddings",
                            source: Box::new(OpenAiError::Shape {
                                asked: texts.len(),
                                got: data.len(),
                                dimension,
                                want,
                            }),
                        });
                    }
                    return Ok(data.into_iter().map(|e| unit(e.embedding)).collect());
                }
                Err(e) => {
                    let retryable = retryable(&e);
                    if retryable.is_none() || attempt >= self.options.retries {
                        return Err(classify(e, retryable));
                    }
                    attempt += 1;
                    let delay = self.backoff(attempt);
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %e, "embeddings request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// `backoff * 2^(attempt-1)`, plus up to half of it again as jitter (from the clock: no RNG).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.options.backoff.saturating_mul(1 << (attempt - 1).min(10));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }
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

/// Why a failure may pass on retry: throttled (429) or transient (5xx, timeout, connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Throttled,
    Transient,
}

fn retryable(e: &OpenAIError) -> Option<Retry> {
    match e {
        OpenAIError::ApiError(r) if r.status_code.as_u16() == 429 => Some(Retry::Throttled),
        OpenAIError::ApiError(r) if r.status_code.is_server_error() => Some(Retry::Transient),
        OpenAIError::Reqwest(r) if r.is_timeout() || r.is_connect() || r.is_request() => Some(Retry::Transient),
        _ => None,
    }
}

fn classify(e: OpenAIError, retry: Option<Retry>) -> PortError {
    const OP: &str = "openai.embeddings";
    match retry {
        Some(Retry::Throttled) => PortError::Throttled { operation: OP, retry_after: None, source: Some(Box::new(e)) },
        Some(Retry::Transient) => PortError::Transient { operation: OP, source: Box::new(e) },
        None => PortError::Permanent { operation: OP, source: Box::new(e) },
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

    #[tracing::instrument(skip_all, err, fields(texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let mut out = Vec::with_capacity(texts.len());
        for group in texts.chunks(self.options.max_inputs.max(1)) {
            out.extend(self.request(group).await?);
        }
        Ok(out)
    }
}
