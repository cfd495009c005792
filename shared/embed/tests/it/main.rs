//! The crate's integration tests, one binary: each module was its own test binary, and every
//! binary links the whole dependency tree (linking them apart filled CI's disk).

mod concurrent_load;
#[cfg(target_os = "linux")]
mod priority;
mod reference;
