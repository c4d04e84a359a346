//! The ledger's errors, and which database errors may go away when the statement is tried again.

/// Errors of the ledger: the statement's purpose, and sqlx's error as the cause.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database URL names a backend the ledger does not support.
    #[error("unsupported database URL `{0}`: use `sqlite://FILE`, `postgres://…` or `mysql://…` (MariaDB too)")]
    UnsupportedUrl(String),
    /// The database URL names a backend whose driver this build does not have (a cargo feature is off).
    #[error("cannot open `{url}`: {message}")]
    MissingBackend {
        /// The URL, without its password.
        url: String,
        /// Which feature to enable.
        message: String,
    },
    /// The table prefix is not a plain identifier.
    #[error("table prefix `{0}` may hold only ASCII letters, digits and `_`")]
    BadPrefix(String),
    /// The database could not be reached.
    #[error("cannot connect to the ledger database `{url}`")]
    Connect {
        /// The URL, without password.
        url: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("ledger: cannot {what}")]
    Query {
        /// What the statement was for.
        what: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The ledger refuses a write that would make it lie (a run in two batches, a member twice).
    #[error("{0}")]
    Refused(String),
}

/// A failed statement, named by what it was for: `.map_err(q("claim an operation"))`.
pub(super) fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> LedgerError {
    move |source| LedgerError::Query { what, source }
}

/// Runs `attempt` again while it fails transiently (see [`transient`]), for up to ten seconds: at once after a
/// lost deadlock or serialization race (see [`conflict`]), else backing off from 50 ms to 1 s. Only for work that is safe to try again: a single statement (a failed one changed nothing) or a
/// transaction that rolled back whole, whose effect is the same when it ran before.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, LedgerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LedgerError>>,
{
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        match attempt().await {
            // A deadlock victim (MariaDB's gap locks against a take) is tried again at once.
            Err(e) if conflict(&e) && std::time::Instant::now() < give_up => {
                tracing::debug!("{what}: lost a race, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..3))).await;
            }
            Err(LedgerError::Query { source, .. })
                if transient(&source) && std::time::Instant::now() < give_up =>
            {
                tracing::warn!("cannot {what} yet, retrying: {source}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// SQLite's busy and locked results, by their primary code: the extended ones (`SQLITE_BUSY_SNAPSHOT` = 517,
/// `SQLITE_BUSY_RECOVERY` = 261, `SQLITE_LOCKED_SHAREDCACHE` = 262, …) carry it in their low byte. (MySQL's
/// codes start at 1000, PostgreSQL's are five-character SQLSTATEs.)
fn sqlite_busy_or_locked(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|n| n < 1000 && matches!(n & 0xff, 5 | 6))
}

/// Whether a statement may succeed if tried again: the connection or the pool failed, the server is starting or
/// has too many clients, or the transaction lost a deadlock / serialization race.
pub fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // PostgreSQL: connection exceptions, insufficient resources, operator intervention (shutdown,
            // starting up), serialization failures and deadlocks. MySQL: too many connections, lock wait
            // timeout, deadlock. SQLite: busy, locked.
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
                || c == "1040"
                || c == "1205"
                || c == "1213"
                || sqlite_busy_or_locked(&c)
        }),
        _ => false,
    }
}

/// Whether a statement lost a race with another transaction (a deadlock victim, a serialization failure): tried
/// again at once it is likely to succeed, with no sign that the database is in trouble.
pub fn conflict(e: &LedgerError) -> bool {
    match e {
        LedgerError::Query {
            source: sqlx::Error::Database(d),
            ..
        } => d
            .code()
            .is_some_and(|c| c == "40001" || c == "40P01" || c == "1213"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::transient;

    #[test]
    fn connection_trouble_is_retried_and_wrong_statements_are_not() {
        assert!(transient(&sqlx::Error::PoolTimedOut));
        assert!(transient(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(transient(&sqlx::Error::WorkerCrashed));
        assert!(!transient(&sqlx::Error::RowNotFound));
        assert!(!transient(&sqlx::Error::PoolClosed));
        assert!(!transient(&sqlx::Error::ColumnNotFound("x".into())));
    }

    #[test]
    fn sqlite_busy_and_locked_count_by_their_primary_code() {
        for code in ["5", "6", "261", "517", "773", "262", "518"] {
            assert!(super::sqlite_busy_or_locked(code), "{code}");
        }
        // SQLite's constraint (19, 2067), MySQL's 1029 / 1030 and PostgreSQL's unique violation are not.
        for code in ["19", "2067", "1029", "1030", "23505", "00000"] {
            assert!(!super::sqlite_busy_or_locked(code), "{code}");
        }
    }
}
