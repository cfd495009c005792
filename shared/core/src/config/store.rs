//! Where chunks are stored and searched: Quarry's own vector store (SQLite locally, S3 Vectors on
//! AWS), or OpenAI's vector stores, which embed and search the text themselves.

use serde::{Deserialize, Serialize};

use super::Usd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// The deployment's own: SQLite with the keyword index locally, S3 Vectors on AWS.
    #[default]
    Native,
    /// An OpenAI vector store: Quarry extracts and redacts, OpenAI chunks, embeds and searches.
    /// Semantic search only, 50 results deep (docs/COSTS.md, docs/ARCHITECTURE.md).
    Openai,
}

impl StoreBackend {
    pub fn parse(value: &str) -> Option<StoreBackend> {
        match value.trim().to_ascii_lowercase().as_str() {
            "native" => Some(StoreBackend::Native),
            "openai" => Some(StoreBackend::Openai),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    /// The OpenAI vector store's name: found (the oldest of that name) or created. The key and
    /// base URL are the embedder's (`QUARRY_OPENAI_API_KEY`, `embedder.openai_base_url`).
    pub openai_name: String,
    /// Longest a file batch may stay in progress before it is cancelled and the document retried.
    pub openai_attach_timeout_s: u64,
    /// OpenAI's storage price past the free allowance (its list price, $0.10 per GB a day).
    pub openai_usd_per_gb_day: Usd,
    /// Storage OpenAI does not bill, per account (1 GB).
    pub openai_free_gb: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            backend: StoreBackend::Native,
            openai_name: "quarry".into(),
            openai_attach_timeout_s: 600,
            openai_usd_per_gb_day: Usd(100_000_000),
            openai_free_gb: 1,
        }
    }
}

impl StoreSettings {
    /// What storing `bytes` costs a day, in billionths of a dollar, past the free allowance
    /// (gigabytes of 10^9 bytes, as OpenAI bills them).
    pub fn nanodollars_per_day(&self, bytes: u64) -> u64 {
        let billed = bytes.saturating_sub(u64::from(self.openai_free_gb) * 1_000_000_000);
        (u128::from(billed) * u128::from(self.openai_usd_per_gb_day.0) / 1_000_000_000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_billed_past_the_free_gigabyte() {
        let s = StoreSettings::default();
        assert_eq!(s.nanodollars_per_day(900_000_000), 0);
        // 3 GB stored, 2 billed at $0.10: $0.20 a day.
        assert_eq!(s.nanodollars_per_day(3_000_000_000), 200_000_000);
        assert_eq!(StoreBackend::parse(" OpenAI "), Some(StoreBackend::Openai));
        assert_eq!(StoreBackend::parse("pinecone"), None);
    }
}
