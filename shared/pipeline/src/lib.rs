//! Quarry's pipeline, in two halves over the ports, shared by the Lambda functions, the HTTP API
//! and the `quarry` commands, none of which holds a copy:
//!
//! - **The indexing half**: one document's lifecycle ([`Indexer::index`], [`forget`], [`reject`]),
//!   batches planned up front behind one screening rule and one batch-id rule ([`Planner`],
//!   [`batch_id`]), and the one job runner ([`Runner`]) with merged embedding calls
//!   ([`CoalescingEmbedder`]).
//! - **The query half** ([`query`]): modes, retrieval, fusion, feedback and highlights.
//!
//! It depends on the core alone: extraction comes in through the [`DocumentPreparer`] port, so
//! that the search Lambda, which shares the query half, carries no parser.
//!
//! [`DocumentPreparer`]: quarry_core::ports::DocumentPreparer

pub mod batch;
pub mod coalesce;
pub mod index;
pub mod query;
pub mod runner;

pub use batch::{Plan, Planner, batch_id};
pub use coalesce::CoalescingEmbedder;
pub use index::{Indexer, Outcome, forget, reject};
pub use query::{Mode, retrieve};
pub use runner::{Retries, Runner, index_jobs};
