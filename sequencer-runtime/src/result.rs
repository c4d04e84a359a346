//! What an operation returns: [`Result`], its [`Error`], and [`Skip`] to end itself as skipped.

use std::fmt;

/// The error an operation returns: any error converts into it with `?`.
pub type Error = anyhow::Error;

/// The result of an operation, `Result<()>` by default.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// The error an operation returns to end itself as skipped; recorded with its reason, not as a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Why the operation skipped itself.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: {}", self.reason)
    }
}

impl std::error::Error for Skipped {}

/// Ends an operation as skipped: `return Err(Skip("no rows to backfill"));`.
///
/// ```
/// use sequencer_runtime::{Skip, Skipped};
/// let err = Skip("nothing to do");
/// assert_eq!(err.downcast_ref::<Skipped>().unwrap().reason, "nothing to do");
/// ```
#[allow(non_snake_case)]
pub fn Skip(reason: impl Into<String>) -> Error {
    anyhow::Error::new(Skipped {
        reason: reason.into(),
    })
}
