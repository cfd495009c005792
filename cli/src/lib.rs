//! The local deployment as a library: [`engine`] wires the local adapters, the model and the
//! pipeline together once, for the `quarry` commands and for the benchmarks, which measure the
//! same wiring the commands run.

pub mod engine;
pub mod relevance;

use std::path::PathBuf;

/// What is wrong with the installation rather than with the input: exit code 3.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid configuration")]
    Config(#[source] quarry_core::ConfigError),
    #[error(
        "the embedding model is not installed in {} (run `{}` to install it, or set QUARRY_MODEL_DIR)",
        dir.display(),
        quarry_core::config::Model::SETUP_COMMAND
    )]
    ModelMissing { dir: PathBuf },
    #[error("cannot load the tokenizer")]
    Tokenizer(#[source] quarry_text::TokenizerError),
    #[error("cannot load the embedding model")]
    Model(#[source] quarry_embed::EmbedError),
    #[error("cannot set up the OpenAI embedder")]
    OpenAi(#[source] quarry_openai::OpenAiError),
}
