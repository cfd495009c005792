//! The embedded default's adapters: Quarry on one machine with no cloud. The vector index, chosen
//! by measurement (see `docs/PERFORMANCE.md`), the SQLite store of document state and vectors, and
//! two blob sources: a folder, and a JSON Lines file of records.

pub mod folder;
pub mod jsonl;
pub mod sqlite;
pub mod vector_index;

pub use folder::FolderSource;
pub use jsonl::{JsonlError, JsonlSource, Rejected};
pub use sqlite::{ChunkDetails, SqliteStore, StoreError};
pub use vector_index::{FlatIndex, IndexError, IndexHit};
