//! The crate's integration tests, one binary: each module was its own test binary, and every
//! binary links the whole dependency tree (linking them apart filled CI's disk).
// The embed-worker's job future nests the pipeline's and the SDK's several calls deep; computing its
// layout passes rustc's default depth of 128.
#![recursion_limit = "256"]

mod aws;
mod budget;
mod faults;
mod tenants;
mod verify;
