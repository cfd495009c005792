//! The local embedding engine: sentence-transformers all-MiniLM-L6-v2 (384 dimensions, mean pooling
//! over the attention mask, L2 normalisation, 256-token window) on the CPU, with no network and no
//! API key.
//!
//! The model runs on ONNX Runtime, loaded at run time from the `onnxruntime` wheel that
//! `scripts/setup.sh` installs beside the model, over a graph that `scripts/build_onnx.py` writes from
//! the wheel's safetensors with ORT's fused BERT operators (see `docs/EMBEDDINGS.md` for why this
//! route and what it measured). Tokenisation is Quarry's own WordPiece, the chunker's, so chunk
//! sizes and model inputs can never disagree.
//!
//! Loaded once (cold start) and reused: the session is behind a mutex because ORT's `run` takes
//! `&mut`; a run uses every intra-op thread, so callers gain nothing by running two at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
pub use quarry_core::config::Precision;
use quarry_core::ports::{Embedder, ModelInfo};
use quarry_core::{Classify, ErrorClass, PortError};
use quarry_tokenizer::WordPiece;

/// The model this engine serves; vectors from any other model never share an index with these.
pub const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The same model with int8 MatMul weights: a model of its own (its vectors differ slightly), so
/// the embedding cache and the index never mix its vectors with f32 ones.
pub const MODEL_ID_INT8: &str = "sentence-transformers/all-MiniLM-L6-v2-int8";
pub const DIMENSION: usize = 384;
/// The model's window, [CLS] and [SEP] included (sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;
/// The ONNX Runtime library the setup script installs next to the model.
/// The local model's identity at `precision` (its cache and checkpoint key), known without
/// loading it.
pub fn model_info(precision: Precision) -> ModelInfo {
    let id = match precision {
        Precision::F32 => MODEL_ID,
        Precision::Int8 => MODEL_ID_INT8,
    };
    ModelInfo { id: id.to_owned(), dimension: DIMENSION, max_tokens: MAX_TOKENS }
}

/// The graph file of `precision` in the model folder.
pub fn graph_file(precision: Precision) -> &'static str {
    match precision {
        Precision::F32 => "model.onnx",
        Precision::Int8 => "model-int8.onnx",
    }
}

