//! Chunks sized in the tokens OpenAI bills and limits (cl100k_base), for when OpenAI embeds: the
//! chunker's [`TokenCounter`] over tiktoken. A chunk sized in the local model's WordPiece would be
//! cut at 256 WordPiece tokens, which is anywhere from 150 to 400 cl100k tokens (code, numbers and
//! non-English text are where the two part most).
//!
//! The chunker needs words with their byte spans (it cuts between words, preferring the strongest
//! boundary in the gap) and each word's token count. cl100k has no words of its own: its tokens
//! carry the space before a word (" hello") and merge runs of whitespace ("\n\n"). So the words
//! here are split as BERT's basic tokenizer splits them (runs of letters and digits; every other
//! visible character alone, so that a sentence's full stop is a word of its own and the chunker
//! sees the sentence end), and every token of the whole text is counted once, on the word its
//! first visible byte falls in (a whitespace-only token on the word after it). The counts then add
//! up to the text's own count exactly; a chunk re-encoded alone may differ by a token at each edge
//! (its first word loses its leading space), far inside the 8,191-token window the embedder
//! enforces before sending.

use quarry_tokenizer::{TokenCounter, Word};

/// The cl100k_base tokenizer as a [`TokenCounter`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Cl100k;

impl TokenCounter for Cl100k {
    fn words(&self, text: &str) -> Vec<Word> {
        let mut words = split(text);
        if words.is_empty() {
            return words;
        }
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let bytes = text.as_bytes();
        let (mut at, mut w) = (0usize, 0usize);
        for token in bpe.encode_ordinary(text) {
            let len = bpe.decode_bytes(&[token]).map_or(0, |b| b.len());
            let piece = &bytes[at..(at + len).min(bytes.len())];
            // The first visible byte, or the token's end for whitespace alone (it goes to the next word).
            let visible = piece.iter().position(|b| !b.is_ascii_whitespace()).map_or(at + piece.len(), |i| at + i);
            while w + 1 < words.len() && words[w].end <= visible {
                w += 1;
            }
            words[w].tokens += 1;
            at += len;
        }
        words
    }

    fn count(&self, text: &str) -> usize {
        crate::pack::tokens(text)
    }

    /// OpenAI's embeddings add no tokens of their own around an input.
    fn special_tokens(&self) -> usize {
        0
    }
}

/// Words as BERT's basic tokenizer splits them: maximal runs of alphanumeric characters, and
/// every other non-space character alone. Token counts are zero here.
fn split(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut run: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || c == '_' {
            run.get_or_insert(i);
            continue;
        }
        if let Some(s) = run.take() {
            words.push(Word { start: s, end: i, tokens: 0 });
        }
        if !c.is_whitespace() {
            words.push(Word { start: i, end: i + c.len_utf8(), tokens: 0 });
        }
    }
    if let Some(s) = run {
        words.push(Word { start: s, end: text.len(), tokens: 0 });
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_bert_and_their_counts_add_up_to_the_texts() {
        let text = "Calcium keeps bones strong.\n\nVitamin D3 (cholecalciferol) helps: 1,000 IU/day — maybe.";
        let words = Cl100k.words(text);
        let shown: Vec<&str> = words.iter().map(|w| &text[w.start..w.end]).collect();
        assert_eq!(&shown[..5], ["Calcium", "keeps", "bones", "strong", "."]);
        assert!(shown.contains(&"—") && shown.contains(&"cholecalciferol"));
        let sum: usize = words.iter().map(|w| w.tokens as usize).sum();
        assert_eq!(sum, Cl100k.count(text), "every token counted once");
        // The sentence's end is a word of its own: the chunker's strongest in-line boundary.
        assert_eq!(words[4].tokens, 1);
    }

    #[test]
    fn non_english_and_digits_cost_what_openai_bills() {
        for text in ["Привет, мир! Как дела?", "数据库索引的设计", "3.14159265358979", "  leading and trailing  \n"]
        {
            let words = Cl100k.words(text);
            assert_eq!(words.iter().map(|w| w.tokens as usize).sum::<usize>(), Cl100k.count(text), "{text}");
            assert!(words.windows(2).all(|w| w[0].end <= w[1].start), "{text}: in order");
        }
        assert!(Cl100k.words(" \n\t ").is_empty());
        assert_eq!(Cl100k.special_tokens(), 0);
    }
}
