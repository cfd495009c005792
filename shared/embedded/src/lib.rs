//! The embedded default's adapters: Quarry on one machine with no cloud. So far the vector index,
//! chosen by measurement (see `docs/PERFORMANCE.md`); SQLite state and the folder blob source
//! follow with the rest of the embedded pipeline.

pub mod vector_index;

pub use vector_index::{FlatIndex, IndexError, IndexHit};
