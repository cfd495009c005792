//! What an operation's embedding calls were billed ([`Usage`]): an embedder wrapped for the length
//! of one operation (a search, a document) adds up the usage of every call that succeeded, however
//! many the operation makes (the query, semantic highlights) and whichever adapter answers.

use std::sync::Mutex;

use quarry_core::PortError;
use quarry_core::ports::{Embedder, ModelInfo, Usage};

#[derive(Debug)]
pub struct Metered<'a, E> {
    inner: &'a E,
    used: Mutex<Usage>,
}

impl<'a, E: Embedder> Metered<'a, E> {
    pub fn new(inner: &'a E) -> Self {
        Metered { inner, used: Mutex::new(Usage::default()) }
    }

    /// What the calls so far were billed.
    pub fn used(&self) -> Usage {
        *self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<E: Embedder> Embedder for Metered<'_, E> {
    fn model(&self) -> &ModelInfo {
        self.inner.model()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let vectors = self.inner.embed(texts).await?;
        // Counted after success: a failed call is retried by someone, and billed then.
        let usage = self.inner.usage(texts);
        self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(usage);
        Ok(vectors)
    }

    fn usage(&self, texts: &[String]) -> Usage {
        self.inner.usage(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two dimensions; bills one token per character at 20 nanodollars, fails on "fail".
    struct Priced(ModelInfo);

    impl Embedder for Priced {
        fn model(&self) -> &ModelInfo {
            &self.0
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
            if texts.iter().any(|t| t == "fail") {
                return Err(PortError::InvalidInput { operation: "embed", reason: "fail".into() });
            }
            Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
        }
        fn usage(&self, texts: &[String]) -> Usage {
            let tokens = texts.iter().map(|t| t.len() as u64).sum::<u64>();
            Usage { tokens, nanodollars: tokens * 20 }
        }
    }

    #[tokio::test]
    async fn adds_up_what_succeeded() {
        let e = Priced(ModelInfo { id: "priced".into(), dimension: 2, max_tokens: 10 });
        let metered = Metered::new(&e);
        metered.embed(&["abc".to_owned(), "de".to_owned()]).await.expect("embed");
        metered.embed(&["fghij".to_owned()]).await.expect("embed");
        assert!(metered.embed(&["fail".to_owned()]).await.is_err());
        assert_eq!(metered.used(), Usage { tokens: 10, nanodollars: 200 });
        assert!((metered.used().dollars() - 2e-7).abs() < 1e-12);
    }
}
