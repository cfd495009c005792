//! The crate's integration tests, one binary: each module was its own test binary, and every
//! binary links the whole dependency tree (linking them apart filled CI's disk).

mod failures;
mod feed;
mod index_folder;
mod plan;
mod reconcile;
mod retrieve;
