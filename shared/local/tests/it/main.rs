//! The crate's integration tests, one binary: each module was its own test binary, and every
//! binary links the whole dependency tree (linking them apart filled CI's disk).

mod sources;
mod sqlite_cache;
mod sqlite_store;
mod vector_file;
mod vector_index;