pub const RUNTIME_LIBRARY: &str = "libonnxruntime.so.1.31.1";

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("the local model is not installed in {dir}: {missing} is missing (run `{command}`)")]
    NotInstalled { dir: PathBuf, missing: &'static str, command: &'static str },
    #[error("cannot load the tokenizer")]
    Tokenizer(#[from] quarry_tokenizer::TokenizerError),
    #[error("ONNX Runtime failed while {during}")]
    Runtime {
        during: &'static str,
        #[source]
        source: ort::Error,
    },
    #[error("cannot load the ONNX Runtime library")]
    LoadRuntime(#[source] ort::LoadDynamicError),
    #[error("the model returned {got} values for {texts} texts of dimension {dimension}")]
    BadOutput { got: usize, texts: usize, dimension: usize },
    #[error("the embedding worker stopped")]
    WorkerGone(#[source] tokio::task::JoinError),
    #[error("cannot start the model's own thread")]
    Thread(#[source] std::io::Error),
    #[error("the model's own thread has stopped")]
    ThreadGone,
}

impl Classify for EmbedError {
    fn class(&self) -> ErrorClass {
        match self {
            // A missing or broken model is a deployment fault; retrying the document won't help.
            EmbedError::NotInstalled { .. }
            | EmbedError::Tokenizer(_)
            | EmbedError::LoadRuntime(_)
            | EmbedError::BadOutput { .. }
            | EmbedError::Thread(_)
            | EmbedError::ThreadGone => ErrorClass::Permanent,
            EmbedError::Runtime { .. } | EmbedError::WorkerGone(_) => ErrorClass::Retryable,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            EmbedError::NotInstalled { .. } | EmbedError::LoadRuntime(_) => "model_not_installed",
            EmbedError::Tokenizer(_) => "tokenizer_unavailable",
            EmbedError::Runtime { .. } | EmbedError::BadOutput { .. } => "embedding_failed",
            EmbedError::WorkerGone(_) | EmbedError::Thread(_) | EmbedError::ThreadGone => "embedding_worker_gone",
        }
    }
}

fn runtime(during: &'static str) -> impl FnOnce(ort::Error) -> EmbedError {
    move |source| EmbedError::Runtime { during, source }
}

/// How the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Intra-op threads; 0 means one per core.
    pub threads: usize,
    /// Texts per model call. Inputs are sorted by length first, so a batch pads little.
    pub batch_size: usize,
    /// Which graph runs (`model.precision`).
    pub precision: Precision,
    /// Above 0: the model runs on a thread of its own whose priority is lowered by this `nice`
    /// increment (Linux), as are the runtime's pool threads it starts. For work that must give
    /// way to searches in the same process (`quarry serve`'s indexing).
    pub nice: i32,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { threads: 0, batch_size: 32, precision: Precision::F32, nice: 0 }
    }
}

/// Texts for the model's own thread, and where its answer goes.
type Job = (Vec<String>, tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>);

struct Inner {
    session: Mutex<Session>,
    tokenizer: WordPiece,
    info: ModelInfo,
    batch_size: usize,
}

/// all-MiniLM-L6-v2 on the CPU. Cheap to clone; clones share the loaded model.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    /// Set when the model runs on its own thread of lowered priority ([`EmbedOptions::nice`]);
    /// otherwise [`Embedder::embed`] runs on tokio's blocking pool. The thread ends when the
    /// last clone is dropped.
    own_thread: Option<std::sync::mpsc::Sender<Job>>,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model", &self.inner.info)
            .field("batch_size", &self.inner.batch_size)
            .finish()
    }
}

impl LocalEmbedder {
    /// Loads the model from the folder the setup script fills.
    pub fn load(dir: &Path, opts: EmbedOptions) -> Result<Self, EmbedError> {
        if opts.nice <= 0 {
            return Ok(LocalEmbedder { inner: Arc::new(Self::session(dir, opts)?), own_thread: None });
        }
        // The session is made on the lowered thread so that the pool threads it starts inherit
        // the priority (Linux keeps a nice value per thread, and new threads copy their parent's).
        let (ready, loaded) = std::sync::mpsc::channel();
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let dir = dir.to_owned();
        std::thread::Builder::new()
            .name("quarry-embed-bg".into())
            .spawn(move || {
                lower_priority(opts.nice);
                let model = match Self::session(&dir, opts) {
                    Ok(inner) => LocalEmbedder { inner: Arc::new(inner), own_thread: None },
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(Arc::clone(&model.inner)));
                while let Ok((texts, reply)) = queue.recv() {
                    // The caller may have gone (a cancelled request): nothing to tell it.
                    let _ = reply.send(model.embed_blocking(&texts));
                }
            })
            .map_err(EmbedError::Thread)?;
        let inner = loaded.recv().map_err(|_| EmbedError::ThreadGone)??;
        Ok(LocalEmbedder { inner, own_thread: Some(jobs) })
    }

