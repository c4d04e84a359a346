//! The runtime's errors, each saying how to fix it.

use crate::ledger::error::LedgerError;
use crate::registry::RegistryError;

/// Errors of the runtime, each saying how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    /// The registry is invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// No operation has this name.
    #[error("no operation named `{name}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownOperation {
        /// The name given.
        name: String,
        /// The closest known name.
        suggestion: Option<String>,
    },
    /// A guard refused the run.
    #[error("refused: {0}")]
    Refused(String),
    /// `--isolate`: another process holds the lock.
    #[error("another process holds the isolation lock; wait for it to finish, or run without `--isolate`")]
    LockHeld,
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
}
