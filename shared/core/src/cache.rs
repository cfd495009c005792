//! The embedding cache's rules, the same for every store: what a cached vector is keyed by (the
//! model, its dimension, and the hash of the chunk's text normalised as [`cache_key_text`] says),
//! how it is stored ([`Encoding`]), how long it lives and how large the cache may grow
//! ([`CachePolicy`]), and what managing it means ([`CacheAdmin`]).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::PortError;
use crate::domain::ContentHash;

/// How a cached vector is stored. Every stored vector carries its encoding (one leading byte),
/// so a cache written under one setting is still read after the setting changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Four bytes a dimension: the vector as the model returned it.
    F32,
    /// Two bytes a dimension (IEEE half precision), renormalised on reading.
    F16,
    /// One byte a dimension and one scale per vector (`x ≈ q · max|x| / 127`), renormalised on
    /// reading: a quarter of f32. The default, for what it does to retrieval measured on NFCorpus
    /// with every vector read back from the cache (docs/COSTS.md).
    #[default]
    Int8,
}

const TAG_F32: u8 = 1;
const TAG_F16: u8 = 2;
const TAG_INT8: u8 = 3;

impl Encoding {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Some(Encoding::F32),
            "f16" => Some(Encoding::F16),
            "int8" => Some(Encoding::Int8),
            _ => None,
        }
    }

    /// The stored form of `v`: a tag byte, then the values (int8: the scale first).
    pub fn encode(self, v: &[f32]) -> Vec<u8> {
        match self {
            Encoding::F32 => std::iter::once(TAG_F32).chain(v.iter().flat_map(|x| x.to_le_bytes())).collect(),
            Encoding::F16 => {
                std::iter::once(TAG_F16).chain(v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes())).collect()
            }
            Encoding::Int8 => {
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                let mut out = Vec::with_capacity(5 + v.len());
                out.push(TAG_INT8);
                out.extend_from_slice(&scale.to_le_bytes());
                out.extend(v.iter().map(|x| ((x / scale).round().clamp(-127.0, 127.0) as i8).to_le_bytes()[0]));
                out
            }
        }
    }

    /// A stored vector of `dimension` values, in whichever encoding wrote it (and the untagged
    /// f32 of caches written before encodings existed); `None` if it is not one.
    pub fn decode(bytes: &[u8], dimension: usize) -> Option<Vec<f32>> {
        let f32s = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if bytes.len() == dimension * 4 {
            return Some(f32s(bytes));
        }
        let (&tag, rest) = bytes.split_first()?;
        let v: Vec<f32> = match tag {
            TAG_F32 if rest.len() == dimension * 4 => return Some(f32s(rest)),
            TAG_F16 if rest.len() == dimension * 2 => {
                rest.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            TAG_INT8 if rest.len() == 4 + dimension => {
                let scale = f32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                rest[4..].iter().map(|q| f32::from(*q as i8) * scale).collect()
            }
            _ => return None,
        };
        // The models' vectors are unit length and search ranks by dot product: rounding must not
        // change a vector's length, only (slightly) its direction.
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        Some(if norm > 0.0 { v.into_iter().map(|x| x / norm).collect() } else { v })
    }
}

/// The text a cached vector is keyed by: Unicode NFC, whitespace runs as one space, trimmed. Two
/// chunks that differ only there (a paragraph re-wrapped, a composed accent) share one vector, in
/// both deployments.
pub fn cache_key_text(text: &str) -> ContentHash {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.nfc());
    }
    ContentHash::of_text(&out)
}

/// How long cached vectors live and how large the cache may grow (`[cache]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CachePolicy {
    /// How new vectors are stored.
    pub encoding: Encoding,
    /// Days a vector stays after its last use (locally) or its last write (DynamoDB's TTL); 0:
    /// until cleared or evicted.
    pub ttl_days: u32,
    /// Most the local cache may hold, in MiB of stored keys and vectors; past it the least
    /// recently used vectors go. 0: no cap. (DynamoDB is bounded by the TTL alone.)
    pub max_mb: u64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy { encoding: Encoding::default(), ttl_days: 30, max_mb: 1024 }
    }
}

