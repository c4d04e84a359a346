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
    /// `--isolate`: another process holds the lock (and held it for as long as `process` would wait).
    #[error("{}", lock_held(holder.as_deref(), *waited))]
    LockHeld {
        /// Who holds it, `HOST (pid N)`, when the ledger knows.
        holder: Option<String>,
        /// How long this process waited for it (`--wait`), if it did.
        waited: Option<std::time::Duration>,
    },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
}

/// [`SequencerError::LockHeld`]'s message: who holds the lock, how long this process waited, what to do.
fn lock_held(holder: Option<&str>, waited: Option<std::time::Duration>) -> String {
    let who = holder.map(|h| format!(": {h}")).unwrap_or_default();
    match waited {
        Some(w) => format!(
            "another process holds the isolation lock{who}; waited {} s for it, then gave up",
            w.as_secs_f64().round()
        ),
        None => format!(
            "another process holds the isolation lock{who}; wait for it to finish (`--wait` waits for it), or run without `--isolate`"
        ),
    }
}
