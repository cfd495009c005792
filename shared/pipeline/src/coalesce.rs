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
//!
//! A text that two documents in one merged call both need (a shared paragraph, a boilerplate
//! footer) is sent once, and billed to the first of them: the embedding cache catches repeats
//! across calls, this catches them within one.

use std::collections::HashMap;
use std::sync::Arc;

use quarry_core::cache::cache_key_text;
use quarry_core::ports::{Embedder, ModelInfo, Usage};
use quarry_core::{ContentHash, PortError};
use tokio::sync::{mpsc, oneshot};

/// The vectors asked for, and what this request was billed for them.
type Reply = oneshot::Sender<Result<(Vec<Vec<f32>>, Usage), PortError>>;
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

/// Texts embedded by the last calls, kept so that a text still being embedded for one document
/// when another asked for it (its cache lookup came too early) is not sent again.
const RECENT: usize = 4_096;

/// Texts are matched as the embedding cache matches them ([`cache_key_text`]): what the cache
/// would share, the queue shares, so an estimate (which counts by the cache's key) holds.
type Recent = HashMap<ContentHash, Vec<f32>>;

async fn run<E: Embedder>(inner: Arc<E>, mut rx: mpsc::UnboundedReceiver<Request>, max_texts: usize) {
    let mut recent: Recent = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut texts = first.texts.len();
        let mut group = vec![first];
        while texts < max_texts {
            let Ok(next) = rx.try_recv() else { break };
            texts += next.texts.len();
            group.push(next);
        }
        if recent.len() > RECENT {
            recent.clear();
        }
        serve(inner.as_ref(), group, &mut recent).await;
    }
}

/// One request on its own: its texts, billed to it.
async fn alone<E: Embedder>(inner: &E, r: Request) {
    let result = inner.embed(&r.texts).await.map(|v| (v, inner.usage(&r.texts)));
    // The caller may have given up; nothing to do about it here.
    let _ = r.reply.send(result);
}

/// Where a request's text comes from: the call about to be made, or one just made.
enum From {
    Call(usize),
    Recent(Vec<f32>),
}

