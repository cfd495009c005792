//! Embedding requests from many documents in flight, merged into few model calls.
//!
//! A document is a handful of chunks of very different lengths (a full window and a short tail).
//! Embedded one document at a time, the short chunk is padded to the long one's length, and the
//! model runs small batches; measured on NFCorpus with the local model that costs about a fifth of
//! the throughput (`docs/PERFORMANCE.md`). Merged across documents, the embedder sorts a few hundred
//! chunks by length and pads almost nothing. For a remote API the same merge means fewer requests.
//!
//! Merging is natural batching, with no timer: while one call runs, the requests that arrive queue
//! up, and the next call takes all of them (up to a cap). A lone request is never held back.
//! A failed merged call is retried one request at a time, so that one document's bad input or
//! refused request fails that document, not every document that happened to share its call.

use std::sync::Arc;

use quarry_core::PortError;
use quarry_core::ports::{Embedder, ModelInfo, Usage};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, PortError>>;
/// What a call to the inner embedder is billed.
type Pricing = Arc<dyn Fn(&[String]) -> Usage + Send + Sync>;

struct Request {
    texts: Vec<String>,
    reply: Reply,
}

/// An [`Embedder`] that merges concurrent calls into calls of up to `max_texts` texts on `inner`.
/// Create it inside a tokio runtime: it runs one task that makes the calls.
#[derive(Clone)]
pub struct CoalescingEmbedder {
    model: ModelInfo,
    queue: mpsc::UnboundedSender<Request>,
    /// The inner embedder's pricing: what a call is billed does not change by merging.
    usage: Pricing,
}

impl std::fmt::Debug for CoalescingEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescingEmbedder").field("model", &self.model).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("texts", &self.texts.len()).finish_non_exhaustive()
    }
}

/// The merging task is gone (its runtime shut down): nothing can be embedded through this handle.
#[derive(Debug, thiserror::Error)]
#[error("the embedding queue has shut down")]
pub struct QueueClosed;

impl CoalescingEmbedder {
    pub fn new<E: Embedder + 'static>(inner: E, max_texts: usize) -> Self {
        let model = inner.model().clone();
        let (queue, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(inner);
        let priced = Arc::clone(&inner);
        tokio::spawn(run(inner, rx, max_texts.max(1)));
        CoalescingEmbedder { model, queue, usage: Arc::new(move |texts: &[String]| priced.usage(texts)) }
    }
}

async fn run<E: Embedder>(inner: Arc<E>, mut rx: mpsc::UnboundedReceiver<Request>, max_texts: usize) {
    while let Some(first) = rx.recv().await {
        let mut texts = first.texts.len();
        let mut group = vec![first];
        while texts < max_texts {
            let Ok(next) = rx.try_recv() else { break };
            texts += next.texts.len();
            group.push(next);
        }
        serve(inner.as_ref(), group, texts).await;
    }
}

async fn serve<E: Embedder>(inner: &E, group: Vec<Request>, total: usize) {
    if group.len() == 1 {
        for r in group {
            let result = inner.embed(&r.texts).await;
            // The caller may have given up; nothing to do about it here.
            let _ = r.reply.send(result);
        }
        return;
    }
    let mut all = Vec::with_capacity(total);
    for r in &group {
        all.extend(r.texts.iter().cloned());
    }
    tracing::debug!(requests = group.len(), texts = total, "merged embedding call");
    match inner.embed(&all).await {
        Ok(vectors) if vectors.len() == total => {
            let mut vectors = vectors.into_iter();
            for r in group {
                let mine: Vec<Vec<f32>> = vectors.by_ref().take(r.texts.len()).collect();
                let _ = r.reply.send(Ok(mine));
            }
        }
        // A failure (or a wrong count) of the merged call: each request on its own, so that each
        // gets its own result and its own error.
        _ => {
            for r in group {
                let result = inner.embed(&r.texts).await;
                let _ = r.reply.send(result);
            }
        }
    }
}

