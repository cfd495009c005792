//! The embedding model's tokenizer, apart from the parsers: the chunker sizes chunks with it, the
//! local model encodes its inputs with it, and the search side (which embeds queries but never
//! parses a PDF) needs it without lopdf, zip or scraper in its bootstrap.

pub mod wordpiece;

pub use wordpiece::{TokenizerError, Word, WordPiece};

/// Measures text in the embedding model's tokens.
pub trait TokenCounter: Send + Sync + std::fmt::Debug {
    /// The words of `text` with their byte spans and token counts, in order.
    fn words(&self, text: &str) -> Vec<Word>;
    fn count(&self, text: &str) -> usize;
    /// Tokens the model adds around every input (BERT's [CLS] and [SEP]).
    fn special_tokens(&self) -> usize;
}

/// Whichever counter the configured embedder measures in (WordPiece for the local model, cl100k
/// for OpenAI), picked at start-up.
impl TokenCounter for Box<dyn TokenCounter + '_> {
    fn words(&self, text: &str) -> Vec<Word> {
        (**self).words(text)
    }
    fn count(&self, text: &str) -> usize {
        (**self).count(text)
    }
    fn special_tokens(&self) -> usize {
        (**self).special_tokens()
    }
}

impl TokenCounter for WordPiece {
    fn words(&self, text: &str) -> Vec<Word> {
        WordPiece::words(self, text)
    }
    fn count(&self, text: &str) -> usize {
        WordPiece::count(self, text)
    }
    fn special_tokens(&self) -> usize {
        2
    }
}