async fn serve<E: Embedder>(inner: &E, group: Vec<Request>, recent: &mut Recent) {
    // Each distinct text once; each request's texts as places in that list (or vectors already
    // at hand), and the texts it is the first to need: what it pays for.
    let mut unique: Vec<(ContentHash, String)> = Vec::new();
    let mut place: HashMap<ContentHash, usize> = HashMap::new();
    let mut layout: Vec<(Vec<From>, Vec<String>)> = Vec::with_capacity(group.len());
    for r in &group {
        let (mut at, mut first) = (Vec::with_capacity(r.texts.len()), Vec::new());
        for t in &r.texts {
            let key = cache_key_text(t);
            if let Some(v) = recent.get(&key) {
                at.push(From::Recent(v.clone()));
                continue;
            }
            let i = *place.entry(key.clone()).or_insert_with(|| {
                unique.push((key, t.clone()));
                first.push(t.clone());
                unique.len() - 1
            });
            at.push(From::Call(i));
        }
        layout.push((at, first));
    }
    let (keys, unique): (Vec<ContentHash>, Vec<String>) = unique.into_iter().unzip();
    if group.len() > 1 {
        tracing::debug!(requests = group.len(), texts = unique.len(), "merged embedding call");
    }
    let result = if unique.is_empty() { Ok(Vec::new()) } else { inner.embed(&unique).await };
    match result {
        Ok(vectors) if vectors.len() == unique.len() => {
            for (r, (at, first)) in group.into_iter().zip(layout) {
                let mine: Vec<Vec<f32>> = at
                    .into_iter()
                    .map(|f| match f {
                        From::Call(i) => vectors[i].clone(),
                        From::Recent(v) => v,
                    })
                    .collect();
                let _ = r.reply.send(Ok((mine, inner.usage(&first))));
            }
            recent.extend(keys.into_iter().zip(vectors));
        }
        // A failure (or a wrong count) of the merged call: each request on its own, so that each
        // gets its own result and its own error.
        _ if group.len() > 1 => {
            for r in group {
                alone(inner, r).await;
            }
        }
        // A lone request: its own failure, or the wrong count (the embedder's fault, as the
        // indexer judges it), is its answer.
        other => {
            let result = other.and_then(|vectors| {
                let source = Box::new(crate::index::WrongCount { got: vectors.len(), sent: unique.len() });
                Err(PortError::Permanent { operation: "embed", source })
            });
            if let Some(r) = group.into_iter().next() {
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
        self.embed_billed(texts).await.map(|(vectors, _)| vectors)
    }

    async fn embed_billed(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, Usage), PortError> {
        if texts.is_empty() {
            return Ok((Vec::new(), Usage::default()));
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

    /// Records every text sent and bills a token per byte; slow enough for requests to queue.
    #[derive(Default, Clone)]
    struct Billing {
        sent: Arc<Mutex<Vec<String>>>,
    }

    impl Embedder for Billing {
        fn model(&self) -> &ModelInfo {
            static M: std::sync::OnceLock<ModelInfo> = std::sync::OnceLock::new();
            M.get_or_init(|| ModelInfo { id: "billing".into(), dimension: 1, max_tokens: 8 })
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
            self.sent.lock().expect("lock").extend(texts.iter().cloned());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
        fn usage(&self, texts: &[String]) -> Usage {
            let tokens = texts.iter().map(|t| t.len() as u64).sum::<u64>();
            Usage { tokens, nanodollars: tokens }
        }
    }

    #[tokio::test]
    async fn a_text_two_requests_share_in_one_call_is_sent_once_and_billed_once() {
        let inner = Billing::default();
        let e = CoalescingEmbedder::new(inner.clone(), 64);
        // The first call runs alone; the three behind it queue and merge.
        let warm = ["warm up".to_owned()];
        let first = e.embed_billed(&warm);
        let shared = "a shared footer".to_owned();
        let a = vec!["alpha".to_owned(), shared.clone()];
        let b = vec![shared.clone(), "beta".to_owned()];
        let c = vec![shared.clone()];
        let (w, ra, rb, rc) = tokio::join!(first, e.embed_billed(&a), e.embed_billed(&b), e.embed_billed(&c));
        w.expect("warm up");
        let (ra, rb, rc) = (ra.expect("a"), rb.expect("b"), rc.expect("c"));
        assert_eq!(ra.0, vec![vec![5.0], vec![15.0]], "each gets its own vectors, in order");
        assert_eq!(rb.0, vec![vec![15.0], vec![4.0]]);
        assert_eq!(rc.0, vec![vec![15.0]]);
        let sent = inner.sent.lock().expect("lock").clone();
        assert_eq!(sent.iter().filter(|t| **t == shared).count(), 1, "the shared text is sent once: {sent:?}");
        let billed: u64 = [&ra, &rb, &rc].iter().map(|r| r.1.tokens).sum();
        let sent_tokens: u64 = sent.iter().filter(|t| *t != "warm up").map(|t| t.len() as u64).sum();
        assert_eq!(billed, sent_tokens, "what the requests are billed adds up to what was sent");
        assert_eq!(ra.1.tokens, 5 + 15, "the first to need it pays for it");
        assert_eq!((rb.1.tokens, rc.1.tokens), (4, 0));
    }

    #[tokio::test]
    async fn a_text_asked_for_again_just_after_its_call_is_not_sent_again() {
        let inner = Billing::default();
        let e = CoalescingEmbedder::new(inner.clone(), 64);
        let t = vec!["a paragraph two documents share".to_owned()];
        let (v1, billed1) = e.embed_billed(&t).await.expect("first");
        let (v2, billed2) = e.embed_billed(&t).await.expect("again");
        assert_eq!(v1, v2);
        assert_eq!((billed1.tokens, billed2.tokens), (31, 0));
        assert_eq!(inner.sent.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn empty_input_needs_no_call() {
        let rec = Recording::default();
        let e = CoalescingEmbedder::new(rec.clone(), 8);
        assert!(e.embed(&[]).await.expect("empty").is_empty());
        assert!(rec.calls.lock().expect("lock").is_empty());
    }
}
