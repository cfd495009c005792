//! The local adapters: Quarry on one machine with no cloud. The vector index, chosen by
//! measurement (see `docs/PERFORMANCE.md`), the SQLite store of document state, chunks and vectors
//! that feeds it and the keyword index (quarry-keyword), two blob sources (a folder, and a JSON Lines file of
//! records), and a job queue on an in-process channel.

pub mod folder;
pub mod jsonl;
pub mod queue;
pub mod sqlite;
pub mod vector_index;

pub use folder::FolderSource;
pub use jsonl::{JsonlError, JsonlSource, Rejected};
pub use queue::{ChannelQueue, QueueClosed};
pub use sqlite::{ChunkDetails, DiskFull, Locked, SqliteStore, StoreError};
pub use vector_index::{FlatIndex, IndexError, IndexHit};