    fn session(dir: &Path, opts: EmbedOptions) -> Result<Inner, EmbedError> {
        let graph = graph_file(opts.precision);
        for missing in ["tokenizer.json", graph, RUNTIME_LIBRARY] {
            if !dir.join(missing).is_file() {
                return Err(EmbedError::NotInstalled {
                    dir: dir.to_owned(),
                    missing,
                    command: quarry_core::config::Model::SETUP_COMMAND,
                });
            }
        }
        let tokenizer = WordPiece::from_file(&dir.join("tokenizer.json"))?;
        let environment = runtime_environment(&dir.join(RUNTIME_LIBRARY))?;
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            opts.threads
        };
        let session = Session::builder(environment)
            .map_err(runtime("creating a session"))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| runtime("setting the optimisation level")(e.into()))?
            .with_intra_threads(threads)
            .map_err(|e| runtime("setting threads")(e.into()))?
            // The caller feeds batches back to back; spinning between them burns a core that
            // extraction on the same machine could use.
            .with_intra_op_spinning(false)
            .map_err(|e| runtime("setting spinning")(e.into()))?
            .commit_from_file(dir.join(graph))
            .map_err(runtime("loading the model's graph"))?;
        tracing::info!(
            threads,
            batch_size = opts.batch_size,
            precision = opts.precision.name(),
            nice = opts.nice,
            "local embedding model loaded"
        );
        Ok(Inner {
            session: Mutex::new(session),
            tokenizer,
            info: model_info(opts.precision),
            batch_size: opts.batch_size.max(1),
        })
    }

    pub fn tokenizer(&self) -> &WordPiece {
        &self.inner.tokenizer
    }

    /// Model token ids of `text`, as the model sees it: [CLS], at most 254 tokens, [SEP].
    pub fn token_ids(&self, text: &str) -> Vec<u32> {
        let t = &self.inner.tokenizer;
        let mut ids = Vec::with_capacity(64);
        ids.push(t.cls_id);
        t.for_each_word(text, |_, _, w| ids.extend_from_slice(w));
        ids.truncate(MAX_TOKENS - 1);
        ids.push(t.sep_id);
        ids
    }

    /// Embeds on the calling thread, at its priority. Output order is input order; every vector has unit length.
    #[tracing::instrument(skip_all, err, fields(texts = texts.len()))]
    pub fn embed_blocking<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encoded: Vec<Vec<u32>> = texts.iter().map(|t| self.token_ids(t.as_ref())).collect();
        self.embed_ids(&encoded)
    }

    /// Embeds pre-tokenised inputs (each with [CLS] and [SEP]).
    pub fn embed_ids(&self, encoded: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // Longest first, like sentence-transformers: batches of similar lengths pad little.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let mut out = vec![Vec::new(); encoded.len()];
        let mut rest = order.as_slice();
        while !rest.is_empty() {
            let n = batch_len(rest.iter().map(|&i| encoded[i].len()), self.inner.batch_size);
            let (batch, tail) = rest.split_at(n);
            let vectors = self.run_batch(batch.iter().map(|&i| encoded[i].as_slice()))?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
            rest = tail;
        }
        Ok(out)
    }

    fn run_batch<'a>(
        &self,
        batch: impl ExactSizeIterator<Item = &'a [u32]> + Clone,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = batch.len();
        let seq = batch.clone().map(<[u32]>::len).max().unwrap_or(2);
        let mut ids = vec![0i32; n * seq];
        let mut mask = vec![0i32; n * seq];
        for (row, input) in batch.enumerate() {
            for (col, &id) in input.iter().enumerate() {
                ids[row * seq + col] = id as i32;
                mask[row * seq + col] = 1;
            }
        }
        let shape = [n as i64, seq as i64];
        let ids = Tensor::from_array((shape, ids)).map_err(runtime("building input_ids"))?;
        let mask = Tensor::from_array((shape, mask)).map_err(runtime("building attention_mask"))?;
        // A poisoned lock only means another call panicked mid-run; the session itself holds no
        // state between runs, so it is safe to keep using.
        let mut session = self.inner.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(runtime("running the model"))?;
        let (_, data) = outputs["embedding"].try_extract_tensor::<f32>().map_err(runtime("reading the output"))?;
        if data.len() != n * DIMENSION {
            return Err(EmbedError::BadOutput { got: data.len(), texts: n, dimension: DIMENSION });
        }
        Ok(data.chunks_exact(DIMENSION).map(<[f32]>::to_vec).collect())
    }
}