impl Embedder for CoalescingEmbedder {
    fn model(&self) -> &ModelInfo {
        &self.model
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let closed = || PortError::Permanent { operation: "embed", source: Box::new(QueueClosed) };
        let (reply, rx) = oneshot::channel();
        self.queue.send(Request { texts: texts.to_vec(), reply }).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    fn usage(&self, texts: &[String]) -> Usage {
        (self.usage)(texts)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the size of every call; "bad" texts fail the call they are in. The vector of a text
    /// is its length, so that a misrouted reply shows.
    #[derive(Default, Clone)]
    struct Recording {
        calls: Arc<Mutex<Vec<usize>>>,
    }

    impl Embedder for Recording {
        fn model(&self) -> &ModelInfo {
            static M: std::sync::OnceLock<ModelInfo> = std::sync::OnceLock::new();
            M.get_or_init(|| ModelInfo { id: "rec".into(), dimension: 1, max_tokens: 8 })
        }

        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
            self.calls.lock().expect("lock").push(texts.len());
            // Give other requests time to queue behind this call, as a model run does.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if texts.iter().any(|t| t == "bad") {
                return Err(PortError::InvalidInput { operation: "embed", reason: "bad text".into() });
            }
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
    }

    fn texts(i: usize) -> Vec<String> {
        (0..=i % 3).map(|j| "x".repeat(i * 3 + j + 1)).collect()
    }

    #[tokio::test]
    async fn concurrent_calls_are_merged_and_each_gets_its_own_vectors() {
        let rec = Recording::default();
        let e = CoalescingEmbedder::new(rec.clone(), 64);
        let results = futures::future::join_all((0..30).map(|i| {
            let e = e.clone();
            async move { (i, e.embed(&texts(i)).await) }
        }))
        .await;
        for (i, r) in results {
            let want: Vec<Vec<f32>> = texts(i).iter().map(|t| vec![t.len() as f32]).collect();
            assert_eq!(r.expect("embeds"), want, "request {i}");
        }
        let calls = rec.calls.lock().expect("lock").clone();
        assert_eq!(calls.iter().sum::<usize>(), (0..30).map(|i| texts(i).len()).sum::<usize>());
        assert!(calls.len() < 10, "30 concurrent requests should share calls: {calls:?}");
        assert!(calls.iter().all(|&n| n <= 64 + 3), "a call goes over the cap by at most one request: {calls:?}");
    }

    #[tokio::test]
    async fn one_bad_request_fails_alone() {
        let rec = Recording::default();
        let e = CoalescingEmbedder::new(rec.clone(), 64);
        let bad = vec!["fine".to_owned(), "bad".to_owned()];
        let results = futures::future::join_all((0..8).map(|i| {
            let e = e.clone();
            let input = if i == 5 { bad.clone() } else { texts(i) };
            async move { (i, e.embed(&input).await) }
        }))
        .await;
        for (i, r) in results {
            if i == 5 {
                assert!(matches!(r, Err(PortError::InvalidInput { .. })), "{r:?}");
            } else {
                assert_eq!(r.expect("others embed").len(), texts(i).len(), "request {i}");
            }
        }
    }

    /// Bills a token per byte at 20 nanodollars.
    struct Priced(ModelInfo);

    impl Embedder for Priced {
        fn model(&self) -> &ModelInfo {
            &self.0
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
            Ok(texts.iter().map(|_| vec![1.0]).collect())
        }
        fn usage(&self, texts: &[String]) -> Usage {
            let tokens = texts.iter().map(|t| t.len() as u64).sum::<u64>();
            Usage { tokens, nanodollars: tokens * 20 }
        }
    }

    #[tokio::test]
    async fn merging_keeps_the_inner_embedders_price() {
        let e = CoalescingEmbedder::new(Priced(ModelInfo { id: "p".into(), dimension: 1, max_tokens: 8 }), 64);
        // Budgets reserve what this says before every call: merging must not hide it.
        assert_eq!(e.usage(&["abcd".to_owned(), "ef".to_owned()]), Usage { tokens: 6, nanodollars: 120 });
    }

    #[tokio::test]
    async fn empty_input_needs_no_call() {
        let rec = Recording::default();
        let e = CoalescingEmbedder::new(rec.clone(), 8);
        assert!(e.embed(&[]).await.expect("empty").is_empty());
        assert!(rec.calls.lock().expect("lock").is_empty());
    }
}
