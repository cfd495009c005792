//! The embedded default's adapters: Quarry on one machine with no cloud. So far the vector index,
//! chosen by measurement (see `docs/PERFORMANCE.md`), and the SQLite store of document state and
//! vectors. The folder blob source and batch tracking follow with the rest of the embedded pipeline.

pub mod sqlite;
pub mod vector_index;

pub use sqlite::{SqliteStore, StoreError};
pub use vector_index::{FlatIndex, IndexError, IndexHit};
