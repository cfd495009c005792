//! The embedded default's adapters: Quarry on one machine with no cloud. So far the vector index,
//! chosen by measurement (see `docs/PERFORMANCE.md`), and the SQLite store of document state and
//! vectors. and a folder as the blob source.

pub mod folder;
pub mod sqlite;
pub mod vector_index;

pub use folder::FolderSource;
pub use sqlite::{ChunkDetails, SqliteStore, StoreError};
pub use vector_index::{FlatIndex, IndexError, IndexHit};
