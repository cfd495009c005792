//! The crate's integration tests, one binary: each module was its own test binary, and every
//! binary links the whole dependency tree (linking them apart filled CI's disk).

mod api_fuzz;
mod audit;
mod browser;
mod budget;
mod cache;
mod common;
mod faults;
mod hosted;
mod ingest;
mod inspect;
mod keys;
mod kills;
mod log_hygiene;
mod precision;
mod relevance;
mod serve;
mod tenants;
mod uploads;
mod verify;
