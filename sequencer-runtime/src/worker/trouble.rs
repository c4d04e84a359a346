//! What a worker does when a statement of its loop fails: a lost race is tried again at once, anything else is
//! database trouble (said, and waited out a second).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::lease::sleep_or_cancel;
use crate::ledger::error::{conflict, LedgerError};

/// The database is unreachable (restarting, failing over): say so, wait a second, and go on; the pool reconnects.
pub(super) async fn database_trouble(
    e: &(dyn std::error::Error + Sync),
    shutdown: &CancellationToken,
    last_trouble: &mut Option<Instant>,
) {
    *last_trouble = Some(Instant::now());
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    eprintln!("worker: database trouble, retrying in 1 s: {message}");
    sleep_or_cancel(Duration::from_secs(1), shutdown).await;
}

/// A statement of the worker's loop failed: a lost race (a deadlock victim, a serialization failure) is tried again
/// at once, after a pause of a few milliseconds at most; anything else is [`database_trouble`].
pub(super) async fn failed(
    e: &LedgerError,
    shutdown: &CancellationToken,
    last_trouble: &mut Option<Instant>,
) {
    if conflict(e) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3))).await;
    } else {
        database_trouble(e, shutdown, last_trouble).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with a code, as a driver reports one.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn failing(code: &'static str) -> LedgerError {
        LedgerError::Query {
            what: "rescue jobs",
            source: sqlx::Error::Database(Box::new(Coded(code))),
        }
    }

    /// A lost deadlock (PostgreSQL's 40P01, MySQL's 1213) or serialization race (40001) in the worker's loop is
    /// tried again at once; anything else is database trouble, which pauses the worker and puts off rescues.
    #[tokio::test]
    async fn a_lost_race_is_tried_again_at_once_and_trouble_pauses() {
        let stop = CancellationToken::new();
        stop.cancel();
        for code in ["40P01", "1213", "40001"] {
            let mut trouble = None;
            failed(&failing(code), &stop, &mut trouble).await;
            assert!(trouble.is_none(), "{code}: taken for database trouble");
        }
        for code in ["08006", "42P01"] {
            let mut trouble = None;
            failed(&failing(code), &stop, &mut trouble).await;
            assert!(trouble.is_some(), "{code}: not taken for database trouble");
        }
    }
}