/// How many of `lengths` (sorted longest first) to run as one batch: at most `max`, and no more
/// than keep padding within a tenth of the batch. The model computes every padded position, so a
/// short chunk batched with a full window costs a full window; a few smaller runs cost less than
/// that (measured: batch 8 runs within 1% of batch 32 per token).
fn batch_len(lengths: impl Iterator<Item = usize>, max: usize) -> usize {
    let (mut n, mut longest, mut real) = (0usize, 0usize, 0usize);
    for len in lengths {
        if n == 0 {
            longest = len;
        } else if n == max || 10 * ((n + 1) * longest - (real + len)) > (n + 1) * longest {
            break;
        }
        n += 1;
        real += len;
    }
    n.max(1)
}

/// ONNX Runtime's library and environment are process-global: load them once, whatever the number
/// of embedders. Only success is cached, so a failed load keeps its real error and may be retried.
/// Creation is serialised: ONNX Runtime refuses a second environment in a process ("only one
/// environment is allowed per process"), so two threads racing to build one made the loser fail.
fn runtime_environment(path: &Path) -> Result<&'static ort::environment::Environment, EmbedError> {
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    // A panic elsewhere while holding this guard leaves nothing half-built: the lock only orders.
    let _creating = CREATING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let env = ort::init_from(path)
        .map_err(EmbedError::LoadRuntime)?
        .with_name("quarry")
        .build()
        .map_err(runtime("creating the ONNX Runtime environment"))?;
    Ok(ENV.get_or_init(|| env))
}

/// Lowers the calling thread's priority by `nice`. Best effort: a lower priority is always
/// permitted, and if the call fails anyway the model still runs, only less politely.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // `None` is the calling thread on Linux, not the whole process (setpriority(2), BUGS).
        let lowered = rustix::process::getpriority_process(None)
            .and_then(|now| rustix::process::setpriority_process(None, (now + nice).min(19)));
        if let Err(e) = lowered {
            tracing::warn!(error = %e, nice, "cannot lower the model thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::warn!(nice, "a lowered model priority is only supported on Linux");
}

impl Embedder for LocalEmbedder {
    fn model(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// Runs on tokio's blocking pool, or on the model's own thread, so that the async caller's
    /// threads stay free.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let result = match &self.own_thread {
            Some(jobs) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                match jobs.send((texts.to_vec(), reply)) {
                    Ok(()) => answer.await.unwrap_or(Err(EmbedError::ThreadGone)),
                    Err(_) => Err(EmbedError::ThreadGone),
                }
            }
            None => {
                let this = self.clone();
                let texts = texts.to_vec();
                let result = tokio::task::spawn_blocking(move || this.embed_blocking(&texts)).await;
                result.map_err(EmbedError::WorkerGone).and_then(|r| r)
            }
        };
        result.map_err(|e| match e.class() {
            ErrorClass::Retryable => PortError::Transient { operation: "embed", source: Box::new(e) },
            _ => PortError::Permanent { operation: "embed", source: Box::new(e) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::batch_len;

    #[test]
    fn batches_stop_at_the_cap_or_at_a_tenth_of_padding() {
        // Equal lengths: only the cap stops a batch.
        assert_eq!(batch_len([100; 50].into_iter(), 32), 32);
        // A short chunk after a full window would make the batch mostly padding: it waits.
        assert_eq!(batch_len([256, 256, 40].into_iter(), 32), 2);
        // Padding of 5%: kept together.
        assert_eq!(batch_len([200, 190, 190].into_iter(), 32), 3);
        // 256, 220: the second pads 36 of 512 (7%), but a third of 200 would pad 92 of 768 (12%).
        assert_eq!(batch_len([256, 220, 200].into_iter(), 32), 2);
        assert_eq!(batch_len([5, 5, 5].into_iter(), 1), 1);
        assert_eq!(batch_len([7].into_iter(), 32), 1);
    }
}
