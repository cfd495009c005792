//! Quarry's core: the domain types every adapter speaks, the ports (traits) the pipeline is written
//! against, the error taxonomy that says whether a failure is worth retrying, and the typed
//! configuration.
//!
//! This crate depends on no cloud SDK and no database on purpose: the Lambda functions and the
//! embedded default are the same pipeline over different adapters, and the adapters live in their own
//! crates (see `docs/ARCHITECTURE.md`).

pub mod cache;
pub mod census;
pub mod config;
pub mod domain;
pub mod error;
pub mod event;
pub mod filter;
pub mod format;
pub mod hosted;
pub mod keywords;
pub mod lexicon;
pub mod meta;
pub mod metric;
pub mod ports;
pub mod spend;
pub mod tenant;

pub use config::{Config, ConfigError};
pub use domain::*;
pub use error::{Classify, ErrorClass, PortError};
pub use filter::{Filter, FilterError};
