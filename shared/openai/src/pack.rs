//! Requests packed to the endpoint's limits, counted in the model's own tokens (cl100k_base for
//! the `text-embedding-3` models, through tiktoken-rs): at most 2,048 inputs and 300,000 tokens a
//! request, and no input over 8,191 tokens. Counting in another tokenizer (the local model's
//! WordPiece) under-counts code, numbers and non-English text, and the request is refused whole.

use std::ops::Range;

/// Inputs per request: the endpoint's limit.
pub const MAX_INPUTS: usize = 2_048;
/// Tokens per request, summed over its inputs: the endpoint's limit.
pub const MAX_REQUEST_TOKENS: usize = 300_000;
/// Tokens of one input: the `text-embedding-3` models' window.
pub const MAX_INPUT_TOKENS: usize = 8_191;

/// The text's length in cl100k_base tokens, as OpenAI bills and limits it.
pub fn tokens(text: &str) -> usize {
    tiktoken_rs::cl100k_base_singleton().encode_ordinary(text).len()
}

/// Consecutive ranges of `counts` (each text's tokens), each within `max_inputs` texts and
/// `max_tokens` tokens, in order. A text over `max_tokens` on its own is a request of its own
/// (the caller refuses texts over the per-input limit first).
pub fn pack(counts: &[usize], max_inputs: usize, max_tokens: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (i, &n) in counts.iter().enumerate() {
        if i > start && (i - start >= max_inputs.max(1) || sum + n > max_tokens) {
            out.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += n;
    }
    if start < counts.len() {
        out.push(start..counts.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_by_count_and_by_tokens_in_order() {
        assert_eq!(pack(&[1; 10], 4, 1_000), [0..4, 4..8, 8..10]);
        assert_eq!(pack(&[100, 100, 100, 50, 300], 100, 250), [0..2, 2..4, 4..5]);
        assert_eq!(pack(&[500, 1], 10, 250), [0..1, 1..2], "an oversized text goes alone");
        assert!(pack(&[], 10, 10).is_empty());
        // Every text once, every request within both limits.
        let counts: Vec<usize> = (0..5_000).map(|i| (i * 7919) % 9_000).collect();
        let ranges = pack(&counts, MAX_INPUTS, MAX_REQUEST_TOKENS);
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), counts.len());
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert!(
            ranges
                .iter()
                .all(|r| r.len() <= MAX_INPUTS && counts[r.clone()].iter().sum::<usize>() <= MAX_REQUEST_TOKENS)
        );
    }

    #[test]
    fn counts_in_the_models_own_tokens() {
        assert_eq!(tokens("hello world"), 2);
        // Digits and code cost more cl100k tokens than words: what a WordPiece count misses.
        assert!(tokens("3.14159265358979323846") > 5);
        assert_eq!(tokens(""), 0);
    }
}
