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

/// An error with its causes, each said once: `what: why: root cause`. A cause whose text already ends the text
/// before it is left out: sqlx's database errors, for one, repeat their source (`relation "x" does not exist:
/// relation "x" does not exist`).
pub(crate) fn describe(e: &Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that repeats its source's text, as sqlx's database errors do.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "error returned from database: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = Error::new(Repeats(std::io::Error::other(
            "relation \"x\" does not exist",
        )))
        .context("backfilling orders");
        assert_eq!(
            format!("{e:#}"),
            "backfilling orders: error returned from database: relation \"x\" does not exist: relation \"x\" does not exist"
        );
        assert_eq!(
            describe(&e),
            "backfilling orders: error returned from database: relation \"x\" does not exist"
        );
        let plain = Error::msg("root").context("middle").context("top");
        assert_eq!(describe(&plain), "top: middle: root");
    }
}