impl CachePolicy {
    pub fn max_bytes(&self) -> Option<u64> {
        (self.max_mb > 0).then(|| self.max_mb * 1024 * 1024)
    }

    pub fn ttl_ms(&self) -> Option<i64> {
        (self.ttl_days > 0).then(|| i64::from(self.ttl_days) * 86_400_000)
    }
}

/// What one model's part of the cache holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheStats {
    pub model: String,
    pub dimension: usize,
    pub entries: u64,
    /// Stored keys and vectors.
    pub bytes: u64,
    /// When the least and the most recently used (locally) or written (DynamoDB) entry was.
    pub oldest_ms: i64,
    pub newest_ms: i64,
}

/// Which entries a clearing removes: all of them, or those of one model, or those not used
/// (written, on DynamoDB) since a moment, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheFilter {
    pub model: Option<String>,
    /// Milliseconds since the epoch.
    pub unused_since_ms: Option<i64>,
}

impl CacheFilter {
    pub fn matches(&self, model: &str, used_ms: i64) -> bool {
        self.model.as_deref().is_none_or(|m| m == model) && self.unused_since_ms.is_none_or(|t| used_ms < t)
    }
}

/// Reports on and clears the embedding cache (`quarry cache`).
pub trait CacheAdmin: Send + Sync {
    /// Per model and dimension, by model.
    fn cache_stats(&self) -> impl Future<Output = Result<Vec<CacheStats>, PortError>> + Send;
    /// Removes the entries `filter` matches; returns how many.
    fn clear_cache(&self, filter: &CacheFilter) -> impl Future<Output = Result<u64, PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u32, dimension: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dimension).map(|i| ((i as u32 * 7919 + seed * 104_729) % 1000) as f32 - 500.0).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn every_encoding_reads_back_what_it_wrote_at_its_precision() {
        for seed in 0..50 {
            let v = unit(seed, 384);
            let f32 = Encoding::decode(&Encoding::F32.encode(&v), 384).expect("f32");
            assert_eq!(f32, v, "f32 is exact");
            let f16 = Encoding::decode(&Encoding::F16.encode(&v), 384).expect("f16");
            assert!(cosine(&f16, &v) > 0.999_99, "f16: {}", cosine(&f16, &v));
            let i8 = Encoding::decode(&Encoding::Int8.encode(&v), 384).expect("int8");
            assert!(cosine(&i8, &v) > 0.9995, "int8: {}", cosine(&i8, &v));
            for d in [&f16, &i8] {
                let n = d.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((n - 1.0).abs() < 1e-5, "read back at unit length: {n}");
            }
        }
        assert_eq!(Encoding::F16.encode(&unit(1, 384)).len(), 1 + 768);
        assert_eq!(Encoding::Int8.encode(&unit(1, 384)).len(), 1 + 4 + 384);
    }

    #[test]
    fn untagged_f32_from_before_encodings_is_still_read_and_garbage_is_not() {
        let v = unit(3, 8);
        let legacy: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(Encoding::decode(&legacy, 8), Some(v.clone()));
        assert_eq!(Encoding::decode(&Encoding::F16.encode(&v), 16), None, "another dimension");
        assert_eq!(Encoding::decode(&[9, 1, 2], 1), None);
        assert_eq!(Encoding::decode(&[], 8), None);
        assert_eq!(Encoding::decode(&Encoding::Int8.encode(&[0.0; 4]), 4), Some(vec![0.0; 4]), "zero stays zero");
    }

    #[test]
    fn the_key_ignores_wrapping_and_composition_but_not_words() {
        let a = cache_key_text("Caf\u{e9} au lait,\n\n  served  hot. ");
        assert_eq!(a, cache_key_text("Cafe\u{301} au lait, served hot."));
        assert_ne!(a, cache_key_text("Café au lait, served cold."));
        assert_ne!(cache_key_text("a b"), cache_key_text("ab"));
    }

    #[test]
    fn a_filter_matches_by_model_and_by_last_use() {
        let f = CacheFilter { model: Some("m".into()), unused_since_ms: Some(100) };
        assert!(f.matches("m", 99));
        assert!(!f.matches("m", 100));
        assert!(!f.matches("n", 1));
        assert!(CacheFilter::default().matches("any", i64::MAX));
    }
}
